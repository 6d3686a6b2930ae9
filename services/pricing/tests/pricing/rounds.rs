//! Rounds on the real stores: demand from a hand-made `analytics_events` data set, prices
//! written once per real change with history and `pricing.changed`, the no-flap step,
//! priority and FIXED, COMPETITIVE ignoring stale observations, the cache across replicas, and
//! the scheduled round claimed by one replica at a time.

use chrono::{DateTime, Duration, Utc};
use clickhouse::Row;
use serde::Serialize;
use titan_kit::{money::Money, testing::TestClock};
use titan_pricing::{
    app::{DemandSource, Product, RoundReport, Scope},
    domain::{
        CompetitorPrice, ProductId, RuleDraft, Segment, Signals, Strategy, Target, rule::Position,
    },
    store::demand::ChDemand,
};
use uuid::Uuid;

use crate::{App, Stores, key};

#[derive(Debug, Row, Serialize)]
struct Event {
    event_id: String,
    name: String,
    user_id: String,
    time: u32,
    time_ms: u16,
    date: u16,
    product_id: String,
    order_id: String,
    revenue: i64,
    currency: String,
    source: String,
    ingested_at: u32,
}

fn event(
    id: &str,
    name: &str,
    product: &str,
    at: DateTime<Utc>,
    order: &str,
    revenue: i64,
) -> Event {
    let seconds = u32::try_from(at.timestamp()).expect("time");
    Event {
        event_id: id.into(),
        name: name.into(),
        user_id: "u".into(),
        time: seconds,
        time_ms: 0,
        date: u16::try_from(at.timestamp() / 86_400).expect("date"),
        product_id: product.into(),
        order_id: order.into(),
        revenue,
        currency: if revenue > 0 {
            "USD".into()
        } else {
            String::new()
        },
        source: if revenue > 0 {
            "bus".into()
        } else {
            "client".into()
        },
        ingested_at: seconds,
    }
}

async fn insert(stores: &Stores, events: &[Event]) {
    let mut insert = stores
        .ch
        .client
        .insert::<Event>("analytics_events")
        .await
        .expect("insert");
    for e in events {
        insert.write(e).await.expect("write");
    }
    insert.end().await.expect("end");
}

/// For `product`: `views24` views in the last 24 h plus `views_older` between 1 and 7 days ago
/// (and one 8 days ago, outside), each view sent twice (a retry); `orders24`/`orders_older`
/// verified orders likewise, each also as an unverified client purchase; 3 cart adds.
fn data_set(
    product: &str,
    now: DateTime<Utc>,
    (views24, views_older): (usize, usize),
    (orders24, orders_older): (usize, usize),
) -> Vec<Event> {
    let mut out = Vec::new();
    let recent = now - Duration::hours(2);
    let older = now - Duration::days(3);
    for i in 0..views24 + views_older {
        let at = if i < views24 { recent } else { older };
        for _ in 0..2 {
            out.push(event(
                &format!("{product}-v{i}"),
                "product_view",
                product,
                at,
                "",
                0,
            ));
        }
    }
    out.push(event(
        &format!("{product}-old"),
        "product_view",
        product,
        now - Duration::days(8),
        "",
        0,
    ));
    for i in 0..orders24 + orders_older {
        let at = if i < orders24 { recent } else { older };
        let order = format!("{product}-o{i}");
        out.push(event(
            &format!("{order}-bus"),
            "flashsale.purchased",
            product,
            at,
            &order,
            1_000,
        ));
        out.push(event(
            &format!("{order}-bus"),
            "flashsale.purchased",
            product,
            at,
            &order,
            1_000,
        ));
        out.push(event(
            &format!("{order}-client"),
            "purchase",
            product,
            at,
            &order,
            0,
        ));
    }
    for i in 0..3 {
        out.push(event(
            &format!("{product}-c{i}"),
            "add_to_cart",
            product,
            recent,
            "",
            0,
        ));
    }
    out
}

fn pid(s: &str) -> ProductId {
    ProductId::parse("product_id", s).expect("product id")
}

