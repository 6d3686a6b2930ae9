//! SCHEDULED → LIVE → ENDED and CANCELLED, driven by the seller and by nginx's callbacks;
//! keys shown once, stored hashed, rotated and revoked.

use titan_kit::ServiceError;
use titan_livestream::{
    app::Admission,
    domain::{Status, StreamKey},
};

use crate::{World, rid, seller, viewer};

fn reason(e: &impl ServiceError) -> &'static str {
    e.reason().unwrap_or("none")
}

async fn key_hash(w: &World, id: uuid::Uuid) -> Option<Vec<u8>> {
    sqlx::query_scalar("SELECT key_hash FROM livestream_streams WHERE id = $1")
        .bind(id)
        .fetch_one(&w.db.pool)
        .await
        .expect("key hash")
}

#[tokio::test]
async fn only_sellers_schedule_and_the_key_is_shown_once_and_stored_hashed() {
    let w = World::new().await;
    let at = Some(w.clock.now());
    let e = w
        .app
        .schedule(&viewer("bob"), &rid(), "Mine", at)
        .await
        .expect_err("refused");
    assert_eq!(reason(&e), "SELLER_ONLY");
    let e = w
        .app
        .schedule(&seller("sam"), &rid(), " ", at)
        .await
        .expect_err("refused");
    assert_eq!(e.to_string(), "title: is required");
    let e = w
        .app
        .schedule(&seller("sam"), &rid(), "Drop", None)
        .await
        .expect_err("refused");
    assert_eq!(e.to_string(), "scheduled_at: is required");
    assert_eq!(w.count("livestream_streams").await, 0);

    let request = rid();
    let (s, key) = w
        .app
        .schedule(&seller("sam"), &request, "Drop", at)
        .await
        .expect("schedule");
    let key = key.expect("key shown");
    assert_eq!(s.status, Status::Scheduled);
    assert_eq!(s.seller_id, "sam");
    // Only the SHA-256 of the key is stored.
    let stored = key_hash(&w, s.id.uuid()).await.expect("hash");
    assert_eq!(stored, key.hash().as_bytes());
    assert_ne!(stored, key.reveal().as_bytes());
    // A replay answers the same stream without the key; another body is refused.
    let (again, none) = w
        .app
        .schedule(&seller("sam"), &request, "Drop", at)
        .await
        .expect("replay");
    assert_eq!((again.id, none), (s.id, None));
    let e = w
        .app
        .schedule(&seller("sam"), &request, "Other", at)
        .await
        .expect_err("refused");
    assert_eq!(reason(&e), "REQUEST_ID_REUSED");
    assert_eq!(w.count("livestream_streams").await, 1);
}

#[tokio::test]
async fn a_key_admits_one_publisher_once_and_is_revoked_at_the_end() {
    let w = World::new().await;
    let (s, key) = w.scheduled("sam").await;
    // Wrong keys, malformed names and other applications are refused and change nothing.
    let other = StreamKey::generate(24);
    for (app, name) in [
        ("live", other.reveal()),
        ("live", "not-a-key"),
        ("live", ""),
        ("other", key.reveal()),
    ] {
        assert!(
            matches!(
                w.app.on_publish(app, name).await.expect("callback"),
                Admission::Refused(_)
            ),
            "{app} {name}"
        );
    }
    assert_eq!(
        w.app.get(&s.id.to_string()).await.expect("ok").status,
        Status::Scheduled
    );

    assert_eq!(
        w.app.on_publish("live", key.reveal()).await.expect("ok"),
        Admission::Admitted(s.id)
    );
    let live = w.app.get(&s.id.to_string()).await.expect("ok");
    assert_eq!(live.status, Status::Live);
    assert_eq!(live.started_at, Some(w.clock.now()));
    assert_eq!(
        live.hls_url(w.settings.hls_base_url.as_deref()),
        Some(format!("http://media.test/hls/{}.m3u8", s.id))
    );
    // A second publisher on the LIVE key is refused.
    let Admission::Refused(why) = w.app.on_publish("live", key.reveal()).await.expect("ok") else {
        panic!("a second publisher was admitted");
    };
    assert_eq!(why, format!("stream {} is LIVE and cannot go live", s.id));

    // nginx reports the end with the name it renamed the stream to (its id).
    w.clock.advance(chrono::Duration::minutes(5));
    let ended = w
        .app
        .on_publish_done(&s.id.to_string())
        .await
        .expect("ok")
        .expect("stream");
    assert_eq!(ended.status, Status::Ended);
    assert_eq!(ended.ended_at, Some(w.clock.now()));
    assert_eq!(key_hash(&w, s.id.uuid()).await, None);
    // The revoked key admits nobody, and the repeat of the end changes nothing.
    assert!(matches!(
        w.app.on_publish("live", key.reveal()).await.expect("ok"),
        Admission::Refused(_)
    ));
    let again = w
        .app
        .on_publish_done(&s.id.to_string())
        .await
        .expect("ok")
        .expect("stream");
    assert_eq!(again.ended_at, ended.ended_at);
}

