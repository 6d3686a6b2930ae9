//! Earning from `flashsale.purchased` and `livestream.purchased` on the bus: delivered twice,
//! awarded once.

use std::time::Duration;

use titan_gamification::{config::Settings, metrics::Metrics, store::consumer::PurchaseHandler};
use titan_kit::{
    config::EventsConfig,
    events::{Consumer, ConsumerOptions, Envelope, stream_key},
    testing::eventually,
};
use tokio_util::sync::CancellationToken;

use crate::World;

async fn publish(w: &World, event: &Envelope) {
    publish_to(w, "flashsale", event).await;
}

async fn publish_to(w: &World, source: &str, event: &Envelope) {
    titan_kit::testing::publish(&w.redis, source, event).await;
}

fn purchased(order: &str, user: &str, minor: i64) -> Envelope {
    Envelope::new(
        "test",
        "flashsale.purchased",
        1,
        &serde_json::json!({
            "order_id": order, "sale_id": uuid::Uuid::new_v4(), "product_id": "sku-1",
            "user_id": user, "quantity": 2, "total": {"minor_units": minor, "currency": "USD"},
        }),
    )
    .expect("envelope")
}

#[tokio::test]
async fn an_event_delivered_twice_awards_once() {
    let w = World::new().await;
    let events = EventsConfig {
        claim_idle: Duration::from_secs(30),
        ..EventsConfig::default()
    };
    let consumer = Consumer::new(
        w.db.pool.clone(),
        w.redis.clone(),
        ConsumerOptions::new("flashsale", "gamification", "test-1", &events),
        PurchaseHandler::new(
            Settings::default(),
            Metrics::new(&prometheus::Registry::new()).expect("metrics"),
        ),
    )
    .await
    .expect("consumer");
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(consumer.run(shutdown.clone()));

    let first = purchased("order-1", "shopper-1", 4_999);
    publish(&w, &first).await;
    publish(&w, &first).await; // a relay duplicate: same event id
    publish(&w, &purchased("order-1", "shopper-1", 4_999)).await; // same order, new event id
    publish(&w, &purchased("order-2", "shopper-1", 1_050)).await;
    let other =
        Envelope::new("test", "flashsale.sale_ended", 1, &serde_json::json!({})).expect("e");
    publish(&w, &other).await;

    let handled = eventually("four events handled", || async {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM titan_processed_events WHERE consumer = 'gamification'",
        )
        .fetch_one(&w.db.pool)
        .await
        .ok()?;
        (n == 4).then_some(n)
    })
    .await;
    assert_eq!(handled, 4);
    // 49.99 → 49 points once, 10.50 → 10 points.
    assert_eq!(w.balance(1).await, 59);
    let account = w
        .app
        .account(&crate::shopper(1), "")
        .await
        .expect("account");
    assert_eq!(account.purchases, 2);
    // Handled is not enough: every one of the five messages (the duplicate and the event of
    // another type included) is acknowledged, none left pending for a redelivery.
    eventually("all five messages acknowledged", || async {
        let mut conn = w.redis.conn.clone();
        let pending: redis::streams::StreamPendingReply = redis::cmd("XPENDING")
            .arg(stream_key(&w.redis, "flashsale"))
            .arg("gamification")
            .query_async(&mut conn)
            .await
            .ok()?;
        (pending.count() == 0).then_some(())
    })
    .await;
    let mut conn = w.redis.conn.clone();
    let groups: Vec<std::collections::HashMap<String, redis::Value>> = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(stream_key(&w.redis, "flashsale"))
        .query_async(&mut conn)
        .await
        .expect("xinfo");
    let delivered = groups
        .iter()
        .find(|g| g.get("name") == Some(&redis::Value::BulkString(b"gamification".to_vec())))
        .and_then(|g| g.get("last-delivered-id"))
        .and_then(|v| redis::from_redis_value_ref::<String>(v).ok());
    let last: Vec<String> = redis::cmd("XREVRANGE")
        .arg(stream_key(&w.redis, "flashsale"))
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query_async::<redis::streams::StreamRangeReply>(&mut conn)
        .await
        .expect("last")
        .ids
        .into_iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(
        delivered.as_ref(),
        last.first(),
        "the group read to the end"
    );
    shutdown.cancel();
    running.await.expect("join").expect("consumer");
}

#[tokio::test]
async fn a_purchase_in_a_live_stream_earns_like_a_flash_sale_one() {
    let w = World::new().await;
    let consumer = Consumer::new(
        w.db.pool.clone(),
        w.redis.clone(),
        ConsumerOptions::new(
            "livestream",
            "gamification",
            "test-1",
            &EventsConfig::default(),
        ),
        PurchaseHandler::new(
            Settings::default(),
            Metrics::new(&prometheus::Registry::new()).expect("metrics"),
        ),
    )
    .await
    .expect("consumer");
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(consumer.run(shutdown.clone()));
    // The payload livestream writes (services/livestream/src/store/pg.rs).
    let event = Envelope::new(
        "test",
        "livestream.purchased",
        1,
        &serde_json::json!({
            "order_id": "live-order-1", "user_id": "shopper-1", "stream_id": uuid::Uuid::now_v7(),
            "seller_id": "sam", "product_id": "sku-1", "quantity": 1,
            "total": {"minor_units": 2_599, "currency": "USD"},
            "purchased_at": "2026-12-06T05:00:00Z",
        }),
    )
    .expect("envelope");
    publish_to(&w, "livestream", &event).await;
    publish_to(&w, "livestream", &event).await;
    eventually("25 points for 25.99", || async {
        (w.balance(1).await == 25).then_some(())
    })
    .await;
    let handled: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM titan_processed_events WHERE consumer = 'gamification'",
    )
    .fetch_one(&w.db.pool)
    .await
    .expect("count");
    assert_eq!(handled, 1);
    assert_eq!(w.balance(1).await, 25);
    shutdown.cancel();
    running.await.expect("join").expect("consumer");
}