fn draft(target: Target, strategy: Strategy, priority: i32) -> RuleDraft {
    RuleDraft {
        target,
        strategy,
        currency: "USD".into(),
        base: 10_000,
        min: 8_000,
        max: 13_000,
        priority,
        ending: None,
        min_step: 50,
    }
}

async fn put(app: &App, id: &str, category: &str, inventory_bps: u32) {
    app.put_product(
        &key(),
        Product {
            id: pid(id),
            category: category.into(),
            inventory_bps,
        },
    )
    .await
    .expect("put product");
}

async fn rule(app: &App, d: RuleDraft) -> Uuid {
    let r = d.validate(Uuid::now_v7(), app.now()).expect("valid rule");
    app.create_rule(&key(), r).await.expect("create rule").id
}

fn price(app: &App, id: &str) -> i64 {
    app.price(&pid(id), &Segment::DEFAULT)
        .expect("a price")
        .price
        .minor_units
}

async fn outbox(stores: &Stores) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM titan_outbox WHERE event_type = 'pricing.changed'")
        .fetch_one(&stores.db.pool)
        .await
        .expect("outbox")
}

#[tokio::test]
async fn demand_signals_come_from_one_query_over_a_hand_made_data_set() {
    let stores = Stores::new().await;
    let now = Utc::now();
    let mut events = data_set("a", now, (70, 70), (7, 7));
    events.extend(data_set("b", now, (0, 14), (0, 0)));
    insert(&stores, &events).await;
    let signals = ChDemand::new(stores.ch.client.clone())
        .signals(&[pid("a"), pid("b"), pid("c")], now)
        .await
        .expect("signals");
    assert_eq!(
        signals.get(&pid("a")),
        Some(&Signals {
            views_24h: 70,
            views_7d: 140,
            carts_24h: 3,
            purchases_24h: 7,
            purchases_7d: 14,
            inventory: 0.0
        })
    );
    assert_eq!(
        signals
            .get(&pid("b"))
            .map(|s| (s.views_24h, s.views_7d, s.purchases_7d)),
        Some((0, 14, 0))
    );
    assert_eq!(signals.get(&pid("c")), None);
}

#[tokio::test]
async fn a_dynamic_price_follows_demand_and_is_written_once_per_real_change() {
    let stores = Stores::new().await;
    let clock = TestClock::at(Utc::now());
    let app = stores.replica("a", &clock);
    insert(&stores, &data_set("sku-1", clock.now(), (70, 70), (7, 7))).await;
    put(&app, "sku-1", "shoes", 2_500).await;
    rule(
        &app,
        draft(Target::Product(pid("sku-1")), Strategy::Dynamic, 0),
    )
    .await;
    // Demand 79.5 (demand.rs's worked example): ×(0.9 + 0.795 · 0.4) = ×1.218 → 12180.
    assert_eq!(price(&app, "sku-1"), 12_180);
    let history = app.history(&pid("sku-1"), None, 10).await.expect("history");
    assert_eq!(history.len(), 1);
    let h = &history[0];
    assert_eq!(
        (h.old, h.new.minor_units, h.strategy.as_str()),
        (None, 12_180, "DYNAMIC")
    );
    assert_eq!(h.inputs["demand_score"], serde_json::json!(79.5));
    assert_eq!(h.inputs["signals"]["views_24h"], serde_json::json!(70));
    assert!(
        h.reason.starts_with("DYNAMIC: demand 79.50/100"),
        "{}",
        h.reason
    );
    assert_eq!(outbox(&stores).await, 1);

    // The same inputs again: nothing is written.
    let again = app.reoptimize(Scope::All).await.expect("round");
    assert_eq!(
        again,
        RoundReport {
            products: 1,
            without_rule: 0,
            computed: 1,
            changed: 0
        }
    );
    // Stock from 25 % to 24 %: demand +0.1 → ×1.2184 → 12184, a move of 4 < min_step 50.
    put(&app, "sku-1", "shoes", 2_400).await;
    assert_eq!(price(&app, "sku-1"), 12_180);
    // Stock to 0 %: demand 82 → ×1.228 → 12280, a real change.
    put(&app, "sku-1", "shoes", 0).await;
    assert_eq!(price(&app, "sku-1"), 12_280);
    let history = app.history(&pid("sku-1"), None, 10).await.expect("history");
    assert_eq!(
        history
            .iter()
            .map(|h| (h.old.map(|m| m.minor_units), h.new.minor_units))
            .collect::<Vec<_>>(),
        vec![(Some(12_180), 12_280), (None, 12_180)]
    );
    assert_eq!(outbox(&stores).await, 2);
}

