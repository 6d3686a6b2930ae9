//! A stream's analytics from what ClickHouse holds of it: the minutes each viewer watched
//! (`livestream.watched`, one event per viewer and minute since the stream started) and the
//! orders made in it (`livestream.purchased`). Everything here is arithmetic over those two
//! lists, so the figures are the same whatever order the rows arrive in and however often an
//! event was delivered twice.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use chrono::{DateTime, Utc};

/// Minutes past this one are not drawn on the retention curve (a stream longer than a week
/// is not a live show, and a bound keeps the answer's size bounded whatever the rows say).
pub const MAX_MINUTE: u32 = 7 * 24 * 60;

/// The minute of a stream, counted from its start, that `at` falls in; `None` before the
/// start or past [`MAX_MINUTE`].
pub fn minute_of(started_at: DateTime<Utc>, at: DateTime<Utc>) -> Option<u32> {
    let seconds = (at - started_at).num_seconds();
    if seconds < 0 {
        return None;
    }
    u32::try_from(seconds / 60)
        .ok()
        .filter(|m| *m <= MAX_MINUTE)
}

/// The minutes one viewer watched (a minute counts when a heartbeat of theirs arrived in it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewerMinutes {
    pub user_id: String,
    pub minutes: Vec<u32>,
}

/// One order of the stream, as analytics indexed its `livestream.purchased` event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub order_id: String,
    pub user_id: String,
    pub revenue_minor: i64,
    pub currency: String,
}

/// A point of the retention curve: how many viewers watched in `minute`, and their share of
/// the stream's unique viewers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetentionPoint {
    pub minute: u32,
    pub viewers: u64,
    pub share: f64,
}

