//! Leaderboards: order by points, ties to who got there first, a page and a rank with
//! neighbours, per period, and rebuilt from the ledger after Redis lost them.

use chrono::Duration;
use titan_gamification::{app::Entry, domain::Period};

use crate::{World, shopper};

fn board(entries: &[Entry]) -> Vec<(u64, String, i64)> {
    entries
        .iter()
        .map(|e| (e.rank, e.user_id.clone(), e.points))
        .collect()
}

/// Deletes every key of the test's prefix, as a Redis that lost its data.
pub async fn wipe_redis(w: &World) {
    let mut conn = w.redis.conn.clone();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(w.redis.key("*"))
        .query_async(&mut conn)
        .await
        .expect("keys");
    if !keys.is_empty() {
        let _: i64 = redis::cmd("DEL")
            .arg(&keys)
            .query_async(&mut conn)
            .await
            .expect("del");
    }
}

#[tokio::test]
async fn ties_go_to_whoever_reached_the_score_first() {
    let w = World::new().await;
    // Shopper 2 reaches 30 first, shopper 3 a minute later, shopper 1 a minute after that.
    w.buy(2, 3_000).await;
    w.clock.advance(Duration::minutes(1));
    w.buy(3, 1_000).await;
    w.buy(3, 2_000).await;
    w.clock.advance(Duration::minutes(1));
    w.buy(1, 3_000).await;
    w.buy(4, 5_000).await;
    w.buy(5, 1_000).await;
    w.app.feed_all().await.expect("feed");
    let (name, page) = w.app.leaderboard(Period::AllTime, 0).await.expect("board");
    assert_eq!(name, "all");
    let want = vec![
        (1, "shopper-4".to_owned(), 50),
        (2, "shopper-2".to_owned(), 30),
        (3, "shopper-3".to_owned(), 30),
        (4, "shopper-1".to_owned(), 30),
        (5, "shopper-5".to_owned(), 10),
    ];
    assert_eq!(board(&page), want);

    let r = w
        .app
        .rank(&shopper(3), Period::AllTime, "", 1)
        .await
        .expect("rank");
    assert_eq!(r.entry.map(|e| (e.rank, e.points)), Some((3, 30)));
    assert_eq!(board(&r.above), vec![(2, "shopper-2".to_owned(), 30)]);
    assert_eq!(board(&r.below), vec![(4, "shopper-1".to_owned(), 30)]);
    let top = w
        .app
        .rank(&shopper(4), Period::AllTime, "", 2)
        .await
        .expect("top");
    assert!(top.above.is_empty());
    assert_eq!(top.below.len(), 2);
    let none = w
        .app
        .rank(&shopper(9), Period::AllTime, "", 2)
        .await
        .expect("absent");
    assert_eq!(none.entry, None);

    // Spending does not move anyone down; earning more moves a shopper up.
    w.buy(5, 4_100).await;
    w.app.feed_all().await.expect("feed");
    let (_, page) = w.app.leaderboard(Period::AllTime, 0).await.expect("board");
    assert_eq!(page[0].user_id, "shopper-5");
    assert_eq!(page[0].points, 51);

    // Redis loses everything: the boards come back from the ledger, ties included.
    wipe_redis(&w).await;
    let (_, rebuilt) = w
        .app
        .leaderboard(Period::AllTime, 0)
        .await
        .expect("rebuilt");
    assert_eq!(
        board(&rebuilt),
        vec![
            (1, "shopper-5".to_owned(), 51),
            (2, "shopper-4".to_owned(), 50),
            (3, "shopper-2".to_owned(), 30),
            (4, "shopper-3".to_owned(), 30),
            (5, "shopper-1".to_owned(), 30),
        ]
    );
    w.app.feed_all().await.expect("feed again");
    let (_, again) = w.app.leaderboard(Period::AllTime, 0).await.expect("board");
    assert_eq!(again, rebuilt, "replaying never counts a row twice");
}

#[tokio::test]
async fn daily_and_weekly_boards_cover_their_period() {
    let w = World::new().await;
    w.buy(1, 5_000).await; // Wednesday
    w.clock.advance(Duration::days(1));
    w.buy(2, 2_000).await; // Thursday, same ISO week
    w.app.feed_all().await.expect("feed");
    let (day, daily) = w.app.leaderboard(Period::Daily, 0).await.expect("daily");
    assert_eq!(day, "day:2026-11-26");
    assert_eq!(board(&daily), vec![(1, "shopper-2".to_owned(), 20)]);
    let (week, weekly) = w.app.leaderboard(Period::Weekly, 0).await.expect("weekly");
    assert_eq!(week, "week:2026-W48");
    assert_eq!(weekly.len(), 2);
    assert_eq!(weekly[0].user_id, "shopper-1");
    w.clock.advance(Duration::days(5)); // Tuesday of the next week
    let (_, next) = w
        .app
        .leaderboard(Period::Weekly, 0)
        .await
        .expect("next week");
    assert!(next.is_empty());
}
