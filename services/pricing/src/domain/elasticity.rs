//! Price elasticity **(seed)**: weighted least squares of `ln Q = a + b·ln P` (b is the
//! elasticity), with b's standard error, its 95 % interval (Student t with the residual degrees
//! of freedom), R² and n. With a period on every observation the fit has period fixed effects
//! (a constant elasticity across periods, an intercept per period): x and y are demeaned within
//! each period, which gives the same b and standard error as least squares with one dummy per
//! period, and R² is that dummy model's.
//!
//! Too few observations, too little price variation or no variation left within periods give
//! [`NotEnoughData`] with the reason — never a number.

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use serde::Serialize;
use statrs::distribution::{ContinuousCDF, StudentsT};

/// Prices that vary by less than this ratio (max/min) carry no information about elasticity.
pub const MIN_PRICE_RATIO: f64 = 1.01;

/// One (price, quantity) point with its weight and optional period.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub price: f64,
    pub quantity: f64,
    pub weight: f64,
    pub period: Option<String>,
}

/// A fitted elasticity.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Fit {
    pub elasticity: f64,
    /// `a`; `None` with period fixed effects (one intercept per period).
    pub intercept: Option<f64>,
    pub std_error: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    pub r_squared: f64,
    pub n: usize,
    /// Residual degrees of freedom.
    pub df: usize,
    pub periods: usize,
}

/// Why no elasticity was estimated.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NotEnoughData {
    #[error("not enough data: {n} observations, at least {min} are needed")]
    TooFewPoints { n: usize, min: usize },
    #[error(
        "not enough data: prices vary too little (highest/lowest = {ratio:.4}, at least {MIN_PRICE_RATIO} is needed)"
    )]
    NoPriceVariation { ratio: f64 },
    #[error("not enough data: price does not vary within any period")]
    NoVariationWithinPeriods,
    #[error("not enough data: {n} observations leave no degrees of freedom for {periods} periods")]
    NoDegreesOfFreedom { n: usize, periods: usize },
    #[error("not enough data: quantity never varies, so the fit explains nothing")]
    NoQuantityVariation,
}

impl NotEnoughData {
    /// A stable reason for clients.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::TooFewPoints { .. } => "TOO_FEW_POINTS",
            Self::NoPriceVariation { .. } => "NO_PRICE_VARIATION",
            Self::NoVariationWithinPeriods => "NO_VARIATION_WITHIN_PERIODS",
            Self::NoDegreesOfFreedom { .. } => "NO_DEGREES_OF_FREEDOM",
            Self::NoQuantityVariation => "NO_QUANTITY_VARIATION",
        }
    }
}

/// Weighted means of x and y per group (one group without periods).
fn demean(points: &mut [(f64, f64, f64, usize)], groups: usize) {
    let mut sums = vec![(0.0, 0.0, 0.0); groups];
    for &(x, y, w, g) in points.iter() {
        let s = &mut sums[g];
        s.0 += w * x;
        s.1 += w * y;
        s.2 += w;
    }
    for p in points.iter_mut() {
        let s = sums[p.3];
        p.0 -= s.0 / s.2;
        p.1 -= s.1 / s.2;
    }
}

