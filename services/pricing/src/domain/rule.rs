//! Pricing rules: what a rule applies to (a product or a category), its strategy with typed
//! parameters, its price bounds in one currency, its priority, its price ending and the step
//! below which a change is not written. Everything is validated here, before any I/O.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use titan_kit::money::{Currency, Money};
use uuid::Uuid;

use super::input::{InputError, ProductId, Segment, name};

/// Basis points: 10,000 is ×1.
pub const BPS: i64 = 10_000;
/// Priorities are in `-PRIORITY_LIMIT..=PRIORITY_LIMIT`.
pub const PRIORITY_LIMIT: i32 = 1000;
/// Most time slots of a TIME_BASED rule (one per hour of a week would be 168; 48 covers
/// half-days of every weekday with room to spare).
pub const MAX_SLOTS: usize = 48;
/// Most segments of a SEGMENTED rule.
pub const MAX_SEGMENTS: usize = 32;
/// Multipliers (TIME_BASED, SEGMENTED) are in ×0.1..×10.
const MULTIPLIER_BPS: (u32, u32) = (1_000, 100_000);
/// COMPETITIVE margins are in −50 %..+50 %.
const MARGIN_BPS: i32 = 5_000;
/// Competitor observations older than this are never used, whatever a rule says (30 days).
pub const MAX_COMPETITOR_AGE_SECONDS: u32 = 30 * 86_400;

/// What a rule prices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Target {
    Product(ProductId),
    Category(String),
}

/// Which competitor price COMPETITIVE follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Position {
    Lowest,
    Average,
    Highest,
}

/// A multiplier in force on some weekdays between two hours (local to the rule's offset).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slot {
    /// 0 = Monday … 6 = Sunday; empty = every day.
    pub weekdays: Vec<u8>,
    /// First hour of the slot, 0..=23.
    pub start_hour: u8,
    /// Hour the slot ends (exclusive), start_hour+1..=24.
    pub end_hour: u8,
    pub multiplier_bps: u32,
}

/// The price multiplier of one customer segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentMultiplier {
    pub segment: Segment,
    pub multiplier_bps: u32,
}

/// A strategy with its parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Strategy {
    /// base × (m_min + score/100 · (m_max − m_min)), the multipliers from the config.
    Dynamic,
    /// The lowest/average/highest fresh competitor price × (1 + margin).
    Competitive {
        position: Position,
        margin_bps: i32,
        max_age_seconds: u32,
    },
    /// base × the multiplier of the first slot that contains the local time (×1 in none).
    TimeBased {
        utc_offset_minutes: i32,
        slots: Vec<Slot>,
    },
    /// base × each segment's multiplier; the default segment pays base.
    Segmented { segments: Vec<SegmentMultiplier> },
    /// Starts at base × start and rises in `steps` equal steps, one every `step_seconds`,
    /// to base.
    Penetration {
        start_bps: u32,
        steps: u32,
        step_seconds: u32,
        starts_at: DateTime<Utc>,
    },
    /// Always base; re-optimisation never changes it.
    Fixed,
}

