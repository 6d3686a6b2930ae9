//! Redis losing a coupon, or counting wrong: the record rebuilds it, its own guards still hold
//! the limits, and reconcile lines the counters up again.

use chrono::Duration;
use titan_coupon::domain::CouponKind;

use crate::{World, checkout, plain_cart, shopper, spec, uuid};

async fn wipe(w: &World, code: &str) {
    let mut conn = w.redis.conn.clone();
    for name in ["meta", "uses", "users", "orders"] {
        let _: i64 = redis::cmd("DEL")
            .arg(w.redis.key(&format!("{{coupon:{code}}}:{name}")))
            .query_async(&mut conn)
            .await
            .expect("del");
    }
}

async fn set_uses(w: &World, code: &str, n: i64) {
    let mut conn = w.redis.conn.clone();
    let () = redis::cmd("SET")
        .arg(w.redis.key(&format!("{{coupon:{code}}}:uses")))
        .arg(n)
        .query_async(&mut conn)
        .await
        .expect("set");
}

#[tokio::test]
async fn a_coupon_lost_from_redis_is_rebuilt_from_the_record() {
    let w = World::new().await;
    let mut s = spec("LOST", CouponKind::Percentage, 1000);
    s.total_limit = 2;
    s.per_user_limit = 1;
    w.create(s).await;
    w.app
        .redeem(
            &checkout(),
            &uuid(),
            &shopper(1).user_id,
            &["LOST".into()],
            &plain_cart(),
            "o-1",
        )
        .await
        .expect("redeem");
    wipe(&w, "LOST").await;
    let v = w
        .app
        .validate(&shopper(1), "LOST", &plain_cart())
        .await
        .expect("validate");
    assert_eq!(
        v.refusal.map(|r| r.reason()),
        Some("USER_LIMIT_REACHED"),
        "the shopper's use survived"
    );
    wipe(&w, "LOST").await;
    w.app
        .redeem(
            &checkout(),
            &uuid(),
            &shopper(2).user_id,
            &["LOST".into()],
            &plain_cart(),
            "o-2",
        )
        .await
        .expect("the last use");
    assert_eq!(w.uses("LOST").await, (2, Some(2)));
}

#[tokio::test]
async fn the_record_holds_the_limit_when_redis_undercounts() {
    let w = World::new().await;
    let mut s = spec("GUARD", CouponKind::Percentage, 1000);
    s.total_limit = 1;
    w.create(s).await;
    w.app
        .redeem(
            &checkout(),
            &uuid(),
            &shopper(1).user_id,
            &["GUARD".into()],
            &plain_cart(),
            "o-1",
        )
        .await
        .expect("redeem");
    set_uses(&w, "GUARD", 0).await;
    let e = w
        .app
        .redeem(
            &checkout(),
            &uuid(),
            &shopper(2).user_id,
            &["GUARD".into()],
            &plain_cart(),
            "o-2",
        )
        .await
        .expect_err("the record refuses");
    assert_eq!(titan_kit::ServiceError::reason(&e), Some("COUPON_DEPLETED"));
    assert_eq!(
        w.uses("GUARD").await,
        (1, Some(0)),
        "redis got its use back"
    );
    let drifts = w.app.reconcile().await.expect("reconcile");
    assert_eq!(drifts.len(), 1);
    assert_eq!(w.uses("GUARD").await, (1, Some(1)));
    assert!(w.app.reconcile().await.expect("again").is_empty());
}

#[tokio::test]
async fn reconcile_gives_back_a_use_taken_by_a_redemption_that_never_recorded() {
    let w = World::new().await;
    let mut s = spec("STRAY", CouponKind::Percentage, 1000);
    s.total_limit = 1;
    w.create(s).await;
    // A redemption that took its use in Redis and died before PostgreSQL: an order entry that
    // the record does not know.
    let mut conn = w.redis.conn.clone();
    let at = w.clock.now().timestamp_millis();
    let () = redis::pipe()
        .cmd("HSET")
        .arg(w.redis.key("{coupon:STRAY}:orders"))
        .arg("ghost")
        .arg(format!("shopper-9|{at}|A"))
        .ignore()
        .cmd("SET")
        .arg(w.redis.key("{coupon:STRAY}:uses"))
        .arg(1)
        .ignore()
        .query_async(&mut conn)
        .await
        .expect("ghost");
    let e = w
        .app
        .redeem(
            &checkout(),
            &uuid(),
            &shopper(1).user_id,
            &["STRAY".into()],
            &plain_cart(),
            "o-1",
        )
        .await
        .expect_err("redis thinks it is used up");
    assert_eq!(titan_kit::ServiceError::reason(&e), Some("COUPON_DEPLETED"));
    // Within the grace period the entry may be a redemption in flight: kept.
    w.app.reconcile().await.expect("reconcile");
    assert_eq!(w.uses("STRAY").await, (0, Some(1)));
    w.clock.advance(Duration::minutes(2));
    w.app.reconcile().await.expect("reconcile");
    assert_eq!(w.uses("STRAY").await, (0, Some(0)));
    w.app
        .redeem(
            &checkout(),
            &uuid(),
            &shopper(1).user_id,
            &["STRAY".into()],
            &plain_cart(),
            "o-1",
        )
        .await
        .expect("the use is back");
}
