//! Comments: caps and refusals that store nothing, idempotent posts, the per-viewer rate,
//! pins up to the limit by the seller only, featured products, and pushes that reach a
//! listener on another replica.

use serde_json::Value;
use titan_kit::ServiceError;
use titan_livestream::domain::topic;

use crate::{World, rid, seller, viewer};

async fn frame(listener: &mut titan_kit::realtime::Listener) -> Value {
    let text = tokio::time::timeout(std::time::Duration::from_secs(30), listener.next())
        .await
        .expect("a push in time")
        .expect("not lagged");
    serde_json::from_str(text.as_str()).expect("json frame")
}

#[tokio::test]
async fn comments_are_capped_idempotent_and_pushed_to_every_replica() {
    let w = World::new().await;
    let (scheduled, _) = w.scheduled("sam").await;
    let e = w
        .app
        .post_comment(&viewer("ann"), &rid(), &scheduled.id.to_string(), "early")
        .await
        .expect_err("refused");
    assert_eq!(e.reason(), Some("WRONG_STATUS"));

    let s = w.live("sam").await;
    let id = s.id.to_string();
    let other = w.replica();
    let mut listener = other
        .realtime
        .listen(&topic(s.id), 16)
        .await
        .expect("listen");

    for (text, message) in [
        ("", "text: is required"),
        (
            &*"x".repeat(501),
            "text: has 501 characters; at most 500 are allowed",
        ),
        ("bell\u{7}", "text: must not contain control characters"),
    ] {
        let e = w
            .app
            .post_comment(&viewer("ann"), &rid(), &id, text)
            .await
            .expect_err("refused");
        assert_eq!(e.to_string(), message);
    }
    assert_eq!(w.count("livestream_comments").await, 0);

    let request = rid();
    let c = w
        .app
        .post_comment(&viewer("ann"), &request, &id, " love it\n!! ")
        .await
        .expect("ok");
    assert_eq!(
        (c.text.as_str(), c.user_id.as_str()),
        ("love it\n!!", "ann")
    );
    let again = w
        .app
        .post_comment(&viewer("ann"), &request, &id, "love it\n!!")
        .await
        .expect("ok");
    assert_eq!(again, c);
    assert_eq!(w.count("livestream_comments").await, 1);

    let pushed = frame(&mut listener).await;
    assert_eq!(pushed["type"], "comment");
    assert_eq!(pushed["payload"]["id"], c.id.to_string());
    assert_eq!(pushed["payload"]["text"], "love it\n!!");

    // Featured products reach the other replica too; only the seller sets them.
    let e = w
        .app
        .feature(&seller("eve"), &id, &["p1".into()])
        .await
        .expect_err("refused");
    assert_eq!(e.reason(), Some("NOT_THE_SELLER"));
    let featured = w
        .app
        .feature(&seller("sam"), &id, &["p2".into(), "p1".into()])
        .await
        .expect("ok");
    assert_eq!(featured.featured.as_slice(), ["p2", "p1"]);
    let pushed = frame(&mut listener).await;
    assert_eq!(pushed["type"], "featured");
    assert_eq!(
        pushed["payload"]["productIds"],
        serde_json::json!(["p2", "p1"])
    );
}

#[tokio::test]
async fn a_viewer_comments_at_a_bounded_rate() {
    let w = World::new().await;
    let s = w.live("sam").await;
    let id = s.id.to_string();
    for n in 0..5 {
        w.app
            .post_comment(&viewer("ann"), &rid(), &id, &format!("c{n}"))
            .await
            .expect("within the burst");
    }
    let e = w
        .app
        .post_comment(&viewer("ann"), &rid(), &id, "one more")
        .await
        .expect_err("refused");
    assert_eq!(e.reason(), Some("RATE_LIMITED"));
    assert_eq!(w.count("livestream_comments").await, 5);
    w.app
        .post_comment(&viewer("bob"), &rid(), &id, "mine")
        .await
        .expect("own budget");
}

#[tokio::test]
async fn the_seller_pins_up_to_the_limit_and_pages_read_newest_first() {
    let w = World::new().await;
    let s = w.live("sam").await;
    let id = s.id.to_string();
    let mut comments = Vec::new();
    for who in ["ann", "bob", "cat", "dan"] {
        comments.push(
            w.app
                .post_comment(&viewer(who), &rid(), &id, who)
                .await
                .expect("ok"),
        );
    }
    let cid = |n: usize| comments[n].id.to_string();
    let e = w
        .app
        .pin(&viewer("ann"), &id, &cid(0), true)
        .await
        .expect_err("refused");
    assert_eq!(e.reason(), Some("NOT_THE_SELLER"));
    let pinned = w
        .app
        .pin(&seller("sam"), &id, &cid(0), true)
        .await
        .expect("ok");
    assert_eq!(pinned.pinned_at, Some(w.clock.now()));
    // Pinning twice changes nothing and does not count twice.
    assert_eq!(
        w.app
            .pin(&seller("sam"), &id, &cid(0), true)
            .await
            .expect("ok"),
        pinned
    );
    w.app
        .pin(&seller("sam"), &id, &cid(1), true)
        .await
        .expect("ok");
    let e = w
        .app
        .pin(&seller("sam"), &id, &cid(2), true)
        .await
        .expect_err("refused");
    assert_eq!(e.reason(), Some("TOO_MANY_PINNED"));
    assert_eq!(
        w.app
            .pin(&seller("sam"), &id, &cid(0), false)
            .await
            .expect("ok")
            .pinned_at,
        None
    );
    w.app
        .pin(&seller("sam"), &id, &cid(2), true)
        .await
        .expect("ok");
    let e = w
        .app
        .pin(&seller("sam"), &id, &uuid::Uuid::now_v7().to_string(), true)
        .await
        .expect_err("refused");
    assert_eq!(e.reason(), Some("COMMENT_NOT_FOUND"));

    let (pins, _) = w.app.comments(&id, true, 0, "").await.expect("ok");
    assert_eq!(
        pins.iter().map(|c| c.id).collect::<Vec<_>>(),
        [comments[2].id, comments[1].id]
    );
    let (page, token) = w.app.comments(&id, false, 3, "").await.expect("ok");
    assert_eq!(
        page.iter().map(|c| c.text.as_str()).collect::<Vec<_>>(),
        ["dan", "cat", "bob"]
    );
    let (rest, end) = w.app.comments(&id, false, 3, &token).await.expect("ok");
    assert_eq!(
        (rest.len(), rest[0].text.as_str(), end.as_str()),
        (1, "ann", "")
    );
}