/// The fit of `observations` (prices and quantities positive, weights positive: callers
/// validate) with at least `min_points` of them.
pub fn estimate(observations: &[Observation], min_points: usize) -> Result<Fit, NotEnoughData> {
    let n = observations.len();
    if n < min_points.max(3) {
        return Err(NotEnoughData::TooFewPoints {
            n,
            min: min_points.max(3),
        });
    }
    let (lo, hi) = observations
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), o| {
            (lo.min(o.price), hi.max(o.price))
        });
    if hi / lo < MIN_PRICE_RATIO {
        return Err(NotEnoughData::NoPriceVariation { ratio: hi / lo });
    }
    let with_periods = observations.iter().any(|o| o.period.is_some());
    let mut names: Vec<&str> = Vec::new();
    let mut points: Vec<(f64, f64, f64, usize)> = observations
        .iter()
        .map(|o| {
            let name = o.period.as_deref().unwrap_or("");
            let g = names.iter().position(|p| *p == name).unwrap_or_else(|| {
                names.push(name);
                names.len() - 1
            });
            (o.price.ln(), o.quantity.ln(), o.weight, g)
        })
        .collect();
    let groups = names.len();
    // Grand weighted mean of y for the total sum of squares.
    let wsum: f64 = points.iter().map(|p| p.2).sum();
    let ybar = points.iter().map(|p| p.2 * p.1).sum::<f64>() / wsum;
    let xbar = points.iter().map(|p| p.2 * p.0).sum::<f64>() / wsum;
    let sst: f64 = points.iter().map(|p| p.2 * (p.1 - ybar).powi(2)).sum();
    let df = n
        .checked_sub(groups + 1)
        .filter(|df| *df > 0)
        .ok_or(NotEnoughData::NoDegreesOfFreedom { n, periods: groups })?;
    demean(&mut points, groups);
    let sxx: f64 = points.iter().map(|p| p.2 * p.0 * p.0).sum();
    let sxy: f64 = points.iter().map(|p| p.2 * p.0 * p.1).sum();
    // Relative to the overall spread of ln P: what is left after demeaning is rounding noise.
    let total_sxx: f64 = observations
        .iter()
        .map(|o| o.weight * (o.price.ln() - xbar).powi(2))
        .sum();
    if sxx <= total_sxx * 1e-12 {
        return Err(NotEnoughData::NoVariationWithinPeriods);
    }
    if sst <= 0.0 {
        return Err(NotEnoughData::NoQuantityVariation);
    }
    let b = sxy / sxx;
    let ssr: f64 = points.iter().map(|p| p.2 * (p.1 - b * p.0).powi(2)).sum();
    #[allow(clippy::cast_precision_loss)] // n is bounded by the request limits
    let sigma2 = ssr / df as f64;
    let se = (sigma2 / sxx).sqrt();
    #[allow(clippy::cast_precision_loss)]
    let t = StudentsT::new(0.0, 1.0, df as f64)
        .map(|d| d.inverse_cdf(0.975))
        .unwrap_or(f64::NAN);
    Ok(Fit {
        elasticity: b,
        intercept: (!with_periods).then_some(ybar - b * xbar),
        std_error: se,
        ci_low: b - t * se,
        ci_high: b + t * se,
        r_squared: 1.0 - ssr / sst,
        n,
        df,
        periods: if with_periods { groups } else { 0 },
    })
}

