//! In-stream purchases: services only, validated before any I/O, recorded once per order
//! with its `livestream.purchased` outbox row, refused before the stream started.

use serde_json::Value;
use titan_kit::{ServiceError, testing::caller};
use titan_livestream::app::PurchaseInput;

use crate::{World, viewer};

fn input<'a>(stream: &'a str, order: &'a str, amount: i64) -> PurchaseInput<'a> {
    PurchaseInput {
        stream_id: stream,
        order_id: order,
        buyer_id: "ann",
        product_id: "p1",
        quantity: 2,
        amount_minor: amount,
        currency: "USD",
    }
}

#[tokio::test]
async fn purchases_are_recorded_once_with_their_event() {
    let w = World::new().await;
    let checkout = caller("checkout", &["service"]);
    let (scheduled, _) = w.scheduled("sam").await;
    let sid = scheduled.id.to_string();
    let e = w
        .app
        .record_purchase(&checkout, input(&sid, "o0", 100))
        .await
        .expect_err("refused");
    assert_eq!(e.reason(), Some("WRONG_STATUS"));

    let s = w.live("sam").await;
    let id = s.id.to_string();
    let e = w
        .app
        .record_purchase(&viewer("ann"), input(&id, "o1", 2500))
        .await
        .expect_err("refused");
    assert_eq!(e.reason(), Some("SERVICE_ONLY"));
    for (bad, message) in [
        (
            PurchaseInput {
                quantity: 0,
                ..input(&id, "o1", 2500)
            },
            "quantity: 0 is not between 1 and 10000",
        ),
        (
            input(&id, "o1", 0),
            "amount_minor: 0 is not between 1 and 1000000000000",
        ),
        (
            PurchaseInput {
                currency: "usd",
                ..input(&id, "o1", 2500)
            },
            "currency",
        ),
        (input(&id, "", 2500), "order_id: is required"),
    ] {
        let e = w
            .app
            .record_purchase(&checkout, bad)
            .await
            .expect_err("refused");
        assert!(e.to_string().starts_with(message), "{e}");
        assert_eq!(e.reason(), Some("INVALID_ARGUMENT"));
    }
    assert_eq!(w.count("livestream_purchases").await, 0);

    assert!(
        w.app
            .record_purchase(&checkout, input(&id, "o1", 2500))
            .await
            .expect("ok")
    );
    assert!(
        !w.app
            .record_purchase(&checkout, input(&id, "o1", 2500))
            .await
            .expect("ok")
    );
    let e = w
        .app
        .record_purchase(&checkout, input(&id, "o1", 2600))
        .await
        .expect_err("refused");
    assert_eq!(e.reason(), Some("ORDER_CONFLICT"));
    assert_eq!(w.count("livestream_purchases").await, 1);

    let events: Vec<(String, Value)> = sqlx::query_as(
        "SELECT envelope->>'type', envelope->'payload' FROM titan_outbox WHERE service = 'livestream'",
    )
    .fetch_all(&w.db.pool)
    .await
    .expect("outbox");
    assert_eq!(events.len(), 1);
    let (kind, payload) = &events[0];
    assert_eq!(kind, "livestream.purchased");
    assert_eq!(payload["order_id"], "o1");
    assert_eq!(payload["user_id"], "ann");
    assert_eq!(payload["stream_id"], id);
    assert_eq!(payload["seller_id"], "sam");
    assert_eq!(payload["quantity"], 2);
    assert_eq!(
        payload["total"],
        serde_json::json!({"minor_units": 2500, "currency": "USD"})
    );

    // Once ENDED, late confirmations of checkout are still recorded.
    w.app.on_publish_done(&id).await.expect("ok");
    assert!(
        w.app
            .record_purchase(&checkout, input(&id, "o2", 900))
            .await
            .expect("ok")
    );
}
