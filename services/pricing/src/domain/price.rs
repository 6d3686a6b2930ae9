//! Computing a price from the winning rule and its inputs, and deciding whether it is a change
//! worth writing.
//!
//! Arithmetic is in integers: a multiplier is rounded to millionths (ppm), the price to the
//! nearest minor unit with halves rounded up (`base × ppm / 10^6`, half-up). A price ending
//! (`99`) then moves the price to the nearest amount with those last digits (a tie goes down,
//! as charm pricing does). Last comes the clamp to `[min, max]` **(seed)**: an ended price
//! outside the bounds moves one ending step inward when that stays inside, else it becomes
//! the bound itself, so the clamp always wins over the ending.

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde_json::json;
use titan_kit::money::Money;

use super::{
    competitor::Reference,
    input::Segment,
    rule::{BPS, Ending, Position, Rule, Strategy},
};

/// Parts per million: 1,000,000 is ×1.
const PPM: i64 = 1_000_000;

/// What a strategy may read besides its rule.
#[derive(Debug, Clone, Copy)]
pub struct Inputs {
    pub now: DateTime<Utc>,
    /// Demand score 0..100 of the product (DYNAMIC).
    pub demand: f64,
    /// Fresh competitor prices in the rule's currency, if any (COMPETITIVE).
    pub competitors: Option<Reference>,
    /// DYNAMIC's multipliers at demand 0 and 100 (the config's `dynamicMultiplier`).
    pub multipliers: (f64, f64),
}

/// A computed price of one segment, with what it was computed from.
#[derive(Debug, Clone, PartialEq)]
pub struct Computed {
    pub segment: Segment,
    pub price: Money,
    pub strategy: &'static str,
    /// The inputs that decided it, kept in price history.
    pub inputs: serde_json::Value,
    /// Why this price, in words.
    pub reason: String,
}

/// `minor × ppm / 10^6`, rounded half-up (amounts are never negative).
pub fn scale(minor: i64, ppm: i64) -> i64 {
    let exact = i128::from(minor) * i128::from(ppm);
    let rounded = (exact + i128::from(PPM / 2)).div_euclid(i128::from(PPM));
    i64::try_from(rounded).unwrap_or(i64::MAX)
}

/// The nearest amount ending in `ending` (a tie goes down); never 0 or below.
pub fn apply_ending(minor: i64, ending: Ending) -> i64 {
    let m = ending.modulus();
    let lower = minor - (minor - ending.value).rem_euclid(m);
    let upper = lower + m;
    if lower > 0 && minor - lower <= upper - minor {
        lower
    } else {
        upper
    }
}

/// Clamps to `[min, max]`: a price above `max` becomes the highest price with the ending that
/// is not above it (below `min`, the lowest not below it) when that stays inside the bounds,
/// else the bound itself.
pub fn clamp(minor: i64, min: i64, max: i64, ending: Option<Ending>) -> i64 {
    if minor > max {
        if let Some(e) = ending {
            let inside = max - (max - e.value).rem_euclid(e.modulus());
            if inside >= min {
                return inside;
            }
        }
        return max;
    }
    if minor < min {
        if let Some(e) = ending {
            let inside = min + (e.value - min).rem_euclid(e.modulus());
            if inside <= max {
                return inside;
            }
        }
        return min;
    }
    minor
}

fn bps_to_ppm(bps: u32) -> i64 {
    i64::from(bps) * (PPM / BPS)
}

/// DYNAMIC's multiplier for a demand score, in ppm.
pub fn dynamic_ppm(score: f64, (low, high): (f64, f64)) -> i64 {
    let score = score.clamp(0.0, 100.0);
    // At most ×100 by config validation, so the conversion cannot overflow.
    #[allow(clippy::cast_possible_truncation)]
    let ppm = ((low + score / 100.0 * (high - low)) * PPM as f64).round() as i64;
    ppm
}

/// The multiplier of the first slot containing `now` at the rule's offset, in basis points.
fn time_bps(utc_offset_minutes: i32, slots: &[super::rule::Slot], now: DateTime<Utc>) -> u32 {
    let local = now + chrono::Duration::minutes(i64::from(utc_offset_minutes));
    let (day, hour) = (
        u8::try_from(local.weekday().num_days_from_monday()).unwrap_or(0),
        u8::try_from(local.hour()).unwrap_or(0),
    );
    slots
        .iter()
        .find(|s| {
            (s.weekdays.is_empty() || s.weekdays.contains(&day))
                && s.start_hour <= hour
                && hour < s.end_hour
        })
        .map_or(10_000, |s| s.multiplier_bps)
}

