//! Feeds across two replicas (two apps with hubs of their own on one Redis prefix): the
//! backlog after the last id seen, then live messages, in seq order with no gap and no
//! duplicate, while another replica keeps sending.

use titan_chat::{
    domain::{Message, MessageKind, Metadata},
    feed::Event,
};
use titan_kit::{ServiceError, testing::ws::PATIENCE};

use crate::{World, rid, user};

async fn next(feed: &mut titan_chat::feed::Feed<titan_chat::store::pg::PgChat>) -> Event {
    tokio::time::timeout(PATIENCE, feed.next())
        .await
        .expect("an event in time")
        .expect("event")
}

async fn next_message(feed: &mut titan_chat::feed::Feed<titan_chat::store::pg::PgChat>) -> Message {
    loop {
        if let Event::Message(m) = next(feed).await {
            return m;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_resumed_feed_gets_the_backlog_then_live_messages_once_in_order() {
    let w = World::new().await;
    let c = w.direct("ann", "bob").await;
    let first = w.text("ann", &c, "before the disconnect").await;
    for n in 0..5 {
        w.text("ann", &c, &format!("while away {n}")).await;
    }
    let b = w.replica();
    let mut feed = b
        .feed(&user("bob"), &c.id.to_string(), &first.id.to_string())
        .await
        .expect("feed");
    // Replica A keeps sending while B's feed is still reading its backlog.
    let a = w.app.clone();
    let id = c.id.to_string();
    let sender = tokio::spawn(async move {
        for n in 0..200 {
            a.send(
                &user("ann"),
                &rid(),
                &id,
                MessageKind::Text,
                &format!("live {n}"),
                Metadata::default(),
            )
            .await
            .expect("send");
        }
    });
    let mut seqs = Vec::new();
    for _ in 0..205 {
        seqs.push(next_message(&mut feed).await.seq);
    }
    sender.await.expect("sender");
    assert_eq!(
        seqs,
        (2..=206).collect::<Vec<_>>(),
        "every message once, in order"
    );
    let last = w.text("ann", &c, "after").await;
    assert_eq!(next_message(&mut feed).await.id, last.id);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fresh_feed_gets_what_comes_next_with_edits_receipts_and_typing() {
    let w = World::new().await;
    let c = w.direct("ann", "bob").await;
    w.text("ann", &c, "old news").await;
    let id = c.id.to_string();
    let mut feed = w.replica().feed(&user("bob"), &id, "").await.expect("feed");
    let m = w.text("ann", &c, "new").await;
    assert_eq!(next_message(&mut feed).await, m);
    w.app
        .edit(&user("ann"), &id, &m.id.to_string(), "newer")
        .await
        .expect("edit");
    match next(&mut feed).await {
        Event::Updated(u) => assert_eq!(u.content, "newer"),
        other => panic!("expected the edit, got {other:?}"),
    }
    w.app
        .mark(&user("bob"), &id, "", &m.id.to_string())
        .await
        .expect("mark");
    match next(&mut feed).await {
        Event::Receipt(r) => assert_eq!(r.markers.read_up_to, Some(m.id)),
        other => panic!("expected the receipt, got {other:?}"),
    }
    w.app
        .set_typing(&user("ann"), &id, true)
        .await
        .expect("typing");
    match next(&mut feed).await {
        Event::Typing(t) => assert!(t.typing && t.user_id.as_str() == "ann"),
        other => panic!("expected typing, got {other:?}"),
    }
    let e = w
        .app
        .feed(&user("bob"), &id, &uuid::Uuid::now_v7().to_string())
        .await
        .expect_err("unknown after");
    assert_eq!(e.reason(), Some("INVALID_ARGUMENT"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_publication_is_filled_from_the_store_before_the_next_message() {
    let w = World::new().await;
    let c = w.direct("ann", "bob").await;
    let mut feed = w
        .replica()
        .feed(&user("bob"), &c.id.to_string(), "")
        .await
        .expect("feed");
    // A message stored without its publication (the publishing replica lost Redis).
    let lost = uuid::Uuid::now_v7();
    sqlx::query("UPDATE chat_conversations SET last_seq = 1, last_message_id = $2 WHERE id = $1")
        .bind(c.id.uuid())
        .bind(lost)
        .execute(&w.db.pool)
        .await
        .expect("seq");
    sqlx::query(
        "INSERT INTO chat_messages (conversation_id, id, seq, sender_id, kind, content, sent_at) \
         VALUES ($1, $2, 1, 'ann', 'TEXT', 'unpublished', now())",
    )
    .bind(c.id.uuid())
    .bind(lost)
    .execute(&w.db.pool)
    .await
    .expect("message");
    let published = w.text("ann", &c, "published").await;
    assert_eq!(published.seq, 2);
    let first = next_message(&mut feed).await;
    assert_eq!((first.seq, first.content.as_str()), (1, "unpublished"));
    assert_eq!(next_message(&mut feed).await.id, published.id);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_feed_that_is_not_read_is_cut_off_and_says_so() {
    let w = World::new().await;
    let c = w.direct("ann", "bob").await;
    let id = c.id.to_string();
    let mut feed = w.replica().feed(&user("bob"), &id, "").await.expect("feed");
    // More live events than the feed queues (1024), none read meanwhile.
    for n in 0..1100 {
        w.app
            .set_typing(&user("ann"), &id, n % 2 == 0)
            .await
            .expect("typing");
    }
    let outcome = tokio::time::timeout(PATIENCE, async {
        loop {
            match feed.next().await {
                Ok(_) => {}
                Err(e) => return e,
            }
        }
    })
    .await
    .expect("cut off in time");
    assert_eq!(outcome.reason(), Some("SLOW_CONSUMER"));
}
