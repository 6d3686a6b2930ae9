//! Every report against a hand-made dataset; the expected numbers are worked out in comments.

use chrono::Duration;
use serde_json::json;
use titan_analytics::{
    app::AnalyticsError,
    domain::{
        Aggregation, BehaviorQuery, FunnelQuery, Granularity, MetricQuery, Period, ProductQuery,
        RawMetricPoint, RetentionQuery,
    },
};
use titan_analytics::{domain::Event, store::EventRow};
use titan_kit::events::Envelope;

use super::*;

/// The shop's Tuesday 2026-11-03 and Thursday 2026-11-05:
/// - u1 (session s1): home 10:00, views p1 10:01, adds p1 10:02, buys o1 (p1, 20.00 USD) 10:05;
///   the client sends its purchase twice (same id), and the flash sale service reports o1 too.
/// - u2 (s2): home 10:10, views p1 10:11, adds p1 10:12; no purchase.
/// - u3 (s3): home 11:00, views p2 11:01, buys o2 (p2, 10.01 USD) 11:30 without a cart event;
///   its client claims 90 quadrillion USD for it, which is kept but is not revenue.
/// - u4 (s4): home 11:05 only.
/// - u5 (s5): views p1 12:00, adds p1 12:01; (s6) buys o3 (p1, 5.00 EUR) on Thursday 09:00.
///
/// Every order is also reported on the bus by the flash sale service, one second later: that
/// report is the revenue; the clients' `purchase` events are not trusted with money.
async fn shop(world: &World) {
    let home = || json!({"page": "/home"});
    let events = vec![
        event(
            "u1-1",
            "page_view",
            "u1",
            "s1",
            "2026-11-03T10:00:00Z",
            home(),
        ),
        event(
            "u1-2",
            "product_view",
            "u1",
            "s1",
            "2026-11-03T10:01:00Z",
            json!({"product_id": "p1"}),
        ),
        event(
            "u1-3",
            "add_to_cart",
            "u1",
            "s1",
            "2026-11-03T10:02:00Z",
            json!({"product_id": "p1"}),
        ),
        event(
            "u1-4",
            "purchase",
            "u1",
            "s1",
            "2026-11-03T10:05:00Z",
            json!({"product_id": "p1", "order_id": "o1", "revenue": 2000, "currency": "USD"}),
        ),
        event(
            "u1-4",
            "purchase",
            "u1",
            "s1",
            "2026-11-03T10:05:00Z",
            json!({"product_id": "p1", "order_id": "o1", "revenue": 2000, "currency": "USD"}),
        ),
        event(
            "u2-1",
            "page_view",
            "u2",
            "s2",
            "2026-11-03T10:10:00Z",
            home(),
        ),
        event(
            "u2-2",
            "product_view",
            "u2",
            "s2",
            "2026-11-03T10:11:00Z",
            json!({"product_id": "p1"}),
        ),
        event(
            "u2-3",
            "add_to_cart",
            "u2",
            "s2",
            "2026-11-03T10:12:00Z",
            json!({"product_id": "p1"}),
        ),
        event(
            "u3-1",
            "page_view",
            "u3",
            "s3",
            "2026-11-03T11:00:00Z",
            home(),
        ),
        event(
            "u3-2",
            "product_view",
            "u3",
            "s3",
            "2026-11-03T11:01:00Z",
            json!({"product_id": "p2"}),
        ),
        event(
            "u3-3",
            "purchase",
            "u3",
            "s3",
            "2026-11-03T11:30:00Z",
            json!({"product_id": "p2", "order_id": "o2", "revenue": 9_000_000_000_000_000_000_i64, "currency": "USD"}),
        ),
        event(
            "u4-1",
            "page_view",
            "u4",
            "s4",
            "2026-11-03T11:05:00Z",
            home(),
        ),
        event(
            "u5-1",
            "product_view",
            "u5",
            "s5",
            "2026-11-03T12:00:00Z",
            json!({"product_id": "p1"}),
        ),
        event(
            "u5-2",
            "add_to_cart",
            "u5",
            "s5",
            "2026-11-03T12:01:00Z",
            json!({"product_id": "p1"}),
        ),
        event(
            "u5-3",
            "purchase",
            "u5",
            "s6",
            "2026-11-05T09:00:00Z",
            json!({"product_id": "p1", "order_id": "o3", "revenue": 500, "currency": "EUR"}),
        ),
    ];
    let accepted = world.app.track(&tracker(), events).await.expect("track");
    assert_eq!(accepted, 15);
    // The same orders from the bus, as the flash sale service publishes them.
    let bus = [
        ("o1", "p1", "u1", 2000, "USD", "2026-11-03T10:05:01Z"),
        ("o2", "p2", "u3", 1001, "USD", "2026-11-03T11:30:01Z"),
        ("o3", "p1", "u5", 500, "EUR", "2026-11-05T09:00:01Z"),
    ];
    let rows = bus
        .into_iter()
        .map(|(order, product, user, minor, currency, when)| {
            purchased(order, product, user, minor, currency, when, world)
        })
        .collect();
    world.events.submit(rows).await.expect("bus events");
}