#[tokio::test]
async fn the_highest_priority_wins_fixed_stays_and_competitive_ignores_stale_prices() {
    let stores = Stores::new().await;
    let clock = TestClock::at(Utc::now());
    let app = stores.replica("a", &clock);
    for p in ["p1", "p2"] {
        put(&app, p, "hats", 10_000).await;
    }
    let usd = |minor| Money::parse(minor, "USD").expect("usd");
    let observe = |competitor: &str, minor, minutes_ago| CompetitorPrice {
        competitor: competitor.into(),
        source: "crawler".into(),
        price: usd(minor),
        observed_at: clock.now() - Duration::minutes(minutes_ago),
    };
    for o in [
        observe("x", 9_000, 10),
        observe("y", 9_600, 20),
        observe("z", 5_000, 120),
    ] {
        app.record_competitor_price(&key(), pid("p1"), o)
            .await
            .expect("record");
    }
    let competitive = Strategy::Competitive {
        position: Position::Lowest,
        margin_bps: -100,
        max_age_seconds: 3_600,
    };
    rule(&app, draft(Target::Category("hats".into()), competitive, 1)).await;
    // Lowest fresh price 9000 (z's 5000 is two hours old) − 1 % = 8910; p2 has none: base.
    assert_eq!((price(&app, "p1"), price(&app, "p2")), (8_910, 10_000));
    let fixed = rule(
        &app,
        RuleDraft {
            base: 12_345,
            ..draft(Target::Product(pid("p1")), Strategy::Fixed, 5)
        },
    )
    .await;
    assert_eq!(price(&app, "p1"), 12_345);
    // A FIXED price never moves in later rounds, whatever the competitors do.
    app.record_competitor_price(&key(), pid("p1"), observe("x", 8_500, 0))
        .await
        .expect("record");
    let report = app.reoptimize(Scope::All).await.expect("round");
    assert_eq!(report.changed, 0);
    assert_eq!(price(&app, "p1"), 12_345);
    // Without it the category rule prices p1 again, from x's newest price.
    app.delete_rule(&key(), fixed).await.expect("delete");
    assert_eq!(price(&app, "p1"), 8_415);
    let history = app.history(&pid("p1"), None, 10).await.expect("history");
    assert_eq!(
        history
            .iter()
            .map(|h| h.new.minor_units)
            .collect::<Vec<_>>(),
        vec![8_415, 12_345, 8_910]
    );
    assert!(
        history[0]
            .reason
            .contains("Lowest of 2 fresh competitor prices 8500"),
        "{}",
        history[0].reason
    );
}

#[tokio::test]
async fn another_replica_sees_changes_after_a_refresh_and_one_replica_runs_the_schedule() {
    let stores = Stores::new().await;
    let clock = TestClock::at(Utc::now());
    let (a, b) = (stores.replica("a", &clock), stores.replica("b", &clock));
    b.refresh().await.expect("refresh");
    put(&a, "p", "c", 10_000).await;
    rule(&a, draft(Target::Product(pid("p")), Strategy::Fixed, 0)).await;
    assert!(b.price(&pid("p"), &Segment::DEFAULT).is_none());
    b.refresh().await.expect("refresh");
    assert_eq!(price(&b, "p"), 10_000);

    assert!(a.scheduled_round().await.expect("round a").is_some());
    // Not due again until the interval (300 s) has passed, on either replica.
    assert!(b.scheduled_round().await.expect("round b").is_none());
    assert!(a.scheduled_round().await.expect("round a").is_none());
    clock.advance(Duration::seconds(301));
    assert!(b.scheduled_round().await.expect("round b").is_some());
}
