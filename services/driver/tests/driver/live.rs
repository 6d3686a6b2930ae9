//! The Redis side on real servers: the nearby set follows status and positions, a watch on
//! one replica sees positions reported on another, a slow watcher is dropped, and the sweep
//! prunes old history and repairs the nearby set from PostgreSQL.

use chrono::Duration;
use titan_driver::domain::DriverStatus;

use crate::{World, dispatcher, reason, rid, user};

/// The ids of the drivers near (1.30, 103.80), nearest first.
async fn nearby(w: &World) -> Vec<uuid::Uuid> {
    w.app
        .nearby(&dispatcher(), 1.30, 103.80, 0, 0)
        .await
        .expect("nearby")
        .into_iter()
        .map(|n| n.driver_id)
        .collect()
}

#[tokio::test]
async fn nearby_finds_available_drivers_nearest_first_in_step_with_status() {
    let w = World::new().await;
    let ann = w.available("ann", 10).await;
    let bob = w.available("bob", 10).await;
    let cy = w.available("cy", 10).await;
    let t = w.clock.now();
    // ann 1.1 km away, bob 0.2 km, cy 20 km: outside the 5 km default radius.
    w.app
        .report_position(&user("ann"), 1.31, 103.80, t)
        .await
        .expect("ann");
    w.app
        .report_position(&user("bob"), 1.30, 103.8018, t)
        .await
        .expect("bob");
    w.app
        .report_position(&user("cy"), 1.48, 103.80, t)
        .await
        .expect("cy");
    assert_eq!(nearby(&w).await, [bob.id, ann.id]);
    let found = w
        .app
        .nearby(&dispatcher(), 1.30, 103.80, 0, 1)
        .await
        .expect("one");
    assert_eq!(found.len(), 1);
    assert!((found[0].distance_m - 200.0).abs() < 2.0, "{found:?}");
    let wide = w
        .app
        .nearby(&dispatcher(), 1.30, 103.80, 30_000, 0)
        .await
        .expect("wide");
    assert_eq!(
        wide.iter().map(|n| n.driver_id).collect::<Vec<_>>(),
        [bob.id, ann.id, cy.id]
    );
    // A break takes bob out; a move brings ann nearer than anyone.
    w.app
        .set_status(&user("bob"), &rid(), "ON_BREAK")
        .await
        .expect("break");
    w.clock.advance(Duration::seconds(60));
    w.app
        .report_position(&user("ann"), 1.30, 103.80, t + Duration::seconds(60))
        .await
        .expect("ann moves");
    assert_eq!(nearby(&w).await, [ann.id]);
    // A route takes ann out too; a driver who is not AVAILABLE and reports stays out.
    let d = w.delivery("cus", 1).await;
    w.app
        .assign_route(
            &dispatcher(),
            &rid(),
            &ann.id.to_string(),
            &[(d.id.to_string(), t)],
        )
        .await
        .expect("assign");
    w.app
        .report_position(&user("bob"), 1.30, 103.80, t + Duration::seconds(60))
        .await
        .expect("bob reports on break");
    assert_eq!(nearby(&w).await, Vec::<uuid::Uuid>::new());
    // Refusals name the field; a driver may not search.
    assert_eq!(
        reason(w.app.nearby(&user("ann"), 1.3, 103.8, 0, 0).await),
        "NOT_A_DISPATCHER"
    );
    for (lat, radius, limit, field) in [
        (91.0, 0, 0, "lat"),
        (1.3, 100_001, 0, "radius_m"),
        (1.3, 0, w.settings.nearby_limit + 1, "limit"),
    ] {
        match w.app.nearby(&dispatcher(), lat, 103.8, radius, limit).await {
            Err(titan_driver::app::DriverError::Invalid(e)) => assert_eq!(e.field, field),
            other => panic!("expected {field} refused, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_watch_on_one_replica_sees_positions_reported_on_another() {
    let w = World::new().await;
    let other = w.replica();
    let ann = w.available("ann", 10).await;
    let t = w.clock.now();
    w.app
        .report_position(&user("ann"), 1.30, 103.80, t)
        .await
        .expect("first");
    let id = ann.id.to_string();
    assert_eq!(
        reason(other.watch(&user("eve"), &id).await),
        "NOT_A_WATCHER"
    );
    let mut watch = other.watch(&dispatcher(), &id).await.expect("watch");
    // The latest known position comes first.
    let first = watch.next().await.expect("latest");
    assert_eq!((first.lat, first.lng, first.at), (1.30, 103.80, t));
    for i in 1..=3 {
        w.app
            .report_position(
                &user("ann"),
                1.30 + 0.001 * f64::from(i),
                103.80,
                t + Duration::seconds(i.into()),
            )
            .await
            .expect("report");
    }
    for i in 1..=3 {
        let p = tokio::time::timeout(std::time::Duration::from_secs(10), watch.next())
            .await
            .expect("in time")
            .expect("position");
        assert_eq!(p.at, t + Duration::seconds(i.into()));
    }
    // The driver may watch themself, and starts from the latest position too.
    let mut mine = other.watch(&user("ann"), &id).await.expect("own watch");
    assert_eq!(
        mine.next().await.expect("latest").at,
        t + Duration::seconds(3)
    );
}

#[tokio::test]
async fn a_watcher_that_falls_behind_is_dropped() {
    let w = World::new().await;
    let ann = w.available("ann", 10).await;
    let mut watch = w
        .app
        .watch(&dispatcher(), &ann.id.to_string())
        .await
        .expect("watch");
    let mut witness = w.live.listen(ann.id, 100).await.expect("witness");
    let t = w.clock.now();
    // The test buffer holds 4; ten unread positions overflow it.
    for i in 0..10 {
        w.app
            .report_position(&user("ann"), 1.30, 103.80, t + Duration::seconds(i))
            .await
            .expect("report");
    }
    // The hub hands each message to every listener of the topic in one go: once a
    // witness with room for all ten has the tenth, the watch was offered all ten.
    for _ in 0..10 {
        witness.next().await.expect("witness");
    }
    let mut seen = 0;
    let err = loop {
        match tokio::time::timeout(std::time::Duration::from_secs(10), watch.next())
            .await
            .expect("in time")
        {
            Ok(_) => seen += 1,
            Err(e) => break e,
        }
    };
    assert!(seen <= 4, "saw {seen} positions before the cut");
    assert_eq!(titan_kit::ServiceError::reason(&err), Some("SLOW_CONSUMER"));
}

#[tokio::test]
async fn the_sweep_prunes_old_history_and_repairs_the_nearby_set() {
    let w = World::new().await;
    let ann = w.available("ann", 10).await;
    let bob = w.available("bob", 10).await;
    let t = w.clock.now();
    w.app
        .report_position(&user("ann"), 1.30, 103.80, t)
        .await
        .expect("report");
    w.clock.advance(Duration::hours(1));
    w.app
        .report_position(&user("bob"), 1.30, 103.80, w.clock.now())
        .await
        .expect("report");
    w.app
        .report_position(
            &user("ann"),
            1.30,
            103.80,
            w.clock.now() + Duration::seconds(1),
        )
        .await
        .expect("report");
    // Redis loses its set (a failed write after a commit, a flushed server).
    let _: i64 = redis::cmd("DEL")
        .arg(w.redis.key("driver:available"))
        .query_async(&mut w.redis.conn.clone())
        .await
        .expect("del");
    assert_eq!(nearby(&w).await, Vec::<uuid::Uuid>::new());
    // 720 hours later only the history younger than the retention stays.
    w.clock.advance(
        Duration::hours(i64::from(w.settings.position_retention_hours)) - Duration::minutes(30),
    );
    let pruned = w.app.sweep().await.expect("sweep");
    assert_eq!(pruned, Some(1));
    let left: Vec<(uuid::Uuid, chrono::DateTime<chrono::Utc>)> =
        sqlx::query_as("SELECT driver_id, at FROM driver_positions ORDER BY at")
            .fetch_all(&w.db.pool)
            .await
            .expect("history");
    assert_eq!(
        left,
        [
            (bob.id, t + Duration::hours(1)),
            (ann.id, t + Duration::hours(1) + Duration::seconds(1)),
        ]
    );
    let mut near = nearby(&w).await;
    near.sort();
    let mut both = vec![ann.id, bob.id];
    both.sort();
    assert_eq!(near, both);
    assert_eq!(
        w.app.driver(ann.id).await.expect("ann").status,
        DriverStatus::Available
    );
}
