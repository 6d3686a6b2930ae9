//! Ingestion: all-or-nothing batches, who may track whom, de-duplication by event id, and the
//! bus consumer.

use redis::AsyncCommands;
use serde_json::json;
use titan_analytics::{
    app::{AnalyticsError, bus},
    domain::{EventError, Granularity, Period, SERVICE},
};
use titan_kit::{
    events::{ConsumerOptions, Envelope, StreamReader, dead_letter_key, stream_key},
    testing::{TestRedis, eventually},
};

use super::*;

fn click(id: &str, user: &str) -> RawEvent {
    event(id, "click", user, "s", "2026-11-03T10:00:00Z", no_props())
}

#[tokio::test]
async fn a_bad_event_refuses_its_whole_batch() {
    let world = World::new(at("2026-11-10T00:00:00Z")).await;
    let mut batch = vec![click("a", "u1"), click("b", "u1"), click("c", "u1")];
    batch[1].name = "Click".into();
    match world.app.track(&tracker(), batch).await {
        Err(AnalyticsError::Event {
            index: 1,
            error: EventError::BadName(name),
        }) => {
            assert_eq!(name, "Click");
        }
        other => panic!("expected events[1] refused, got {other:?}"),
    }
    let mut future = click("d", "u1");
    future.timestamp = Some(at("2026-11-10T00:10:00Z"));
    assert!(matches!(
        world.app.track(&tracker(), vec![future]).await,
        Err(AnalyticsError::Event {
            error: EventError::InFuture { .. },
            ..
        })
    ));
    assert!(matches!(
        world.app.track(&tracker(), vec![]).await,
        Err(AnalyticsError::BatchSize(0))
    ));
    let huge: Vec<RawEvent> = (0..1001).map(|i| click(&format!("e{i}"), "u1")).collect();
    assert!(matches!(
        world.app.track(&tracker(), huge).await,
        Err(AnalyticsError::BatchSize(1001))
    ));
    assert_eq!(
        world.stored().await,
        (0, 0),
        "nothing of a refused batch is stored"
    );
}

#[tokio::test]
async fn users_track_their_own_events_only() {
    let world = World::new(at("2026-11-10T00:00:00Z")).await;
    let shopper = Caller {
        user_id: "u7".into(),
        roles: vec![],
    };
    let refused = world
        .app
        .track(&shopper, vec![click("a", ""), click("b", "u8")])
        .await;
    assert!(matches!(
        refused,
        Err(AnalyticsError::NotYours { index: 1, .. })
    ));
    assert_eq!(world.stored().await, (0, 0));
    world
        .app
        .track(&shopper, vec![click("a", ""), click("b", "u7")])
        .await
        .expect("own events");
    let users: Vec<String> = world
        .ch
        .client
        .query("SELECT DISTINCT user_id FROM analytics_events")
        .fetch_all()
        .await
        .expect("users");
    assert_eq!(users, ["u7"], "an empty user id is the caller");
}

#[tokio::test]
async fn a_retried_event_counts_once() {
    let world = World::new(at("2026-11-10T00:00:00Z")).await;
    let batch = || vec![click("a", "u1"), click("b", "u1"), click("a", "u1")];
    world.app.track(&tracker(), batch()).await.expect("first");
    world.app.track(&tracker(), batch()).await.expect("retry");
    let (rows, distinct) = world.stored().await;
    assert_eq!(
        (rows, distinct),
        (6, 2),
        "stored as sent; two distinct events"
    );
    let period = Period::new(at("2026-11-03T00:00:00Z"), at("2026-11-04T00:00:00Z")).expect("p");
    let kpis = world
        .app
        .kpis(period, Granularity::Day, "")
        .await
        .expect("kpis");
    assert_eq!(
        kpis.totals[0].kpis.events, 2,
        "reports count each event id once"
    );
    // When ClickHouse merges the parts, ReplacingMergeTree keeps one row per event id.
    world
        .ch
        .client
        .query("OPTIMIZE TABLE analytics_events FINAL")
        .execute()
        .await
        .expect("merge");
    assert_eq!(world.stored().await, (2, 2));
}

