//! Earning: each rule, idempotency by source, levels and badges at their edges, daily logins in
//! the shopper's time zone, check-in streaks, missions, history pages.

use chrono::Duration;
use titan_gamification::{
    app::{GamificationError, Mission},
    domain::{Badge, Reason},
};
use titan_kit::{ErrorCode, ServiceError, money::Money};

use crate::{World, admin, shopper, usd, uuid};

#[tokio::test]
async fn each_action_earns_its_points_once_per_source() {
    let w = World::new().await;
    let me = shopper(1).user_id;
    let a = w
        .app
        .award(&me, Reason::Purchase, "order-1", Some(usd(12_345)))
        .await
        .expect("purchase");
    assert_eq!(
        (a.points, a.duplicate),
        (123, false),
        "123.45 USD earns 123"
    );
    let again = w
        .app
        .award(&me, Reason::Purchase, "order-1", Some(usd(12_345)))
        .await
        .expect("again");
    assert_eq!((again.points, again.duplicate), (123, true));
    assert_eq!(again.account.balance, 123);
    let yen = Money::parse(5_000, "JPY").expect("jpy");
    let a = w
        .app
        .award(&me, Reason::Purchase, "order-2", Some(yen))
        .await
        .expect("jpy");
    assert_eq!(a.points, 5_000, "yen have no minor unit");
    for (reason, points) in [
        (Reason::Review, 50),
        (Reason::Referral, 500),
        (Reason::SocialShare, 25),
    ] {
        let a = w
            .app
            .award(&me, reason, "src-1", None)
            .await
            .expect("award");
        assert_eq!(a.points, points, "{reason:?}");
    }
    assert_eq!(w.balance(1).await, 123 + 5_000 + 50 + 500 + 25);
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM gamification_ledger")
        .fetch_one(&w.db.pool)
        .await
        .expect("rows");
    assert_eq!(rows, 5, "a ledger row per change, none for the repeat");
}

#[tokio::test]
async fn levels_and_badges_change_exactly_at_their_edges() {
    let w = World::new().await;
    // 499.99 USD → 499 points: still level 1; one more dollar: level 2 at exactly 500.
    let a = w.buy(1, 49_999).await;
    assert_eq!(
        (a.account.lifetime, a.account.level, a.account.next_level_at),
        (499, 1, Some(500))
    );
    let a = w.buy(1, 100).await;
    assert_eq!((a.account.lifetime, a.account.level), (500, 2));
    // Loyal at the 10th purchase, once.
    for _ in 3..10 {
        assert!(w.buy(1, 1).await.new_badges.is_empty());
    }
    let tenth = w.buy(1, 1).await;
    assert_eq!(tenth.account.purchases, 10);
    assert_eq!(tenth.new_badges, vec![Badge::Loyal]);
    assert!(
        w.buy(1, 1).await.new_badges.is_empty(),
        "a badge is awarded once"
    );
    // VIP from level 8 (100,000 lifetime points).
    let a = w.buy(2, 9_999_900).await;
    assert_eq!((a.account.lifetime, a.account.level), (99_999, 7));
    assert!(!a.new_badges.contains(&Badge::Vip));
    let a = w.buy(2, 100).await;
    assert_eq!(
        (a.account.level, a.new_badges.clone()),
        (8, vec![Badge::Vip])
    );
    // Spending does not lower a level: levels follow lifetime points.
    let reward = w
        .app
        .create_reward(&admin(), &uuid(), "mug", 50_000, 5)
        .await
        .expect("reward");
    let (_, _, after) = w
        .app
        .redeem_reward(&shopper(2), &uuid(), &reward.id.to_string())
        .await
        .expect("redeem");
    assert_eq!(
        (after.balance, after.lifetime, after.level),
        (50_000, 100_000, 8)
    );
    assert_eq!(after.badges, vec![Badge::Vip]);
}

