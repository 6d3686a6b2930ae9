//! Many shoppers at once against limited coupons: exactly the limit succeeds, globally and per
//! shopper, and Redis agrees with PostgreSQL afterwards.

use titan_coupon::{app::CouponError, domain::CouponKind};

use crate::{World, checkout, plain_cart, shopper, spec, uuid};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn n_parallel_redemptions_of_a_limit_l_coupon_give_exactly_l() {
    const LIMIT: u32 = 25;
    const SHOPPERS: u32 = 300;
    let w = World::new().await;
    let mut s = spec("RUSH", CouponKind::Percentage, 1000);
    s.total_limit = LIMIT;
    w.create(s).await;
    // Three replicas share the stores, as pods do.
    let replicas = [w.app.clone(), w.replica(), w.replica()];
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..SHOPPERS {
        let app = replicas[n as usize % replicas.len()].clone();
        tasks.spawn(async move {
            app.redeem(
                &checkout(),
                &uuid(),
                &shopper(n).user_id,
                &["RUSH".into()],
                &plain_cart(),
                &format!("o-{n}"),
            )
            .await
        });
    }
    let mut won = 0;
    for r in tasks.join_all().await {
        match r {
            Ok(_) => won += 1,
            Err(CouponError::Refused(r)) => assert_eq!(r.reason(), "COUPON_DEPLETED"),
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!(won, LIMIT);
    assert_eq!(w.uses("RUSH").await, (25, Some(25)));
    let rows: i64 =
        sqlx::query_scalar("SELECT count(*) FROM coupon_redemptions WHERE status = 'applied'")
            .fetch_one(&w.db.pool)
            .await
            .expect("count");
    assert_eq!(rows, i64::from(LIMIT));
    assert_eq!(w.outbox().await.len(), LIMIT as usize);
    assert!(w.app.reconcile().await.expect("reconcile").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_shopper_in_parallel_gets_exactly_the_per_user_limit() {
    const PER_USER: u32 = 3;
    let w = World::new().await;
    let mut s = spec("MINE", CouponKind::FreeShipping, 0);
    s.per_user_limit = PER_USER;
    s.total_limit = 100;
    w.create(s).await;
    let replicas = [w.app.clone(), w.replica()];
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..60u32 {
        let app = replicas[(n / 2) as usize % replicas.len()].clone();
        // Two shoppers race, thirty orders each.
        tasks.spawn(async move {
            let who = shopper(n % 2);
            app.redeem(
                &checkout(),
                &uuid(),
                &who.user_id,
                &["MINE".into()],
                &plain_cart(),
                &format!("o-{n}"),
            )
            .await
            .map(|_| who.user_id)
        });
    }
    let mut per_user = std::collections::BTreeMap::<String, u32>::new();
    for r in tasks.join_all().await {
        match r {
            Ok(user) => *per_user.entry(user).or_default() += 1,
            Err(CouponError::Refused(r)) => assert_eq!(r.reason(), "USER_LIMIT_REACHED"),
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!(
        per_user.values().copied().collect::<Vec<_>>(),
        [PER_USER, PER_USER]
    );
    assert_eq!(w.uses("MINE").await, (6, Some(6)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_order_retried_in_parallel_takes_one_use() {
    let w = World::new().await;
    let mut s = spec("RETRY", CouponKind::Percentage, 1000);
    s.total_limit = 5;
    w.create(s).await;
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..40u32 {
        let app = w.app.clone();
        // Half retry one request id, half send fresh ids for the same order.
        let request = if n % 2 == 0 {
            "same".to_owned()
        } else {
            uuid()
        };
        tasks.spawn(async move {
            app.redeem(
                &checkout(),
                &request,
                &shopper(7).user_id,
                &["RETRY".into()],
                &plain_cart(),
                "order-7",
            )
            .await
            .map(|r| r[0].id)
        });
    }
    let ids: std::collections::BTreeSet<_> = tasks
        .join_all()
        .await
        .into_iter()
        .map(|r| r.expect("every retry succeeds"))
        .collect();
    assert_eq!(ids.len(), 1, "one redemption for the order");
    assert_eq!(w.uses("RETRY").await, (1, Some(1)));
}
