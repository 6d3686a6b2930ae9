//! Revenue impact **(seed)** of a proposed price from a fitted elasticity b: with constant
//! elasticity, quantity moves by `(P1/P0)^b` and revenue by `(P1/P0)^(1+b)`. The 95 % interval
//! of b is carried through by evaluating both of its ends (the impact is monotone in b for a
//! fixed price ratio), so the answer says how uncertain it is.

use serde::Serialize;

use super::elasticity::Fit;

/// The expected change at a proposed price, per the baseline period of `quantity`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Impact {
    /// `(P1/P0)^b`.
    pub quantity_ratio: f64,
    /// Revenue now, `P0 · Q0`, in minor units.
    pub current_revenue: i64,
    /// Expected revenue at P1, in minor units.
    pub expected_revenue: i64,
    /// Expected revenue change and its 95 % interval, in minor units.
    pub change: i64,
    pub change_low: i64,
    pub change_high: i64,
    /// The same as fractions of the current revenue (0.05 = +5 %).
    pub relative: f64,
    pub relative_low: f64,
    pub relative_high: f64,
}

#[allow(clippy::cast_possible_truncation)] // revenues are bounded by prices below 10^12
fn minor(x: f64) -> i64 {
    x.round() as i64
}

/// The impact of moving from `current` to `proposed` (minor units, positive) when `quantity`
/// units sell per period at `current`.
#[allow(clippy::cast_precision_loss)] // prices below 10^12 minor units
pub fn impact(current: i64, proposed: i64, quantity: f64, fit: &Fit) -> Impact {
    let ratio = proposed as f64 / current as f64;
    let now = current as f64 * quantity;
    let at = |b: f64| now * ratio.powf(1.0 + b) - now;
    let (a, c) = (at(fit.ci_low), at(fit.ci_high));
    let (low, high) = (a.min(c), a.max(c));
    let change = at(fit.elasticity);
    let relative = |x: f64| if now > 0.0 { x / now } else { 0.0 };
    Impact {
        quantity_ratio: ratio.powf(fit.elasticity),
        current_revenue: minor(now),
        expected_revenue: minor(now + change),
        change: minor(change),
        change_low: minor(low),
        change_high: minor(high),
        relative: relative(change),
        relative_low: relative(low),
        relative_high: relative(high),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worked_numbers() {
        let fit = Fit {
            elasticity: -2.0,
            intercept: None,
            std_error: 0.25,
            ci_low: -2.5,
            ci_high: -1.5,
            r_squared: 0.9,
            n: 30,
            df: 28,
            periods: 0,
        };
        // 10.00 → 11.00 selling 100 a day: revenue 100,000 → 100,000 · 1.1^-1 = 90,909.
        let i = impact(1_000, 1_100, 100.0, &fit);
        assert_eq!(i.current_revenue, 100_000);
        assert_eq!(i.expected_revenue, 90_909);
        assert_eq!(i.change, -9_091);
        // b = -2.5: 1.1^-1.5 − 1 = −0.13322 ; b = -1.5: 1.1^-0.5 − 1 = −0.04654
        assert_eq!((i.change_low, i.change_high), (-13_322, -4_654));
        assert!((i.quantity_ratio - 1.1_f64.powi(-2)).abs() < 1e-12);
        assert!((i.relative + 0.090_909_09).abs() < 1e-8);
        assert!(i.relative_low <= i.relative && i.relative <= i.relative_high);
    }
}
