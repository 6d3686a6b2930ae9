//! What kit erases of a person by itself: the service's events that name them, once every
//! consumer group is done with those, and the dead letters that name them.

use redis::AsyncCommands;
use serde_json::json;
use titan_kit::{
    events::{Envelope, dead_letter_key, forget::forget, stream_key},
    testing::{TestRedis, publish},
};

async fn ids(redis: &TestRedis, stream: &str) -> Vec<String> {
    let mut conn = redis.handle.conn.clone();
    let entries: Vec<(String, Vec<(String, String)>)> =
        conn.xrange_all(stream).await.expect("xrange");
    entries.into_iter().map(|(id, _)| id).collect()
}

#[tokio::test]
async fn forgetting_a_person_deletes_only_the_events_every_group_is_done_with_and_their_dead_letters()
 {
    let redis = TestRedis::new().await;
    let handle = &redis.handle;
    let stream = stream_key(handle, "orders");
    let mut conn = handle.conn.clone();
    let () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&stream)
        .arg("points")
        .arg("$")
        .arg("MKSTREAM")
        .query_async(&mut conn)
        .await
        .expect("group");
    // ann's, joanna's (whose id contains "ann"), ann's again, then one more of ann's.
    for buyer in ["ann", "joanna", "ann", "ann"] {
        let event =
            Envelope::new("test", "orders.placed", 1, &json!({ "buyerId": buyer })).expect("event");
        publish(handle, "orders", &event).await;
    }
    let all = ids(&redis, &stream).await;
    // The group read the first three; it acknowledged the first two, the third stays pending.
    let read: redis::streams::StreamReadReply = conn
        .xread_options(
            &[&stream],
            &[">"],
            &redis::streams::StreamReadOptions::default()
                .group("points", "c1")
                .count(3),
        )
        .await
        .expect("read");
    assert_eq!(read.keys[0].ids.len(), 3);
    let acked: u64 = conn
        .xack(&stream, "points", &[&all[0], &all[1]])
        .await
        .expect("ack");
    assert_eq!(acked, 2);
    // A dead letter of the group that names ann, and one that does not.
    let dead = dead_letter_key(handle, "orders", "points");
    for buyer in ["ann", "bo"] {
        let _: String = conn
            .xadd(
                &dead,
                "*",
                &[
                    ("error", "boom".to_owned()),
                    (
                        "envelope",
                        json!({ "payload": { "buyerId": buyer } }).to_string(),
                    ),
                ],
            )
            .await
            .expect("dead letter");
    }
    let letters = ids(&redis, &dead).await;

    // Only the first entry: the third is pending, the fourth not delivered yet.
    assert_eq!(forget(handle, "orders", "ann").await.expect("forget"), 2);
    assert_eq!(
        ids(&redis, &stream).await,
        vec![all[1].clone(), all[2].clone(), all[3].clone()]
    );
    assert_eq!(ids(&redis, &dead).await, vec![letters[1].clone()]);

    // Once the group is done with everything, the rest of ann's goes; joanna's stays.
    let _: redis::streams::StreamReadReply = conn
        .xread_options(
            &[&stream],
            &[">"],
            &redis::streams::StreamReadOptions::default().group("points", "c1"),
        )
        .await
        .expect("read");
    let _: u64 = conn
        .xack(&stream, "points", &[&all[2], &all[3]])
        .await
        .expect("ack");
    assert_eq!(forget(handle, "orders", "ann").await.expect("forget"), 2);
    assert_eq!(ids(&redis, &stream).await, vec![all[1].clone()]);
    assert_eq!(forget(handle, "orders", "ann").await.expect("again"), 0);
    // A service that never published has nothing to forget.
    assert_eq!(forget(handle, "nothing", "ann").await.expect("none"), 0);
}

#[tokio::test]
async fn forgetting_a_users_budget_deletes_the_key_that_names_them() {
    use titan_kit::ratelimit::{RateLimit, RateLimiter};
    let redis = TestRedis::new().await;
    let limiter = RateLimiter::new(redis.handle.clone(), "test:calls");
    let limit = RateLimit {
        burst: 1,
        interval: std::time::Duration::from_secs(3600),
    };
    assert_eq!(limiter.check("ann", limit).await.expect("check"), Ok(()));
    assert!(limiter.check("ann", limit).await.expect("check").is_err());
    assert!(limiter.check("bo", limit).await.expect("check").is_ok());
    assert!(limiter.forget("ann").await.expect("forget"));
    assert!(!limiter.forget("ann").await.expect("again"), "nothing left");
    // A fresh budget for ann; bo's is untouched.
    assert_eq!(limiter.check("ann", limit).await.expect("check"), Ok(()));
    assert!(limiter.check("bo", limit).await.expect("check").is_err());
}