#[tokio::test]
async fn the_end_may_also_be_reported_by_key() {
    let w = World::new().await;
    let (s, key) = w.scheduled("sam").await;
    w.app.on_publish("live", key.reveal()).await.expect("ok");
    let ended = w
        .app
        .on_publish_done(key.reveal())
        .await
        .expect("ok")
        .expect("stream");
    assert_eq!((ended.id, ended.status), (s.id, Status::Ended));
    // Unknown names: nothing ends.
    assert!(
        w.app
            .on_publish_done(&uuid::Uuid::now_v7().to_string())
            .await
            .expect("ok")
            .is_none()
    );
    assert_eq!(
        w.app
            .on_publish_done("garbage")
            .await
            .expect_err("refused")
            .to_string(),
        "name: \"garbage\" is not a stream id"
    );
}

#[tokio::test]
async fn sellers_edit_cancel_and_rotate_only_their_scheduled_streams() {
    let w = World::new().await;
    let (s, key) = w.scheduled("sam").await;
    let id = s.id.to_string();
    let e = w
        .app
        .update(&seller("eve"), &id, "Mine now", None)
        .await
        .expect_err("refused");
    assert_eq!(reason(&e), "NOT_THE_SELLER");
    let e = w
        .app
        .update(&seller("sam"), &id, "", None)
        .await
        .expect_err("refused");
    assert_eq!(e.to_string(), "title: set title or scheduled_at to change");
    let later = w.clock.now() + chrono::Duration::hours(2);
    let edited = w
        .app
        .update(&seller("sam"), &id, "Summer drop", Some(later))
        .await
        .expect("ok");
    assert_eq!(
        (edited.title.as_str(), edited.scheduled_at),
        ("Summer drop", later)
    );

    // Rotation: the old key stops working at once, the new one admits; a replay shows no key.
    let request = rid();
    let e = w
        .app
        .rotate(&seller("eve"), &request, &id)
        .await
        .expect_err("refused");
    assert_eq!(reason(&e), "NOT_THE_SELLER");
    let new = w
        .app
        .rotate(&seller("sam"), &request, &id)
        .await
        .expect("ok")
        .expect("new key");
    assert_eq!(
        w.app
            .rotate(&seller("sam"), &request, &id)
            .await
            .expect("ok"),
        None
    );
    assert!(matches!(
        w.app.on_publish("live", key.reveal()).await.expect("ok"),
        Admission::Refused(_)
    ));
    assert_eq!(
        w.app.on_publish("live", new.reveal()).await.expect("ok"),
        Admission::Admitted(s.id)
    );

    // LIVE: no edits, no cancel, no rotation.
    let e = w
        .app
        .update(&seller("sam"), &id, "x", None)
        .await
        .expect_err("refused");
    assert_eq!(reason(&e), "WRONG_STATUS");
    let e = w
        .app
        .cancel(&seller("sam"), &id)
        .await
        .expect_err("refused");
    assert_eq!(
        e.to_string(),
        format!("stream {id} is LIVE and cannot be cancelled")
    );
    let e = w
        .app
        .rotate(&seller("sam"), &rid(), &id)
        .await
        .expect_err("refused");
    assert_eq!(reason(&e), "WRONG_STATUS");
}

#[tokio::test]
async fn a_cancelled_stream_revokes_its_key_and_never_goes_live() {
    let w = World::new().await;
    let (s, key) = w.scheduled("sam").await;
    let id = s.id.to_string();
    let e = w
        .app
        .cancel(&seller("eve"), &id)
        .await
        .expect_err("refused");
    assert_eq!(reason(&e), "NOT_THE_SELLER");
    let c = w.app.cancel(&seller("sam"), &id).await.expect("ok");
    assert_eq!(c.status, Status::Cancelled);
    assert_eq!(key_hash(&w, s.id.uuid()).await, None);
    assert_eq!(
        w.app
            .cancel(&seller("sam"), &id)
            .await
            .expect("ok")
            .ended_at,
        c.ended_at
    );
    assert!(matches!(
        w.app.on_publish("live", key.reveal()).await.expect("ok"),
        Admission::Refused(_)
    ));
    let e = w
        .app
        .get(&uuid::Uuid::now_v7().to_string())
        .await
        .expect_err("refused");
    assert_eq!(reason(&e), "STREAM_NOT_FOUND");
}

#[tokio::test]
async fn streams_are_listed_newest_first_in_pages() {
    let w = World::new().await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(w.scheduled("sam").await.0.id);
    }
    w.scheduled("other").await;
    ids.reverse();
    let (first, token) = w.app.list("sam", None, 3, "").await.expect("ok");
    assert_eq!(first.iter().map(|s| s.id).collect::<Vec<_>>(), ids[..3]);
    let (rest, end) = w.app.list("sam", None, 3, &token).await.expect("ok");
    assert_eq!(rest.iter().map(|s| s.id).collect::<Vec<_>>(), ids[3..]);
    assert_eq!(end, "");
    let (all, _) = w
        .app
        .list("", Some(Status::Scheduled), 100, "")
        .await
        .expect("ok");
    assert_eq!(all.len(), 6);
    let (none, _) = w.app.list("", Some(Status::Live), 0, "").await.expect("ok");
    assert!(none.is_empty());
    let e = w.app.list("", None, 101, "").await.expect_err("refused");
    assert_eq!(
        e.to_string(),
        "page_size: 101 is above the largest page of 100"
    );
}
