//! The rules through the app on the real stores: who may do what, what is stored when, and
//! what a refusal leaves behind (nothing).

use chrono::Duration as Span;
use titan_chat::{
    app::ChatError,
    domain::{InputError, MessageKind, Metadata},
};
use titan_kit::{ServiceError, testing::eventually};

use crate::{World, rid, settings, user};

fn reason(r: Result<impl std::fmt::Debug, ChatError>) -> &'static str {
    r.expect_err("refused").reason().unwrap_or("none")
}

fn field<T: std::fmt::Debug>(r: Result<T, ChatError>) -> String {
    match r {
        Err(ChatError::Invalid(InputError { field, .. })) => field,
        other => panic!("expected invalid input, got {other:?}"),
    }
}

#[tokio::test]
async fn concurrent_direct_creation_gives_one_conversation() {
    let w = World::new().await;
    let mut calls = Vec::new();
    for n in 0..16 {
        let app = if n % 2 == 0 {
            w.app.clone()
        } else {
            w.replica()
        };
        let (me, other) = if n % 2 == 0 {
            ("ann", "bob")
        } else {
            ("bob", "ann")
        };
        calls.push(tokio::spawn(async move {
            app.create_direct(&user(me), other).await.expect("direct")
        }));
    }
    let mut ids = Vec::new();
    let mut created = 0;
    for call in calls {
        let (c, fresh) = call.await.expect("task");
        ids.push(c.id);
        created += usize::from(fresh);
        assert_eq!(c.members.len(), 2);
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "one conversation for the pair");
    assert_eq!(created, 1);
    assert_eq!(w.count("chat_conversations").await, 1);
    assert_eq!(
        field(w.app.create_direct(&user("ann"), "ann").await),
        "other_user_id"
    );
}

#[tokio::test]
async fn only_participants_read_write_and_subscribe() {
    let w = World::new().await;
    let c = w.direct("ann", "bob").await;
    let hello = w.text("ann", &c, "hello").await;
    let eve = user("eve");
    let id = c.id.to_string();
    assert_eq!(
        reason(w.app.conversation(&eve, &id).await),
        "NOT_A_PARTICIPANT"
    );
    assert_eq!(
        reason(w.app.history(&eve, &id, "", "", 10).await),
        "NOT_A_PARTICIPANT"
    );
    assert_eq!(
        reason(
            w.app
                .send(
                    &eve,
                    &rid(),
                    &id,
                    MessageKind::Text,
                    "hi",
                    Metadata::default()
                )
                .await
        ),
        "NOT_A_PARTICIPANT"
    );
    assert_eq!(
        reason(w.app.feed(&eve, &id, "").await.map(|_| ())),
        "NOT_A_PARTICIPANT"
    );
    assert_eq!(
        reason(w.app.mark(&eve, &id, "", &hello.id.to_string()).await),
        "NOT_A_PARTICIPANT"
    );
    // An unknown conversation is refused the same way: nobody learns which ids exist.
    let unknown = uuid::Uuid::now_v7().to_string();
    assert_eq!(
        reason(w.app.conversation(&user("ann"), &unknown).await),
        "NOT_A_PARTICIPANT"
    );
    let e = w.app.conversation(&eve, &id).await.expect_err("refused");
    assert_eq!(e.code(), titan_kit::ErrorCode::PermissionDenied);
    assert_eq!(w.count("chat_messages").await, 1);
}

#[tokio::test]
async fn bad_input_is_refused_naming_the_field_and_nothing_is_stored() {
    let w = World::new().await;
    let c = w.direct("ann", "bob").await;
    let ann = user("ann");
    let id = c.id.to_string();
    let send = |kind, text: &'static str, metadata| {
        let (app, ann, id) = (w.app.clone(), ann.clone(), id.clone());
        async move { app.send(&ann, &rid(), &id, kind, text, metadata).await }
    };
    assert_eq!(
        field(send(MessageKind::Text, "", Metadata::default()).await),
        "content"
    );
    let big = "x".repeat(65);
    let oversized = w
        .app
        .send(
            &ann,
            &rid(),
            &id,
            MessageKind::Text,
            &big,
            Metadata::default(),
        )
        .await;
    assert_eq!(reason(oversized), "MESSAGE_TOO_LARGE");
    assert_eq!(
        MessageKind::parse("type", "VIDEO").map_err(|e| e.field),
        Err("type".into())
    );
    assert_eq!(
        field(
            w.app
                .send(
                    &ann,
                    &rid(),
                    "not-a-uuid",
                    MessageKind::Text,
                    "hi",
                    Metadata::default()
                )
                .await
        ),
        "conversation_id"
    );
    assert_eq!(
        field(send(MessageKind::Image, "", Metadata::default()).await),
        "metadata.url"
    );
    let product = Metadata {
        product_id: Some("has space".into()),
        ..Metadata::default()
    };
    assert_eq!(
        field(send(MessageKind::Product, "", product).await),
        "metadata.product_id"
    );
    assert_eq!(
        reason(send(MessageKind::System, "hi", Metadata::default()).await),
        "SYSTEM_ONLY"
    );
    assert_eq!(
        reason(
            w.app
                .send(&ann, "", &id, MessageKind::Text, "hi", Metadata::default())
                .await
        ),
        "none",
        "a missing request id is invalid input without a business reason"
    );
    assert_eq!(field(w.app.history(&ann, &id, "x", "", 10).await), "before");
    assert_eq!(field(w.app.history(&ann, &id, "", "", 101).await), "limit");
    assert_eq!(w.count("chat_messages").await, 0);
    assert_eq!(w.count("titan_outbox").await, 0);
}

