//! The statistics of a result, as pure functions over per-variant sufficient statistics
//! (users, sum, sum of squares — what ClickHouse aggregates): the relative lift of a variant
//! over control with a Welch t-test whose variance comes from the delta method, its confidence
//! interval and p-value; a Bayesian chance to beat control; and the sample-ratio-mismatch
//! chi-square test. Checked against scipy in `tests/fixtures/stats_fixture.json`.

use statrs::distribution::{ChiSquared, ContinuousCDF, Normal, StudentsT};

/// A metric over one variant's users: how many, the sum of their values and of the squares.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Sample {
    pub n: u64,
    pub sum: f64,
    pub sum_sq: f64,
}

impl Sample {
    #[allow(clippy::cast_precision_loss)]
    fn count(&self) -> f64 {
        self.n as f64
    }

    pub fn mean(&self) -> f64 {
        if self.n == 0 {
            0.0
        } else {
            self.sum / self.count()
        }
    }

    /// The unbiased sample variance; never negative (rounding can make the formula dip below 0).
    pub fn variance(&self) -> f64 {
        if self.n < 2 {
            return 0.0;
        }
        let n = self.count();
        ((self.sum_sq - self.sum * self.sum / n) / (n - 1.0)).max(0.0)
    }
}

/// A variant against control on one metric.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Lift {
    /// `treatment mean / control mean - 1`.
    pub relative: f64,
    /// Standard error of `relative` by the delta method.
    pub std_error: f64,
    /// Welch–Satterthwaite degrees of freedom.
    pub df: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    /// Two-sided p-value of "no lift".
    pub p_value: f64,
    /// P(lift > 0) under a normal approximation with a flat prior: Φ(relative / std_error).
    pub chance_to_beat_control: f64,
}

/// Why no lift can be computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NoLift {
    #[error("each variant needs at least 2 users")]
    TooFewUsers,
    #[error("the control's mean is 0, so a relative lift is undefined")]
    ZeroControlMean,
    #[error("the metric does not vary, so its uncertainty is unknown")]
    NoVariance,
}

impl NoLift {
    pub fn reason(self) -> &'static str {
        match self {
            Self::TooFewUsers => "TOO_FEW_USERS",
            Self::ZeroControlMean => "ZERO_CONTROL_MEAN",
            Self::NoVariance => "NO_VARIANCE",
        }
    }
}

/// The relative lift of `treatment` over `control` at `confidence` (e.g. 0.95).
///
/// With means `mc`, `mt`, variances `vc`, `vt` and sizes `nc`, `nt`, the delta method gives
/// `Var(mt/mc) ≈ vt/(nt·mc²) + mt²·vc/(nc·mc⁴)`. The two terms play the role of the two
/// groups' variances of the mean in Welch's test, so the degrees of freedom are
/// `(a+b)² / (a²/(nt-1) + b²/(nc-1))` with `a`, `b` those terms; `t = lift / se`.
pub fn relative_lift(
    control: &Sample,
    treatment: &Sample,
    confidence: f64,
) -> Result<Lift, NoLift> {
    if control.n < 2 || treatment.n < 2 {
        return Err(NoLift::TooFewUsers);
    }
    let (mc, mt) = (control.mean(), treatment.mean());
    if mc == 0.0 {
        return Err(NoLift::ZeroControlMean);
    }
    let (nc, nt) = (control.count(), treatment.count());
    let a = treatment.variance() / (nt * mc * mc);
    let b = mt * mt * control.variance() / (nc * mc.powi(4));
    let var = a + b;
    if !(var > 0.0 && var.is_finite()) {
        return Err(NoLift::NoVariance);
    }
    let se = var.sqrt();
    let df = var * var / (a * a / (nt - 1.0) + b * b / (nc - 1.0));
    let relative = mt / mc - 1.0;
    let t = StudentsT::new(0.0, 1.0, df).map_err(|_| NoLift::NoVariance)?;
    let critical = t.inverse_cdf(1.0 - (1.0 - confidence) / 2.0);
    let p_value = (2.0 * t.sf((relative / se).abs())).min(1.0);
    let chance_to_beat_control = Normal::standard().cdf(relative / se);
    Ok(Lift {
        relative,
        std_error: se,
        df,
        ci_low: relative - critical * se,
        ci_high: relative + critical * se,
        p_value,
        chance_to_beat_control,
    })
}

/// A sample-ratio-mismatch test: users per variant against the configured weights.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Srm {
    pub chi_square: f64,
    pub df: u32,
    pub p_value: f64,
}

