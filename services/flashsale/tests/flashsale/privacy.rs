//! A person's export and erasure (`titan_kit::privacy`) on the real stores: the export holds
//! exactly the person's records; the erasure gives a held reservation back, deletes what only
//! served them, keeps paid orders under the pseudonym, leaves no trace of their id in any table
//! or key, leaves another buyer and the money as they were, and is idempotent.

use chrono::Duration;
use serde_json::{Value, json};
use sqlx::PgPool;
use titan_flashsale::{
    config::Settings,
    domain::SaleId,
    privacy::Privacy,
    store::{pg::PgSales, redis::RedisStock},
};
use titan_kit::{
    auth::Caller,
    privacy::{Erasure, PersonalData, Subject},
    testing::{TestRedis, caller, mentions, privacy::subject},
};

use crate::{World, admin, checkout, uuid};

/// A budget that holds its key for minutes: the attempt budgets are still there to erase
/// however slowly the test runs, and no attempt here is refused.
fn settings() -> Settings {
    Settings {
        rate_limit_burst: 1_000,
        rate_limit_interval_ms: 60_000,
        ..Settings::default()
    }
}

async fn export(handler: &Privacy, subject: &Subject) -> Value {
    handler.export(subject).await.expect("export")
}

async fn money(pool: &PgPool) -> (i64, i64) {
    sqlx::query_as("SELECT count(*), COALESCE(sum(total_minor), 0)::BIGINT FROM flashsale_orders")
        .fetch_one(pool)
        .await
        .expect("money")
}

/// A buyer's reservation made and paid for: the reservation's id, the order's, the attempt's
/// request id.
async fn bought(
    w: &World,
    buyer: &Caller,
    sale: SaleId,
    quantity: u32,
) -> (String, String, String) {
    let request = uuid();
    let r = w
        .app
        .attempt(buyer, &request, sale, quantity, None)
        .await
        .expect("reserve");
    let order = w
        .app
        .confirm(
            &checkout(),
            &uuid(),
            &buyer.user_id,
            &r.id.to_string(),
            &format!("pay-{}", uuid()),
        )
        .await
        .expect("confirm");
    (r.id.to_string(), order.id.to_string(), request)
}

/// What a second erasure reports.
fn nothing() -> Erasure {
    Erasure::default()
        .pseudonymised("orders", 0)
        .pseudonymised("paid reservations", 0)
        .removed("reservations", 0)
        .removed("attempt replays", 0)
        .removed("unit counts", 0)
        .removed("attempt budgets", 0)
        .removed("challenges", 0)
}

/// Asserts that no table of the service and no key under the world's prefix names `user`.
async fn nowhere(w: &World, user: &str) {
    assert_eq!(
        mentions::postgres_in(&w.db.pool, "flashsale_", user).await,
        vec![]
    );
    assert_eq!(mentions::redis(&w.redis, user).await, Vec::<String>::new());
}

/// Both tests' cast: the handler on the world's stores, buyers A and B, a live sale and a
/// proof-of-work sale.
struct Scene {
    handler: Privacy,
    a: Caller,
    b: Caller,
    sale: SaleId,
    pow: SaleId,
}

async fn scene(w: &World) -> Scene {
    let handler = Privacy::new(
        PgSales::new(w.db.pool.clone()),
        RedisStock::new(w.redis.clone()),
    );
    let a = caller(&format!("buyer-{}", uuid()), &[]);
    let b = caller(&format!("buyer-{}", uuid()), &[]);
    let sale = w.live_sale(10, 5).await;
    let mut pow = w.spec(10, 5);
    pow.pow_difficulty = 1;
    let pow = w
        .app
        .create_sale(&admin(), &uuid(), pow)
        .await
        .expect("pow sale")
        .sale
        .id;
    Scene {
        handler,
        a,
        b,
        sale,
        pow,
    }
}