#[tokio::test]
async fn bus_events_are_stored_once_and_acknowledged_after() {
    let world = World::new(at("2026-11-10T00:00:00Z")).await;
    let redis = TestRedis::new().await;
    let stream = stream_key(&redis.handle, "flashsale");
    let mut conn = redis.handle.conn.clone();
    let mut envelopes = Vec::new();
    for (order, user) in [("o1", "u1"), ("o2", "u2"), ("o3", "u1")] {
        envelopes.push(
            Envelope::new(
                "sg-1",
                "flashsale.purchased",
                1,
                &json!({"order_id": order, "user_id": user, "product_id": "p1",
                        "total": {"minor_units": 1500, "currency": "USD"}}),
            )
            .expect("envelope"),
        );
    }
    // The relay published o1 twice (a crash between XADD and marking it sent), and something
    // that is not an envelope at all.
    for e in envelopes.iter().chain(std::iter::once(&envelopes[0])) {
        let json = serde_json::to_string(e).expect("json");
        let _: String = conn
            .xadd(&stream, "*", &[("envelope", json.as_str())])
            .await
            .expect("xadd");
    }
    let _: String = conn
        .xadd(&stream, "*", &[("garbage", "1")])
        .await
        .expect("xadd");
    let options = ConsumerOptions::new("flashsale", SERVICE, "test-0", &Default::default());
    let reader = StreamReader::new(redis.handle.clone(), options)
        .await
        .expect("reader");
    let task = tokio::spawn(bus::ingest(
        reader,
        world.events.clone(),
        world.shutdown.clone(),
    ));
    eventually("bus events stored", || async {
        (world.stored().await.1 == 3).then_some(())
    })
    .await;
    eventually("stream acknowledged", || async {
        let pending: redis::Value = redis::cmd("XPENDING")
            .arg(&stream)
            .arg(SERVICE)
            .query_async(&mut redis.handle.conn.clone())
            .await
            .expect("xpending");
        match pending {
            redis::Value::Array(fields) => {
                (fields.first() == Some(&redis::Value::Int(0))).then_some(())
            }
            _ => None,
        }
    })
    .await;
    let dead: usize = conn
        .xlen(dead_letter_key(&redis.handle, "flashsale", SERVICE))
        .await
        .expect("xlen");
    assert_eq!(dead, 1, "the malformed message is dead-lettered, not lost");
    let revenue: Vec<(String, i64)> = world
        .ch
        .client
        .query("SELECT order_id, max(revenue) FROM analytics_events GROUP BY order_id ORDER BY order_id")
        .fetch_all()
        .await
        .expect("rows");
    assert_eq!(
        revenue,
        [
            ("o1".into(), 1500),
            ("o2".into(), 1500),
            ("o3".into(), 1500)
        ]
    );
    world.shutdown.cancel();
    task.await
        .expect("join")
        .expect("bus ingestion ends cleanly");
}

/// docs/analytics.md is the contract other services code against: its DDL must be the DDL the
/// migrations run (comments and spacing aside).
#[test]
fn the_documented_tables_are_the_migrated_ones() {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/analytics.md"
    ))
    .expect("read docs/analytics.md");
    let normalize = |sql: &str| -> String {
        sql.lines()
            .map(|line| line.split("--").next().unwrap_or_default())
            .collect::<Vec<_>>()
            .join(" ")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    let documented: Vec<String> = doc
        .split("```sql")
        .skip(1)
        .filter_map(|block| block.split("```").next())
        .map(normalize)
        .collect();
    let migrated: Vec<String> = titan_analytics::store::MIGRATIONS
        .iter()
        .map(|m| normalize(m.sql))
        .collect();
    assert_eq!(
        documented, migrated,
        "update docs/analytics.md with the migration"
    );
}