/// A `flashsale.purchased` bus event as analytics stores it.
fn purchased(
    order: &str,
    product: &str,
    user: &str,
    minor: i64,
    currency: &str,
    when: &str,
    world: &World,
) -> EventRow {
    let mut envelope = Envelope::new(
        "sg-1",
        "flashsale.purchased",
        1,
        &json!({"order_id": order, "product_id": product, "user_id": user, "quantity": 1,
                "total": {"minor_units": minor, "currency": currency}}),
    )
    .expect("envelope");
    envelope.occurred_at = at(when);
    EventRow::new(Event::from_envelope(&envelope), world.clock.now())
}

fn period(from: &str, to: &str) -> Period {
    Period::new(at(from), at(to)).expect("period")
}

fn week() -> Period {
    period("2026-11-02T00:00:00Z", "2026-11-09T00:00:00Z")
}

#[tokio::test]
async fn kpis_by_day_and_in_total() {
    let world = World::new(at("2026-11-10T00:00:00Z")).await;
    shop(&world).await;
    let report = world
        .app
        .kpis(week(), Granularity::Day, "")
        .await
        .expect("kpis");
    let days: Vec<String> = report
        .buckets
        .iter()
        .map(|b| b.bucket.to_rfc3339())
        .collect();
    assert_eq!(
        days,
        ["2026-11-03T00:00:00+00:00", "2026-11-05T00:00:00+00:00"]
    );
    let tue = &report.buckets[0].kpis;
    // 13 distinct client events + 2 bus events; the repeated purchase counts once.
    assert_eq!((tue.events, tue.unique_users, tue.purchasers), (15, 5, 2));
    assert_eq!(tue.conversion_rate, 0.4);
    assert_eq!(tue.revenue.len(), 1);
    let usd = &tue.revenue[0];
    // o1 (20.00, reported three times) + o2 (10.01 on the bus; the client's claim does not
    // count) = 30.01 in 2 orders; 15.005 rounds up.
    assert_eq!(
        (usd.currency.as_str(), usd.revenue, usd.orders),
        ("USD", 3001, 2)
    );
    assert_eq!(usd.average_order_value, 1501);
    let thu = &report.buckets[1].kpis;
    assert_eq!((thu.events, thu.unique_users, thu.purchasers), (2, 1, 1));
    assert_eq!(
        (
            thu.revenue[0].currency.as_str(),
            thu.revenue[0].revenue,
            thu.revenue[0].orders
        ),
        ("EUR", 500, 1)
    );
    assert_eq!(report.totals.len(), 1);
    let all = &report.totals[0].kpis;
    assert_eq!(report.totals[0].bucket, week().from);
    // u5 is one user across both days: unique users do not add up.
    assert_eq!((all.events, all.unique_users, all.purchasers), (17, 5, 3));
    assert_eq!(all.conversion_rate, 0.6);
    let by_currency: Vec<(String, i64, u64)> = all
        .revenue
        .iter()
        .map(|r| (r.currency.clone(), r.revenue, r.orders))
        .collect();
    assert_eq!(
        by_currency,
        [("EUR".into(), 500, 1), ("USD".into(), 3001, 2)]
    );

    let hourly = world
        .app
        .kpis(
            period("2026-11-03T10:00:00Z", "2026-11-03T12:00:00Z"),
            Granularity::Hour,
            "sg-1",
        )
        .await
        .expect("hourly");
    let per_hour: Vec<(u64, u64)> = hourly
        .buckets
        .iter()
        .map(|b| (b.kpis.events, b.kpis.unique_users))
        .collect();
    // 10h: u1 ×4 + bus, u2 ×3; 11h: u3 ×3 + bus, u4 ×1; u5's 12:00 events fall outside
    // [10h, 12h).
    assert_eq!(per_hour, [(8, 2), (5, 2)]);
    let elsewhere = world
        .app
        .kpis(week(), Granularity::Week, "other-cell")
        .await
        .expect("other cell");
    assert!(elsewhere.buckets.is_empty() && elsewhere.totals.is_empty());
}

