//! A person's export and erasure (`titan_kit::privacy`): the export holds exactly what they
//! wrote and where they belong; the erasure leaves every conversation to the other
//! participants with the person's messages as deleted messages of the pseudonym, their
//! memberships and the notes naming them under the pseudonym, deletes their receipts and what
//! Redis holds of them, and runs again harmlessly, also after they came back.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use titan_chat::{
    domain::{Conversation, Message, MessageKind, Metadata},
    store::{privacy::PersonalStore, redis::Live},
};
use titan_kit::{
    privacy::{Erasure, PersonalData},
    testing::{mentions, privacy::subject},
};

use crate::{World, rid, settings, user};

fn handler(w: &World) -> PersonalStore {
    PersonalStore::new(w.db.pool.clone(), Live::new(w.redis.clone()))
}

/// Budgets, typing and presence that outlive a slow test run.
async fn world() -> World {
    World::with(titan_chat::config::Settings {
        send_interval_ms: 60_000,
        typing_ttl_seconds: 600,
        presence_ttl_seconds: 600,
        ..settings()
    })
    .await
}

fn time(t: DateTime<Utc>) -> Value {
    serde_json::to_value(t).expect("time")
}

/// What an erasure with nothing left to do reports.
fn nothing() -> Erasure {
    Erasure::default()
        .removed("message bodies", 0)
        .removed("receipts", 0)
        .removed("presence records", 0)
        .removed("typing indicators", 0)
        .removed("send rate budgets", 0)
        .pseudonymised("messages", 0)
        .pseudonymised("system notes", 0)
        .pseudonymised("memberships", 0)
        .pseudonymised("conversations", 0)
}

/// A message a second after the last step, so that every record has a time of its own.
async fn text(w: &World, from: &str, c: &Conversation, body: &str) -> Message {
    tick(w);
    w.text(from, c, body).await
}

fn tick(w: &World) {
    w.clock.advance(chrono::Duration::seconds(1));
}

/// `t` as PostgreSQL keeps it (microseconds).
fn stored(t: DateTime<Utc>) -> Value {
    time(DateTime::from_timestamp_micros(t.timestamp_micros()).expect("time"))
}

fn message(m: &Message, kind: &str, content: &str, metadata: Value) -> Value {
    json!({
        "conversation_id": m.conversation_id.uuid(), "id": m.id.uuid(), "seq": m.seq,
        "kind": kind, "content": content, "metadata": metadata,
        "sent_at": time(m.sent_at), "edited_at": m.edited_at.map(time),
        "deleted_at": m.deleted_at.map(time),
    })
}

fn joined(c: &Conversation, who: &str) -> Value {
    time(
        c.members
            .iter()
            .find(|m| m.user_id.as_str() == who)
            .expect("a member")
            .joined_at,
    )
}

/// (conversations, members, messages, highest seq sum) of the whole service.
async fn totals(w: &World) -> (i64, i64, i64, i64) {
    sqlx::query_as(
        "SELECT (SELECT count(*) FROM chat_conversations), (SELECT count(*) FROM chat_members),
                (SELECT count(*) FROM chat_messages),
                (SELECT sum(last_seq)::BIGINT FROM chat_conversations)",
    )
    .fetch_one(&w.db.pool)
    .await
    .expect("totals")
}

