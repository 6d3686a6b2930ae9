//! A shopper's export and erasure (`titan_kit::privacy`): the export holds exactly their
//! records; the erasure keeps the ledger and the redemptions under the pseudonym (the books add
//! up as before), deletes the rest, takes them off every leaderboard, and runs again harmlessly.

use chrono::Duration;
use serde_json::{Value, json};
use titan_gamification::{
    config::Settings,
    domain::{Period, Reason},
    store::{privacy::PersonalStore, redis::RedisBoards},
};
use titan_kit::{
    privacy::{Erasure, PersonalData, Subject},
    testing::{caller, mentions, privacy::subject},
};

use crate::{World, admin, leaderboard::wipe_redis, usd, uuid};

fn handler(w: &World) -> PersonalStore {
    PersonalStore::new(w.db.pool.clone(), RedisBoards::new(w.redis.clone()))
}

/// The export without the account's `updated_at`, which PostgreSQL's clock sets.
async fn export(p: &PersonalStore, s: &Subject) -> Value {
    let mut doc = p.export(s).await.expect("export");
    if let Some(account) = doc.get_mut("account").and_then(Value::as_object_mut) {
        assert!(
            account.remove("updated_at").is_some_and(|t| t.is_string()),
            "the account's updated_at is exported"
        );
    }
    doc
}

/// (rows, sum of deltas) of the ledger, and the sum of the balances.
async fn books(w: &World) -> (i64, i64, i64) {
    let (rows, points): (i64, i64) =
        sqlx::query_as("SELECT count(*), sum(delta)::BIGINT FROM gamification_ledger")
            .fetch_one(&w.db.pool)
            .await
            .expect("ledger");
    let balances: i64 =
        sqlx::query_scalar("SELECT sum(balance)::BIGINT FROM gamification_accounts")
            .fetch_one(&w.db.pool)
            .await
            .expect("accounts");
    (rows, points, balances)
}