#[tokio::test]
async fn funnels_count_ordered_steps_within_the_window() {
    let world = World::new(at("2026-11-10T00:00:00Z")).await;
    shop(&world).await;
    let steps = world
        .app
        .funnel(FunnelQuery {
            period: week(),
            steps: vec!["page_view".into(), "add_to_cart".into(), "purchase".into()],
            window_seconds: 3600,
        })
        .await
        .expect("funnel");
    // u1 did all three; u2 viewed and added; u3 bought without adding; u4 only viewed;
    // u5 never saw a page view, so never entered.
    let counts: Vec<(u64, u64)> = steps.iter().map(|s| (s.users, s.drop_off)).collect();
    assert_eq!(counts, [(4, 0), (2, 2), (1, 1)]);
    assert_eq!(steps[1].conversion_from_start, 0.5);
    assert_eq!(steps[2].conversion_from_start, 0.25);
    assert_eq!(steps[2].conversion_from_previous, 0.5);

    // u5's purchase comes two days after the cart: outside a one-hour window, inside a
    // three-day one.
    let cart_to_buy = |window_seconds| FunnelQuery {
        period: week(),
        steps: vec!["add_to_cart".into(), "purchase".into()],
        window_seconds,
    };
    let short = world.app.funnel(cart_to_buy(3600)).await.expect("short");
    assert_eq!((short[0].users, short[1].users), (3, 1));
    let long = world
        .app
        .funnel(cart_to_buy(3 * 86_400))
        .await
        .expect("long");
    assert_eq!((long[0].users, long[1].users), (3, 2));
}

#[tokio::test]
async fn product_performance_in_one_currency() {
    let world = World::new(at("2026-11-10T00:00:00Z")).await;
    shop(&world).await;
    let products = world
        .app
        .products(ProductQuery {
            period: week(),
            currency: "USD".into(),
            product_ids: vec![],
            limit: 0,
        })
        .await
        .expect("products");
    let rows: Vec<(&str, u64, u64, u64, i64)> = products
        .iter()
        .map(|p| {
            (
                p.row.product_id.as_str(),
                p.row.views,
                p.row.carts,
                p.row.purchases,
                p.row.revenue,
            )
        })
        .collect();
    // p1: viewed by u1, u2, u5; added by the same three; bought in o1 (USD) and o3 (EUR, not
    // summed in USD). p2: one view, no cart, o2.
    assert_eq!(rows, [("p1", 3, 3, 2, 2000), ("p2", 1, 0, 1, 1001)]);
    assert_eq!(products[0].cart_to_purchase, 2.0 / 3.0);
    assert_eq!(products[1].view_to_purchase, 1.0);
    assert_eq!(products[1].view_to_cart, 0.0);
    let only_p2 = world
        .app
        .products(ProductQuery {
            period: week(),
            currency: "EUR".into(),
            product_ids: vec!["p2".into()],
            limit: 10,
        })
        .await
        .expect("p2");
    assert_eq!(only_p2.len(), 1);
    assert_eq!((only_p2[0].row.purchases, only_p2[0].row.revenue), (1, 0));
}

