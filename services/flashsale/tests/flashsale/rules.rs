//! Every rule and refusal, one at a time.

use chrono::Duration;
use titan_flashsale::{
    app::FlashSaleError,
    domain::{Refusal, SaleId, SaleStatus, pow},
};
use titan_kit::{ErrorCode, ServiceError};

use crate::{World, admin, buyer, checkout, settings, uuid};

fn reason(e: &FlashSaleError) -> Option<&'static str> {
    e.reason()
}

#[tokio::test]
async fn a_purchase_reserves_confirms_and_records_an_order_with_its_event() {
    let w = World::new(settings()).await;
    let sale = w.live_sale(10, 5).await;
    let r = w
        .app
        .attempt(&buyer(1), "a-1", sale, 3, None)
        .await
        .expect("reserve");
    assert_eq!((r.quantity, r.remaining), (3, 7));
    assert_eq!(r.expires_at, w.clock.now() + Duration::seconds(300));

    let replay = w
        .app
        .attempt(&buyer(1), "a-1", sale, 3, None)
        .await
        .expect("replay");
    assert_eq!(
        (replay.id, replay.quantity),
        (r.id, 3),
        "a retried attempt returns the first reservation"
    );

    let order = w
        .app
        .confirm(
            &checkout(),
            "c-1",
            &buyer(1).user_id,
            &r.id.to_string(),
            "pay-1",
        )
        .await
        .expect("confirm");
    assert_eq!(
        (
            order.quantity,
            order.total.minor_units,
            order.unit_price.minor_units
        ),
        (3, 7_500, 2_500)
    );
    let again = w
        .app
        .confirm(
            &checkout(),
            "c-1",
            &buyer(1).user_id,
            &r.id.to_string(),
            "pay-1",
        )
        .await
        .expect("retried confirm");
    assert_eq!(again, order, "a retried confirm returns the same order");
    let other_request = w
        .app
        .confirm(
            &checkout(),
            "c-2",
            &buyer(1).user_id,
            &r.id.to_string(),
            "pay-1",
        )
        .await
        .expect("second confirm");
    assert_eq!(
        other_request.id, order.id,
        "one order per reservation, whatever the request id"
    );

    let orders: i64 = sqlx::query_scalar("SELECT count(*) FROM flashsale_orders")
        .fetch_one(&w.db.pool)
        .await
        .expect("count");
    assert_eq!(orders, 1);
    let events: Vec<String> =
        sqlx::query_scalar("SELECT event_type FROM titan_outbox WHERE service = 'flashsale'")
            .fetch_all(&w.db.pool)
            .await
            .expect("outbox");
    assert_eq!(events, ["flashsale.purchased"]);

    let stats = w.app.stats(sale).await.expect("stats");
    assert_eq!(
        (stats.attempts, stats.reservations, stats.confirmations),
        (1, 1, 1)
    );
    assert_eq!(
        (
            stats.level.available,
            stats.level.reserved,
            stats.level.sold
        ),
        (7, 0, 3)
    );
    w.assert_conserved(sale, 10).await;
}

