//! A stream's analytics: heartbeats emit one `livestream.watched` per viewer and minute since
//! the start (whichever replica takes them), and `GetStreamAnalytics` reads them back with the
//! purchases from ClickHouse. The rows are the service's own outbox events passed through
//! analytics' ingestion mapping (`Event::from_envelope`, `EventRow`), each inserted twice as a
//! redelivery would, next to another stream's; the expected figures are worked out below.

use chrono::Duration;
use titan_analytics::{domain::Event, store::EventRow};
use titan_kit::{ServiceError, events::Envelope, testing::caller};
use titan_livestream::{
    app::PurchaseInput,
    domain::analytics::{RetentionPoint, StreamAnalytics},
};

use crate::{World, seller, viewer};

/// The service's outbox events of these types, oldest first.
async fn outbox(w: &World, types: &[&str]) -> Vec<Envelope> {
    let rows: Vec<serde_json::Value> = sqlx::query_scalar(
        "SELECT envelope FROM titan_outbox WHERE service = 'livestream' AND event_type = ANY($1)
          ORDER BY seq",
    )
    .bind(types)
    .fetch_all(&w.db.pool)
    .await
    .expect("outbox");
    rows.into_iter()
        .map(|v| serde_json::from_value(v).expect("an envelope"))
        .collect()
}

/// `(user_id, minute)` of the stream's `livestream.watched` events.
fn watched(events: &[Envelope], stream: &str) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = events
        .iter()
        .filter(|e| e.kind == "livestream.watched" && e.payload["stream_id"] == stream)
        .map(|e| {
            (
                e.payload["user_id"].as_str().expect("user").to_owned(),
                e.payload["minute"].as_u64().expect("minute"),
            )
        })
        .collect();
    out.sort();
    out
}

/// Inserts the events into `analytics_events` as analytics' bus ingestion writes them.
async fn ingest(w: &World, events: &[Envelope]) {
    let mut insert =
        w.ch.client
            .insert::<EventRow>("analytics_events")
            .await
            .expect("insert");
    for e in events {
        let row = EventRow::new(Event::from_envelope(e), w.clock.now());
        insert.write(&row).await.expect("write");
    }
    insert.end().await.expect("end");
}

async fn buy(w: &World, stream: &str, order: &str, buyer: &str, minor: i64, currency: &str) {
    let recorded = w
        .app
        .record_purchase(
            &caller("checkout", &["service"]),
            PurchaseInput {
                stream_id: stream,
                order_id: order,
                buyer_id: buyer,
                product_id: "sku-1",
                quantity: 1,
                amount_minor: minor,
                currency,
            },
        )
        .await
        .expect("purchase");
    assert!(recorded);
}