#[tokio::test]
async fn sessions_and_top_paths() {
    let world = World::new(at("2026-11-10T00:00:00Z")).await;
    shop(&world).await;
    let b = world
        .app
        .behavior(BehaviorQuery {
            period: week(),
            user_id: String::new(),
            path_length: 3,
            top_paths: 10,
        })
        .await
        .expect("behavior");
    // Sessions s1..s6 last 300, 120, 1800, 0, 60 and 0 s with 4, 3, 3, 1, 2 and 1 events (the
    // bus event has no session; the repeated purchase is one event).
    assert_eq!((b.stats.sessions, b.stats.users), (6, 5));
    assert_eq!(b.stats.average_seconds, 380.0);
    assert_eq!(b.stats.average_events, 14.0 / 6.0);
    // quantileExact(0.5) of [0, 0, 60, 120, 300, 1800] is the element at index 3.
    assert_eq!(b.stats.median_seconds, 120.0);
    let paths: Vec<(Vec<String>, u64)> = b
        .paths
        .iter()
        .map(|p| (p.path.clone(), p.sessions))
        .collect();
    let p = |steps: &[&str], n| (steps.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>(), n);
    assert_eq!(
        paths,
        [
            p(&["/home", "product_view", "add_to_cart"], 2),
            p(&["/home"], 1),
            p(&["/home", "product_view", "purchase"], 1),
            p(&["product_view", "add_to_cart"], 1),
            p(&["purchase"], 1),
        ]
    );
    let one = world
        .app
        .behavior(BehaviorQuery {
            period: week(),
            user_id: "u5".into(),
            path_length: 0,
            top_paths: 0,
        })
        .await
        .expect("u5");
    assert_eq!(
        (one.stats.sessions, one.stats.users, one.paths.len()),
        (2, 1, 2)
    );
}

#[tokio::test]
async fn weekly_cohort_retention() {
    let world = World::new(at("2026-11-10T00:00:00Z")).await;
    // Cohort of Monday 2026-10-05: a1, a2, a3 (a1 twice in its first week). a1 and a2 come
    // back the next week, a1 also the week after.
    // Cohort of 2026-10-12: b1, b2; b2 comes back the next week.
    // z first came on 2026-09-30 (before the period) and is active on 10-06: no cohort here.
    let visits = [
        ("a1", "2026-10-05T09:00:00Z"),
        ("a1", "2026-10-07T09:00:00Z"),
        ("a2", "2026-10-06T09:00:00Z"),
        ("a3", "2026-10-11T23:59:59Z"),
        ("a1", "2026-10-12T09:00:00Z"),
        ("a2", "2026-10-18T09:00:00Z"),
        ("a1", "2026-10-19T09:00:00Z"),
        ("b1", "2026-10-12T08:00:00Z"),
        ("b2", "2026-10-14T08:00:00Z"),
        ("b2", "2026-10-20T08:00:00Z"),
        ("z", "2026-09-30T08:00:00Z"),
        ("z", "2026-10-06T08:00:00Z"),
    ];
    let events = visits
        .iter()
        .enumerate()
        .map(|(i, (user, time))| event(&format!("v{i}"), "page_view", user, "", time, no_props()))
        .collect();
    world.app.track(&tracker(), events).await.expect("track");
    let cohorts = world
        .app
        .retention(RetentionQuery {
            period: period("2026-10-05T00:00:00Z", "2026-10-19T00:00:00Z"),
            weeks: 2,
        })
        .await
        .expect("retention");
    let rows: Vec<(chrono::NaiveDate, u64, Vec<u64>)> = cohorts
        .iter()
        .map(|c| (c.week, c.users, c.retained_users.clone()))
        .collect();
    assert_eq!(
        rows,
        [
            (day("2026-10-05"), 3, vec![3, 2, 1]),
            (day("2026-10-12"), 2, vec![2, 1, 0]),
        ]
    );
    assert_eq!(cohorts[0].retained, [1.0, 2.0 / 3.0, 1.0 / 3.0]);
    assert_eq!(cohorts[1].retained, [1.0, 0.5, 0.0]);
}

