//! Audience segments: rules over behaviour (analytics_events) and contact attributes, all of
//! which must hold. The behaviour rules compile into ONE ClickHouse query over
//! `analytics_events` grouped by user, every value bound as a parameter (never spliced into
//! the text); the level rule filters contacts. A segment is evaluated into a member list when
//! a send starts (its snapshot), so a send is reproducible.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use titan_kit::input::{InputError, ident};

/// Most rules in a segment.
pub const MAX_RULES: usize = 20;
/// Most countries in one rule.
pub const MAX_COUNTRIES: usize = 50;
/// Longest look-back of a rule, in days.
pub const MAX_DAYS: u32 = 365;

/// One condition on a user (stored as JSON with the campaign).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Rule {
    /// A verified purchase (bus event with revenue > 0) in the last `within_days` days.
    PurchasedWithin { within_days: u32 },
    /// Viewed `product_id` in the window and bought it in no verified order since then.
    ViewedNotBought {
        product_id: String,
        within_days: u32,
    },
    /// The newest event in the window came from one of these countries.
    CountryIn {
        countries: Vec<String>,
        within_days: u32,
    },
    /// At least `min_count` events named `name` in the window.
    EventCount {
        name: String,
        min_count: u32,
        within_days: u32,
    },
    /// The contact's level is in `[min, max]`.
    LevelBetween { min: u32, max: u32 },
}

fn days(field: &str, d: u32) -> Result<u32, InputError> {
    if (1..=MAX_DAYS).contains(&d) {
        Ok(d)
    } else {
        Err(InputError::new(
            format!("{field}.within_days"),
            format!("{d} is outside 1..={MAX_DAYS}"),
        ))
    }
}

impl Rule {
    /// Checks one rule; `field` is where it sits in the request (`segment.rules[2]`).
    pub fn check(self, field: &str) -> Result<Self, InputError> {
        match &self {
            Self::PurchasedWithin { within_days } => {
                days(field, *within_days)?;
            }
            Self::ViewedNotBought {
                product_id,
                within_days,
            } => {
                ident(format!("{field}.product_id"), product_id)?;
                days(field, *within_days)?;
            }
            Self::CountryIn {
                countries,
                within_days,
            } => {
                if countries.is_empty() || countries.len() > MAX_COUNTRIES {
                    return Err(InputError::new(
                        format!("{field}.countries"),
                        format!("must list 1-{MAX_COUNTRIES} countries"),
                    ));
                }
                for (i, c) in countries.iter().enumerate() {
                    if c.len() != 2 || !c.bytes().all(|b| b.is_ascii_uppercase()) {
                        return Err(InputError::new(
                            format!("{field}.countries[{i}]"),
                            format!(
                                "{:?} is not an ISO 3166-1 alpha-2 code like FR",
                                super::campaign::cut(c)
                            ),
                        ));
                    }
                }
                days(field, *within_days)?;
            }
            Self::EventCount {
                name,
                min_count,
                within_days,
            } => {
                ident(format!("{field}.name"), name)?;
                if !(1..=1_000_000).contains(min_count) {
                    return Err(InputError::new(
                        format!("{field}.min_count"),
                        format!("{min_count} is outside 1..=1000000"),
                    ));
                }
                days(field, *within_days)?;
            }
            Self::LevelBetween { min, max } => {
                if *max > 10 || min > max {
                    return Err(InputError::new(
                        format!("{field}.max"),
                        format!("[{min}, {max}] is not a range within 0..=10"),
                    ));
                }
            }
        }
        Ok(self)
    }

    fn within_days(&self) -> Option<u32> {
        match self {
            Self::PurchasedWithin { within_days }
            | Self::ViewedNotBought { within_days, .. }
            | Self::CountryIn { within_days, .. }
            | Self::EventCount { within_days, .. } => Some(*within_days),
            Self::LevelBetween { .. } => None,
        }
    }
}

/// 1 to [`MAX_RULES`] rules, at least one of them about behaviour (the audience is drawn
/// from the users who appear in analytics_events).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    rules: Vec<Rule>,
}

/// A value bound to a `?` of [`SegmentQuery::sql`], in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bind {
    Text(String),
    Texts(Vec<String>),
    /// Seconds since the epoch (a `DateTime` column compares with them).
    Time(u32),
    Count(u64),
}

/// The compiled query: its text (with `?` placeholders) and the values to bind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentQuery {
    pub sql: String,
    pub binds: Vec<Bind>,
    /// The level range contacts must be in, from the level rules (intersected).
    pub levels: (u32, u32),
}

