//! The rewards catalog: points and stock taken together, never an overdraft, never oversold,
//! and a refusal changes nothing.

use titan_gamification::app::GamificationError;
use titan_kit::{ErrorCode, ServiceError};

use crate::{World, admin, shopper, uuid};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_spends_never_overdraw() {
    let w = World::new().await;
    w.buy(1, 100_000).await; // 1,000 points
    let reward = w
        .app
        .create_reward(&admin(), &uuid(), "voucher", 100, 1_000)
        .await
        .expect("reward");
    // Two replicas share the stores, as pods do.
    let replicas = [w.app.clone(), w.replica()];
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..40 {
        let app = replicas[n % 2].clone();
        let id = reward.id.to_string();
        tasks.spawn(async move { app.redeem_reward(&shopper(1), &uuid(), &id).await });
    }
    let mut won = 0;
    for r in tasks.join_all().await {
        match r {
            Ok(_) => won += 1,
            Err(e) => assert_eq!(e.reason(), Some("INSUFFICIENT_POINTS"), "{e}"),
        }
    }
    assert_eq!(won, 10);
    assert_eq!(w.balance(1).await, 0);
    let stock = w.app.rewards().await.expect("rewards")[0].stock;
    assert_eq!(stock, 990, "stock taken exactly with the points");
    let min: i64 = sqlx::query_scalar("SELECT min(balance_after) FROM gamification_ledger")
        .fetch_one(&w.db.pool)
        .await
        .expect("min");
    assert_eq!(min, 0, "no ledger row ever went below zero");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn limited_stock_goes_to_exactly_that_many_shoppers() {
    let w = World::new().await;
    let reward = w
        .app
        .create_reward(&admin(), &uuid(), "rare", 10, 3)
        .await
        .expect("reward");
    for n in 0..20 {
        w.buy(n, 1_000).await;
    }
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..20 {
        let app = w.app.clone();
        let id = reward.id.to_string();
        tasks.spawn(async move { app.redeem_reward(&shopper(n), &uuid(), &id).await });
    }
    let results = tasks.join_all().await;
    let won = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(won, 3);
    for r in results.iter().filter_map(|r| r.as_ref().err()) {
        assert!(matches!(r, GamificationError::OutOfStock(_)), "{r}");
        assert_eq!(r.code(), ErrorCode::ResourceExhausted);
    }
    let spent: i64 =
        sqlx::query_scalar("SELECT count(*) FROM gamification_ledger WHERE reason = 'reward'")
            .fetch_one(&w.db.pool)
            .await
            .expect("spent");
    assert_eq!(spent, 3, "losers kept their points");
}

#[tokio::test]
async fn a_redemption_is_idempotent_and_refusals_change_nothing() {
    let w = World::new().await;
    w.buy(1, 2_500).await; // 25 points
    let cheap = w
        .app
        .create_reward(&admin(), "r-1", "sticker", 20, 5)
        .await
        .expect("reward");
    let replay = w
        .app
        .create_reward(&admin(), "r-1", "sticker", 20, 5)
        .await
        .expect("replay");
    assert_eq!(replay.id, cheap.id);
    let (first, _, acct) = w
        .app
        .redeem_reward(&shopper(1), "x-1", &cheap.id.to_string())
        .await
        .expect("redeem");
    assert_eq!(acct.balance, 5);
    let (again, _, acct) = w
        .app
        .redeem_reward(&shopper(1), "x-1", &cheap.id.to_string())
        .await
        .expect("retry");
    assert_eq!(
        (again, acct.balance),
        (first, 5),
        "a retry spends nothing more"
    );
    let e = w
        .app
        .redeem_reward(&shopper(1), "x-2", &cheap.id.to_string())
        .await
        .expect_err("5 points left");
    assert_eq!(
        (e.code(), e.reason()),
        (ErrorCode::FailedPrecondition, Some("INSUFFICIENT_POINTS"))
    );
    assert_eq!(
        w.app.rewards().await.expect("rewards")[0].stock,
        4,
        "the refused unit stays in stock"
    );
    let e = w
        .app
        .redeem_reward(&shopper(1), "x-3", &uuid::Uuid::new_v4().to_string())
        .await
        .expect_err("no such reward");
    assert_eq!(e.code(), ErrorCode::NotFound);
    let e = w
        .app
        .create_reward(&admin(), "r-2", "free", 0, 5)
        .await
        .expect_err("zero cost");
    assert_eq!(e.code(), ErrorCode::InvalidArgument);
    assert_eq!(w.balance(1).await, 5);
}