#[tokio::test]
async fn a_buyer_is_exported_then_erased_and_nobody_else_is_touched() {
    let w = World::new(settings()).await;
    let Scene {
        handler,
        a,
        b,
        sale,
        pow,
    } = scene(&w).await;

    // A: one hold that expires, one paid purchase of 2, one cancelled, one still held; a
    // watch stream and a challenge of the proof-of-work sale. B: one purchase, one hold, a
    // challenge.
    let expired_request = uuid();
    let expired = w
        .app
        .attempt(&a, &expired_request, sale, 1, None)
        .await
        .expect("reserve");
    w.clock.advance(Duration::seconds(301));
    assert_eq!(w.app.sweep().await.expect("sweep"), 1);
    let (paid, a_order, paid_request) = bought(&w, &a, sale, 2).await;
    let cancelled_request = uuid();
    let cancelled = w
        .app
        .attempt(&a, &cancelled_request, sale, 1, None)
        .await
        .expect("reserve");
    w.app
        .cancel(&a, &uuid(), &cancelled.id.to_string())
        .await
        .expect("cancel");
    let held_request = uuid();
    let held = w
        .app
        .attempt(&a, &held_request, sale, 1, None)
        .await
        .expect("reserve");
    w.app.watch(&a, sale).await.expect("watch");
    w.app.challenge(&a, pow).await.expect("challenge");
    let (_, b_order, _) = bought(&w, &b, sale, 1).await;
    w.app
        .attempt(&b, &uuid(), sale, 1, None)
        .await
        .expect("reserve");
    w.app.challenge(&b, pow).await.expect("challenge");

    let level = w.app.stats(sale).await.expect("stats").level;
    assert_eq!((level.available, level.reserved, level.sold), (5, 2, 3));
    let money_before = money(&w.db.pool).await;
    let subject_a = subject(&a.user_id);
    let subject_b = subject(&b.user_id);
    let b_before = export(&handler, &subject_b).await;

    // The export: exactly A's records.
    let doc = export(&handler, &subject_a).await;
    let s = sale.to_string();
    assert_eq!(
        doc["orders"].as_array().map(|o| o
            .iter()
            .map(|o| (
                o["id"].clone(),
                o["reservation_id"].clone(),
                o["quantity"].clone(),
                o["total"]["minor_units"].clone()
            ))
            .collect::<Vec<_>>()),
        Some(vec![(json!(a_order), json!(paid), json!(2), json!(5_000))])
    );
    let mut reservations: Vec<(String, String, u64, Option<String>)> = doc["reservations"][&s]
        .as_array()
        .expect("reservations of the sale")
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap_or_default().to_owned(),
                r["status"].as_str().unwrap_or_default().to_owned(),
                r["quantity"].as_u64().unwrap_or_default(),
                r["request_id"].as_str().map(str::to_owned),
            )
        })
        .collect();
    reservations.sort();
    let mut expected = vec![
        (
            expired.id.to_string(),
            "expired".to_owned(),
            1,
            Some(expired_request),
        ),
        (paid.clone(), "confirmed".to_owned(), 2, Some(paid_request)),
        (
            cancelled.id.to_string(),
            "cancelled".to_owned(),
            1,
            Some(cancelled_request),
        ),
        (
            held.id.to_string(),
            "reserved".to_owned(),
            1,
            Some(held_request),
        ),
    ];
    expected.sort();
    assert_eq!(reservations, expected);
    assert_eq!(doc["reservations"].as_object().map(|m| m.len()), Some(1));
    assert_eq!(doc["units_held"], json!({ s.clone(): 3 }));
    assert_eq!(doc["attempt_budgets"], json!([s.clone()]));
    assert_eq!(
        doc["budgets"],
        json!(["flashsale:challenge", "flashsale:watch"])
    );
    assert_eq!(doc["challenges"], json!([pow.to_string()]));
    let text = doc.to_string();
    assert!(
        !text.contains(&b.user_id) && !text.contains(&b_order),
        "nothing of B: {text}"
    );

    // The searches that must come back empty find A before the erasure.
    assert_eq!(
        mentions::postgres_in(&w.db.pool, "flashsale_", &a.user_id).await,
        [("flashsale_orders".to_owned(), 1)]
    );
    assert!(!mentions::redis(&w.redis, &a.user_id).await.is_empty());

    // The erasure.
    let erasure = handler.erase(&subject_a).await.expect("erase");
    let expected = Erasure::default()
        .pseudonymised("orders", 1)
        .pseudonymised("paid reservations", 1)
        .removed("reservations", 3)
        .removed("attempt replays", 4)
        .removed("unit counts", 1)
        .removed("attempt budgets", 3)
        .removed("challenges", 1);
    assert_eq!(erasure, expected);

    nowhere(&w, &a.user_id).await;
    // The held unit went back on sale as a cancel gives it back; the paid ones stay sold.
    let stats = w.app.stats(sale).await.expect("stats");
    assert_eq!(
        (
            stats.level.available,
            stats.level.reserved,
            stats.level.sold
        ),
        (6, 1, 3)
    );
    assert_eq!(stats.cancellations, 2);
    w.assert_conserved(sale, 10).await;
    // A warm-up recounts the same: the pseudonym holds the paid units.
    w.app.warm_up(sale).await.expect("warm again");
    let level = w.app.stats(sale).await.expect("stats").level;
    assert_eq!((level.available, level.reserved, level.sold), (6, 1, 3));
    let mut conn = w.redis.conn.clone();
    let units: Option<i64> = redis::cmd("HGET")
        .arg(
            w.redis
                .key(&titan_flashsale::store::redis::key_name(sale, "buyers")),
        )
        .arg(&subject_a.pseudonym)
        .query_async(&mut conn)
        .await
        .expect("units");
    assert_eq!(units, Some(2));

    // The money is as it was, A's order now under the pseudonym.
    assert_eq!(money(&w.db.pool).await, money_before);
    let kept: (String, i64) =
        sqlx::query_as("SELECT id::text, total_minor FROM flashsale_orders WHERE user_id = $1")
            .bind(&subject_a.pseudonym)
            .fetch_one(&w.db.pool)
            .await
            .expect("kept order");
    assert_eq!(kept, (a_order, 5_000));
    assert_eq!(
        export(&handler, &subject_b).await,
        b_before,
        "B is untouched"
    );
    assert_eq!(
        export(&handler, &subject_a).await,
        json!({"orders": [], "reservations": {}, "units_held": {}, "attempt_budgets": [], "budgets": [], "challenges": []})
    );

    // Again: nothing left to do.
    let again = handler.erase(&subject_a).await.expect("erase again");
    assert_eq!(again, nothing());
    assert_eq!(money(&w.db.pool).await, money_before);
    assert_eq!(export(&handler, &subject_b).await, b_before);
}