impl Segment {
    pub fn new(rules: Vec<Rule>) -> Result<Self, InputError> {
        if rules.is_empty() || rules.len() > MAX_RULES {
            return Err(InputError::new(
                "segment.rules",
                format!("must hold 1-{MAX_RULES} rules"),
            ));
        }
        let rules = rules
            .into_iter()
            .enumerate()
            .map(|(i, r)| r.check(&format!("segment.rules[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        if rules.iter().all(|r| r.within_days().is_none()) {
            return Err(InputError::new(
                "segment.rules",
                "needs at least one behaviour rule (purchased_within, viewed_not_bought, country_in or event_count)",
            ));
        }
        Ok(Self { rules })
    }

    /// No rules: the audience of a triggered campaign, which is never compiled (its users come
    /// from events, not from analytics_events).
    pub fn anyone() -> Self {
        Self { rules: Vec::new() }
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The query listing the users (`user_id`, sorted) who satisfy every behaviour rule at
    /// `now`. Only the look-back of the longest rule is read (the table is sorted by name and
    /// date, so the date bound prunes partitions and granules).
    pub fn compile(&self, now: DateTime<Utc>) -> SegmentQuery {
        let since = |d: u32| {
            Bind::Time(u32::try_from((now - Duration::days(i64::from(d))).timestamp()).unwrap_or(0))
        };
        let longest = self
            .rules
            .iter()
            .filter_map(Rule::within_days)
            .max()
            .unwrap_or(1);
        let mut having = Vec::new();
        let mut binds = Vec::new();
        let mut levels = (0, u32::MAX);
        for rule in &self.rules {
            match rule {
                Rule::PurchasedWithin { within_days } => {
                    having.push(
                        "countIf(revenue > 0 AND order_id != '' AND time >= toDateTime(?)) > 0",
                    );
                    binds.push(since(*within_days));
                }
                Rule::ViewedNotBought {
                    product_id,
                    within_days,
                } => {
                    // The newest view must be later than the newest verified purchase of it
                    // (a user who never bought it has no purchase time: 0).
                    having.push(
                        "maxIf(toUInt32(time), name = 'product_view' AND product_id = ? AND time >= toDateTime(?)) > \
                         maxIf(toUInt32(time), revenue > 0 AND product_id = ? AND time >= toDateTime(?))",
                    );
                    binds.push(Bind::Text(product_id.clone()));
                    binds.push(since(*within_days));
                    binds.push(Bind::Text(product_id.clone()));
                    binds.push(since(*within_days));
                }
                Rule::CountryIn {
                    countries,
                    within_days,
                } => {
                    having.push(
                        "has(?, argMaxIf(country, time, time >= toDateTime(?) AND country != ''))",
                    );
                    binds.push(Bind::Texts(countries.clone()));
                    binds.push(since(*within_days));
                }
                Rule::EventCount {
                    name,
                    min_count,
                    within_days,
                } => {
                    having.push("countIf(name = ? AND time >= toDateTime(?)) >= ?");
                    binds.push(Bind::Text(name.clone()));
                    binds.push(since(*within_days));
                    binds.push(Bind::Count(u64::from(*min_count)));
                }
                Rule::LevelBetween { min, max } => {
                    levels = (levels.0.max(*min), levels.1.min(*max));
                }
            }
        }
        let mut all = vec![since(longest), since(longest)];
        all.extend(binds);
        SegmentQuery {
            sql: format!(
                "SELECT user_id FROM analytics_events WHERE user_id != '' AND date >= toDate(toDateTime(?)) \
                 AND time >= toDateTime(?) GROUP BY user_id HAVING {} ORDER BY user_id",
                having.join(" AND ")
            ),
            binds: all,
            levels: (levels.0, levels.1.min(10)),
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn values_are_bound_never_spliced() {
        let now = Utc
            .with_ymd_and_hms(2026, 12, 6, 0, 0, 0)
            .single()
            .expect("time");
        let s = Segment::new(vec![
            Rule::ViewedNotBought {
                product_id: "p-1'--".into(),
                within_days: 7,
            },
            Rule::CountryIn {
                countries: vec!["FR".into()],
                within_days: 30,
            },
            Rule::LevelBetween { min: 2, max: 5 },
        ])
        .expect("valid");
        let q = s.compile(now);
        assert!(!q.sql.contains("p-1"));
        assert!(!q.sql.contains("'FR'"));
        let day = 86_400;
        let t = u32::try_from(now.timestamp()).expect("fits");
        assert_eq!(
            q.binds,
            vec![
                Bind::Time(t - 30 * day),
                Bind::Time(t - 30 * day),
                Bind::Text("p-1'--".into()),
                Bind::Time(t - 7 * day),
                Bind::Text("p-1'--".into()),
                Bind::Time(t - 7 * day),
                Bind::Texts(vec!["FR".into()]),
                Bind::Time(t - 30 * day),
            ]
        );
        assert_eq!(q.sql.matches('?').count(), q.binds.len());
        assert_eq!(q.levels, (2, 5));
    }

    #[test]
    fn bad_rules_name_their_field() {
        let e = Segment::new(vec![
            Rule::PurchasedWithin { within_days: 30 },
            Rule::EventCount {
                name: "page_view".into(),
                min_count: 0,
                within_days: 7,
            },
        ])
        .expect_err("refused");
        assert_eq!(e.field, "segment.rules[1].min_count");
        let e = Segment::new(vec![Rule::CountryIn {
            countries: vec!["fr".into()],
            within_days: 7,
        }])
        .expect_err("refused");
        assert_eq!(e.field, "segment.rules[0].countries[0]");
        let e =
            Segment::new(vec![Rule::PurchasedWithin { within_days: 366 }]).expect_err("refused");
        assert_eq!(e.field, "segment.rules[0].within_days");
        let e = Segment::new(vec![Rule::LevelBetween { min: 1, max: 2 }]).expect_err("refused");
        assert_eq!(e.field, "segment.rules");
        assert_eq!(
            Segment::new(vec![]).map_err(|e| e.field),
            Err("segment.rules".into())
        );
    }
}