#[tokio::test]
async fn an_erased_person_leaves_their_conversations_to_the_others_under_a_pseudonym() {
    let w = world().await;
    let (a, b, c) = (
        format!("a-{}", rid()),
        format!("b-{}", rid()),
        format!("c-{}", rid()),
    );
    let (ann, bob) = (user(&a), user(&b));
    let live = Live::new(w.redis.clone());

    // Ann and Bob talk directly: Ann writes twice (one she deletes, one a file), Bob answers.
    let direct = w.direct(&a, &b).await;
    let hello = text(&w, &a, &direct, "hello there").await;
    let oops = text(&w, &a, &direct, "oops").await;
    let oops = w
        .app
        .delete(&ann, &direct.id.to_string(), &oops.id.to_string())
        .await
        .expect("delete");
    let file_meta = Metadata {
        url: Some("https://files.example/scan.pdf".into()),
        file_name: Some("scan.pdf".into()),
        file_size: Some(2048),
        ..Metadata::default()
    };
    tick(&w);
    let file = w
        .app
        .send(
            &ann,
            &rid(),
            &direct.id.to_string(),
            MessageKind::File,
            "my scan",
            file_meta,
        )
        .await
        .expect("file");
    let answer = text(&w, &b, &direct, "thanks").await;
    tick(&w);
    let read_at = stored(w.clock.now());
    w.app
        .mark(&ann, &direct.id.to_string(), "", &answer.id.to_string())
        .await
        .expect("ann reads");
    w.app
        .mark(&bob, &direct.id.to_string(), "", &file.id.to_string())
        .await
        .expect("bob reads");
    // Bob's group: Carl added, Ann writes, leaves and is added back.
    tick(&w);
    let group = w
        .app
        .create_group(&bob, &rid(), "Team", std::slice::from_ref(&a))
        .await
        .expect("group");
    let gid = group.id.to_string();
    tick(&w);
    w.app.add_member(&bob, &gid, &c).await.expect("add carl");
    let in_group = text(&w, &a, &group, "in the group").await;
    tick(&w);
    w.app.remove_member(&ann, &gid, &a).await.expect("leave");
    tick(&w);
    let group = w.app.add_member(&bob, &gid, &a).await.expect("back");
    // Live: both type in the direct conversation and are connected.
    w.app
        .set_typing(&ann, &direct.id.to_string(), true)
        .await
        .expect("typing");
    w.app
        .set_typing(&bob, &direct.id.to_string(), true)
        .await
        .expect("typing");
    let ttl = Duration::from_secs(600);
    let now = w.clock.now();
    live.connected(&a, "conn-a", ttl, now)
        .await
        .expect("online");
    live.connected(&b, "conn-b", ttl, now)
        .await
        .expect("online");
    let seen = time(DateTime::from_timestamp_millis(now.timestamp_millis()).expect("ms"));

    let p = handler(&w);
    let (sa, sb) = (subject(&a), subject(&b));
    let exported = PersonalData::export(&p, &sa).await.expect("export");
    assert_eq!(
        exported,
        json!({
            "user_id": a,
            "conversations": [
                {"id": direct.id.uuid(), "kind": "DIRECT", "name": null, "created_by_me": true,
                 "role": "MEMBER", "joined_at": joined(&direct, &a)},
                {"id": group.id.uuid(), "kind": "GROUP", "name": "Team", "created_by_me": false,
                 "role": "MEMBER", "joined_at": joined(&group, &a)},
            ],
            "messages": [
                message(&hello, "TEXT", "hello there", json!({})),
                message(&oops, "TEXT", "", json!({})),
                message(&file, "FILE", "my scan",
                        json!({"url": "https://files.example/scan.pdf", "fileName": "scan.pdf",
                               "fileSize": 2048})),
                message(&in_group, "TEXT", "in the group", json!({})),
            ],
            "receipts": [{"conversation_id": direct.id.uuid(), "delivered_up_to": answer.id.uuid(),
                          "read_up_to": answer.id.uuid(), "updated_at": read_at}],
            "last_seen": seen,
        })
    );
    let text_of = exported.to_string();
    assert!(!text_of.contains(&b) && !text_of.contains(&c), "{text_of}");
    let bob_before = PersonalData::export(&p, &sb).await.expect("export bob");
    assert!(!bob_before.to_string().contains(&a), "{bob_before}");
    let totals_before = totals(&w).await;
    let bob_history = |w: &World, id: String| {
        let app = w.app.clone();
        let bob = bob.clone();
        async move {
            app.history(&bob, &id, "", "", 0)
                .await
                .expect("history")
                .into_iter()
                .map(|m| {
                    (
                        m.seq,
                        m.sender_id.to_string(),
                        m.content,
                        m.deleted_at.is_some(),
                    )
                })
                .collect::<Vec<_>>()
        }
    };

    // The searches below find Ann before the erasure.
    assert_eq!(
        mentions::postgres_in(&w.db.pool, "chat_", &a).await,
        [
            ("chat_conversations".to_owned(), 1),
            ("chat_members".to_owned(), 2),
            ("chat_messages".to_owned(), 6),
            ("chat_receipts".to_owned(), 1),
        ]
    );
    assert!(!mentions::redis(&w.redis, &a).await.is_empty());

    let erased = PersonalData::erase(&p, &sa).await.expect("erase");
    assert_eq!(
        erased,
        Erasure::default()
            .removed("message bodies", 3)
            .removed("receipts", 1)
            .removed("presence records", 2)
            .removed("typing indicators", 1)
            .removed("send rate budgets", 1)
            .pseudonymised("messages", 5)
            .pseudonymised("system notes", 2)
            .pseudonymised("memberships", 2)
            .pseudonymised("conversations", 1)
    );

    assert_eq!(mentions::postgres_in(&w.db.pool, "chat_", &a).await, vec![]);
    assert!(
        !mentions::redis(&w.redis, &b).await.is_empty(),
        "Bob's keys stay"
    );
    assert_eq!(
        mentions::redis(&w.redis, &a).await,
        Vec::<String>::new(),
        "redis still names Ann"
    );
    assert_eq!(totals(&w).await, totals_before);
    assert_eq!(
        PersonalData::export(&p, &sb).await.expect("export bob"),
        bob_before
    );
    // Bob's view: every message in its place, Ann's deleted and sent by the pseudonym.
    let pn = sa.pseudonym.clone();
    assert_eq!(
        bob_history(&w, direct.id.to_string()).await,
        vec![
            (1, pn.clone(), String::new(), true),
            (2, pn.clone(), String::new(), true),
            (3, pn.clone(), String::new(), true),
            (4, b.clone(), "thanks".to_owned(), false),
        ]
    );
    assert_eq!(
        bob_history(&w, gid.clone()).await,
        vec![
            (1, b.clone(), format!("{b} added {c}"), false),
            (2, pn.clone(), String::new(), true),
            (3, pn.clone(), format!("{pn} left"), false),
            (4, b.clone(), format!("{b} added {pn}"), false),
        ]
    );
    let members: Vec<String> = w
        .app
        .conversation(&bob, &gid)
        .await
        .expect("group")
        .members
        .into_iter()
        .map(|m| m.user_id.to_string())
        .collect();
    assert_eq!(members, vec![b.clone(), c.clone(), pn.clone()]);
    // Bob still reaches the direct conversation; a new one with Ann's id is another.
    let (again, created) = w.app.create_direct(&bob, &a).await.expect("direct");
    assert!(created && again.id != direct.id);

    let second = PersonalData::erase(&p, &sa).await.expect("erase again");
    assert_eq!(
        second,
        nothing()
            .pseudonymised("memberships", 1)
            .pseudonymised("conversations", 1),
        "only the conversation Bob opened since"
    );
    let third = PersonalData::erase(&p, &sa)
        .await
        .expect("erase a third time");
    assert_eq!(third, nothing());
    assert_eq!(
        PersonalData::export(&p, &sa).await.expect("export"),
        json!({"user_id": a, "conversations": [], "messages": [], "receipts": [],
               "last_seen": null})
    );
}

