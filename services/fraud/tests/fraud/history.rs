//! The history a check scores from, cached in Redis beside the velocity sets: it answers
//! exactly as PostgreSQL does, a change to PostgreSQL (payment failure, chargeback, an order
//! from the bus) reaches the next check, and a fill that may predate a change is refused.

use std::time::Duration;

use titan_fraud::{
    app::{FraudStore, Hot, HotStore},
    domain::{Dimension, Transaction, profile::Known},
    store::{consumer::PurchaseHandler, redis::RedisHot},
};
use titan_kit::{
    config::EventsConfig,
    datastores::redis::RedisHandle,
    events::{Consumer, ConsumerOptions, Envelope},
    testing::{TestRedis, eventually, publish},
};
use tokio_util::sync::CancellationToken;

use crate::*;

async fn world() -> (World, RedisHot, RedisHandle) {
    let redis = TestRedis::new().await.handle;
    let w = World::with_redis(redis.clone(), settings()).await;
    let hot = RedisHot::new(redis.clone(), "test".into());
    (w, hot, redis)
}

/// A transaction of "u" that does not say when the account was created (the stored time
/// stands).
fn on(id: &str, device: &str, ip: &str, amount: i64) -> Transaction {
    Transaction {
        device: Some(device.into()),
        ip: Some(ip.into()),
        account_created_at: None,
        ..txn(id, "u", amount)
    }
}

/// What PostgreSQL and the cache know before `t` is stored (the cache's read also adds `t`, as
/// a check's does).
async fn both(w: &World, hot: &RedisHot, t: &Transaction) -> (Known, Option<Known>) {
    let now = w.clock.now();
    let since = now - chrono::Duration::days(7);
    let pg = store(w).snapshot(t, since).await.expect("snapshot").known;
    let cached = hot
        .record(&[(Dimension::User, &t.user_id)], t, now)
        .await
        .expect("record")
        .known;
    (pg, cached)
}

#[tokio::test]
async fn the_cached_history_answers_exactly_as_postgresql_does() {
    let (w, hot, _) = world().await;
    // 60 checks twelve hours apart (more than the 50 amounts kept), on three devices and two
    // IPs; the account's creation time is first unknown, then given, then corrected.
    for i in 0..60i64 {
        w.clock.advance(chrono::Duration::hours(12));
        let mut t = on(
            &format!("h{i}"),
            &format!("dev-{}", i % 3),
            &format!("192.0.2.{}", i % 2),
            900 + (i * 37) % 400,
        );
        t.account_created_at = match i {
            0..20 => None,
            20..40 => Some(epoch() - chrono::Duration::days(400)),
            _ => Some(epoch() - chrono::Duration::days(300)),
        };
        w.app.check(&service(), t).await.expect("check");
    }
    // The chargeback names a stored decision.
    w.stored().await;
    for p in ["p1", "p2"] {
        w.app
            .payment_failure(&service(), p, "u")
            .await
            .expect("failure");
    }
    w.app
        .chargeback(&service(), "h5", "u", 1085, "stolen card")
        .await
        .expect("chargeback");
    // The failures and the chargeback dropped the copy; this check fills it again.
    w.clock.advance(chrono::Duration::hours(1));
    w.app
        .check(&service(), on("h60", "dev-0", "192.0.2.0", 1000))
        .await
        .expect("check");
    assert_eq!(w.stored().await, 1);

    // A retried earlier transaction on a known device and IP: it changes nothing stored.
    let (pg, cached) = both(&w, &hot, &on("h60", "dev-0", "192.0.2.0", 1000)).await;
    assert_eq!(
        cached.as_ref(),
        Some(&pg),
        "known device, retried transaction"
    );
    assert_eq!(
        (
            pg.device_seen,
            pg.ip_seen,
            pg.failures_since(w.clock.now() - chrono::Duration::days(7)),
            pg.chargebacks
        ),
        (true, true, 2, 1)
    );
    let amounts = pg.amounts_before("h60");
    assert_eq!(amounts.len(), 50);
    assert_eq!(
        amounts[0], 1083,
        "h59 (900 + 59·37 mod 400), h60 itself excluded"
    );
    assert_eq!(
        pg.account_created_at,
        Some(epoch() - chrono::Duration::days(300))
    );
    assert_eq!(
        pg.first_seen_at,
        Some(epoch() + chrono::Duration::hours(12)),
        "the first check's time"
    );

    // A new transaction on a new device and IP.
    let (pg, cached) = both(&w, &hot, &on("n1", "dev-9", "198.51.100.1", 5000)).await;
    assert_eq!(cached.as_ref(), Some(&pg), "new device and ip");
    assert_eq!((pg.device_seen, pg.ip_seen), (false, false));
    assert_eq!(pg.amounts_before("n1")[0], 1000, "h60 is the newest now");
}