#[tokio::test]
async fn heartbeats_and_purchases_make_the_streams_analytics() {
    let w = World::new().await;
    let other_replica = w.replica();
    let s = w.live("sam").await;
    let id = s.id.to_string();
    let beat = |who: &'static str| {
        let app = w.app.clone();
        let id = id.clone();
        async move { app.heartbeat(&viewer(who), &id).await.expect("heartbeat") }
    };

    // Minute 0 (t0): ann, bob, cy; ann again at t0+20 s: no second event for minute 0.
    for who in ["ann", "bob", "cy"] {
        beat(who).await;
    }
    w.clock.advance(Duration::seconds(20));
    beat("ann").await;
    // Minute 1 (t0+60 s): ann, bob; bob again on another replica at t0+65 s: no event.
    w.clock.advance(Duration::seconds(40));
    beat("ann").await;
    beat("bob").await;
    w.clock.advance(Duration::seconds(5));
    other_replica
        .app
        .heartbeat(&viewer("bob"), &id)
        .await
        .expect("heartbeat");
    // Minutes 2 and 3 (t0+125 s, t0+185 s): ann alone. Minute 4 (t0+250 s): bob is back.
    w.clock.advance(Duration::seconds(60));
    beat("ann").await;
    w.clock.advance(Duration::seconds(60));
    beat("ann").await;
    w.clock.advance(Duration::seconds(65));
    beat("bob").await;

    // ann and bob buy (USD and EUR), dee buys without having watched.
    buy(&w, &id, "o-1", "ann", 2599, "USD").await;
    buy(&w, &id, "o-2", "dee", 1000, "USD").await;
    buy(&w, &id, "o-3", "bob", 500, "EUR").await;

    // Another stream of the same seller: ann watches it and buys; none of it counts for s.
    let t = w.live("sam").await;
    w.app
        .heartbeat(&viewer("ann"), &t.id.to_string())
        .await
        .expect("heartbeat");
    buy(&w, &t.id.to_string(), "o-9", "ann", 9999, "USD").await;

    let events = outbox(&w, &["livestream.watched", "livestream.purchased"]).await;
    let minutes = |pairs: &[(&str, u64)]| -> Vec<(String, u64)> {
        pairs.iter().map(|(u, m)| ((*u).to_owned(), *m)).collect()
    };
    assert_eq!(
        watched(&events, &id),
        minutes(&[
            ("ann", 0),
            ("ann", 1),
            ("ann", 2),
            ("ann", 3),
            ("bob", 0),
            ("bob", 1),
            ("bob", 4),
            ("cy", 0),
        ])
    );
    assert_eq!(watched(&events, &t.id.to_string()), minutes(&[("ann", 0)]));
    // Every event delivered twice, as a redelivery after a lost acknowledgement would.
    ingest(&w, &events).await;
    ingest(&w, &events).await;

    let (stream, a) = w
        .app
        .analytics(&seller("sam"), &id)
        .await
        .expect("analytics");
    assert_eq!(stream.id, s.id);
    let point = |minute, viewers: u64| RetentionPoint {
        minute,
        viewers,
        share: viewers as f64 / 3.0,
    };
    assert_eq!(
        a,
        StreamAnalytics {
            // ann 0-3 one run; bob 0-1 and 4, two; cy 0, one.
            views: 4,
            unique_viewers: 3,
            // 4 (ann) + 3 (bob) + 1 (cy).
            watch_minutes: 8,
            // minute 0: ann, bob, cy.
            peak_viewers: 3,
            retention: vec![
                point(0, 3),
                point(1, 2),
                point(2, 1),
                point(3, 1),
                point(4, 1),
            ],
            // o-1, o-2, o-3 (o-9 is the other stream's).
            orders: 3,
            purchasers: 3,
            // ann and bob watched, dee did not: 2 of 3 viewers bought.
            converted_viewers: 2,
            conversion: 2.0 / 3.0,
            revenue: vec![("EUR".into(), 500), ("USD".into(), 2599 + 1000)],
        }
    );

    // Analysts and admins read any stream; the same figures.
    for reader in [caller("ida", &["analyst"]), caller("root", &["admin"])] {
        let (_, b) = w.app.analytics(&reader, &id).await.expect("analytics");
        assert_eq!(b, a);
    }
}

#[tokio::test]
async fn analytics_are_for_the_seller_analysts_and_admins() {
    let w = World::new().await;
    let s = w.live("sam").await;
    let id = s.id.to_string();
    for who in [viewer("ann"), seller("sue")] {
        let e = w.app.analytics(&who, &id).await.expect_err("refused");
        assert_eq!(e.reason(), Some("NOT_AN_ANALYST"));
        assert_eq!(e.code(), titan_kit::ErrorCode::PermissionDenied);
    }
    let e = w
        .app
        .analytics(&seller("sam"), "not-a-uuid")
        .await
        .expect_err("refused");
    assert_eq!(e.reason(), Some("INVALID_ARGUMENT"));
    assert!(e.to_string().contains("stream_id"), "{e}");

    // Nothing in ClickHouse yet, and a stream that never started: zeros.
    let (_, a) = w.app.analytics(&seller("sam"), &id).await.expect("ok");
    assert_eq!(a, StreamAnalytics::default());
    let (scheduled, _) = w.scheduled("sam").await;
    let (_, a) = w
        .app
        .analytics(&seller("sam"), &scheduled.id.to_string())
        .await
        .expect("ok");
    assert_eq!(a, StreamAnalytics::default());
}