impl Strategy {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Dynamic => "DYNAMIC",
            Self::Competitive { .. } => "COMPETITIVE",
            Self::TimeBased { .. } => "TIME_BASED",
            Self::Segmented { .. } => "SEGMENTED",
            Self::Penetration { .. } => "PENETRATION",
            Self::Fixed => "FIXED",
        }
    }

    /// The segments this strategy prices besides the default one.
    pub fn segments(&self) -> Vec<Segment> {
        match self {
            Self::Segmented { segments } => segments.iter().map(|s| s.segment.clone()).collect(),
            _ => Vec::new(),
        }
    }

    fn validate(&self) -> Result<(), InputError> {
        let multiplier = |field: String, bps: u32| {
            if (MULTIPLIER_BPS.0..=MULTIPLIER_BPS.1).contains(&bps) {
                Ok(())
            } else {
                Err(InputError::new(
                    field,
                    format!(
                        "{bps} is outside {}..={} basis points (×0.1..×10)",
                        MULTIPLIER_BPS.0, MULTIPLIER_BPS.1
                    ),
                ))
            }
        };
        match self {
            Self::Dynamic | Self::Fixed => Ok(()),
            Self::Competitive {
                margin_bps,
                max_age_seconds,
                ..
            } => {
                if margin_bps.abs() > MARGIN_BPS {
                    return Err(InputError::new(
                        "rule.competitive.margin_bps",
                        format!("{margin_bps} is outside -{MARGIN_BPS}..={MARGIN_BPS}"),
                    ));
                }
                if !(60..=MAX_COMPETITOR_AGE_SECONDS).contains(max_age_seconds) {
                    return Err(InputError::new(
                        "rule.competitive.max_age_seconds",
                        format!("{max_age_seconds} is outside 60..={MAX_COMPETITOR_AGE_SECONDS}"),
                    ));
                }
                Ok(())
            }
            Self::TimeBased {
                utc_offset_minutes,
                slots,
            } => {
                if !(-720..=840).contains(utc_offset_minutes) {
                    return Err(InputError::new(
                        "rule.time_based.utc_offset_minutes",
                        format!("{utc_offset_minutes} is outside -720..=840"),
                    ));
                }
                if slots.is_empty() || slots.len() > MAX_SLOTS {
                    return Err(InputError::new(
                        "rule.time_based.slots",
                        format!("has {} slots; 1..={MAX_SLOTS} are allowed", slots.len()),
                    ));
                }
                for (i, s) in slots.iter().enumerate() {
                    if let Some(d) = s.weekdays.iter().find(|d| **d > 6) {
                        return Err(InputError::new(
                            format!("rule.time_based.slots[{i}].weekdays"),
                            format!("{d} is not a weekday (0 = Monday .. 6 = Sunday)"),
                        ));
                    }
                    if s.start_hour > 23 || s.end_hour <= s.start_hour || s.end_hour > 24 {
                        return Err(InputError::new(
                            format!("rule.time_based.slots[{i}]"),
                            format!(
                                "hours {}..{} are not 0 <= start < end <= 24",
                                s.start_hour, s.end_hour
                            ),
                        ));
                    }
                    multiplier(
                        format!("rule.time_based.slots[{i}].multiplier_bps"),
                        s.multiplier_bps,
                    )?;
                }
                Ok(())
            }
            Self::Segmented { segments } => {
                if segments.is_empty() || segments.len() > MAX_SEGMENTS {
                    return Err(InputError::new(
                        "rule.segmented.segments",
                        format!(
                            "has {} segments; 1..={MAX_SEGMENTS} are allowed",
                            segments.len()
                        ),
                    ));
                }
                for (i, s) in segments.iter().enumerate() {
                    if s.segment.is_default() {
                        return Err(InputError::new(
                            format!("rule.segmented.segments[{i}].segment"),
                            "is empty; the default segment always pays the base price",
                        ));
                    }
                    if segments[..i].iter().any(|o| o.segment == s.segment) {
                        return Err(InputError::new(
                            format!("rule.segmented.segments[{i}].segment"),
                            format!("{:?} is listed twice", s.segment.as_str()),
                        ));
                    }
                    multiplier(
                        format!("rule.segmented.segments[{i}].multiplier_bps"),
                        s.multiplier_bps,
                    )?;
                }
                Ok(())
            }
            Self::Penetration {
                start_bps,
                steps,
                step_seconds,
                ..
            } => {
                if !(1_000..=10_000).contains(start_bps) {
                    return Err(InputError::new(
                        "rule.penetration.start_bps",
                        format!("{start_bps} is outside 1000..=10000 (10 % to 100 % of base)"),
                    ));
                }
                if !(1..=100).contains(steps) {
                    return Err(InputError::new(
                        "rule.penetration.steps",
                        format!("{steps} is outside 1..=100"),
                    ));
                }
                if !(60..=90 * 86_400).contains(step_seconds) {
                    return Err(InputError::new(
                        "rule.penetration.step_seconds",
                        format!("{step_seconds} is outside 60..={}", 90 * 86_400),
                    ));
                }
                Ok(())
            }
        }
    }
}

/// A price ending: the last digits of the minor units (`99` makes 1999, 2499; `5` makes 1995).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ending {
    pub digits: u32,
    pub value: i64,
}

impl Ending {
    /// Parses `"99"`, `"95"`, `"9"`, `"00"`: one to three decimal digits.
    pub fn parse(field: &str, s: &str) -> Result<Option<Self>, InputError> {
        if s.is_empty() {
            return Ok(None);
        }
        if s.len() > 3 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(InputError::new(
                field,
                format!("{s:?} is not one to three digits like \"99\""),
            ));
        }
        let value = s
            .parse::<i64>()
            .map_err(|e| InputError::new(field, e.to_string()))?;
        let digits = u32::try_from(s.len()).map_err(|e| InputError::new(field, e.to_string()))?;
        Ok(Some(Self { digits, value }))
    }

    pub fn modulus(self) -> i64 {
        10_i64.pow(self.digits)
    }

    pub fn as_string(self) -> String {
        format!("{:0width$}", self.value, width = self.digits as usize)
    }
}