#[tokio::test]
async fn realtime_dashboard_sees_the_last_five_minutes() {
    let now = at("2026-11-20T12:00:00Z");
    let world = World::new(now).await;
    let ago = |s: i64| (now - Duration::seconds(s)).to_rfc3339();
    let events = vec![
        event(
            "r1",
            "product_view",
            "u1",
            "",
            &ago(30),
            json!({"product_id": "p9"}),
        ),
        event(
            "r2",
            "product_view",
            "u2",
            "",
            &ago(20),
            json!({"product_id": "p9"}),
        ),
        event(
            "r3",
            "add_to_cart",
            "u2",
            "",
            &ago(10),
            json!({"product_id": "p9"}),
        ),
        event(
            "r4",
            "product_view",
            "u3",
            "",
            &ago(200),
            json!({"product_id": "p8"}),
        ),
        event(
            "r5",
            "product_view",
            "u4",
            "",
            &ago(400),
            json!({"product_id": "p7"}),
        ),
    ];
    world.app.track(&tracker(), events).await.expect("track");
    let rt = world.app.realtime(0).await.expect("realtime");
    assert_eq!(rt.window_seconds, 300);
    assert_eq!(
        (rt.active_users, rt.events, rt.events_last_minute),
        (3, 4, 3)
    );
    let top: Vec<(&str, u64)> = rt
        .top_products
        .iter()
        .map(|p| (p.product_id.as_str(), p.views))
        .collect();
    assert_eq!(top, [("p9", 2), ("p8", 1)]);
}

#[tokio::test]
async fn metrics_aggregate_by_period_label_and_retry() {
    let world = World::new(at("2026-11-10T00:00:00Z")).await;
    let point = |id: &str, value: f64, region: &str, time: &str| RawMetricPoint {
        request_id: id.into(),
        name: "checkout.latency_ms".into(),
        value,
        labels: labels(&[("region", region)]),
        at: Some(at(time)),
    };
    for p in [
        point("m1", 10.0, "sg", "2026-11-03T10:00:00Z"),
        point("m2", 20.0, "sg", "2026-11-03T10:30:00Z"),
        point("m3", 30.0, "us", "2026-11-03T10:45:00Z"),
        point("m4", 40.0, "us", "2026-11-03T11:15:00Z"),
        // A retry of m1: recorded once.
        point("m1", 10.0, "sg", "2026-11-03T10:00:00Z"),
    ] {
        world
            .app
            .record_metric(&tracker(), p)
            .await
            .expect("record");
    }
    // A buyer's token may not draw the curves dashboards and alerts read.
    let e = world
        .app
        .record_metric(
            &titan_kit::testing::caller("buyer", &[]),
            point("m9", 1e9, "sg", "2026-11-03T10:50:00Z"),
        )
        .await
        .expect_err("a buyer recording a metric");
    assert!(
        matches!(&e, AnalyticsError::MetricsForbidden(user) if user == "buyer"),
        "{e}"
    );
    let query = |aggregation, filter, group_by: Option<&str>| MetricQuery {
        name: "checkout.latency_ms".into(),
        period: period("2026-11-03T00:00:00Z", "2026-11-04T00:00:00Z"),
        granularity: Granularity::Hour,
        aggregation,
        filter,
        group_by: group_by.map(String::from),
    };
    let sums = world
        .app
        .metric(query(Aggregation::Sum, Default::default(), None))
        .await
        .expect("sum");
    assert_eq!(sums.len(), 1);
    let points: Vec<(i64, f64, u64)> = sums[0]
        .1
        .iter()
        .map(|p| (i64::from(p.bucket), p.value, p.samples))
        .collect();
    let ten = at("2026-11-03T10:00:00Z").timestamp();
    assert_eq!(points, [(ten, 60.0, 3), (ten + 3600, 40.0, 1)]);
    let by_region = world
        .app
        .metric(query(Aggregation::Max, Default::default(), Some("region")))
        .await
        .expect("group");
    let groups: Vec<(&str, Vec<f64>)> = by_region
        .iter()
        .map(|(g, rows)| (g.as_str(), rows.iter().map(|r| r.value).collect()))
        .collect();
    assert_eq!(groups, [("sg", vec![20.0]), ("us", vec![30.0, 40.0])]);
    let us = world
        .app
        .metric(MetricQuery {
            granularity: Granularity::Day,
            ..query(Aggregation::Avg, labels(&[("region", "us")]), None)
        })
        .await
        .expect("filter");
    assert_eq!(us[0].1[0].value, 35.0);
}