#[tokio::test]
async fn a_resend_after_a_lost_answer_stores_one_message_and_one_event() {
    let w = World::new().await;
    let c = w.direct("ann", "bob").await;
    let (ann, id, request) = (user("ann"), c.id.to_string(), rid());
    let first = w
        .app
        .send(
            &ann,
            &request,
            &id,
            MessageKind::Text,
            "once",
            Metadata::default(),
        )
        .await
        .expect("send");
    let again = w
        .replica()
        .send(
            &ann,
            &request,
            &id,
            MessageKind::Text,
            "once",
            Metadata::default(),
        )
        .await
        .expect("resend");
    assert_eq!(first, again);
    assert_eq!(w.count("chat_messages").await, 1);
    let events: Vec<(String, serde_json::Value)> = sqlx::query_as(
        "SELECT event_type, envelope->'payload' FROM titan_outbox WHERE service = 'chat'",
    )
    .fetch_all(&w.db.pool)
    .await
    .expect("outbox");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].0, "chat.message_sent");
    assert_eq!(events[0].1["message_id"], first.id.to_string());
    assert_eq!(events[0].1["conversation_kind"], "DIRECT");
    assert!(
        events[0].1.get("content").is_none(),
        "no content in analytics"
    );
    assert_eq!(
        reason(
            w.app
                .send(
                    &ann,
                    &request,
                    &id,
                    MessageKind::Text,
                    "other",
                    Metadata::default()
                )
                .await
        ),
        "REQUEST_ID_REUSED"
    );
}

#[tokio::test]
async fn only_the_sender_edits_within_the_window_and_deletes_keep_their_place() {
    let w = World::new().await;
    let c = w.direct("ann", "bob").await;
    let m = w.text("ann", &c, "helo").await;
    let (id, mid) = (c.id.to_string(), m.id.to_string());
    assert_eq!(
        reason(w.app.edit(&user("bob"), &id, &mid, "hacked").await),
        "NOT_THE_SENDER"
    );
    assert_eq!(
        reason(w.app.delete(&user("bob"), &id, &mid).await),
        "NOT_THE_SENDER"
    );
    let edited = w
        .app
        .edit(&user("ann"), &id, &mid, "hello")
        .await
        .expect("edit");
    assert_eq!(edited.content, "hello");
    assert!(edited.edited_at.is_some());
    assert_eq!(
        field(w.app.edit(&user("ann"), &id, &mid, " ").await),
        "content"
    );
    w.clock.advance(Span::seconds(61));
    assert_eq!(
        reason(w.app.edit(&user("ann"), &id, &mid, "late").await),
        "EDIT_WINDOW_CLOSED"
    );
    let after = w.text("bob", &c, "after").await;
    let deleted = w.app.delete(&user("ann"), &id, &mid).await.expect("delete");
    assert_eq!(deleted.content, "");
    assert!(deleted.deleted_at.is_some());
    let page = w
        .app
        .history(&user("bob"), &id, "", "", 10)
        .await
        .expect("history");
    assert_eq!(
        page.iter().map(|m| m.id).collect::<Vec<_>>(),
        vec![m.id, after.id]
    );
    assert_eq!(page[0].content, "");
    let m2 = w.text("ann", &c, "fresh").await;
    w.app
        .delete(&user("ann"), &id, &m2.id.to_string())
        .await
        .expect("delete");
    assert_eq!(
        reason(w.app.edit(&user("ann"), &id, &m2.id.to_string(), "x").await),
        "MESSAGE_DELETED"
    );
    assert_eq!(
        reason(
            w.app
                .edit(&user("ann"), &id, &uuid::Uuid::now_v7().to_string(), "x")
                .await
        ),
        "MESSAGE_NOT_FOUND"
    );
}