/// A rule as a client proposes it; [`RuleDraft::validate`] turns it into a [`Rule`].
#[derive(Debug, Clone)]
pub struct RuleDraft {
    pub target: Target,
    pub strategy: Strategy,
    pub currency: String,
    pub base: i64,
    pub min: i64,
    pub max: i64,
    pub priority: i32,
    pub ending: Option<Ending>,
    pub min_step: i64,
}

/// A validated rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    pub id: Uuid,
    pub target: Target,
    pub strategy: Strategy,
    pub base: Money,
    pub min: Money,
    pub max: Money,
    pub priority: i32,
    pub ending: Option<Ending>,
    /// A change smaller than this many minor units is not written (no flapping).
    pub min_step: i64,
    pub created_at: DateTime<Utc>,
}

impl RuleDraft {
    pub fn validate(self, id: Uuid, created_at: DateTime<Utc>) -> Result<Rule, InputError> {
        let target = match self.target {
            Target::Product(p) => Target::Product(p),
            Target::Category(c) => Target::Category(name("rule.category", &c)?),
        };
        let currency = Currency::parse(&self.currency)
            .map_err(|e| InputError::new("rule.currency", e.to_string()))?;
        let money = |field: &str, minor: i64| {
            Money::new(minor, currency).map_err(|e| InputError::new(field, e.to_string()))
        };
        let (base, min, max) = (
            money("rule.base_price", self.base)?,
            money("rule.min_price", self.min)?,
            money("rule.max_price", self.max)?,
        );
        if min.minor_units == 0 {
            return Err(InputError::new(
                "rule.min_price",
                "must be above 0: a computed price is never free",
            ));
        }
        if min.minor_units > max.minor_units {
            return Err(InputError::new(
                "rule.max_price",
                format!("{} is below min_price {}", max.minor_units, min.minor_units),
            ));
        }
        if !(min.minor_units..=max.minor_units).contains(&base.minor_units) {
            return Err(InputError::new(
                "rule.base_price",
                format!(
                    "{} is outside min_price..=max_price {}..={}",
                    base.minor_units, min.minor_units, max.minor_units
                ),
            ));
        }
        // Prices are multiplied by at most ×100 in ppm; keeping them below 10^12 minor units
        // keeps every intermediate product far inside i128 and the result inside i64.
        if max.minor_units > 1_000_000_000_000 {
            return Err(InputError::new(
                "rule.max_price",
                "is above 10^12 minor units",
            ));
        }
        if !(-PRIORITY_LIMIT..=PRIORITY_LIMIT).contains(&self.priority) {
            return Err(InputError::new(
                "rule.priority",
                format!(
                    "{} is outside -{PRIORITY_LIMIT}..={PRIORITY_LIMIT}",
                    self.priority
                ),
            ));
        }
        if self.min_step < 0 || self.min_step > max.minor_units {
            return Err(InputError::new(
                "rule.min_step",
                format!("{} is outside 0..=max_price", self.min_step),
            ));
        }
        if let Some(e) = self.ending
            && e.modulus() > max.minor_units
        {
            return Err(InputError::new(
                "rule.price_ending",
                format!(
                    "{:?} needs prices of at least {} minor units; max_price is {}",
                    e.as_string(),
                    e.modulus(),
                    max.minor_units
                ),
            ));
        }
        self.strategy.validate()?;
        Ok(Rule {
            id,
            target,
            strategy: self.strategy,
            base,
            min,
            max,
            priority: self.priority,
            ending: self.ending,
            min_step: self.min_step,
            created_at,
        })
    }
}

impl Rule {
    /// Whether the rule applies to `product` of `category`.
    pub fn matches(&self, product: &ProductId, category: &str) -> bool {
        match &self.target {
            Target::Product(p) => p == product,
            Target::Category(c) => c == category,
        }
    }

    /// Ordering of matching rules, best first: higher priority; then a product's own rule
    /// before its category's; then the older rule (ids are UUIDv7, so they sort by time).
    fn rank(&self) -> (std::cmp::Reverse<i32>, bool, Uuid) {
        (
            std::cmp::Reverse(self.priority),
            matches!(self.target, Target::Category(_)),
            self.id,
        )
    }
}

