//! The history and backlog queries are index range scans on a realistic table: many
//! conversations, one of them long, statistics gathered by ANALYZE (the planner chooses; no
//! planner switch is turned off).

use titan_chat::{app::Page, domain::MessageId, store::pg::history_sql};

use crate::World;

/// EXPLAIN of `sql` with its three parameters.
async fn plan(w: &World, sql: &str, conversation: uuid::Uuid, bound: uuid::Uuid) -> String {
    let rows: Vec<(String,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!("EXPLAIN {sql}")))
        .bind(conversation)
        .bind(bound)
        .bind(50_i64)
        .fetch_all(&w.db.pool)
        .await
        .expect("explain");
    rows.into_iter().map(|r| r.0).collect::<Vec<_>>().join("\n")
}

#[tokio::test]
async fn history_pages_are_index_range_scans() {
    let w = World::new().await;
    // 200 conversations of 500 messages each (100,000 rows), written directly: the plan, not
    // the send path, is under test.
    sqlx::query(
        "INSERT INTO chat_conversations (id, kind, name, created_by, created_at, last_seq) \
         SELECT ('00000000-0000-7000-8000-' || lpad(to_hex(c), 12, '0'))::uuid, 'GROUP', 'g', 'ann', now(), 500 \
           FROM generate_series(1, 200) c",
    )
    .execute(&w.db.pool)
    .await
    .expect("conversations");
    sqlx::query(
        "INSERT INTO chat_messages (conversation_id, id, seq, sender_id, kind, content, sent_at) \
         SELECT ('00000000-0000-7000-8000-' || lpad(to_hex(c), 12, '0'))::uuid, \
                ('00000000-' || lpad(to_hex(c), 4, '0') || '-7000-8000-' || lpad(to_hex(s), 12, '0'))::uuid, \
                s, 'ann', 'TEXT', 'message ' || s, now() \
           FROM generate_series(1, 200) c, generate_series(1, 500) s",
    )
    .execute(&w.db.pool)
    .await
    .expect("messages");
    sqlx::query("ANALYZE chat_messages")
        .execute(&w.db.pool)
        .await
        .expect("analyze");
    let conversation: uuid::Uuid = "00000000-0000-7000-8000-000000000007".parse().expect("id");
    let middle: uuid::Uuid = "00000000-0007-7000-8000-0000000000fa".parse().expect("id");
    let bound = MessageId::from_uuid(middle);
    for (page, bound) in [
        (Page::Latest, uuid::Uuid::max()),
        (Page::Before(bound), middle),
        (Page::After(bound), middle),
    ] {
        let explained = plan(&w, &history_sql(page), conversation, bound).await;
        println!("{page:?}:\n{explained}");
        assert!(
            explained.contains("Index Scan") && explained.contains("chat_messages_pkey"),
            "{page:?} is not a range scan of chat_messages_pkey:\n{explained}"
        );
        assert!(!explained.contains("Seq Scan"), "{explained}");
    }
}