#[tokio::test]
async fn history_pages_are_keyset_pages_in_id_order() {
    let w = World::new().await;
    let c = w.direct("ann", "bob").await;
    let mut sent = Vec::new();
    for n in 0..25 {
        sent.push(w.text("ann", &c, &format!("m{n}")).await.id);
    }
    let ids =
        |page: Vec<titan_chat::domain::Message>| page.into_iter().map(|m| m.id).collect::<Vec<_>>();
    let (bob, id) = (user("bob"), c.id.to_string());
    let latest = ids(w.app.history(&bob, &id, "", "", 10).await.expect("latest"));
    assert_eq!(latest, sent[15..]);
    let before = ids(w
        .app
        .history(&bob, &id, &sent[15].to_string(), "", 10)
        .await
        .expect("before"));
    assert_eq!(before, sent[5..15]);
    let after = ids(w
        .app
        .history(&bob, &id, "", &sent[4].to_string(), 3)
        .await
        .expect("after"));
    assert_eq!(after, sent[5..8]);
    assert_eq!(
        field(
            w.app
                .history(&bob, &id, &sent[1].to_string(), &sent[0].to_string(), 3)
                .await
        ),
        "before"
    );
    let seqs: Vec<i64> = w
        .app
        .history(&bob, &id, "", "", 0)
        .await
        .expect("all")
        .iter()
        .map(|m| m.seq)
        .collect();
    assert_eq!(seqs, (1..=25).collect::<Vec<_>>());
}

#[tokio::test]
async fn receipts_move_forward_and_unread_counts_follow_the_read_marker() {
    let w = World::new().await;
    let c = w.direct("ann", "bob").await;
    let other = w.direct("ann", "cat").await;
    let mut sent = Vec::new();
    for n in 0..5 {
        sent.push(w.text("ann", &c, &format!("m{n}")).await.id);
    }
    w.text("bob", &c, "mine are never unread").await;
    w.text("ann", &other, "to cat").await;
    let bob = user("bob");
    let id = c.id.to_string();
    let counts = w.app.unread_counts(&bob).await.expect("unread");
    assert_eq!(counts, vec![(c.id, 5)]);
    // Read on another device of bob's: the counts follow.
    let r = w
        .replica()
        .mark(&bob, &id, "", &sent[2].to_string())
        .await
        .expect("mark");
    assert_eq!(r.markers.read_up_to, Some(sent[2]));
    assert_eq!(
        r.markers.delivered_up_to,
        Some(sent[2]),
        "read implies delivered"
    );
    assert_eq!(
        w.app.unread_counts(&bob).await.expect("unread"),
        vec![(c.id, 2)]
    );
    let back = w
        .app
        .mark(&bob, &id, &sent[4].to_string(), &sent[0].to_string())
        .await
        .expect("mark");
    assert_eq!(back.markers.read_up_to, Some(sent[2]), "never back");
    assert_eq!(back.markers.delivered_up_to, Some(sent[4]));
    let receipts = w.app.receipts(&user("ann"), &id).await.expect("receipts");
    assert_eq!(receipts.len(), 1);
    assert_eq!(receipts[0].markers, back.markers);
    let foreign = w.text("ann", &other, "elsewhere").await;
    assert_eq!(
        field(w.app.mark(&bob, &id, "", &foreign.id.to_string()).await),
        "read_up_to"
    );
    let listed = w
        .app
        .list_conversations(&user("ann"), "", 0)
        .await
        .expect("list");
    assert_eq!(listed.len(), 2);
    let cat = w.app.unread_counts(&user("cat")).await.expect("cat");
    assert_eq!(cat, vec![(other.id, 2)]);
}

#[tokio::test]
async fn groups_are_managed_by_their_admins_within_their_size() {
    let w = World::new().await;
    let ann = user("ann");
    let g = w
        .app
        .create_group(
            &ann,
            &rid(),
            "Team",
            &["bob".into(), "cat".into(), "bob".into()],
        )
        .await
        .expect("group");
    assert_eq!(g.members.len(), 3);
    let id = g.id.to_string();
    assert_eq!(
        reason(w.app.add_member(&user("bob"), &id, "dan").await),
        "NOT_AN_ADMIN"
    );
    assert_eq!(
        reason(w.app.add_member(&ann, &id, "dan").await),
        "TOO_MANY_MEMBERS"
    );
    let left = w
        .app
        .remove_member(&user("cat"), &id, "cat")
        .await
        .expect("leave");
    assert_eq!(left.members.len(), 2);
    let grown = w.app.add_member(&ann, &id, "dan").await.expect("add");
    assert_eq!(grown.members.len(), 3);
    let notes = w.app.history(&ann, &id, "", "", 10).await.expect("history");
    assert_eq!(
        notes
            .iter()
            .map(|m| (m.kind, m.content.as_str()))
            .collect::<Vec<_>>(),
        vec![
            (MessageKind::System, "cat left"),
            (MessageKind::System, "ann added dan")
        ]
    );
    assert_eq!(
        reason(w.app.delete(&ann, &id, &notes[1].id.to_string()).await),
        "NOT_THE_SENDER",
        "system messages are nobody's to delete"
    );
    assert_eq!(
        field(
            w.app
                .create_group(&ann, &rid(), "Big", &["a".into(), "b".into(), "c".into()])
                .await
        ),
        "member_ids"
    );
    let direct = w.direct("ann", "bob").await;
    assert_eq!(
        reason(w.app.add_member(&ann, &direct.id.to_string(), "cat").await),
        "NOT_A_GROUP"
    );
}