#[tokio::test]
async fn refusals_carry_their_reason() {
    let w = World::new(settings()).await;
    let sale = w.live_sale(4, 3).await;

    let e = w
        .app
        .attempt(&buyer(1), &uuid(), sale, 4, None)
        .await
        .expect_err("over the limit");
    assert_eq!(reason(&e), Some("LIMIT_REACHED"));
    assert_eq!(
        e.to_string(),
        "the limit is 3 units per buyer and you already hold 0"
    );
    w.app
        .attempt(&buyer(1), &uuid(), sale, 3, None)
        .await
        .expect("three");
    let e = w
        .app
        .attempt(&buyer(2), &uuid(), sale, 2, None)
        .await
        .expect_err("one left");
    assert_eq!(
        (reason(&e), e.code()),
        (Some("NOT_ENOUGH_STOCK"), ErrorCode::FailedPrecondition)
    );
    w.app
        .attempt(&buyer(2), &uuid(), sale, 1, None)
        .await
        .expect("the last one");
    let e = w
        .app
        .attempt(&buyer(3), &uuid(), sale, 1, None)
        .await
        .expect_err("sold out");
    assert_eq!(reason(&e), Some("SOLD_OUT"));
    assert!(
        e.to_string().contains("4 units are held by reservations"),
        "{e}"
    );
    assert_eq!(
        w.app.get(sale).await.expect("get").status,
        SaleStatus::Active,
        "reservations may come back"
    );

    let later = w
        .app
        .create_sale(&admin(), &uuid(), {
            let mut s = w.spec(5, 5);
            s.starts_at = w.clock.now() + Duration::minutes(10);
            s
        })
        .await
        .expect("later sale");
    let e = w
        .app
        .attempt(&buyer(1), &uuid(), later.sale.id, 1, None)
        .await
        .expect_err("not warmed");
    assert_eq!(reason(&e), Some("NOT_STARTED"));
    w.app.warm_up(later.sale.id).await.expect("warm");
    let e = w
        .app
        .attempt(&buyer(1), &uuid(), later.sale.id, 1, None)
        .await
        .expect_err("not started");
    assert_eq!(reason(&e), Some("NOT_STARTED"));

    w.clock.advance(Duration::hours(2));
    let e = w
        .app
        .attempt(&buyer(1), &uuid(), sale, 1, None)
        .await
        .expect_err("ended");
    assert_eq!(reason(&e), Some("ENDED"));
}

#[tokio::test]
async fn bad_input_is_refused_and_changes_nothing() {
    let w = World::new(settings()).await;
    let sale = w.live_sale(5, 5).await;
    let before = w.app.stats(sale).await.expect("stats").level;

    let e = w
        .app
        .attempt(&buyer(1), &uuid(), sale, 0, None)
        .await
        .expect_err("zero");
    assert_eq!(e.code(), ErrorCode::InvalidArgument);
    let e = w
        .app
        .attempt(&buyer(1), "", sale, 1, None)
        .await
        .expect_err("no request id");
    assert_eq!(e.code(), ErrorCode::InvalidArgument);
    let e = w
        .app
        .attempt(&buyer(1), &uuid(), SaleId::new(), 1, None)
        .await
        .expect_err("unknown sale");
    assert_eq!(e.code(), ErrorCode::NotFound);

    let r = w
        .app
        .attempt(&buyer(1), &uuid(), sale, 2, None)
        .await
        .expect("reserve");
    let e = w
        .app
        .confirm(
            &checkout(),
            &uuid(),
            &buyer(2).user_id,
            &r.id.to_string(),
            "pay",
        )
        .await
        .expect_err("someone else's");
    assert_eq!(e.code(), ErrorCode::PermissionDenied);
    let e = w
        .app
        .cancel(&buyer(2), &uuid(), &r.id.to_string())
        .await
        .expect_err("someone else's");
    assert_eq!(e.code(), ErrorCode::PermissionDenied);
    let e = w
        .app
        .confirm(&checkout(), &uuid(), &buyer(1).user_id, "not-an-id", "pay")
        .await
        .expect_err("bad id");
    assert_eq!(e.code(), ErrorCode::InvalidArgument);
    let e = w
        .app
        .confirm(
            &checkout(),
            &uuid(),
            &buyer(1).user_id,
            &r.id.to_string(),
            "",
        )
        .await
        .expect_err("no payment");
    assert_eq!(e.code(), ErrorCode::InvalidArgument);
    let mut bad = w.spec(5, 5);
    bad.sale_minor = 20_000;
    let e = w
        .app
        .create_sale(&admin(), &uuid(), bad)
        .await
        .expect_err("not a discount");
    assert_eq!(e.code(), ErrorCode::InvalidArgument);

    let after = w.app.stats(sale).await.expect("stats").level;
    assert_eq!(
        (after.available, after.reserved),
        (before.available - 2, 2),
        "only the valid attempt moved stock"
    );
    let orders: i64 = sqlx::query_scalar("SELECT count(*) FROM flashsale_orders")
        .fetch_one(&w.db.pool)
        .await
        .expect("count");
    assert_eq!(orders, 0);
}