#[tokio::test]
async fn an_erased_shopper_leaves_the_books_under_a_pseudonym_and_nothing_else() {
    let mut settings = Settings::default();
    settings.badges.loyal_purchases = 2;
    let w = World::with(settings).await;
    let (a, b) = (format!("a-{}", uuid()), format!("b-{}", uuid()));
    let ann = caller(&a, &[]);
    // Ann: two purchases (the second earns LOYAL), a review, a daily login, a check-in and a
    // reward spent, a minute apart; then Bob buys once.
    let award = |user: String, reason, source: &'static str, total| {
        let app = w.app.clone();
        async move {
            app.award(&user, reason, source, total)
                .await
                .expect("award")
        }
    };
    award(a.clone(), Reason::Purchase, "order-1", Some(usd(1_200))).await;
    w.clock.advance(Duration::minutes(1));
    award(a.clone(), Reason::Purchase, "order-2", Some(usd(3_000))).await;
    w.clock.advance(Duration::minutes(1));
    award(a.clone(), Reason::Review, "review-1", None).await;
    w.clock.advance(Duration::minutes(1));
    w.app.record_login(&ann, 0).await.expect("login");
    w.clock.advance(Duration::minutes(1));
    w.app.check_in(&ann, 0).await.expect("check-in");
    w.clock.advance(Duration::minutes(1));
    let reward = w
        .app
        .create_reward(&admin(), &uuid(), "mug", 40, 5)
        .await
        .expect("reward");
    let (redemption, _, _) = w
        .app
        .redeem_reward(&ann, &uuid(), &reward.id.to_string())
        .await
        .expect("redeem");
    w.clock.advance(Duration::minutes(1));
    award(b.clone(), Reason::Purchase, "order-b", Some(usd(2_000))).await;
    w.app.feed_all().await.expect("feed");

    let p = handler(&w);
    let (sa, sb) = (subject(&a), subject(&b));
    let at = |minute: u32| format!("2026-11-25T10:0{minute}:00Z");
    let entry = |id: i64, delta: i64, reason: &str, source: &str, after: i64, minute: u32| {
        json!({"id": id, "delta": delta, "reason": reason, "source_id": source,
               "balance_after": after, "created_at": at(minute)})
    };
    let boards = |points: i64, rank: u64| {
        json!([
            {"board": "all", "points": points, "rank": rank},
            {"board": "day:2026-11-25", "points": points, "rank": rank},
            {"board": "week:2026-W48", "points": points, "rank": rank},
        ])
    };
    assert_eq!(
        export(&p, &sa).await,
        json!({
            "user_id": a,
            "account": {"balance": 67, "lifetime": 107, "purchases": 2, "reviews": 1,
                        "last_login": "2026-11-25", "streak": 1, "last_check_in": "2026-11-25"},
            "badges": [{"badge": "LOYAL", "awarded_at": at(1)}],
            "ledger": [
                entry(1, 12, "purchase", "order-1", 12, 0),
                entry(2, 30, "purchase", "order-2", 42, 1),
                entry(3, 50, "review", "review-1", 92, 2),
                entry(4, 10, "daily_login", "2026-11-25", 102, 3),
                entry(5, 5, "check_in", "2026-11-25", 107, 4),
                entry(6, -40, "reward", &redemption.to_string(), 67, 5),
            ],
            "reward_redemptions": [{"id": redemption, "reward_id": reward.id, "reward": "mug",
                                    "cost": 40, "created_at": at(5)}],
            "leaderboards": boards(107, 1),
        })
    );
    let bob_before = export(&p, &sb).await;
    assert_eq!(
        bob_before,
        json!({
            "user_id": b,
            "account": {"balance": 20, "lifetime": 20, "purchases": 1, "reviews": 0,
                        "last_login": null, "streak": 0, "last_check_in": null},
            "badges": [],
            "ledger": [entry(7, 20, "purchase", "order-b", 20, 6)],
            "reward_redemptions": [],
            "leaderboards": boards(20, 2),
        })
    );
    let books_before = books(&w).await;
    assert_eq!(books_before, (7, 87, 87));

    // The searches below find Ann before her erasure.
    assert_eq!(
        mentions::postgres_in(&w.db.pool, "gamification", &a).await,
        vec![
            ("gamification_accounts".into(), 1),
            ("gamification_badges".into(), 1),
            ("gamification_ledger".into(), 6),
            ("gamification_reward_redemptions".into(), 1),
        ]
    );
    assert!(!mentions::redis(&w.redis, &a).await.is_empty());

    let erased = PersonalData::erase(&p, &sa).await.expect("erase");
    assert_eq!(
        erased,
        Erasure::default()
            .removed("accounts", 1)
            .removed("badges", 1)
            .removed("leaderboard entries", 3)
            .removed("leaderboard feed positions", 1)
            .pseudonymised("ledger entries", 6)
            .pseudonymised("reward redemptions", 1)
    );

    assert_eq!(
        mentions::postgres_in(&w.db.pool, "gamification", &a).await,
        vec![]
    );
    // Every key contains the empty text.
    assert!(
        !mentions::redis(&w.redis, "").await.is_empty(),
        "the boards are still there"
    );
    assert_eq!(
        mentions::redis(&w.redis, &a).await,
        Vec::<String>::new(),
        "redis still names the shopper"
    );
    // The books: every row and point kept, the balance held by the pseudonym.
    assert_eq!(books(&w).await, books_before);
    let kept: (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM gamification_ledger WHERE user_id = $1),
                (SELECT balance FROM gamification_accounts WHERE user_id = $1),
                (SELECT count(*) FROM gamification_reward_redemptions WHERE user_id = $1)",
    )
    .bind(&sa.pseudonym)
    .fetch_one(&w.db.pool)
    .await
    .expect("kept");
    assert_eq!(kept, (6, 67, 1));
    // Bob's records are as they were; only his rank rose with Ann gone.
    let mut bob_after = bob_before.clone();
    bob_after["leaderboards"] = boards(20, 1);
    assert_eq!(export(&p, &sb).await, bob_after);

    // The pseudonym never reaches a board: not by feeding, nor by a rebuild after a loss.
    w.app.feed_all().await.expect("feed");
    wipe_redis(&w).await;
    for period in Period::ALL {
        let (_, page) = w.app.leaderboard(period, 0).await.expect("board");
        let users: Vec<(String, i64)> = page.into_iter().map(|e| (e.user_id, e.points)).collect();
        assert_eq!(users, vec![(b.clone(), 20)], "{period:?}");
    }

    let again = PersonalData::erase(&p, &sa).await.expect("erase again");
    assert_eq!(
        again,
        Erasure::default()
            .removed("accounts", 0)
            .removed("badges", 0)
            .removed("leaderboard entries", 0)
            .removed("leaderboard feed positions", 0)
            .pseudonymised("ledger entries", 0)
            .pseudonymised("reward redemptions", 0)
    );
    assert_eq!(
        export(&p, &sa).await,
        json!({"user_id": a, "account": null, "badges": [], "ledger": [],
               "reward_redemptions": [], "leaderboards": []})
    );
    assert_eq!(books(&w).await, books_before);
    assert_eq!(export(&p, &sb).await, bob_after);
}

#[tokio::test]
async fn a_shopper_who_comes_back_after_an_erasure_is_erased_again_under_the_same_pseudonym() {
    let w = World::new().await;
    let a = format!("a-{}", uuid());
    let ann = caller(&a, &[]);
    let p = handler(&w);
    let s = subject(&a);
    w.app.record_login(&ann, 0).await.expect("login");
    PersonalData::erase(&p, &s).await.expect("erase");
    // The same day's login again: the pseudonym holds that source already.
    w.app.record_login(&ann, 0).await.expect("login again");
    let erased = PersonalData::erase(&p, &s).await.expect("erase again");
    assert_eq!(erased.pseudonymised.get("ledger entries"), Some(&1));
    let kept: Vec<(String, i64)> = sqlx::query_as(
        "SELECT source_id, delta FROM gamification_ledger WHERE user_id = $1 ORDER BY id",
    )
    .bind(&s.pseudonym)
    .fetch_all(&w.db.pool)
    .await
    .expect("kept");
    assert_eq!(
        kept,
        vec![
            ("2026-11-25".to_owned(), 10),
            ("2026-11-25#2".to_owned(), 10)
        ]
    );
    let balance: i64 =
        sqlx::query_scalar("SELECT balance FROM gamification_accounts WHERE user_id = $1")
            .bind(&s.pseudonym)
            .fetch_one(&w.db.pool)
            .await
            .expect("balance");
    assert_eq!(balance, 20);
    assert_eq!(
        mentions::postgres_in(&w.db.pool, "gamification", &a).await,
        vec![]
    );
}
