//! Stock that heals from PostgreSQL: a re-warm rebuilds Redis from the recorded orders and the
//! reservations Redis still holds, reconcile repairs instead of only reporting, a paid
//! reservation never expires back into stock, and admin changes reach Redis on a retry.

use chrono::Duration;
use titan_flashsale::{
    app::{FlashSaleError, SaleStore},
    domain::{AdminState, SaleId},
    store::pg::PgSales,
};
use titan_kit::{ErrorCode, ServiceError, idempotency};

use crate::{World, admin, buyer, checkout, settings, uuid};

/// Deletes every key of a sale, as a Redis that lost its data (or an operator's FLUSHALL).
async fn lose_keys(w: &World, sale: SaleId) {
    let mut conn = w.redis.conn.clone();
    for name in ["meta", "stock", "buyers", "res", "expiry", "req", "stats"] {
        let _: i64 = redis::cmd("DEL")
            .arg(w.redis.key(&format!("{{flashsale:{sale}}}:{name}")))
            .query_async(&mut conn)
            .await
            .expect("del");
    }
}

/// Puts a confirmed reservation back to RESERVED with its counters, as Redis is after losing
/// the last second of writes (`appendfsync everysec`) that held the confirm.
async fn forget_confirm(w: &World, sale: SaleId, reservation: &str) {
    let mut conn = w.redis.conn.clone();
    let key = |name: &str| w.redis.key(&format!("{{flashsale:{sale}}}:{name}"));
    let r: String = redis::cmd("HGET")
        .arg(key("res"))
        .arg(reservation)
        .query_async(&mut conn)
        .await
        .expect("res");
    let parts: Vec<&str> = r.rsplitn(4, '|').collect();
    let (status, expires, qty, user) = (parts[0], parts[1], parts[2], parts[3]);
    assert_eq!(status, "C");
    let q: i64 = qty.parse().expect("qty");
    let () = redis::pipe()
        .cmd("HSET")
        .arg(key("res"))
        .arg(reservation)
        .arg(format!("{user}|{qty}|{expires}|R"))
        .ignore()
        .cmd("ZADD")
        .arg(key("expiry"))
        .arg(expires)
        .arg(reservation)
        .ignore()
        .cmd("HINCRBY")
        .arg(key("stats"))
        .arg("units_reserved")
        .arg(q)
        .ignore()
        .cmd("HINCRBY")
        .arg(key("stats"))
        .arg("units_sold")
        .arg(-q)
        .ignore()
        .query_async(&mut conn)
        .await
        .expect("forget");
}

/// Redis lost every key of a live sale: reconcile finds it, re-warms from PostgreSQL (10 − 3
/// sold; the lost reservation's units are free again) and restores each buyer's holding, so
/// buying out the rest sells exactly the total.
#[tokio::test]
async fn a_sale_whose_keys_were_lost_is_rebuilt_from_postgres() {
    let w = World::new(settings()).await;
    let sale = w.live_sale(10, 5).await;
    let paid = w
        .app
        .attempt(&buyer(1), &uuid(), sale, 3, None)
        .await
        .expect("reserve");
    w.app
        .confirm(&checkout(), &uuid(), "buyer-1", &paid.id.to_string(), "pay")
        .await
        .expect("confirm");
    w.app
        .attempt(&buyer(2), &uuid(), sale, 2, None)
        .await
        .expect("a reservation Redis is about to lose");

    lose_keys(&w, sale).await;
    let drifts = w.app.reconcile().await.expect("reconcile");
    assert_eq!(
        drifts
            .iter()
            .map(|d| (d.sale, d.redis_sold, d.recorded_sold))
            .collect::<Vec<_>>(),
        [(sale, None, 3)],
        "reported"
    );
    let level = w.app.stats(sale).await.expect("stats").level;
    assert_eq!((level.available, level.reserved, level.sold), (7, 0, 3));
    assert!(
        w.app.reconcile().await.expect("again").is_empty(),
        "and repaired"
    );

    // buyer-1 still holds 3 of their 5.
    let e = w
        .app
        .attempt(&buyer(1), &uuid(), sale, 3, None)
        .await
        .expect_err("over the per-user limit");
    assert_eq!(e.reason(), Some("LIMIT_REACHED"));
    let mut bought = 0;
    for n in 10..20 {
        if w.app
            .attempt(&buyer(n), &uuid(), sale, 1, None)
            .await
            .is_ok()
        {
            bought += 1;
        }
    }
    assert_eq!(bought, 7, "exactly the units not sold");
    w.assert_conserved(sale, 10).await;
}

