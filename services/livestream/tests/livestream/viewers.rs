//! Viewer figures from heartbeats: concurrent within the window, peak, unique, likes and
//! shares; only LIVE streams are watched.

use titan_kit::ServiceError;
use titan_livestream::domain::{ViewerStats, viewers::Reaction};

use crate::{World, viewer};

#[tokio::test]
async fn heartbeats_count_concurrent_peak_and_unique_viewers() {
    let w = World::new().await;
    let (scheduled, _) = w.scheduled("sam").await;
    let e = w
        .app
        .heartbeat(&viewer("ann"), &scheduled.id.to_string())
        .await
        .expect_err("refused");
    assert_eq!(e.reason(), Some("WRONG_STATUS"));

    let s = w.live("sam").await;
    let id = s.id.to_string();
    for who in ["ann", "bob", "cat"] {
        w.app.heartbeat(&viewer(who), &id).await.expect("heartbeat");
    }
    // ann again: still three viewers.
    let stats = w.app.heartbeat(&viewer("ann"), &id).await.expect("ok");
    assert_eq!(
        stats,
        ViewerStats {
            concurrent: 3,
            peak: 3,
            unique: 3,
            likes: 0,
            shares: 0
        }
    );
    // 20 s later only ann beats; 15 s after that bob and cat are out of the 30 s window.
    w.clock.advance(chrono::Duration::seconds(20));
    w.app.heartbeat(&viewer("ann"), &id).await.expect("ok");
    w.clock.advance(chrono::Duration::seconds(15));
    assert_eq!(w.app.stats(&id).await.expect("ok").concurrent, 1);
    let stats = w.app.heartbeat(&viewer("dan"), &id).await.expect("ok");
    assert_eq!((stats.concurrent, stats.peak, stats.unique), (2, 3, 4));

    // Likes and shares, each call counted.
    w.app
        .react(&viewer("ann"), &id, Reaction::Like)
        .await
        .expect("ok");
    w.app
        .react(&viewer("bob"), &id, Reaction::Like)
        .await
        .expect("ok");
    let stats = w
        .app
        .react(&viewer("ann"), &id, Reaction::Share)
        .await
        .expect("ok");
    assert_eq!((stats.likes, stats.shares), (2, 1));
    // Another replica reads the same figures.
    assert_eq!(w.replica().app.stats(&id).await.expect("ok"), stats);
}

#[tokio::test]
async fn reactions_are_rate_limited_per_viewer() {
    let w = World::new().await;
    let s = w.live("sam").await;
    let id = s.id.to_string();
    for _ in 0..20 {
        w.app
            .react(&viewer("ann"), &id, Reaction::Like)
            .await
            .expect("within the burst");
    }
    let e = w
        .app
        .react(&viewer("ann"), &id, Reaction::Like)
        .await
        .expect_err("refused");
    assert_eq!(e.reason(), Some("RATE_LIMITED"));
    // Another viewer has a budget of its own.
    let stats = w
        .app
        .react(&viewer("bob"), &id, Reaction::Like)
        .await
        .expect("ok");
    assert_eq!(stats.likes, 21);
}