#[tokio::test]
async fn bad_queries_are_refused_before_any_sql() {
    let world = World::new(at("2026-11-10T00:00:00Z")).await;
    let refused = |r: Result<_, AnalyticsError>| match r {
        Err(AnalyticsError::Query(e)) => e.to_string(),
        other => panic!("expected a refusal, got {other:?}"),
    };
    let msg = refused(
        world
            .app
            .funnel(FunnelQuery {
                period: week(),
                steps: vec![
                    "page_view".into(),
                    "x'; DROP TABLE analytics_events; --".into(),
                ],
                window_seconds: 60,
            })
            .await
            .map(drop),
    );
    assert!(msg.contains("is not an event name"), "{msg}");
    let msg = refused(
        world
            .app
            .kpis(
                period("2026-01-01T00:00:00Z", "2026-12-01T00:00:00Z"),
                Granularity::Hour,
                "",
            )
            .await
            .map(drop),
    );
    assert!(msg.contains("buckets asked"), "{msg}");
    let msg = refused(
        world
            .app
            .products(ProductQuery {
                period: week(),
                currency: "usd".into(),
                product_ids: vec![],
                limit: 0,
            })
            .await
            .map(drop),
    );
    assert!(msg.contains("ISO 4217"), "{msg}");
    let msg = refused(
        world
            .app
            .metric(MetricQuery {
                name: "checkout.latency_ms".into(),
                period: week(),
                granularity: Granularity::Day,
                aggregation: Aggregation::Sum,
                filter: labels(&[("region') OR 1=1 --", "x")]),
                group_by: None,
            })
            .await
            .map(drop),
    );
    assert!(msg.contains("is not a label key"), "{msg}");
    assert_eq!(world.stored().await, (0, 0), "nothing was written");
}

#[tokio::test]
async fn funnel_steps_within_one_second_keep_their_order() {
    let world = World::new(at("2026-12-31T00:00:00Z")).await;
    // Half a second apart, late in a year-long period: the funnel's clock must still order
    // them (18.16's windowFunnel takes a UInt32 and misbehaves above 2^31).
    let events = vec![
        event(
            "x2",
            "add_to_cart",
            "u1",
            "",
            "2026-12-30T10:00:00.600Z",
            no_props(),
        ),
        event(
            "x1",
            "product_view",
            "u1",
            "",
            "2026-12-30T10:00:00.100Z",
            no_props(),
        ),
    ];
    world.app.track(&tracker(), events).await.expect("track");
    let steps = world
        .app
        .funnel(FunnelQuery {
            period: period("2026-01-01T00:00:00Z", "2026-12-31T00:00:00Z"),
            steps: vec!["product_view".into(), "add_to_cart".into()],
            window_seconds: 60,
        })
        .await
        .expect("funnel");
    assert_eq!((steps[0].users, steps[1].users), (1, 1));
}

/// Revenue is summed per currency; a sum past `i64::MAX` saturates instead of wrapping into a
/// negative figure.
#[tokio::test]
async fn revenue_sums_saturate_instead_of_overflowing() {
    let world = World::new(at("2026-11-10T00:00:00Z")).await;
    let huge = 5_000_000_000_000_000_000_i64;
    let rows = vec![
        purchased(
            "big-1",
            "p1",
            "u1",
            huge,
            "USD",
            "2026-11-03T10:00:00Z",
            &world,
        ),
        purchased(
            "big-2",
            "p1",
            "u2",
            huge,
            "USD",
            "2026-11-03T11:00:00Z",
            &world,
        ),
    ];
    world.events.submit(rows).await.expect("bus events");
    let report = world
        .app
        .kpis(week(), Granularity::Day, "")
        .await
        .expect("kpis");
    let usd = &report.totals[0].kpis.revenue[0];
    assert_eq!((usd.revenue, usd.orders), (i64::MAX, 2));
    let products = world
        .app
        .products(ProductQuery {
            period: week(),
            currency: "USD".into(),
            product_ids: vec![],
            limit: 0,
        })
        .await
        .expect("products");
    assert_eq!(products[0].row.revenue, i64::MAX);
}
