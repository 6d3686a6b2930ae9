//! A Redis restart in the middle of a sale: with `appendfsync always` no acknowledged unit is
//! lost or sold twice; with `everysec` (what cells run) the last second may be lost, and the
//! sale heals from PostgreSQL without overselling. The service carries on by itself. Also: a
//! confirm retried after a timeout makes one order.

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration as StdDuration,
};

use titan_kit::{ServiceError, config::RedisConfig, datastores::redis::RedisHandle};

use crate::{World, buyer, checkout, settings, uuid};

struct Redis {
    child: Child,
}

impl Redis {
    fn start(dir: &Path, port: u16, fsync: &str) -> Self {
        let child = Command::new("redis-server")
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--save",
                "",
            ])
            .args(["--appendonly", "yes", "--appendfsync", fsync, "--dir"])
            .arg(dir)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server must be installed: run the tests with `cargo xtask test`");
        Self { child }
    }

    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

async fn until_up(url: &str) {
    let deadline = tokio::time::Instant::now() + StdDuration::from_secs(30);
    loop {
        if let Ok(client) = redis::Client::open(url)
            && let Ok(mut conn) = client.get_multiplexed_async_connection().await
            && redis::cmd("PING")
                .query_async::<String>(&mut conn)
                .await
                .is_ok()
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "redis did not start"
        );
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redis_restart_loses_no_unit_and_sells_none_twice() {
    let dir = tempfile::tempdir().expect("dir");
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let server = Redis::start(dir.path(), port, "always");
    until_up(&url).await;
    let handle = RedisHandle::connect(&RedisConfig::new(url.clone(), "t:"))
        .await
        .expect("connect");
    let w = World::with_redis(settings(), handle).await;
    let sale = w.live_sale(100, 5).await;

    let mut before = Vec::new();
    for n in 0..20 {
        before.push((
            n,
            w.app
                .attempt(&buyer(n), &format!("r-{n}"), sale, 2, None)
                .await
                .expect("reserve"),
        ));
    }
    w.app
        .confirm(
            &checkout(),
            &uuid(),
            &buyer(0).user_id,
            &before[0].1.id.to_string(),
            "pay",
        )
        .await
        .expect("confirm");

    server.kill(); // a crash: SIGKILL, no clean shutdown
    let down = w.app.attempt(&buyer(99), &uuid(), sale, 1, None).await;
    assert!(
        down.is_err(),
        "attempts fail while Redis is down, they do not succeed on a guess"
    );
    let _server = Redis::start(dir.path(), port, "always");
    until_up(&url).await;

    // The connection manager reconnects and the scripts reload (NOSCRIPT) without any action.
    // One request id for every try, so a try whose answer was lost is replayed, not repeated.
    let after = titan_kit::testing::eventually_ok(|| {
        let app = w.app.clone();
        async move {
            app.attempt(&buyer(50), "after-restart", sale, 1, None)
                .await
        }
    })
    .await;
    assert_eq!(
        after.remaining,
        100 - 40 - 1,
        "every unit acknowledged before the crash is still held"
    );
    for (n, r) in &before[1..] {
        let replay = w
            .app
            .attempt(&buyer(*n), &format!("r-{n}"), sale, 2, None)
            .await
            .expect("replay");
        assert_eq!(replay.id, r.id, "reservation of buyer {n} survived");
    }
    let order = w
        .app
        .confirm(
            &checkout(),
            "c-1",
            &buyer(1).user_id,
            &before[1].1.id.to_string(),
            "pay",
        )
        .await
        .expect("confirm after restart");
    let retried = w
        .app
        .confirm(
            &checkout(),
            "c-1",
            &buyer(1).user_id,
            &before[1].1.id.to_string(),
            "pay",
        )
        .await
        .expect("retried confirm");
    assert_eq!(order, retried);
    w.assert_conserved(sale, 100).await;
    let orders: i64 = sqlx::query_scalar("SELECT count(*) FROM flashsale_orders")
        .fetch_one(&w.db.pool)
        .await
        .expect("count");
    assert_eq!(orders, 2);
}

/// SIGKILL under `appendfsync everysec` (what cells run), right after confirms. Redis writes
/// the AOF before it replies, so a killed process alone loses nothing; what an OS crash can
/// lose (the last second) is simulated deterministically in `heal.rs` (keys deleted, a confirm
/// forgotten). Here: reconcile after the restart finds the sale as PostgreSQL recorded it, and
/// selling out sells exactly the total: nothing oversold, every unit accounted for.
#[tokio::test(flavor = "multi_thread")]
async fn a_redis_killed_under_everysec_heals_without_overselling() {
    const TOTAL: u32 = 50;
    let dir = tempfile::tempdir().expect("dir");
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let server = Redis::start(dir.path(), port, "everysec");
    until_up(&url).await;
    let handle = RedisHandle::connect(&RedisConfig::new(url.clone(), "t:"))
        .await
        .expect("connect");
    let w = World::with_redis(settings(), handle).await;
    let sale = w.live_sale(TOTAL, 5).await;
    let mut held = Vec::new();
    for n in 0..20 {
        held.push(
            w.app
                .attempt(&buyer(n), &uuid(), sale, 2, None)
                .await
                .expect("reserve"),
        );
    }
    for (n, r) in held.iter().enumerate().take(10) {
        w.app
            .confirm(
                &checkout(),
                &uuid(),
                &format!("buyer-{n}"),
                &r.id.to_string(),
                "pay",
            )
            .await
            .expect("confirm");
    }
    server.kill(); // inside the fsync second: the confirms may not be on disk
    let _server = Redis::start(dir.path(), port, "everysec");
    until_up(&url).await;

    titan_kit::testing::eventually_ok(|| {
        let app = w.app.clone();
        async move { app.reconcile().await }
    })
    .await;
    let level = w.app.stats(sale).await.expect("stats").level;
    assert_eq!(
        level.sold, 20,
        "every recorded order is sold in redis again"
    );
    assert_eq!(level.available + level.reserved + level.sold, TOTAL);

    let mut n = 100;
    loop {
        match w.app.attempt(&buyer(n), &uuid(), sale, 1, None).await {
            Ok(_) => n += 1,
            Err(e) if e.reason() == Some("SOLD_OUT") => break,
            Err(e) => panic!("unexpected refusal: {e}"),
        }
    }
    let level = w.app.stats(sale).await.expect("stats").level;
    assert_eq!(
        (level.available, level.reserved + level.sold),
        (0, TOTAL),
        "sold out at exactly the total"
    );
    w.assert_conserved(sale, TOTAL).await;
    let recorded: i64 =
        sqlx::query_scalar("SELECT COALESCE(sum(quantity), 0)::BIGINT FROM flashsale_orders")
            .fetch_one(&w.db.pool)
            .await
            .expect("sum");
    assert_eq!(recorded, 20);
}