#[tokio::test]
async fn support_conversations_are_answered_by_any_agent() {
    let w = World::new().await;
    let buyer = user("buyer");
    let s = w
        .app
        .create_support(&buyer, &rid(), "refund")
        .await
        .expect("support");
    let id = s.id.to_string();
    let agent = titan_kit::testing::caller("agent-1", &["agent"]);
    w.app
        .send(
            &agent,
            &rid(),
            &id,
            MessageKind::Text,
            "how can I help",
            Metadata::default(),
        )
        .await
        .expect("agent answers");
    let s = w.app.conversation(&buyer, &id).await.expect("get");
    assert!(s.member("agent-1").is_some(), "an answering agent joins");
    assert_eq!(
        reason(w.app.conversation(&user("eve"), &id).await),
        "NOT_A_PARTICIPANT"
    );
}

#[tokio::test]
async fn typing_expires_without_a_refresh() {
    let w = World::new().await;
    let c = w.direct("ann", "bob").await;
    let id = c.id.to_string();
    w.app
        .set_typing(&user("ann"), &id, true)
        .await
        .expect("typing");
    let typing = w.app.typing(&user("bob"), &id).await.expect("typing");
    assert_eq!(
        typing.iter().map(ToString::to_string).collect::<Vec<_>>(),
        ["ann"]
    );
    w.clock
        .advance(Span::seconds(i64::from(w.settings.typing_ttl_seconds) + 1));
    assert!(
        w.app
            .typing(&user("bob"), &id)
            .await
            .expect("typing")
            .is_empty()
    );
    w.app
        .set_typing(&user("bob"), &id, true)
        .await
        .expect("typing");
    w.app
        .set_typing(&user("bob"), &id, false)
        .await
        .expect("stopped");
    assert!(
        w.app
            .typing(&user("ann"), &id)
            .await
            .expect("typing")
            .is_empty()
    );
}

#[tokio::test]
async fn presence_stays_online_until_the_last_connection_closes() {
    let w = World::new().await;
    let who = ["ann".to_owned()];
    let first = w.app.online("ann");
    let second = w.replica().online("ann");
    eventually("both connections counted", || async {
        (connections(&w).await == 2).then_some(())
    })
    .await;
    assert!(w.app.presence(&who).await.expect("presence")[0].online);
    drop(first);
    eventually("the first connection gone", || async {
        (connections(&w).await == 1).then_some(())
    })
    .await;
    assert!(w.app.presence(&who).await.expect("presence")[0].online);
    drop(second);
    let gone = eventually("ann offline", || async {
        let p = w.app.presence(&who).await.expect("presence").remove(0);
        (!p.online).then_some(p)
    })
    .await;
    assert!(gone.last_seen.is_some());
    assert_eq!(field(w.app.presence(&[]).await), "user_ids");
}

/// Connections counted in the test's presence keys.
async fn connections(w: &World) -> usize {
    let mut conn = w.redis.conn.clone();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(w.redis.key("chat:presence:*"))
        .query_async(&mut conn)
        .await
        .expect("keys");
    let mut n = 0;
    for key in keys {
        let members: usize = redis::cmd("ZCARD")
            .arg(key)
            .query_async(&mut conn)
            .await
            .expect("zcard");
        n += members;
    }
    n
}

#[tokio::test]
async fn sends_beyond_the_rate_are_refused() {
    let w = World::with(titan_chat::config::Settings {
        send_burst: 2,
        send_interval_ms: 60_000,
        ..settings()
    })
    .await;
    let c = w.direct("ann", "bob").await;
    w.text("ann", &c, "1").await;
    w.text("ann", &c, "2").await;
    let third = w
        .app
        .send(
            &user("ann"),
            &rid(),
            &c.id.to_string(),
            MessageKind::Text,
            "3",
            Metadata::default(),
        )
        .await;
    assert_eq!(reason(third), "RATE_LIMITED");
    w.text("bob", &c, "bob has his own budget").await;
}