/// The rule that prices `product` of `category`: the best-ranked match, if any.
pub fn winner<'a>(
    rules: impl IntoIterator<Item = &'a Rule>,
    product: &ProductId,
    category: &str,
) -> Option<&'a Rule> {
    rules
        .into_iter()
        .filter(|r| r.matches(product, category))
        .min_by_key(|r| r.rank())
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn draft(strategy: Strategy) -> RuleDraft {
        RuleDraft {
            target: Target::Product(ProductId::parse("p", "sku-1").expect("id")),
            strategy,
            currency: "USD".into(),
            base: 10_000,
            min: 8_000,
            max: 12_000,
            priority: 0,
            ending: None,
            min_step: 0,
        }
    }

    fn field(d: RuleDraft) -> String {
        d.validate(Uuid::nil(), Utc::now())
            .err()
            .map(|e| e.field)
            .unwrap_or_default()
    }

    #[test]
    fn bad_rules_name_their_field() {
        let mut d = draft(Strategy::Dynamic);
        d.currency = "usd".into();
        assert_eq!(field(d), "rule.currency");
        let mut d = draft(Strategy::Dynamic);
        d.min = 13_000;
        assert_eq!(field(d), "rule.max_price");
        let mut d = draft(Strategy::Dynamic);
        d.base = 7_000;
        assert_eq!(field(d), "rule.base_price");
        let mut d = draft(Strategy::Dynamic);
        d.min = 0;
        d.base = 0;
        assert_eq!(field(d), "rule.min_price");
        let mut d = draft(Strategy::Dynamic);
        d.priority = 1001;
        assert_eq!(field(d), "rule.priority");
        let mut d = draft(Strategy::Dynamic);
        d.min_step = -1;
        assert_eq!(field(d), "rule.min_step");
        assert_eq!(
            field(draft(Strategy::Competitive {
                position: Position::Lowest,
                margin_bps: 6000,
                max_age_seconds: 3600
            })),
            "rule.competitive.margin_bps"
        );
        assert_eq!(
            field(draft(Strategy::TimeBased {
                utc_offset_minutes: 0,
                slots: vec![Slot {
                    weekdays: vec![7],
                    start_hour: 0,
                    end_hour: 1,
                    multiplier_bps: 10_000
                }]
            })),
            "rule.time_based.slots[0].weekdays"
        );
        assert_eq!(
            field(draft(Strategy::Segmented {
                segments: vec![SegmentMultiplier {
                    segment: Segment::parse("s", "vip").expect("segment"),
                    multiplier_bps: 50
                }]
            })),
            "rule.segmented.segments[0].multiplier_bps"
        );
        assert_eq!(
            field(draft(Strategy::Penetration {
                start_bps: 500,
                steps: 4,
                step_seconds: 3600,
                starts_at: Utc::now()
            })),
            "rule.penetration.start_bps"
        );
        assert_eq!(
            Ending::parse("rule.price_ending", "9x").map_err(|e| e.field),
            Err("rule.price_ending".to_owned())
        );
        assert_eq!(
            Ending::parse("e", "99").expect("99"),
            Some(Ending {
                digits: 2,
                value: 99
            })
        );
        assert!(
            draft(Strategy::Fixed)
                .validate(Uuid::nil(), Utc::now())
                .is_ok()
        );
    }

    #[test]
    fn the_highest_priority_wins_then_the_product_then_the_oldest() {
        let product = ProductId::parse("p", "sku-1").expect("id");
        let rule = |n: u128, priority: i32, target: Target| {
            let mut d = draft(Strategy::Dynamic);
            d.priority = priority;
            d.target = target;
            d.validate(Uuid::from_u128(n), Utc::now()).expect("valid")
        };
        let by_product = Target::Product(product.clone());
        let by_category = Target::Category("shoes".into());
        let other = Target::Product(ProductId::parse("p", "sku-2").expect("id"));
        let rules = [
            rule(1, 5, by_category.clone()),
            rule(2, 9, other),
            rule(3, 5, by_product.clone()),
            rule(4, 7, by_category.clone()),
            rule(5, 7, by_category),
        ];
        let won = |rs: &[Rule]| winner(rs, &product, "shoes").map(|r| r.id.as_u128());
        assert_eq!(won(&rules), Some(4));
        assert_eq!(won(&rules[..3]), Some(3));
        assert_eq!(won(&rules[..2]), Some(1));
        assert_eq!(winner(&rules[..2], &product, "hats").map(|r| r.id), None);
    }
}