#[tokio::test]
async fn a_daily_login_counts_once_per_calendar_day_in_the_shoppers_time_zone() {
    let w = World::new().await;
    let me = shopper(1);
    // 10:00 UTC on the 25th is 18:00 in UTC+8: the 25th there.
    let first = w.app.record_login(&me, 480).await.expect("login");
    assert_eq!((first.awarded, first.points), (true, 10));
    let again = w.app.record_login(&me, 480).await.expect("again");
    assert!(!again.awarded);
    // 16:30 UTC is 00:30 on the 26th in UTC+8: a new day there.
    w.clock.advance(Duration::minutes(390));
    let next = w.app.record_login(&me, 480).await.expect("next day");
    assert!(next.awarded);
    // Moving west cannot earn the 25th or 26th again.
    let west = w.app.record_login(&me, -300).await.expect("west");
    assert!(!west.awarded);
    assert_eq!(w.balance(1).await, 20);
    let e = w
        .app
        .record_login(&me, 900)
        .await
        .expect_err("no such offset");
    assert_eq!(e.code(), ErrorCode::InvalidArgument);
}

#[tokio::test]
async fn check_in_streaks_grow_to_the_cap_and_restart_after_a_gap() {
    let w = World::new().await;
    let me = shopper(1);
    let mut got = Vec::new();
    for _ in 0..9 {
        let d = w.app.check_in(&me, 0).await.expect("check in");
        assert!(!w.app.check_in(&me, 0).await.expect("twice").awarded);
        got.push((d.streak, d.points));
        w.clock.advance(Duration::days(1));
    }
    assert_eq!(
        got,
        [
            (1, 5),
            (2, 10),
            (3, 15),
            (4, 20),
            (5, 25),
            (6, 30),
            (7, 35),
            (8, 35),
            (9, 35)
        ]
    );
    w.clock.advance(Duration::days(1));
    let d = w.app.check_in(&me, 0).await.expect("after a gap");
    assert_eq!((d.streak, d.points), (1, 5));
}

#[tokio::test]
async fn missions_are_claimed_once_when_their_target_is_met() {
    let w = World::new().await;
    let mission = w
        .app
        .create_mission(
            &admin(),
            "m-1",
            Mission {
                id: uuid::Uuid::nil(),
                name: "three reviews".into(),
                reason: "review".into(),
                target: 3,
                points: 200,
                starts_at: w.clock.now() - Duration::hours(1),
                ends_at: w.clock.now() + Duration::days(7),
            },
        )
        .await
        .expect("mission");
    let me = shopper(1);
    let id = mission.id.to_string();
    for n in 0..2 {
        w.app
            .award(&me.user_id, Reason::Review, &format!("rev-{n}"), None)
            .await
            .expect("review");
    }
    let e = w
        .app
        .claim_mission(&me, &id)
        .await
        .expect_err("two of three");
    assert_eq!(e.reason(), Some("MISSION_NOT_DONE"));
    w.app
        .award(&me.user_id, Reason::Review, "rev-2", None)
        .await
        .expect("review");
    let listed = w.app.missions(&me).await.expect("list");
    assert_eq!((listed[0].progress, listed[0].claimed), (3, false));
    let claimed = w.app.claim_mission(&me, &id).await.expect("claim");
    assert_eq!((claimed.points, claimed.duplicate), (200, false));
    let twice = w.app.claim_mission(&me, &id).await.expect("claim again");
    assert!(twice.duplicate);
    assert_eq!(w.balance(1).await, 150 + 200);
    w.clock.advance(Duration::days(8));
    let other = shopper(2);
    let e = w.app.claim_mission(&other, &id).await.expect_err("over");
    assert_eq!(e.reason(), Some("MISSION_CLOSED"));
    let e = w
        .app
        .claim_mission(&other, "not-a-uuid")
        .await
        .expect_err("bad id");
    assert!(matches!(e, GamificationError::Invalid(_)));
}