#[tokio::test]
async fn expired_and_cancelled_reservations_return_their_stock_once() {
    let w = World::new(settings()).await;
    let sale = w.live_sale(5, 5).await;
    let a = w
        .app
        .attempt(&buyer(1), &uuid(), sale, 2, None)
        .await
        .expect("a");
    let b = w
        .app
        .attempt(&buyer(2), &uuid(), sale, 3, None)
        .await
        .expect("b");

    w.app
        .cancel(&buyer(1), &uuid(), &a.id.to_string())
        .await
        .expect("cancel");
    w.app
        .cancel(&buyer(1), &uuid(), &a.id.to_string())
        .await
        .expect("cancel again is a no-op");
    assert_eq!(w.app.stats(sale).await.expect("stats").level.available, 2);

    w.clock.advance(Duration::seconds(301));
    let e = w
        .app
        .confirm(
            &checkout(),
            &uuid(),
            &buyer(2).user_id,
            &b.id.to_string(),
            "pay",
        )
        .await
        .expect_err("expired");
    assert_eq!(e.reason(), Some("RESERVATION_EXPIRED"));
    let (s1, s2) = tokio::join!(w.app.sweep(), w.app.sweep());
    assert_eq!(
        s1.expect("sweep") + s2.expect("sweep"),
        0,
        "the confirm attempt already returned it"
    );
    let stats = w.app.stats(sale).await.expect("stats");
    assert_eq!(
        (stats.level.available, stats.expiries, stats.cancellations),
        (5, 1, 1)
    );
    w.assert_conserved(sale, 5).await;
}

#[tokio::test]
async fn the_sweeper_returns_expired_stock_exactly_once_under_concurrency() {
    let w = World::new(settings()).await;
    let sale = w.live_sale(200, 5).await;
    for n in 0..100 {
        w.app
            .attempt(&buyer(n), &uuid(), sale, 2, None)
            .await
            .expect("reserve");
    }
    w.clock.advance(Duration::seconds(301));
    let sweeps = futures::future::join_all((0..8).map(|_| w.app.sweep())).await;
    let released: u32 = sweeps.into_iter().map(|r| r.expect("sweep")).sum();
    assert_eq!(released, 100);
    let stats = w.app.stats(sale).await.expect("stats");
    assert_eq!(
        (stats.level.available, stats.level.reserved, stats.expiries),
        (200, 0, 100)
    );
    w.assert_conserved(sale, 200).await;
}

#[tokio::test]
async fn proofs_of_work_are_issued_by_the_server_and_accepted_once() {
    let w = World::new(settings()).await;
    let mut spec = w.spec(10, 5);
    spec.pow_difficulty = 2;
    let sale = w
        .app
        .create_sale(&admin(), &uuid(), spec)
        .await
        .expect("create")
        .sale
        .id;
    w.app.warm_up(sale).await.expect("warm");

    let e = w
        .app
        .attempt(&buyer(1), &uuid(), sale, 1, None)
        .await
        .expect_err("no proof");
    assert_eq!(e.reason(), Some("BAD_PROOF"));
    let c = w.app.challenge(&buyer(1), sale).await.expect("challenge");
    assert_eq!(c.difficulty, 2);
    let nonce = pow::solve(&c.challenge, 2);
    let weak = (0..)
        .map(|i| format!("w{i}"))
        .find(|n| pow::strength(&c.challenge, n) < 2)
        .expect("a weak nonce");
    let e = w
        .app
        .attempt(&buyer(1), &uuid(), sale, 1, Some((&c.challenge, &weak)))
        .await
        .expect_err("weak nonce");
    assert_eq!(e.reason(), Some("BAD_PROOF"));
    let e = w
        .app
        .attempt(&buyer(2), &uuid(), sale, 1, Some((&c.challenge, &nonce)))
        .await
        .expect_err("not theirs");
    assert_eq!(e.reason(), Some("BAD_PROOF"));
    let c = w
        .app
        .challenge(&buyer(1), sale)
        .await
        .expect("a fresh challenge");
    let nonce = pow::solve(&c.challenge, 2);
    w.app
        .attempt(&buyer(1), &uuid(), sale, 1, Some((&c.challenge, &nonce)))
        .await
        .expect("valid proof");
    let e = w
        .app
        .attempt(&buyer(1), &uuid(), sale, 1, Some((&c.challenge, &nonce)))
        .await
        .expect_err("reused");
    assert_eq!(e.reason(), Some("BAD_PROOF"));
}