/// The same erasure on a Redis Cluster: a sale's keys are found on the master of its slot,
/// and the challenges on whichever master holds them.
#[tokio::test]
async fn a_buyer_is_erased_from_a_redis_cluster() {
    let w = World::with_redis(settings(), TestRedis::cluster().await.handle).await;
    let Scene {
        handler,
        a,
        b,
        sale,
        pow,
    } = scene(&w).await;
    let (_, a_order, _) = bought(&w, &a, sale, 2).await;
    w.app
        .attempt(&a, &uuid(), sale, 1, None)
        .await
        .expect("reserve");
    w.app.watch(&a, sale).await.expect("watch");
    w.app.challenge(&a, pow).await.expect("challenge");
    bought(&w, &b, sale, 1).await;
    w.app.challenge(&b, pow).await.expect("challenge");
    let subject_a = subject(&a.user_id);
    let subject_b = subject(&b.user_id);
    let b_before = export(&handler, &subject_b).await;
    let doc = export(&handler, &subject_a).await;
    assert_eq!(doc["challenges"], json!([pow.to_string()]));
    assert_eq!(doc["orders"][0]["id"], json!(a_order));

    assert_eq!(
        handler.erase(&subject_a).await.expect("erase"),
        Erasure::default()
            .pseudonymised("orders", 1)
            .pseudonymised("paid reservations", 1)
            .removed("reservations", 1)
            .removed("attempt replays", 2)
            .removed("unit counts", 1)
            .removed("attempt budgets", 3)
            .removed("challenges", 1)
    );
    nowhere(&w, &a.user_id).await;
    let level = w.app.stats(sale).await.expect("stats").level;
    assert_eq!((level.available, level.reserved, level.sold), (7, 0, 3));
    w.assert_conserved(sale, 10).await;
    assert_eq!(
        export(&handler, &subject_b).await,
        b_before,
        "B is untouched"
    );
    assert_eq!(
        handler.erase(&subject_a).await.expect("erase again"),
        nothing()
    );
}
