//! Leaderboards on a real Redis Cluster (three masters, a replica each): every board of a row
//! is updated by one script over keys of one slot (the `{lb}` hash tag), and pages, ranks and
//! a rebuild from the ledger read back exactly as on a single server.

use chrono::Duration;
use titan_gamification::{app::Entry, config::Settings, domain::Period};
use titan_kit::testing::TestRedis;

use crate::{World, leaderboard::wipe_redis, shopper};

fn board(entries: &[Entry]) -> Vec<(u64, String, i64)> {
    entries
        .iter()
        .map(|e| (e.rank, e.user_id.clone(), e.points))
        .collect()
}

/// The expected board: shoppers 12 down to 7 (120 to 70 points), then 6 and 13 tied at 60
/// (6 got there first), then 5 down to 1.
fn expected() -> Vec<(u64, String, i64)> {
    let order = [12, 11, 10, 9, 8, 7, 6, 13, 5, 4, 3, 2, 1];
    order
        .into_iter()
        .zip(1..)
        .map(|(n, rank)| {
            let points = if n == 13 { 60 } else { 10 * i64::from(n) };
            (rank, format!("shopper-{n}"), points)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_redis_cluster_leaderboards_rank_every_shopper_exactly() {
    let settings = Settings {
        leaderboard_page_size: 5,
        ..Settings::default()
    };
    let w = World::with_redis(settings, TestRedis::cluster().await.handle).await;
    // Shopper n earns 10n points over two purchases; a minute later shopper 13 reaches 60 in
    // one, after shopper 6 did.
    for n in 1..=12 {
        w.buy(n, i64::from(n) * 600).await;
        w.buy(n, i64::from(n) * 400).await;
    }
    w.clock.advance(Duration::minutes(1));
    w.buy(13, 6_000).await;
    w.app.feed_all().await.expect("feed");

    let want = expected();
    // The top 5, then the next pages of 5.
    for (page, chunk) in want.chunks(5).enumerate() {
        let page = u32::try_from(page).expect("a page number");
        let (name, entries) = w
            .app
            .leaderboard(Period::AllTime, page)
            .await
            .expect("board");
        assert_eq!(name, "all");
        assert_eq!(board(&entries), chunk, "page {page}");
    }
    let (_, past_the_end) = w.app.leaderboard(Period::AllTime, 3).await.expect("board");
    assert!(past_the_end.is_empty());
    // Every period's board counted the same rows (one script call updates all three).
    for period in [Period::Daily, Period::Weekly] {
        let (_, top) = w.app.leaderboard(period, 0).await.expect("board");
        assert_eq!(board(&top), want[..5], "{period:?}");
    }

    let r = w
        .app
        .rank(&shopper(13), Period::AllTime, "", 2)
        .await
        .expect("rank");
    assert_eq!(r.entry.map(|e| (e.rank, e.points)), Some((8, 60)));
    assert_eq!(board(&r.above), want[5..7]);
    assert_eq!(board(&r.below), want[8..10]);

    // Another replica on the same cluster reads the whole board (its pages hold 50).
    let (_, all) = w
        .replica()
        .leaderboard(Period::AllTime, 0)
        .await
        .expect("board");
    assert_eq!(board(&all), want);

    // The cluster loses the boards: they come back from the ledger, ties included.
    wipe_redis(&w).await;
    let (_, rebuilt) = w
        .replica()
        .leaderboard(Period::AllTime, 0)
        .await
        .expect("rebuilt");
    assert_eq!(board(&rebuilt), want);
}
