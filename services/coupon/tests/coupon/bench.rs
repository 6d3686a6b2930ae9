//! A short throughput benchmark, ignored by default: validation and redemption in process on the
//! real stores. `cargo nextest run -p titan-coupon --run-ignored only --no-capture bench`

use titan_coupon::domain::CouponKind;
use titan_kit::testing::throughput;

use crate::{World, checkout, plain_cart, shopper, spec, uuid};

const CONCURRENCY: u32 = 64;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a benchmark: run it on purpose"]
async fn bench() {
    let w = World::new().await;
    w.create(spec("BENCH", CouponKind::Percentage, 1000)).await;
    let mut limited = spec("LIMITED", CouponKind::FreeShipping, 0);
    limited.total_limit = 1_000;
    w.create(limited).await;

    let app = w.app.clone();
    throughput("validate", 20_000, CONCURRENCY, move |i| {
        let app = app.clone();
        async move {
            app.validate(&shopper(i % 500), "BENCH", &plain_cart())
                .await
                .is_ok_and(|v| v.refusal.is_none())
        }
    })
    .await;
    let app = w.app.clone();
    throughput("redeem (unlimited coupon)", 5_000, CONCURRENCY, move |i| {
        let app = app.clone();
        async move {
            app.redeem(
                &checkout(),
                &uuid(),
                &shopper(i).user_id,
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
    throughput(
        "redeem (1,000 uses for 5,000 shoppers)",
        5_000,
        CONCURRENCY,
        move |i| {
            let app = app.clone();
            async move {
                app.redeem(
                    &checkout(),
                    &uuid(),
                    &shopper(i).user_id,
                    &["LIMITED".into()],
                    &plain_cart(),
                    &format!("l-{i}"),
                )
                .await
                .is_ok()
            }
        },
    )
    .await;
    assert_eq!(w.uses("LIMITED").await, (1_000, Some(1_000)));
}
