//! The trainer: the IRLS fit agrees with statsmodels on the committed reference data, and
//! `train` recovers known coefficients from labelled decisions in PostgreSQL, stores the
//! version inactive, and a promoted version is blended into checks.

use serde::Deserialize;
use titan_fraud::{
    config::Settings,
    domain::model::{self, FitOptions, Model},
    train::train,
};

use crate::*;

#[derive(Deserialize)]
struct Fixture {
    x: Vec<Vec<f64>>,
    y: Vec<f64>,
    intercept: f64,
    weights: Vec<f64>,
    std_errors: Vec<f64>,
}

#[test]
fn irls_agrees_with_the_statsmodels_reference_fit() {
    let f: Fixture =
        serde_json::from_str(include_str!("../fixtures/fit_fixture.json")).expect("fixture parses");
    let m = model::fit(&f.x, &f.y, FitOptions::default()).expect("fit");
    let ours = std::iter::once(m.intercept).chain(m.weights.iter().copied());
    let theirs = std::iter::once(f.intercept).chain(f.weights.iter().copied());
    for (i, ((a, b), se)) in ours.zip(theirs).zip(&f.std_errors).enumerate() {
        // Agreement to a millionth of a standard error: the same optimum, not just close.
        assert!(
            (a - b).abs() < 1e-6 * se.max(1.0),
            "coefficient {i}: {a} vs {b}"
        );
    }
}

/// SplitMix64 in 0..1, so the synthetic decisions are the same on every run.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[tokio::test]
async fn train_recovers_known_coefficients_from_labelled_decisions() {
    let w = World::new().await;
    let truth = Model {
        intercept: -2.5,
        weights: vec![1.0, 0.5, 1.5, 0.8, 2.0, 1.2, 0.7, 0.6, 2.2, 1.6],
    };
    let rates = [0.3, 0.35, 0.15, 0.2, -1.0, -1.0, 0.15, 0.2, 0.1, 0.1];
    let mut rng = Rng(11);
    let old = epoch() - chrono::Duration::days(90);
    let mut tx = w.db.pool.begin().await.expect("begin");
    let n = 30_000;
    for i in 0..n {
        let x: Vec<f64> = rates
            .iter()
            .map(|&r| {
                if r < 0.0 {
                    rng.next()
                } else {
                    f64::from(rng.next() < r)
                }
            })
            .collect();
        let fraud = rng.next() < truth.predict(&x);
        let id = format!("s{i}");
        sqlx::query(
            "INSERT INTO fraud_decisions (transaction_id, user_id, amount, currency, request, facts,
                 features, reasons, rule_hits, score, level, decision, degraded, decided_at)
             VALUES ($1, 'u', 100, 'EUR', '{}', '{}', $2, '[]', '[]', 0, 'LOW', 'APPROVE', false, $3)",
        )
        .bind(&id)
        .bind(&x)
        .bind(old)
        .execute(&mut *tx)
        .await
        .expect("decision");
        if fraud {
            sqlx::query(
                "INSERT INTO fraud_chargebacks (transaction_id, user_id, amount, reason, recorded_at)
                 VALUES ($1, 'u', 100, '', $2)",
            )
            .bind(&id)
            .bind(old)
            .execute(&mut *tx)
            .await
            .expect("chargeback");
        }
    }
    // Not settled yet and unlabelled: left out.
    sqlx::query(
        "INSERT INTO fraud_decisions (transaction_id, user_id, amount, currency, request, facts,
             features, reasons, rule_hits, score, level, decision, degraded, decided_at)
         VALUES ('fresh', 'u', 100, 'EUR', '{}', '{}', $1, '[]', '[]', 0, 'LOW', 'APPROVE', false, $2)",
    )
    .bind(vec![1.0; 10])
    .bind(epoch())
    .execute(&mut *tx)
    .await
    .expect("fresh");
    tx.commit().await.expect("commit");

    let report = train(&w.db.pool, epoch() - chrono::Duration::days(60), epoch())
        .await
        .expect("train");
    assert_eq!(report.train_examples + report.test_examples, n);
    assert!(
        (report.test_examples as f64 / n as f64 - 0.2).abs() < 0.02,
        "{}",
        report.test_examples
    );
    assert!(
        (report.intercept - truth.intercept).abs() < 0.25,
        "{report:?}"
    );
    for ((name, got), want) in report.weights.iter().zip(&truth.weights) {
        assert!((got - want).abs() < 0.35, "{name}: {got} vs {want}");
    }
    assert!(report.auc > 0.75 && report.auc < 1.0, "{}", report.auc);
    assert!(!report.active);
    let total: usize = report.calibration.iter().map(|b| b.count).sum();
    assert_eq!(total, report.test_examples);
    for b in &report.calibration {
        if b.count >= 200 {
            assert!((b.mean_predicted - b.observed_rate).abs() < 0.08, "{b:?}");
        }
    }

    // Promoted, the model is blended into checks and named in the decision.
    let blended = World::with(Settings {
        model_blend: 0.5,
        ..settings()
    })
    .await;
    let d = blended
        .app
        .check(&service(), txn("before", "u", 100))
        .await
        .expect("check");
    assert_eq!(d.model_version, None);
    assert!(
        blended.app.promote(&admin(), 1).await.is_err(),
        "no model in this database"
    );
    let models = w.app.models(&analyst()).await.expect("models");
    assert_eq!((models.len(), models[0].active), (1, false));
    let promoted = w
        .app
        .promote(&admin(), report.version)
        .await
        .expect("promote");
    assert!(promoted.active);
    assert!(w.app.promote(&analyst(), report.version).await.is_err());
}