#[tokio::test]
async fn a_person_who_comes_back_to_the_same_group_merges_into_their_pseudonym() {
    let w = world().await;
    let (a, b) = (format!("a-{}", rid()), format!("b-{}", rid()));
    let bob = user(&b);
    let group = w
        .app
        .create_group(&bob, &rid(), "Club", std::slice::from_ref(&a))
        .await
        .expect("group");
    let gid = group.id.to_string();
    let p = handler(&w);
    let s = subject(&a);
    PersonalData::erase(&p, &s).await.expect("erase");
    // Ann's id comes back and Bob adds it again: the pseudonym is a member already.
    w.app.add_member(&bob, &gid, &a).await.expect("back");
    text(&w, &a, &group, "me again").await;
    tick(&w);
    let erased = PersonalData::erase(&p, &s).await.expect("erase again");
    assert_eq!(erased.pseudonymised.get("memberships"), Some(&1));
    assert_eq!(erased.pseudonymised.get("system notes"), Some(&1));
    assert_eq!(erased.removed.get("message bodies"), Some(&1));
    let members: Vec<(String, String)> = sqlx::query_as(
        "SELECT user_id, role FROM chat_members WHERE conversation_id = $1
         ORDER BY joined_at, user_id",
    )
    .bind(group.id.uuid())
    .fetch_all(&w.db.pool)
    .await
    .expect("members");
    assert_eq!(
        members,
        vec![
            (b.clone(), "ADMIN".to_owned()),
            (s.pseudonym.clone(), "MEMBER".to_owned())
        ]
    );
    assert_eq!(mentions::postgres_in(&w.db.pool, "chat_", &a).await, vec![]);
}