#[tokio::test]
async fn a_fill_that_read_the_epoch_before_a_change_is_refused() {
    let (w, hot, _) = world().await;
    let since = epoch() - chrono::Duration::days(7);
    let user = [(Dimension::User, "u")];
    let first = hot
        .record(&user, &txn("a", "u", 1000), epoch())
        .await
        .expect("record");
    assert_eq!((first.known.is_none(), first.epoch), (true, 0));
    let snapshot = store(&w)
        .snapshot(&txn("a", "u", 1000), since)
        .await
        .expect("snapshot");
    // A chargeback lands between the check's read of the epoch and its fill.
    hot.invalidate("u").await.expect("invalidate");
    assert!(!hot.fill("u", &snapshot, first.epoch).await.expect("fill"));
    let second = hot
        .record(&user, &txn("b", "u", 1000), epoch())
        .await
        .expect("record");
    assert_eq!((second.known.is_none(), second.epoch), (true, 1));
    assert!(hot.fill("u", &snapshot, second.epoch).await.expect("fill"));
    let third = hot
        .record(&user, &txn("c", "u", 1000), epoch())
        .await
        .expect("record");
    assert!(third.known.is_some(), "cached after a fill under the epoch");
}

#[tokio::test]
async fn an_order_from_the_bus_reaches_the_next_check() {
    let (w, hot, redis) = world().await;
    w.app
        .check(&service(), txn("a", "u", 1000))
        .await
        .expect("check");
    let consumer = Consumer::new(
        w.db.pool.clone(),
        redis.clone(),
        ConsumerOptions::new(
            "flashsale",
            "fraud",
            "test-1",
            &EventsConfig {
                claim_idle: Duration::from_secs(30),
                ..EventsConfig::default()
            },
        ),
        PurchaseHandler::new(w.app.clone()),
    )
    .await
    .expect("consumer");
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(consumer.run(shutdown.clone()));
    let order = Envelope::new(
        "test",
        "flashsale.purchased",
        1,
        &serde_json::json!({"order_id": "o1", "user_id": "u"}),
    )
    .expect("envelope");
    publish(&redis, "flashsale", &order).await;
    eventually("the order counted", || async {
        let t = w.app.trust(&service(), "u").await.ok()?;
        (t.successful_orders == 1).then_some(())
    })
    .await;
    // The copy the first check filled was dropped after the order's commit...
    let next = hot
        .record(&[(Dimension::User, "u")], &txn("b", "u", 1000), epoch())
        .await
        .expect("record");
    assert!(next.known.is_none());
    // ...so the next check reads the order and caches it.
    w.app
        .check(&service(), txn("c", "u", 1000))
        .await
        .expect("check");
    let cached = hot
        .record(&[(Dimension::User, "u")], &txn("d", "u", 1000), epoch())
        .await
        .expect("record")
        .known
        .expect("cached");
    assert_eq!(cached.successful_orders, 1);
    shutdown.cancel();
    running.await.expect("join").expect("consumer");
}

/// Velocity as Redis cuts it into windows: an entry exactly a window old is outside that window
/// and inside the next longer one, amounts are summed per window, and a week-old entry is gone.
#[tokio::test]
async fn velocity_windows_end_exactly_a_window_ago() {
    use titan_fraud::domain::{Window, signals::Tally};

    let (w, hot, _) = world().await;
    let start = w.clock.now();
    let card = |id: &str, amount: i64| Transaction {
        card: Some("card-9".into()),
        ..txn(id, &format!("user-{id}"), amount)
    };
    let keys = [(Dimension::Card, "card-9")];
    let tallies = |hot: Hot| Window::ALL.map(|window| hot.velocity.tally(Dimension::Card, window));
    let t = |count, amount| Tally { count, amount };
    let at = |d: chrono::Duration| start + d;
    let first = hot
        .record(&keys, &card("a", 100), start)
        .await
        .expect("record");
    assert_eq!(tallies(first), [t(1, 100); 3]);
    // An hour later to the millisecond: "a" left the hour, not the day.
    let hour = hot
        .record(&keys, &card("b", 200), at(chrono::Duration::hours(1)))
        .await
        .expect("record");
    assert_eq!(tallies(hour), [t(1, 200), t(2, 300), t(2, 300)]);
    // A day after "a": it left the day, not the week; "b" is 23 hours old.
    let day = hot
        .record(&keys, &card("c", 400), at(chrono::Duration::days(1)))
        .await
        .expect("record");
    assert_eq!(tallies(day), [t(1, 400), t(2, 600), t(3, 700)]);
    // A millisecond before "a" is a week old it still counts; at a week it is gone.
    let almost = at(chrono::Duration::days(7) - chrono::Duration::milliseconds(1));
    let week = hot
        .record(&keys, &card("d", 800), almost)
        .await
        .expect("record");
    assert_eq!(tallies(week), [t(1, 800), t(1, 800), t(4, 1500)]);
    let after = hot
        .record(&keys, &card("e", 1600), at(chrono::Duration::days(7)))
        .await
        .expect("record");
    assert_eq!(tallies(after), [t(2, 2400), t(2, 2400), t(4, 3000)]);
}