/// The figures of one stream.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StreamAnalytics {
    /// Viewing sessions: runs of consecutive watched minutes (a viewer who leaves and comes
    /// back later is a second view).
    pub views: u64,
    pub unique_viewers: u64,
    /// Viewer-minutes watched.
    pub watch_minutes: u64,
    /// The most viewers in one minute.
    pub peak_viewers: u64,
    /// One point per minute from 0 to the last watched minute.
    pub retention: Vec<RetentionPoint>,
    pub orders: u64,
    /// Distinct buyers.
    pub purchasers: u64,
    /// Distinct buyers who also watched.
    pub converted_viewers: u64,
    /// `converted_viewers / unique_viewers`, 0 without viewers.
    pub conversion: f64,
    /// Revenue per currency (ISO 4217, sorted), in minor units, saturating.
    pub revenue: Vec<(String, i64)>,
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// Works out the figures from the viewers' minutes and the orders. The same user or order
/// may appear in several rows (a redelivered event): they are merged, and an order counts
/// once at its largest revenue, as docs/analytics.md asks of money.
pub fn figures(viewers: &[ViewerMinutes], orders: &[Order]) -> StreamAnalytics {
    let mut watched: BTreeMap<&str, BTreeSet<u32>> = BTreeMap::new();
    for v in viewers {
        let minutes = v.minutes.iter().copied().filter(|m| *m <= MAX_MINUTE);
        watched.entry(&v.user_id).or_default().extend(minutes);
    }
    watched.retain(|_, minutes| !minutes.is_empty());

    let last = watched.values().filter_map(|m| m.last().copied()).max();
    let mut per_minute = vec![0u64; last.map_or(0, |m| m as usize + 1)];
    let mut views = 0u64;
    let mut watch_minutes = 0u64;
    for minutes in watched.values() {
        let mut previous: Option<u32> = None;
        for &m in minutes {
            per_minute[m as usize] += 1;
            watch_minutes += 1;
            if previous.is_none_or(|p| p + 1 != m) {
                views += 1;
            }
            previous = Some(m);
        }
    }
    let unique_viewers = watched.len() as u64;
    let retention = per_minute
        .iter()
        .zip(0u32..)
        .map(|(&viewers, minute)| RetentionPoint {
            minute,
            viewers,
            share: ratio(viewers, unique_viewers),
        })
        .collect();

    let mut by_order: BTreeMap<&str, &Order> = BTreeMap::new();
    for o in orders {
        by_order
            .entry(&o.order_id)
            .and_modify(|kept| {
                if o.revenue_minor > kept.revenue_minor {
                    *kept = o;
                }
            })
            .or_insert(o);
    }
    let mut revenue: BTreeMap<&str, i64> = BTreeMap::new();
    let mut buyers: HashSet<&str> = HashSet::new();
    for o in by_order.values() {
        let sum = revenue.entry(&o.currency).or_default();
        *sum = sum.saturating_add(o.revenue_minor.max(0));
        buyers.insert(&o.user_id);
    }
    let converted_viewers = buyers.iter().filter(|b| watched.contains_key(*b)).count() as u64;

    StreamAnalytics {
        views,
        unique_viewers,
        watch_minutes,
        peak_viewers: per_minute.iter().copied().max().unwrap_or(0),
        retention,
        orders: by_order.len() as u64,
        purchasers: buyers.len() as u64,
        converted_viewers,
        conversion: ratio(converted_viewers, unique_viewers),
        revenue: revenue
            .into_iter()
            .map(|(c, sum)| (c.to_owned(), sum))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn viewer(user: &str, minutes: &[u32]) -> ViewerMinutes {
        ViewerMinutes {
            user_id: user.into(),
            minutes: minutes.to_vec(),
        }
    }

    fn order(id: &str, user: &str, minor: i64, currency: &str) -> Order {
        Order {
            order_id: id.into(),
            user_id: user.into(),
            revenue_minor: minor,
            currency: currency.into(),
        }
    }

    #[test]
    fn minutes_count_from_the_start() {
        let start = DateTime::from_timestamp(1_000_000, 0).expect("time");
        let at = |s: i64| DateTime::from_timestamp(1_000_000 + s, 0).expect("time");
        assert_eq!(minute_of(start, at(-1)), None);
        assert_eq!(minute_of(start, at(0)), Some(0));
        assert_eq!(minute_of(start, at(59)), Some(0));
        assert_eq!(minute_of(start, at(60)), Some(1));
        assert_eq!(
            minute_of(start, at(i64::from(MAX_MINUTE) * 60)),
            Some(MAX_MINUTE)
        );
        assert_eq!(minute_of(start, at(i64::from(MAX_MINUTE + 1) * 60)), None);
    }

    #[test]
    fn a_worked_example() {
        // ann watches minutes 0-3, bob 1-2 and again 5, cy only minute 0; ann's event of
        // minute 2 arrived twice. Per minute: 0 → ann, cy (2); 1 → ann, bob (2); 2 → ann,
        // bob (2); 3 → ann (1); 4 → nobody (0); 5 → bob (1).
        let viewers = [
            viewer("ann", &[0, 1, 2, 2, 3]),
            viewer("bob", &[2, 1, 5]),
            viewer("cy", &[0]),
        ];
        // o1 arrived twice; dee bought without watching; a EUR order is kept apart.
        let orders = [
            order("o1", "ann", 2599, "USD"),
            order("o1", "ann", 2599, "USD"),
            order("o2", "dee", 1000, "USD"),
            order("o3", "bob", 500, "EUR"),
        ];
        let f = figures(&viewers, &orders);
        // ann one run, bob two (1-2, 5), cy one.
        assert_eq!(f.views, 4);
        assert_eq!(f.unique_viewers, 3);
        // 4 + 3 + 1 minutes.
        assert_eq!(f.watch_minutes, 8);
        assert_eq!(f.peak_viewers, 2);
        let curve: Vec<(u32, u64)> = f.retention.iter().map(|p| (p.minute, p.viewers)).collect();
        assert_eq!(curve, [(0, 2), (1, 2), (2, 2), (3, 1), (4, 0), (5, 1)]);
        assert_eq!(f.retention[3].share, 1.0 / 3.0);
        assert_eq!(f.retention[4].share, 0.0);
        assert_eq!(f.orders, 3);
        assert_eq!(f.purchasers, 3);
        // ann and bob watched; dee did not: 2 of 3 viewers bought.
        assert_eq!(f.converted_viewers, 2);
        assert_eq!(f.conversion, 2.0 / 3.0);
        assert_eq!(
            f.revenue,
            [("EUR".to_owned(), 500), ("USD".to_owned(), 3599)]
        );
    }

    #[test]
    fn nothing_watched_is_all_zero() {
        assert_eq!(figures(&[], &[]), StreamAnalytics::default());
        let f = figures(&[viewer("ann", &[])], &[order("o1", "ann", 5, "USD")]);
        assert_eq!(f.unique_viewers, 0);
        assert_eq!(f.conversion, 0.0);
        assert!(f.retention.is_empty());
        assert_eq!(f.purchasers, 1);
    }

    #[test]
    fn minutes_past_the_bound_are_ignored_and_revenue_saturates() {
        let f = figures(
            &[viewer("ann", &[1, MAX_MINUTE + 1, u32::MAX])],
            &[
                order("o1", "ann", i64::MAX, "USD"),
                order("o2", "ann", 7, "USD"),
            ],
        );
        assert_eq!(f.retention.len(), 2);
        assert_eq!(f.watch_minutes, 1);
        assert_eq!(f.revenue, [("USD".to_owned(), i64::MAX)]);
    }

    fn viewers_strategy() -> impl Strategy<Value = Vec<ViewerMinutes>> {
        prop::collection::vec((0u8..12, prop::collection::vec(0u32..40, 0..20)), 0..20).prop_map(
            |rows| {
                rows.into_iter()
                    .map(|(u, minutes)| ViewerMinutes {
                        user_id: format!("u{u}"),
                        minutes,
                    })
                    .collect()
            },
        )
    }

    fn orders_strategy() -> impl Strategy<Value = Vec<Order>> {
        prop::collection::vec(0u8..10, 0..15).prop_map(|rows| {
            rows.into_iter()
                .map(|o| Order {
                    order_id: format!("o{o}"),
                    // A redelivered order carries the same buyer and amount; buyers overlap
                    // the viewers u0..u11 in part.
                    user_id: format!("u{}", (u32::from(o) * 7) % 16),
                    revenue_minor: i64::from(o) * 100 + 1,
                    currency: if o % 3 == 0 { "EUR" } else { "USD" }.into(),
                })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn the_figures_hold_together(viewers in viewers_strategy(), orders in orders_strategy()) {
            let f = figures(&viewers, &orders);
            let per_minute: u64 = f.retention.iter().map(|p| p.viewers).sum();
            prop_assert_eq!(per_minute, f.watch_minutes);
            prop_assert!(f.unique_viewers <= f.views);
            prop_assert!(f.views <= f.watch_minutes);
            prop_assert!(f.peak_viewers <= f.unique_viewers);
            prop_assert!(f.converted_viewers <= f.purchasers.min(f.unique_viewers));
            prop_assert!((0.0..=1.0).contains(&f.conversion));
            for (i, p) in f.retention.iter().enumerate() {
                prop_assert_eq!(p.minute as usize, i);
                prop_assert!((0.0..=1.0).contains(&p.share));
            }
            prop_assert!(f.retention.last().is_none_or(|p| p.viewers > 0));
        }

        #[test]
        fn order_and_duplicates_do_not_matter(
            viewers in viewers_strategy(),
            orders in orders_strategy(),
        ) {
            let f = figures(&viewers, &orders);
            let mut twice = viewers.clone();
            twice.extend(viewers.iter().rev().cloned());
            let mut orders_twice = orders.clone();
            orders_twice.extend(orders.iter().rev().cloned());
            prop_assert_eq!(figures(&twice, &orders_twice), f);
        }
    }
}
