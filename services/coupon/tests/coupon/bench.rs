//! A short throughput benchmark, ignored by default: validation and redemption in process on the
//! real stores. `cargo nextest run -p titan-coupon --run-ignored only --no-capture bench`

use std::time::Instant;

use titan_coupon::domain::CouponKind;

use crate::{World, plain_cart, shopper, spec, uuid};

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
    w.create(spec("BENCH", CouponKind::Percentage, 1000)).await;
    let mut limited = spec("LIMITED", CouponKind::FreeShipping, 0);
    limited.total_limit = 1_000;
    w.create(limited).await;

    let app = w.app.clone();
    run("validate", 20_000, move |i| {
        let app = app.clone();
        async move {
            app.validate(&shopper(i % 500), "BENCH", &plain_cart())
                .await
                .is_ok_and(|v| v.refusal.is_none())
        }
    })
    .await;
    let app = w.app.clone();
    run("redeem (unlimited coupon)", 5_000, move |i| {
        let app = app.clone();
        async move {
            app.redeem(
                &shopper(i),
                &uuid(),
                &["BENCH".into()],
                &plain_cart(),
                &format!("o-{i}"),
            )
            .await
            .is_ok()
        }
    })
    .await;
    let app = w.app.clone();
    run("redeem (1,000 uses for 5,000 shoppers)", 5_000, move |i| {
        let app = app.clone();
        async move {
            app.redeem(
                &shopper(i),
                &uuid(),
                &["LIMITED".into()],
                &plain_cart(),
                &format!("l-{i}"),
            )
            .await
            .is_ok()
        }
    })
    .await;
    assert_eq!(w.uses("LIMITED").await, (1_000, Some(1_000)));
}