#[tokio::test]
async fn buyers_are_rate_limited_per_sale() {
    let w = World::new(titan_flashsale::config::Settings {
        rate_limit_burst: 3,
        rate_limit_interval_ms: 1000,
        ..settings()
    })
    .await;
    let sale = w.live_sale(100, 100).await;
    for _ in 0..3 {
        w.app
            .attempt(&buyer(1), &uuid(), sale, 1, None)
            .await
            .expect("within the burst");
    }
    let e = w
        .app
        .attempt(&buyer(1), &uuid(), sale, 1, None)
        .await
        .expect_err("limited");
    assert_eq!(
        (e.reason(), e.code()),
        (Some("RATE_LIMITED"), ErrorCode::ResourceExhausted)
    );
    assert!(
        matches!(e, FlashSaleError::Refused(Refusal::RateLimited { retry_after_ms }) if retry_after_ms <= 1000)
    );
    w.app
        .attempt(&buyer(2), &uuid(), sale, 1, None)
        .await
        .expect("another buyer is not limited");
    w.clock.advance(Duration::seconds(1));
    w.app
        .attempt(&buyer(1), &uuid(), sale, 1, None)
        .await
        .expect("one more after the interval");
}

#[tokio::test]
async fn admin_changes_follow_the_sale_lifecycle() {
    let w = World::new(settings()).await;
    let mut spec = w.spec(10, 5);
    spec.starts_at = w.clock.now() + Duration::minutes(5);
    let sale = w
        .app
        .create_sale(&admin(), "create-1", spec.clone())
        .await
        .expect("create");
    let replay = w
        .app
        .create_sale(&admin(), "create-1", spec.clone())
        .await
        .expect("replay");
    assert_eq!(
        replay.sale.id, sale.sale.id,
        "a retried create makes one sale"
    );
    assert_eq!(sale.sale.spec.discount_percent(), 75);

    w.app.warm_up(sale.sale.id).await.expect("warm");
    spec.total_quantity = 20;
    let updated = w
        .app
        .update_sale(&admin(), &uuid(), sale.sale.id, spec.clone())
        .await
        .expect("update before start");
    assert_eq!(
        updated.level.map(|l| l.available),
        Some(20),
        "re-warmed with the new total"
    );

    w.clock.advance(Duration::minutes(6));
    spec.total_quantity = 30;
    let e = w
        .app
        .update_sale(&admin(), &uuid(), sale.sale.id, spec)
        .await
        .expect_err("started");
    assert_eq!(e.reason(), Some("SALE_STARTED"));

    w.app
        .attempt(&buyer(1), &uuid(), sale.sale.id, 1, None)
        .await
        .expect("buy");
    let cancelled = w
        .app
        .set_state(
            &admin(),
            &uuid(),
            sale.sale.id,
            titan_flashsale::domain::AdminState::Cancelled,
        )
        .await
        .expect("cancel");
    assert_eq!(cancelled.status, SaleStatus::Cancelled);
    let e = w
        .app
        .attempt(&buyer(2), &uuid(), sale.sale.id, 1, None)
        .await
        .expect_err("cancelled");
    assert_eq!(e.reason(), Some("ENDED"));
    assert!(
        w.app
            .list()
            .await
            .expect("list")
            .iter()
            .all(|v| v.sale.id != sale.sale.id),
        "no longer listed"
    );
}

