//! The elasticity fit against statsmodels (tests/fixtures/make_elasticity_fixture.py): OLS,
//! WLS and period fixed effects agree to 1e-6 on b, its standard error, its 95 % interval, R²,
//! n and the residual degrees of freedom.

use serde::Deserialize;
use titan_pricing::domain::{Observation, elasticity::estimate};

#[derive(Deserialize)]
struct Fixture {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Point {
    price: f64,
    quantity: f64,
    weight: f64,
    period: Option<String>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    observations: Vec<Point>,
    elasticity: f64,
    intercept: Option<f64>,
    std_error: f64,
    ci_low: f64,
    ci_high: f64,
    r_squared: f64,
    n: usize,
    df: usize,
}

fn near(case: &str, what: &str, got: f64, want: f64) {
    assert!(
        (got - want).abs() <= 1e-6,
        "{case}: {what} is {got}, statsmodels says {want}"
    );
}

#[test]
fn fits_agree_with_statsmodels() {
    let fixture: Fixture =
        serde_json::from_str(include_str!("../fixtures/elasticity_fixture.json")).expect("fixture");
    assert_eq!(fixture.cases.len(), 6);
    for case in fixture.cases {
        let observations: Vec<Observation> = case
            .observations
            .into_iter()
            .map(|p| Observation {
                price: p.price,
                quantity: p.quantity,
                weight: p.weight,
                period: p.period,
            })
            .collect();
        let fit = estimate(&observations, 10).expect(&case.name);
        let c = case.name.as_str();
        near(c, "elasticity", fit.elasticity, case.elasticity);
        near(c, "std_error", fit.std_error, case.std_error);
        near(c, "ci_low", fit.ci_low, case.ci_low);
        near(c, "ci_high", fit.ci_high, case.ci_high);
        near(c, "r_squared", fit.r_squared, case.r_squared);
        match (fit.intercept, case.intercept) {
            (Some(got), Some(want)) => near(c, "intercept", got, want),
            (None, None) => {}
            other => panic!("{c}: intercepts {other:?}"),
        }
        assert_eq!((fit.n, fit.df), (case.n, case.df), "{c}");
    }
}