#[tokio::test]
async fn history_pages_newest_first_without_gaps() {
    let w = World::new().await;
    for _ in 0..7 {
        w.buy(1, 1_000).await;
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let (page, next) = w
            .app
            .transactions(&shopper(1), "", 3, &token)
            .await
            .expect("page");
        assert!(page.len() <= 3);
        seen.extend(page);
        match next {
            Some(id) => token = id.to_string(),
            None => break,
        }
    }
    assert_eq!(seen.len(), 7);
    assert!(seen.windows(2).all(|p| p[0].id > p[1].id));
    assert_eq!(seen[0].balance_after, 70);
    assert_eq!(seen[6].balance_after, 10);
    let e = w
        .app
        .transactions(&shopper(2), "shopper-1", 3, "")
        .await
        .expect_err("not theirs");
    assert_eq!(e.code(), ErrorCode::PermissionDenied);
    let e = w
        .app
        .transactions(&shopper(1), "", 3, "abc")
        .await
        .expect_err("bad token");
    assert_eq!(e.code(), ErrorCode::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_awards_of_one_shopper_are_serialised() {
    let w = World::new().await;
    // Two replicas share the stores, as pods do; the account does not exist yet, so the first
    // awards also race to create it.
    let replicas = [w.app.clone(), w.replica()];
    let mut tasks = tokio::task::JoinSet::new();
    for (n, app) in (1..=40_i64).zip(replicas.iter().cycle()) {
        let app = app.clone();
        // n whole dollars: n points.
        tasks.spawn(async move {
            app.award(
                &shopper(1).user_id,
                Reason::Purchase,
                &format!("order-{n}"),
                Some(usd(100 * n)),
            )
            .await
        });
    }
    let answers: Vec<_> = tasks
        .join_all()
        .await
        .into_iter()
        .map(|r| r.expect("award"))
        .collect();
    let sum: i64 = (1..=40).sum();
    assert!(answers.iter().all(|a| !a.duplicate));
    assert_eq!(answers.iter().map(|a| a.points).sum::<i64>(), sum);
    let loyal: Vec<u32> = answers
        .iter()
        .filter(|a| a.new_badges == [Badge::Loyal])
        .map(|a| a.account.purchases)
        .collect();
    assert_eq!(loyal, [10], "Loyal once, with the 10th purchase");
    let last = answers
        .iter()
        .find(|a| a.account.purchases == 40)
        .expect("the last award");
    assert_eq!(
        (last.account.balance, last.account.badges.clone()),
        (sum, vec![Badge::Loyal])
    );
    // Each row's balance is the one before it plus its delta: no change was lost or reordered.
    let rows: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT delta, balance_after FROM gamification_ledger WHERE user_id = $1 ORDER BY id",
    )
    .bind(shopper(1).user_id)
    .fetch_all(&w.db.pool)
    .await
    .expect("ledger");
    assert_eq!(rows.len(), 40);
    let mut balance = 0;
    for (delta, after) in rows {
        balance += delta;
        assert_eq!(after, balance);
    }
    assert_eq!(w.balance(1).await, sum);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_repeats_of_one_source_award_it_once() {
    let w = World::new().await;
    let replicas = [w.app.clone(), w.replica()];
    let mut tasks = tokio::task::JoinSet::new();
    for app in replicas.iter().cycle().take(40) {
        let app = app.clone();
        tasks.spawn(async move {
            app.award(&shopper(1).user_id, Reason::Review, "review-1", None)
                .await
        });
    }
    let answers: Vec<_> = tasks
        .join_all()
        .await
        .into_iter()
        .map(|r| r.expect("award, never a conflict"))
        .collect();
    assert_eq!(answers.iter().filter(|a| !a.duplicate).count(), 1);
    for a in &answers {
        // Every repeat waited for the first award's commit and answers the account as stored.
        assert_eq!(
            (a.points, a.account.balance, a.account.reviews),
            (50, 50, 1)
        );
    }
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM gamification_ledger")
        .fetch_one(&w.db.pool)
        .await
        .expect("rows");
    assert_eq!(rows, 1);
}