/// Pearson's chi-square goodness of fit of `observed` to `weights` (normalised to sum to 1).
/// `None` without users or with fewer than two variants of positive weight.
pub fn sample_ratio_mismatch(observed: &[u64], weights: &[f64]) -> Option<Srm> {
    if observed.len() != weights.len() {
        return None;
    }
    #[allow(clippy::cast_precision_loss)]
    let total = observed.iter().sum::<u64>() as f64;
    let weight_total: f64 = weights.iter().sum();
    if total == 0.0 || weight_total <= 0.0 {
        return None;
    }
    let mut chi_square = 0.0;
    let mut cells = 0u32;
    for (&o, &w) in observed.iter().zip(weights) {
        let expected = total * w / weight_total;
        #[allow(clippy::cast_precision_loss)]
        let o = o as f64;
        if expected > 0.0 {
            chi_square += (o - expected).powi(2) / expected;
            cells += 1;
        } else if o > 0.0 {
            // Users in a variant that should get none: as mismatched as it gets.
            return Some(Srm {
                chi_square: f64::INFINITY,
                df: cells.max(1),
                p_value: 0.0,
            });
        }
    }
    let df = cells.checked_sub(1).filter(|d| *d > 0)?;
    let p_value = ChiSquared::new(f64::from(df)).ok()?.sf(chi_square);
    Some(Srm {
        chi_square,
        df,
        p_value,
    })
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Deserialize)]
    struct Group {
        n: u64,
        sum: f64,
        sum_sq: f64,
    }

    #[derive(Deserialize)]
    struct LiftCase {
        name: String,
        confidence: f64,
        control: Group,
        treatment: Group,
        relative: f64,
        std_error: f64,
        df: f64,
        ci_low: f64,
        ci_high: f64,
        p_value: f64,
        chance_to_beat_control: f64,
    }

    #[derive(Deserialize)]
    struct SrmCase {
        name: String,
        observed: Vec<u64>,
        weights: Vec<f64>,
        chi_square: f64,
        p_value: f64,
    }

    #[derive(Deserialize)]
    struct Fixture {
        lifts: Vec<LiftCase>,
        srm: Vec<SrmCase>,
    }

    fn fixture() -> Fixture {
        serde_json::from_str(include_str!("../../tests/fixtures/stats_fixture.json"))
            .expect("fixture parses")
    }

    fn sample(g: &Group) -> Sample {
        Sample {
            n: g.n,
            sum: g.sum,
            sum_sq: g.sum_sq,
        }
    }

    fn near(name: &str, what: &str, got: f64, want: f64, tol: f64) {
        let scale = want.abs().max(1e-12);
        assert!(
            (got - want).abs() <= tol * scale || (got - want).abs() < 1e-12,
            "{name}: {what} = {got}, scipy says {want}"
        );
    }

    #[test]
    fn lifts_agree_with_scipy() {
        let f = fixture();
        assert!(f.lifts.len() >= 4);
        for c in &f.lifts {
            let l = relative_lift(&sample(&c.control), &sample(&c.treatment), c.confidence)
                .unwrap_or_else(|e| panic!("{}: {e}", c.name));
            near(&c.name, "relative", l.relative, c.relative, 1e-9);
            near(&c.name, "std_error", l.std_error, c.std_error, 1e-7);
            near(&c.name, "df", l.df, c.df, 1e-7);
            near(&c.name, "ci_low", l.ci_low, c.ci_low, 1e-6);
            near(&c.name, "ci_high", l.ci_high, c.ci_high, 1e-6);
            near(&c.name, "p_value", l.p_value, c.p_value, 1e-6);
            near(
                &c.name,
                "chance",
                l.chance_to_beat_control,
                c.chance_to_beat_control,
                1e-6,
            );
        }
    }

    #[test]
    fn srm_agrees_with_scipy() {
        for c in fixture().srm {
            let s = sample_ratio_mismatch(&c.observed, &c.weights).expect("computable");
            near(&c.name, "chi_square", s.chi_square, c.chi_square, 1e-9);
            near(&c.name, "p_value", s.p_value, c.p_value, 1e-6);
        }
    }

    #[test]
    fn a_skewed_split_is_a_mismatch_and_a_fair_one_is_not() {
        let skewed = sample_ratio_mismatch(&[5_300, 4_700], &[0.5, 0.5]).expect("srm");
        assert!(skewed.p_value < 0.001, "{skewed:?}");
        let fair = sample_ratio_mismatch(&[5_020, 4_980], &[0.5, 0.5]).expect("srm");
        assert!(fair.p_value > 0.5, "{fair:?}");
        let uneven = sample_ratio_mismatch(&[2_010, 7_990], &[0.2, 0.8]).expect("srm");
        assert!(uneven.p_value > 0.5, "{uneven:?}");
        assert!(sample_ratio_mismatch(&[0, 0], &[0.5, 0.5]).is_none());
    }

    #[test]
    fn refuses_undefined_lifts() {
        let some = Sample {
            n: 10,
            sum: 5.0,
            sum_sq: 5.0,
        };
        let one = Sample {
            n: 1,
            sum: 1.0,
            sum_sq: 1.0,
        };
        let zero = Sample {
            n: 10,
            sum: 0.0,
            sum_sq: 0.0,
        };
        let constant = Sample {
            n: 10,
            sum: 10.0,
            sum_sq: 10.0,
        };
        assert_eq!(relative_lift(&one, &some, 0.95), Err(NoLift::TooFewUsers));
        assert_eq!(
            relative_lift(&zero, &some, 0.95),
            Err(NoLift::ZeroControlMean)
        );
        assert_eq!(
            relative_lift(&constant, &constant, 0.95),
            Err(NoLift::NoVariance)
        );
    }
}