/// One observation per day with sales: the day's verified orders and the time-weighted mean
/// of the prices in force during it (`path`: price changes oldest first, starting with the last
/// one before the first day). Days without sales (ln 0) or without a known price are left out.
pub fn daily_observations(
    path: &[(DateTime<Utc>, i64)],
    sales: &[(NaiveDate, u64)],
) -> Vec<Observation> {
    let mut out = Vec::with_capacity(sales.len());
    for &(day, orders) in sales {
        if orders == 0 {
            continue;
        }
        let start = day.and_time(NaiveTime::MIN).and_utc();
        let end = start + chrono::Duration::days(1);
        let (mut weighted, mut covered) = (0.0, 0.0);
        for (i, &(from, price)) in path.iter().enumerate() {
            let to = path.get(i + 1).map_or(end, |next| next.0.min(end));
            let seconds = (to.min(end) - from.max(start)).num_seconds();
            if seconds > 0 {
                #[allow(clippy::cast_precision_loss)]
                let (s, p) = (seconds as f64, price as f64);
                weighted += p * s;
                covered += s;
            }
        }
        if covered > 0.0 {
            #[allow(clippy::cast_precision_loss)]
            out.push(Observation {
                price: weighted / covered,
                quantity: orders as f64,
                weight: 1.0,
                period: None,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn daily_prices_are_time_weighted() {
        let at = |d: u32, h: u32| {
            Utc.with_ymd_and_hms(2026, 11, d, h, 0, 0)
                .single()
                .expect("t")
        };
        let day = |d: u32| NaiveDate::from_ymd_opt(2026, 11, d).expect("day");
        let path = [(at(1, 12), 1_000), (at(3, 6), 1_200), (at(3, 18), 900)];
        let obs = daily_observations(
            &path,
            &[
                (day(1), 4),
                (day(2), 5),
                (day(3), 6),
                (day(4), 0),
                (day(5), 7),
            ],
        );
        let got: Vec<(f64, f64)> = obs.iter().map(|o| (o.price, o.quantity)).collect();
        // day 1: only 12:00–24:00 is known; day 3: 6 h at 1000, 12 h at 1200, 6 h at 900.
        assert_eq!(
            got,
            vec![
                (1_000.0, 4.0),
                (1_000.0, 5.0),
                ((6.0 * 1_000.0 + 12.0 * 1_200.0 + 6.0 * 900.0) / 24.0, 6.0),
                (900.0, 7.0)
            ]
        );
    }

    fn obs(points: &[(f64, f64)]) -> Vec<Observation> {
        points
            .iter()
            .map(|&(price, quantity)| Observation {
                price,
                quantity,
                weight: 1.0,
                period: None,
            })
            .collect()
    }

    #[test]
    fn an_exact_power_law_is_recovered() {
        // Q = 1000 · P^-1.5
        let points: Vec<(f64, f64)> = [5.0, 8.0, 10.0, 12.0, 20.0]
            .iter()
            .map(|&p: &f64| (p, 1000.0 * p.powf(-1.5)))
            .collect();
        let fit = estimate(&obs(&points), 3).expect("fit");
        assert!((fit.elasticity + 1.5).abs() < 1e-12, "{fit:?}");
        assert!((fit.intercept.expect("a") - 1000_f64.ln()).abs() < 1e-9);
        assert!(fit.std_error < 1e-9 && (fit.r_squared - 1.0).abs() < 1e-12);
        assert_eq!((fit.n, fit.df), (5, 3));
    }

    #[test]
    fn not_enough_data_says_why() {
        assert_eq!(
            estimate(&obs(&[(10.0, 5.0), (11.0, 4.0)]), 10),
            Err(NotEnoughData::TooFewPoints { n: 2, min: 10 })
        );
        let flat = obs(&[(10.0, 5.0), (10.05, 4.0), (10.0, 6.0), (10.02, 5.0)]);
        assert!(matches!(
            estimate(&flat, 3),
            Err(NotEnoughData::NoPriceVariation { .. })
        ));
        let same_q = obs(&[(10.0, 5.0), (12.0, 5.0), (14.0, 5.0)]);
        assert_eq!(
            estimate(&same_q, 3),
            Err(NotEnoughData::NoQuantityVariation)
        );
        // Each period has one price: no variation within periods.
        let mut within = obs(&[
            (10.0, 5.0),
            (10.0, 6.0),
            (12.0, 4.0),
            (12.0, 3.0),
            (14.0, 2.0),
        ]);
        for (o, p) in within.iter_mut().zip(["a", "a", "b", "b", "c"]) {
            o.period = Some(p.into());
        }
        assert_eq!(
            estimate(&within, 3),
            Err(NotEnoughData::NoVariationWithinPeriods)
        );
        let mut tight = obs(&[(10.0, 5.0), (12.0, 6.0), (14.0, 4.0)]);
        for (o, p) in tight.iter_mut().zip(["a", "b", "b"]) {
            o.period = Some(p.into());
        }
        assert_eq!(
            estimate(&tight, 3),
            Err(NotEnoughData::NoDegreesOfFreedom { n: 3, periods: 2 })
        );
    }
}
