//! A short throughput benchmark, ignored by default: awards, reward redemptions and leaderboard
//! reads in process on the real stores.
//! `cargo nextest run -p titan-gamification --run-ignored only --no-capture bench`

use std::time::Instant;

use titan_gamification::domain::{Period, Reason};

use crate::{World, admin, shopper, usd, uuid};

const CONCURRENCY: u32 = 64;

async fn run<F, Fut>(what: &str, ops: u32, op: F)
where
    F: Fn(u32) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = bool> + Send,
{
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..CONCURRENCY {
        let op = op.clone();
        tasks.spawn(async move {
            let mut ok = 0u32;
            for i in (worker..ops).step_by(CONCURRENCY as usize) {
                ok += u32::from(op(i).await);
            }
            ok
        });
    }
    let ok: u32 = tasks.join_all().await.into_iter().sum();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{what}: {ops} calls, {ok} succeeded, {secs:.2} s, {:.0} calls/s ({CONCURRENCY} concurrent)",
        f64::from(ops) / secs
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a benchmark: run it on purpose"]
async fn bench() {
    let w = World::new().await;
    let app = w.app.clone();
    run("award (purchase, 1,000 shoppers)", 5_000, move |i| {
        let app = app.clone();
        async move {
            app.award(
                &shopper(i % 1_000).user_id,
                Reason::Purchase,
                &uuid(),
                Some(usd(1_999)),
            )
            .await
            .is_ok()
        }
    })
    .await;
    let reward = w
        .app
        .create_reward(&admin(), &uuid(), "voucher", 10, 2_000)
        .await
        .expect("reward");
    let app = w.app.clone();
    let id = reward.id.to_string();
    run("redeem reward (2,000 in stock)", 3_000, move |i| {
        let app = app.clone();
        let id = id.clone();
        async move {
            app.redeem_reward(&shopper(i % 1_000), &uuid(), &id)
                .await
                .is_ok()
        }
    })
    .await;
    w.app.feed_all().await.expect("feed");
    let app = w.app.clone();
    run("leaderboard page + rank", 10_000, move |i| {
        let app = app.clone();
        async move {
            app.leaderboard(Period::AllTime, 0).await.is_ok()
                && app
                    .rank(&shopper(i % 1_000), Period::Weekly, "", 5)
                    .await
                    .is_ok_and(|r| r.entry.is_some())
        }
    })
    .await;
}