/// A confirm recorded in PostgreSQL whose Redis write was lost: the reservation looks held
/// again, but when it expires the sweeper finds its order and confirms it instead of selling
/// its units a second time.
#[tokio::test]
async fn a_paid_reservation_never_expires_back_into_stock() {
    let w = World::new(settings()).await;
    let sale = w.live_sale(5, 5).await;
    let r = w
        .app
        .attempt(&buyer(1), &uuid(), sale, 2, None)
        .await
        .expect("reserve");
    w.app
        .confirm(&checkout(), &uuid(), "buyer-1", &r.id.to_string(), "pay")
        .await
        .expect("confirm");
    forget_confirm(&w, sale, &r.id.to_string()).await;

    w.clock.advance(Duration::seconds(301));
    assert_eq!(w.app.sweep().await.expect("sweep"), 0, "nothing released");
    let level = w.app.stats(sale).await.expect("stats").level;
    assert_eq!((level.available, level.reserved, level.sold), (3, 0, 2));
    w.assert_conserved(sale, 5).await;
}

/// The same loss, found by a retried confirm with another request id after the hold expired:
/// it answers the recorded order and confirms the reservation again instead of finding it
/// expired and putting its units back on sale.
#[tokio::test]
async fn a_confirm_of_a_recorded_order_repairs_redis() {
    let w = World::new(settings()).await;
    let sale = w.live_sale(5, 5).await;
    let r = w
        .app
        .attempt(&buyer(1), &uuid(), sale, 2, None)
        .await
        .expect("reserve");
    let order = w
        .app
        .confirm(&checkout(), &uuid(), "buyer-1", &r.id.to_string(), "pay")
        .await
        .expect("confirm");
    forget_confirm(&w, sale, &r.id.to_string()).await;
    w.clock.advance(Duration::seconds(301));
    let again = w
        .app
        .confirm(&checkout(), &uuid(), "buyer-1", &r.id.to_string(), "pay")
        .await
        .expect("confirm again");
    assert_eq!(again, order);
    let level = w.app.stats(sale).await.expect("stats").level;
    assert_eq!((level.available, level.reserved, level.sold), (3, 0, 2));
    w.assert_conserved(sale, 5).await;
}

/// The idempotency check runs before the Redis confirm: a request id reused for another
/// reservation is refused without confirming that reservation in Redis.
#[tokio::test]
async fn a_reused_confirm_request_id_does_not_touch_the_stock() {
    let w = World::new(settings()).await;
    let sale = w.live_sale(5, 5).await;
    let a = w
        .app
        .attempt(&buyer(1), &uuid(), sale, 1, None)
        .await
        .expect("a");
    let b = w
        .app
        .attempt(&buyer(1), &uuid(), sale, 2, None)
        .await
        .expect("b");
    w.app
        .confirm(&checkout(), "pay-1", "buyer-1", &a.id.to_string(), "pay")
        .await
        .expect("confirm a");
    let e = w
        .app
        .confirm(&checkout(), "pay-1", "buyer-1", &b.id.to_string(), "pay")
        .await
        .expect_err("the same request id for b");
    assert_eq!(
        (e.code(), e.reason()),
        (ErrorCode::FailedPrecondition, Some("REQUEST_ID_REUSED"))
    );
    let level = w.app.stats(sale).await.expect("stats").level;
    assert_eq!(
        (level.reserved, level.sold),
        (2, 1),
        "b is still only reserved"
    );
    w.assert_conserved(sale, 5).await;
}

/// The first cancel (or end) wrote PostgreSQL and failed to reach Redis; its retry (a replay
/// of the same change) must still bring it to Redis.
#[tokio::test]
async fn a_retried_cancel_or_end_reaches_redis_when_the_first_warm_failed() {
    for state in [AdminState::Cancelled, AdminState::Ended] {
        let w = World::new(settings()).await;
        let sale = w.live_sale(5, 5).await;
        sqlx::query("UPDATE flashsale_sales SET state = $2 WHERE id = $1")
            .bind(sale.uuid())
            .bind(state.as_str())
            .execute(&w.db.pool)
            .await
            .expect("the first call's write");
        w.app
            .set_state(&admin(), &uuid(), sale, state)
            .await
            .expect("retry");
        let e = w
            .app
            .attempt(&buyer(1), &uuid(), sale, 1, None)
            .await
            .expect_err("closed");
        assert_eq!(e.reason(), Some("ENDED"), "{state:?}");
    }
}