/// PENETRATION's multiplier: start + (1 − start) · k / steps after k whole steps, in bps.
fn penetration_bps(
    start_bps: u32,
    steps: u32,
    step_seconds: u32,
    starts_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> (u32, u32) {
    let elapsed = (now - starts_at).num_seconds().max(0);
    let k = u32::try_from(elapsed / i64::from(step_seconds))
        .unwrap_or(steps)
        .min(steps);
    (start_bps + (10_000 - start_bps) * k / steps, k)
}

/// The prices `rule` gives now: the default segment's, then one per SEGMENTED segment.
pub fn compute(rule: &Rule, inputs: &Inputs) -> Vec<Computed> {
    let base = rule.base.minor_units;
    let strategy = rule.strategy.name();
    let mut out = Vec::with_capacity(1 + rule.strategy.segments().len());
    let mut push = |segment: Segment, raw: i64, inputs: serde_json::Value, why: String| {
        let ended = rule.ending.map_or(raw, |e| apply_ending(raw, e));
        let minor = clamp(
            ended,
            rule.min.minor_units,
            rule.max.minor_units,
            rule.ending,
        );
        let mut reason = format!("{strategy}: {why} = {raw}");
        if let Some(e) = rule.ending
            && ended != raw
        {
            reason.push_str(&format!(", ending {} → {ended}", e.as_string()));
        }
        if minor != ended {
            let bound = if minor == rule.max.minor_units || ended > rule.max.minor_units {
                "max"
            } else {
                "min"
            };
            reason.push_str(&format!(", clamped to {bound} → {minor}"));
        }
        out.push(Computed {
            segment,
            price: Money {
                minor_units: minor,
                currency: rule.base.currency,
            },
            strategy,
            inputs,
            reason,
        });
    };
    match &rule.strategy {
        Strategy::Fixed => push(Segment::DEFAULT, base, json!({}), "fixed at base".into()),
        Strategy::Dynamic => {
            let ppm = dynamic_ppm(inputs.demand, inputs.multipliers);
            push(
                Segment::DEFAULT,
                scale(base, ppm),
                json!({"demand_score": inputs.demand, "multiplier_min": inputs.multipliers.0,
                       "multiplier_max": inputs.multipliers.1}),
                format!("demand {:.2}/100 → {base} × {ppm} ppm", inputs.demand),
            );
        }
        Strategy::Competitive {
            position,
            margin_bps,
            max_age_seconds,
        } => match inputs.competitors {
            Some(r) => {
                let reference = match position {
                    Position::Lowest => r.lowest,
                    Position::Average => r.average,
                    Position::Highest => r.highest,
                };
                let ppm = bps_to_ppm(u32::try_from(BPS + i64::from(*margin_bps)).unwrap_or(0));
                push(
                    Segment::DEFAULT,
                    scale(reference, ppm),
                    json!({"position": position, "reference": reference, "margin_bps": margin_bps,
                           "competitors": r.count, "lowest": r.lowest, "average": r.average,
                           "highest": r.highest}),
                    format!(
                        "{position:?} of {} fresh competitor prices {reference} {:+} bps",
                        r.count, margin_bps
                    ),
                );
            }
            None => push(
                Segment::DEFAULT,
                base,
                json!({"competitors": 0, "max_age_seconds": max_age_seconds}),
                format!(
                    "no competitor price in {} newer than {max_age_seconds} s, so base",
                    rule.base.currency
                ),
            ),
        },
        Strategy::TimeBased {
            utc_offset_minutes,
            slots,
        } => {
            let bps = time_bps(*utc_offset_minutes, slots, inputs.now);
            push(
                Segment::DEFAULT,
                scale(base, bps_to_ppm(bps)),
                json!({"at": inputs.now, "utc_offset_minutes": utc_offset_minutes, "multiplier_bps": bps}),
                format!(
                    "{base} × slot multiplier {bps} bps at {}",
                    inputs.now.to_rfc3339()
                ),
            );
        }
        Strategy::Segmented { segments } => {
            push(
                Segment::DEFAULT,
                base,
                json!({"segment": ""}),
                "default segment pays base".into(),
            );
            for s in segments {
                push(
                    s.segment.clone(),
                    scale(base, bps_to_ppm(s.multiplier_bps)),
                    json!({"segment": s.segment.as_str(), "multiplier_bps": s.multiplier_bps}),
                    format!(
                        "{base} × segment {} multiplier {} bps",
                        s.segment.as_str(),
                        s.multiplier_bps
                    ),
                );
            }
        }
        Strategy::Penetration {
            start_bps,
            steps,
            step_seconds,
            starts_at,
        } => {
            let (bps, k) =
                penetration_bps(*start_bps, *steps, *step_seconds, *starts_at, inputs.now);
            push(
                Segment::DEFAULT,
                scale(base, bps_to_ppm(bps)),
                json!({"step": k, "steps": steps, "multiplier_bps": bps, "starts_at": starts_at}),
                format!("step {k} of {steps} → {base} × {bps} bps"),
            );
        }
    }
    out
}

/// Whether `computed` replaces `current` in the store: always when there is no price yet, the
/// currency changed or the current price is outside the rule's bounds (the clamp must hold);
/// otherwise only when it moves by at least the rule's `min_step` (and by something).
pub fn decide(rule: &Rule, current: Option<Money>, computed: &Computed) -> bool {
    let Some(current) = current else {
        return true;
    };
    if current.currency != computed.price.currency
        || current.minor_units < rule.min.minor_units
        || current.minor_units > rule.max.minor_units
    {
        return true;
    }
    let delta = (computed.price.minor_units - current.minor_units).abs();
    delta > 0 && delta >= rule.min_step
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use proptest::{prop_assert, prop_assume, proptest};
    use uuid::Uuid;

    use super::*;
    use crate::domain::{
        ProductId,
        rule::{RuleDraft, SegmentMultiplier, Slot, Target},
    };

    fn rule(strategy: Strategy, base: i64, min: i64, max: i64, ending: &str) -> Rule {
        RuleDraft {
            target: Target::Product(ProductId::parse("p", "sku-1").expect("id")),
            strategy,
            currency: "USD".into(),
            base,
            min,
            max,
            priority: 0,
            ending: Ending::parse("e", ending).expect("ending"),
            min_step: 50,
        }
        .validate(Uuid::nil(), Utc::now())
        .expect("valid rule")
    }

    fn inputs(demand: f64) -> Inputs {
        Inputs {
            // A Wednesday.
            now: Utc
                .with_ymd_and_hms(2026, 12, 2, 18, 30, 0)
                .single()
                .expect("time"),
            demand,
            competitors: None,
            multipliers: (0.9, 1.3),
        }
    }

    fn price(rule: &Rule, inputs: &Inputs) -> i64 {
        compute(rule, inputs)[0].price.minor_units
    }

    #[test]
    fn dynamic_worked_numbers() {
        let r = rule(Strategy::Dynamic, 10_000, 5_000, 20_000, "");
        // ×(0.9 + 0.625·0.4) = ×1.15
        assert_eq!(price(&r, &inputs(62.5)), 11_500);
        assert_eq!(price(&r, &inputs(0.0)), 9_000);
        assert_eq!(price(&r, &inputs(100.0)), 13_000);
        // 1999 × 1.1 = 2198.9 → 2199 (half-up to the cent)
        let r = rule(Strategy::Dynamic, 1_999, 1_000, 5_000, "");
        assert_eq!(price(&r, &inputs(50.0)), 2_199);
        // with a .99 ending: 2199 → 2199; 11500 → 11499
        let r = rule(Strategy::Dynamic, 10_000, 5_000, 20_000, "99");
        assert_eq!(price(&r, &inputs(62.5)), 11_499);
    }

    #[test]
    fn rounding_is_half_up_and_endings_go_to_the_nearest() {
        assert_eq!(scale(1_999, 950_000), 1_899); // 1899.05
        assert_eq!(scale(10, 1_050_000), 11); // 10.5 → 11
        assert_eq!(scale(10, 1_049_999), 10);
        let e99 = Ending::parse("e", "99").expect("e").expect("some");
        assert_eq!(apply_ending(2_030, e99), 1_999);
        assert_eq!(apply_ending(2_060, e99), 2_099);
        assert_eq!(apply_ending(2_049, e99), 1_999); // a tie goes down
        assert_eq!(apply_ending(50, e99), 99); // never 0 or below
        let e5 = Ending::parse("e", "5").expect("e").expect("some");
        assert_eq!(apply_ending(1_233, e5), 1_235);
        assert_eq!(apply_ending(1_231, e5), 1_235);
        assert_eq!(apply_ending(1_229, e5), 1_225);
    }

    #[test]
    fn clamp_at_both_ends_and_the_clamp_beats_the_ending() {
        let r = rule(Strategy::Dynamic, 10_000, 9_500, 10_500, "");
        let high = &compute(&r, &inputs(100.0))[0];
        assert_eq!(high.price.minor_units, 10_500);
        assert!(
            high.reason.ends_with("clamped to max → 10500"),
            "{}",
            high.reason
        );
        let low = &compute(&r, &inputs(0.0))[0];
        assert_eq!(low.price.minor_units, 9_500);
        assert!(
            low.reason.ends_with("clamped to min → 9500"),
            "{}",
            low.reason
        );
        // 13000 → 12999 is above max 10650: the highest .99 price under it is 10599.
        let r = rule(Strategy::Dynamic, 10_000, 9_500, 10_650, "99");
        assert_eq!(price(&r, &inputs(100.0)), 10_599);
        // no .99 price in 10550..=10580: the bound itself.
        let r = rule(Strategy::Dynamic, 10_000, 9_500, 10_580, "99");
        assert_eq!(clamp(12_999, 10_550, 10_580, r.ending), 10_580);
        assert_eq!(clamp(9_000, 9_050, 9_200, Some(e("99"))), 9_099);
        assert_eq!(clamp(9_000, 9_150, 9_190, Some(e("99"))), 9_150);
    }

    fn e(s: &str) -> Ending {
        Ending::parse("e", s).expect("e").expect("some")
    }

    #[test]
    fn competitive_worked_numbers() {
        let strategy = |position, margin_bps| Strategy::Competitive {
            position,
            margin_bps,
            max_age_seconds: 3_600,
        };
        let mut i = inputs(0.0);
        i.competitors = Some(Reference {
            lowest: 9_000,
            average: 9_500,
            highest: 10_000,
            count: 3,
        });
        // 2 % under the lowest: 9000 × 0.98 = 8820
        let r = rule(strategy(Position::Lowest, -200), 10_000, 5_000, 20_000, "");
        assert_eq!(price(&r, &i), 8_820);
        // 5 % over the average: 9500 × 1.05 = 9975
        let r = rule(strategy(Position::Average, 500), 10_000, 5_000, 20_000, "");
        assert_eq!(price(&r, &i), 9_975);
        // 10 % over the highest, clamped to max 10800
        let r = rule(
            strategy(Position::Highest, 1_000),
            10_000,
            5_000,
            10_800,
            "",
        );
        assert_eq!(price(&r, &i), 10_800);
        // an awkward base still lands exactly: 9000 × 0.97 = 8730 from a base of 9,999
        let r = rule(strategy(Position::Lowest, -300), 9_999, 5_000, 20_000, "");
        assert_eq!(price(&r, &i), 8_730);
        // no fresh competitor: base
        let r = rule(strategy(Position::Lowest, -200), 10_000, 5_000, 20_000, "");
        let c = &compute(&r, &inputs(0.0))[0];
        assert_eq!(c.price.minor_units, 10_000);
        assert!(
            c.reason.contains("no competitor price in USD"),
            "{}",
            c.reason
        );
    }

    #[test]
    fn time_based_worked_numbers() {
        let r = rule(
            Strategy::TimeBased {
                utc_offset_minutes: 60,
                slots: vec![
                    Slot {
                        weekdays: vec![5, 6],
                        start_hour: 0,
                        end_hour: 24,
                        multiplier_bps: 12_000,
                    },
                    Slot {
                        weekdays: vec![],
                        start_hour: 18,
                        end_hour: 22,
                        multiplier_bps: 11_000,
                    },
                ],
            },
            10_000,
            5_000,
            20_000,
            "",
        );
        // Wednesday 18:30 UTC is 19:30 local: the evening slot.
        assert_eq!(price(&r, &inputs(0.0)), 11_000);
        let mut i = inputs(0.0);
        i.now = Utc
            .with_ymd_and_hms(2026, 12, 2, 22, 30, 0)
            .single()
            .expect("t");
        assert_eq!(price(&r, &i), 10_000); // 23:30 local: no slot
        i.now = Utc
            .with_ymd_and_hms(2026, 12, 5, 19, 0, 0)
            .single()
            .expect("t");
        assert_eq!(price(&r, &i), 12_000); // Saturday: the first slot wins
    }

    #[test]
    fn segmented_worked_numbers() {
        let seg = |s: &str, bps| SegmentMultiplier {
            segment: Segment::parse("s", s).expect("segment"),
            multiplier_bps: bps,
        };
        let r = rule(
            Strategy::Segmented {
                segments: vec![seg("vip", 9_000), seg("new", 9_500)],
            },
            10_000,
            9_200,
            20_000,
            "",
        );
        let prices: Vec<(String, i64)> = compute(&r, &inputs(0.0))
            .into_iter()
            .map(|c| (c.segment.as_str().to_owned(), c.price.minor_units))
            .collect();
        assert_eq!(
            prices,
            vec![
                (String::new(), 10_000),
                ("vip".into(), 9_200), // 9000 clamped to min
                ("new".into(), 9_500)
            ]
        );
    }

    #[test]
    fn penetration_worked_numbers() {
        let start = Utc
            .with_ymd_and_hms(2026, 12, 1, 0, 0, 0)
            .single()
            .expect("t");
        let r = rule(
            Strategy::Penetration {
                start_bps: 8_000,
                steps: 4,
                step_seconds: 86_400,
                starts_at: start,
            },
            10_000,
            5_000,
            20_000,
            "",
        );
        let at = |hours: i64| {
            let mut i = inputs(0.0);
            i.now = start + chrono::Duration::hours(hours);
            price(&r, &i)
        };
        assert_eq!(at(-5), 8_000);
        assert_eq!(at(23), 8_000);
        assert_eq!(at(24), 8_500);
        assert_eq!(at(60), 9_000);
        assert_eq!(at(24 * 4), 10_000);
        assert_eq!(at(24 * 40), 10_000);
    }

    #[test]
    fn fixed_never_changes() {
        let r = rule(Strategy::Fixed, 10_000, 5_000, 20_000, "");
        for demand in [0.0, 50.0, 100.0] {
            let c = &compute(&r, &inputs(demand))[0];
            assert_eq!(c.price.minor_units, 10_000);
            assert!(!decide(&r, Some(c.price), c));
        }
    }

    #[test]
    fn small_changes_are_not_written() {
        let r = rule(Strategy::Dynamic, 10_000, 5_000, 20_000, "");
        let c = compute(&r, &inputs(50.0)).remove(0); // 11000
        let at = |minor| {
            Some(Money {
                minor_units: minor,
                currency: r.base.currency,
            })
        };
        assert!(decide(&r, None, &c));
        assert!(!decide(&r, at(11_000), &c));
        assert!(!decide(&r, at(10_951), &c)); // 49 < min_step 50
        assert!(decide(&r, at(10_950), &c));
        assert!(decide(&r, at(21_000), &c)); // outside the bounds: always rewritten
    }

    proptest! {
        #[test]
        fn every_price_is_inside_its_bounds(
            base in 1_i64..1_000_000, spread in 0_i64..500_000, demand in 0.0_f64..100.0,
            ending in proptest::sample::select(vec!["", "9", "99", "95", "00"]),
            low in 0.1_f64..2.0, extra in 0.0_f64..3.0,
        ) {
            let (min, max) = ((base - spread).max(1), base + spread);
            prop_assume!(ending.is_empty() || 10_i64.pow(u32::try_from(ending.len()).unwrap_or(0)) <= max);
            let r = rule(Strategy::Dynamic, base, min, max, ending);
            let mut i = inputs(demand);
            i.multipliers = (low, low + extra);
            let p = price(&r, &i);
            prop_assert!((min..=max).contains(&p), "{p} outside {min}..={max}");
        }

    }
}
