//! A short throughput benchmark, ignored by default: awards, reward redemptions and leaderboard
//! reads in process on the real stores.
//! `cargo nextest run -p titan-gamification --run-ignored only --no-capture bench`

use titan_gamification::domain::{Period, Reason};
use titan_kit::testing::throughput;

use crate::{World, admin, shopper, usd, uuid};

const CONCURRENCY: u32 = 64;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a benchmark: run it on purpose"]
async fn bench() {
    let w = World::new().await;
    let app = w.app.clone();
    throughput(
        "award (purchase, 1,000 shoppers)",
        5_000,
        CONCURRENCY,
        move |i| {
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
        },
    )
    .await;
    let reward = w
        .app
        .create_reward(&admin(), &uuid(), "voucher", 10, 2_000)
        .await
        .expect("reward");
    let app = w.app.clone();
    let id = reward.id.to_string();
    throughput(
        "redeem reward (2,000 in stock)",
        3_000,
        CONCURRENCY,
        move |i| {
            let app = app.clone();
            let id = id.clone();
            async move {
                app.redeem_reward(&shopper(i % 1_000), &uuid(), &id)
                    .await
                    .is_ok()
            }
        },
    )
    .await;
    w.app.feed_all().await.expect("feed");
    let app = w.app.clone();
    throughput("leaderboard page + rank", 10_000, CONCURRENCY, move |i| {
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