#[tokio::test]
async fn reconcile_reports_units_redis_sold_that_postgres_never_recorded() {
    use titan_flashsale::{app::StockStore, store::redis::RedisStock};

    let w = World::new(settings()).await;
    let sale = w.live_sale(10, 5).await;
    let r = w
        .app
        .attempt(&buyer(1), &uuid(), sale, 2, None)
        .await
        .expect("reserve");
    assert!(
        w.app.reconcile().await.expect("reconcile").is_empty(),
        "clean before"
    );

    // A confirm whose PostgreSQL write never happened (the process died in between).
    RedisStock::new(w.redis.clone())
        .confirm(r.id, "buyer-1", w.clock.now())
        .await
        .expect("confirm in redis only");
    let drifts = w.app.reconcile().await.expect("reconcile");
    assert_eq!(drifts.len(), 1);
    assert_eq!(
        (
            drifts[0].redis_sold,
            drifts[0].recorded_sold,
            drifts[0].unaccounted
        ),
        (Some(2), 0, 0)
    );
    assert_eq!(drifts[0].units(), 2);

    // The buyer's retry completes the record, and the drift is gone.
    w.app
        .confirm(
            &checkout(),
            &uuid(),
            &buyer(1).user_id,
            &r.id.to_string(),
            "pay",
        )
        .await
        .expect("retry");
    assert!(
        w.app.reconcile().await.expect("reconcile").is_empty(),
        "clean after the retry"
    );
}

#[tokio::test]
async fn sales_are_warmed_up_ahead_of_their_start() {
    let w = World::new(settings()).await;
    let mut soon = w.spec(10, 5);
    soon.starts_at = w.clock.now() + Duration::seconds(200);
    let mut later = w.spec(10, 5);
    later.starts_at = w.clock.now() + Duration::seconds(400);
    let soon = w
        .app
        .create_sale(&admin(), &uuid(), soon)
        .await
        .expect("soon")
        .sale
        .id;
    let later = w
        .app
        .create_sale(&admin(), &uuid(), later)
        .await
        .expect("later")
        .sale
        .id;

    assert_eq!(
        w.app.warm_due().await.expect("warm"),
        1,
        "only the sale inside the 300 s window"
    );
    assert!(w.app.get(soon).await.expect("soon").sale.warmed_up);
    assert!(!w.app.get(later).await.expect("later").sale.warmed_up);
    assert_eq!(
        w.app.warm_due().await.expect("again"),
        0,
        "warming is done once"
    );
    w.clock.advance(Duration::seconds(150));
    assert_eq!(w.app.warm_due().await.expect("later now"), 1);
}

#[tokio::test]
async fn every_key_of_a_sale_expires_after_it() {
    let w = World::new(settings()).await;
    let sale = w.live_sale(10, 5).await;
    let r = w
        .app
        .attempt(&buyer(1), &uuid(), sale, 2, None)
        .await
        .expect("reserve");
    w.app
        .confirm(
            &checkout(),
            &uuid(),
            &buyer(1).user_id,
            &r.id.to_string(),
            "pay",
        )
        .await
        .expect("confirm");
    w.app
        .attempt(&buyer(2), &uuid(), sale, 1, None)
        .await
        .expect("reserve");
    w.app.sweep().await.expect("sweep");
    let mut conn = w.redis.conn.clone();
    for name in ["meta", "stock", "buyers", "res", "expiry", "req", "stats"] {
        let key = w.redis.key(&format!("{{flashsale:{sale}}}:{name}"));
        let ttl: i64 = redis::cmd("TTL")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .expect("ttl");
        assert!(ttl > 0, "{name} has no expiry (TTL {ttl})");
    }
}