/// The first edit of a warmed-up sale wrote PostgreSQL and failed to reach Redis; its retry
/// (the same spec, so nothing changes in PostgreSQL) must still bring the new total to Redis.
#[tokio::test]
async fn a_retried_update_reaches_redis_when_the_first_warm_failed() {
    let w = World::new(settings()).await;
    let mut spec = w.spec(10, 5);
    spec.starts_at = w.clock.now() + Duration::minutes(1);
    spec.ends_at = w.clock.now() + Duration::hours(1);
    let view = w
        .app
        .create_sale(&admin(), &uuid(), spec.clone())
        .await
        .expect("create");
    w.app.warm_up(view.sale.id).await.expect("warm up");
    let mut edited = w.app.view_of(view.sale.id).await.expect("view").sale;
    spec.total_quantity = 20;
    edited.spec.total_quantity = 20;
    let key =
        idempotency::Key::new("flashsale", "UpdateSale", "admin", &uuid(), b"edit").expect("key");
    PgSales::new(w.db.pool.clone())
        .save(&key, &edited, false)
        .await
        .expect("the first call's write");
    let retried = w
        .app
        .update_sale(&admin(), &uuid(), view.sale.id, spec)
        .await
        .expect("retry");
    assert_eq!(
        retried.level.map(|l| l.available),
        Some(20),
        "Redis has the new total"
    );
}

/// An edit that read the sale before a concurrent cancel cannot write it back as scheduled.
#[tokio::test]
async fn an_update_cannot_revert_a_concurrent_cancel() {
    let w = World::new(settings()).await;
    let mut spec = w.spec(10, 5);
    spec.starts_at = w.clock.now() + Duration::hours(1);
    spec.ends_at = w.clock.now() + Duration::hours(2);
    let view = w
        .app
        .create_sale(&admin(), &uuid(), spec)
        .await
        .expect("create");
    let mut stale = view.sale.clone();
    w.app
        .set_state(&admin(), &uuid(), stale.id, AdminState::Cancelled)
        .await
        .expect("cancel");
    stale.spec.total_quantity = 20;
    let key =
        idempotency::Key::new("flashsale", "UpdateSale", "admin", &uuid(), b"edit").expect("key");
    let e = PgSales::new(w.db.pool.clone())
        .save(&key, &stale, false)
        .await
        .expect_err("a cancelled sale is not edited");
    assert!(
        matches!(
            e,
            FlashSaleError::SaleClosed {
                what: "cancelled",
                ..
            }
        ),
        "{e}"
    );
    let now = w.app.view_of(stale.id).await.expect("view");
    assert_eq!(
        (now.sale.state, now.sale.spec.total_quantity),
        (AdminState::Cancelled, 10)
    );
}

/// Keys lost mid-sale heal on the next attempt, not only at the next reconcile: an attempt
/// that finds a warmed sale missing from Redis re-warms it from PostgreSQL and goes on.
#[tokio::test]
async fn an_attempt_rewarms_a_sale_redis_lost() {
    let w = World::new(settings()).await;
    let sale = w.live_sale(4, 4).await;
    let r = w
        .app
        .attempt(&buyer(1), &uuid(), sale, 3, None)
        .await
        .expect("reserve");
    w.app
        .confirm(&checkout(), &uuid(), "buyer-1", &r.id.to_string(), "pay")
        .await
        .expect("confirm");
    lose_keys(&w, sale).await;
    let next = w
        .app
        .attempt(&buyer(2), &uuid(), sale, 1, None)
        .await
        .expect("served after a re-warm");
    assert_eq!(next.remaining, 0, "4 − 3 sold − 1 now");
    let e = w
        .app
        .attempt(&buyer(3), &uuid(), sale, 1, None)
        .await
        .expect_err("sold out");
    assert_eq!(e.reason(), Some("SOLD_OUT"));
    w.assert_conserved(sale, 4).await;
}