/// Money is decided by services: a buyer cannot confirm their own reservation (they would name
/// any payment reference); the payment system confirms it for them.
#[tokio::test]
async fn only_a_service_identity_confirms_a_purchase() {
    let w = World::new(settings()).await;
    let sale = w.live_sale(5, 5).await;
    let r = w
        .app
        .attempt(&buyer(1), &uuid(), sale, 2, None)
        .await
        .expect("reserve");
    let e = w
        .app
        .confirm(
            &buyer(1),
            &uuid(),
            &buyer(1).user_id,
            &r.id.to_string(),
            "pay",
        )
        .await
        .expect_err("a buyer confirming");
    assert_eq!(
        (e.code(), e.reason()),
        (ErrorCode::PermissionDenied, Some("SERVICE_ONLY"))
    );
    let level = w.app.stats(sale).await.expect("stats").level;
    assert_eq!(
        (level.reserved, level.sold),
        (2, 0),
        "the refused confirm did not touch the stock"
    );
    let order = w
        .app
        .confirm(
            &checkout(),
            &uuid(),
            &buyer(1).user_id,
            &r.id.to_string(),
            "pay",
        )
        .await
        .expect("the payment system confirms");
    assert_eq!((order.user_id.as_str(), order.quantity), ("buyer-1", 2));
}

/// Buyer `a` with request id `x|r` and buyer `a|x` with request id `r` once shared the replay
/// key `a|x|r`, so the second was answered the first one's reservation.
#[tokio::test]
async fn replay_keys_of_different_buyers_never_meet() {
    let w = World::new(settings()).await;
    let sale = w.live_sale(10, 5).await;
    let a = titan_kit::testing::caller("a", &[]);
    let ax = titan_kit::testing::caller("a|x", &[]);
    let first = w
        .app
        .attempt(&a, "x|r", sale, 1, None)
        .await
        .expect("buyer a");
    let second = w
        .app
        .attempt(&ax, "r", sale, 1, None)
        .await
        .expect("buyer a|x");
    assert_ne!(first.id, second.id, "two buyers, two reservations");
    let level = w.app.stats(sale).await.expect("stats").level;
    assert_eq!((level.available, level.reserved), (8, 2));
    // And each one's retry still replays its own reservation.
    let retried = w.app.attempt(&ax, "r", sale, 1, None).await.expect("retry");
    assert_eq!(retried.id, second.id);
}

/// A request id reused with another quantity is another request: `REQUEST_ID_REUSED`, and the
/// first reservation stays as it was.
#[tokio::test]
async fn a_request_id_reused_with_another_quantity_is_refused() {
    let w = World::new(settings()).await;
    let sale = w.live_sale(10, 5).await;
    let first = w
        .app
        .attempt(&buyer(1), "a-1", sale, 1, None)
        .await
        .expect("reserve");
    let e = w
        .app
        .attempt(&buyer(1), "a-1", sale, 3, None)
        .await
        .expect_err("another quantity under the same id");
    assert_eq!(
        (e.code(), e.reason()),
        (ErrorCode::FailedPrecondition, Some("REQUEST_ID_REUSED"))
    );
    let level = w.app.stats(sale).await.expect("stats").level;
    assert_eq!((level.available, level.reserved), (9, 1));
    let same = w
        .app
        .attempt(&buyer(1), "a-1", sale, 1, None)
        .await
        .expect("the true retry");
    assert_eq!(same.id, first.id);
}

/// `GetChallenge` writes to Redis on every call, so it shares the buyer's attempt budget: a
/// burst, then `RATE_LIMITED`; other buyers are not affected.
#[tokio::test]
async fn challenges_are_rate_limited_per_buyer() {
    let w = World::new(titan_flashsale::config::Settings {
        rate_limit_burst: 2,
        rate_limit_interval_ms: 3_600_000,
        ..settings()
    })
    .await;
    let mut spec = w.spec(10, 5);
    spec.pow_difficulty = 1;
    let sale = w
        .app
        .create_sale(&admin(), &uuid(), spec)
        .await
        .expect("create")
        .sale
        .id;
    for _ in 0..2 {
        w.app
            .challenge(&buyer(1), sale)
            .await
            .expect("within the burst");
    }
    let e = w
        .app
        .challenge(&buyer(1), sale)
        .await
        .expect_err("over the budget");
    assert_eq!(
        (e.code(), e.reason()),
        (ErrorCode::ResourceExhausted, Some("RATE_LIMITED"))
    );
    w.app
        .challenge(&buyer(2), sale)
        .await
        .expect("another buyer has a budget of their own");
}
