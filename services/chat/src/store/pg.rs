//! Chat's PostgreSQL store. Every message is inserted under its conversation's row lock (the
//! `UPDATE … last_seq + 1` takes it), so a conversation's seqs and ids grow in commit order;
//! sends carry their idempotency key and their `chat.message_sent` outbox row in the same
//! transaction. Database errors become `ChatError::Kit` here and go no further.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool, types::Json};
use titan_kit::{
    KitError,
    events::{Envelope, outbox},
    idempotency::{self, Begin},
};
use uuid::Uuid;

use crate::{
    app::{ChatError, ChatStore, Draft, NewConversation, Page},
    domain::{
        Conversation, ConversationId, ConversationKind, MESSAGE_SENT, Markers, Member, MemberRole,
        Message, MessageId, MessageKind, MessageSent, Metadata, Receipt, SERVICE, UserId,
        next_message_id,
    },
};

const MESSAGE_COLUMNS: &str =
    "conversation_id, id, seq, sender_id, kind, content, metadata, sent_at, edited_at, deleted_at";

type MessageRow = (
    Uuid,
    Uuid,
    i64,
    String,
    String,
    String,
    Json<Metadata>,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
);

type ConversationRow = (
    Uuid,
    String,
    Option<String>,
    String,
    DateTime<Utc>,
    Option<Uuid>,
);

fn corrupt(what: impl std::fmt::Display) -> ChatError {
    ChatError::Kit(KitError::Other(format!(
        "stored chat data does not parse: {what}"
    )))
}

fn stored_user(s: String) -> Result<UserId, ChatError> {
    UserId::parse("stored user id", &s).map_err(corrupt)
}

fn message_of(row: MessageRow) -> Result<Message, ChatError> {
    let (
        conversation,
        id,
        seq,
        sender,
        kind,
        content,
        Json(metadata),
        sent_at,
        edited_at,
        deleted_at,
    ) = row;
    Ok(Message {
        id: MessageId::from_uuid(id),
        conversation_id: ConversationId::from_uuid(conversation),
        seq,
        sender_id: stored_user(sender)?,
        kind: MessageKind::from_stored(&kind)
            .ok_or_else(|| corrupt(format!("message type {kind:?}")))?,
        content,
        metadata,
        sent_at,
        edited_at,
        deleted_at,
    })
}

fn conversation_of(row: ConversationRow, members: Vec<Member>) -> Result<Conversation, ChatError> {
    let (id, kind, name, created_by, created_at, last) = row;
    Ok(Conversation {
        id: ConversationId::from_uuid(id),
        kind: ConversationKind::from_stored(&kind)
            .ok_or_else(|| corrupt(format!("conversation kind {kind:?}")))?,
        name,
        created_by: stored_user(created_by)?,
        members,
        created_at,
        last_message_id: last.map(MessageId::from_uuid),
    })
}

fn member_of(
    (user, role, joined_at): (String, String, DateTime<Utc>),
) -> Result<Member, ChatError> {
    Ok(Member {
        user_id: stored_user(user)?,
        role: MemberRole::from_stored(&role)
            .ok_or_else(|| corrupt(format!("member role {role:?}")))?,
        joined_at,
    })
}

#[derive(Debug, Clone)]
pub struct PgChat {
    pool: PgPool,
    cell: String,
}

impl PgChat {
    pub fn new(pool: PgPool, cell: String) -> Self {
        Self { pool, cell }
    }

    async fn load(
        conn: &mut PgConnection,
        id: ConversationId,
    ) -> Result<Option<Conversation>, ChatError> {
        let row: Option<ConversationRow> = sqlx::query_as(
            "SELECT id, kind, name, created_by, created_at, last_message_id FROM chat_conversations WHERE id = $1",
        )
        .bind(id.uuid())
        .fetch_optional(&mut *conn)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let members: Vec<(String, String, DateTime<Utc>)> = sqlx::query_as(
            "SELECT user_id, role, joined_at FROM chat_members WHERE conversation_id = $1 ORDER BY joined_at, user_id",
        )
        .bind(id.uuid())
        .fetch_all(&mut *conn)
        .await?;
        let members = members
            .into_iter()
            .map(member_of)
            .collect::<Result<_, _>>()?;
        conversation_of(row, members).map(Some)
    }

    async fn insert(conn: &mut PgConnection, new: &NewConversation) -> Result<(), ChatError> {
        for (user, role) in &new.members {
            sqlx::query(
                "INSERT INTO chat_members (conversation_id, user_id, role, joined_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            )
            .bind(new.id.uuid())
            .bind(user.as_str())
            .bind(role.as_str())
            .bind(new.created_at)
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }

    /// Inserts a message at the end of its conversation: the conversation's row is locked by
    /// the seq increment until the transaction ends.
    async fn append(
        conn: &mut PgConnection,
        conversation: ConversationId,
        draft: Draft<'_>,
    ) -> Result<Message, ChatError> {
        let (seq, last): (i64, Option<Uuid>) = sqlx::query_as(
            "UPDATE chat_conversations SET last_seq = last_seq + 1 WHERE id = $1 RETURNING last_seq, last_message_id",
        )
        .bind(conversation.uuid())
        .fetch_one(&mut *conn)
        .await?;
        let id = next_message_id(Uuid::now_v7(), last.map(MessageId::from_uuid));
        sqlx::query("UPDATE chat_conversations SET last_message_id = $2 WHERE id = $1")
            .bind(conversation.uuid())
            .bind(id.uuid())
            .execute(&mut *conn)
            .await?;
        let content = draft.content;
        let row: MessageRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "INSERT INTO chat_messages (conversation_id, id, seq, sender_id, kind, content, metadata, sent_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {MESSAGE_COLUMNS}"
        )))
        .bind(conversation.uuid())
        .bind(id.uuid())
        .bind(seq)
        .bind(draft.sender.as_str())
        .bind(content.kind().as_str())
        .bind(content.text())
        .bind(Json(content.metadata()))
        .bind(draft.at)
        .fetch_one(&mut *conn)
        .await?;
        message_of(row)
    }

    async fn one_message(
        &self,
        sql: &str,
        conversation: ConversationId,
        id: MessageId,
    ) -> Result<Option<Message>, ChatError> {
        let row: Option<MessageRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql.to_owned()))
            .bind(conversation.uuid())
            .bind(id.uuid())
            .fetch_optional(&self.pool)
            .await?;
        row.map(message_of).transpose()
    }

    async fn messages(
        &self,
        sql: String,
        conversation: ConversationId,
        from: Uuid,
        limit: u32,
    ) -> Result<Vec<Message>, ChatError> {
        let rows: Vec<MessageRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(conversation.uuid())
            .bind(from)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(message_of).collect()
    }

    fn decode<T: serde::de::DeserializeOwned>(answer: &[u8]) -> Result<T, ChatError> {
        serde_json::from_slice(answer).map_err(|e| corrupt(format!("idempotent answer: {e}")))
    }

    fn encode<T: serde::Serialize>(answer: &T) -> Result<Vec<u8>, ChatError> {
        serde_json::to_vec(answer)
            .map_err(|e| ChatError::Kit(KitError::Other(format!("cannot encode answer: {e}"))))
    }
}

/// The history query of a page: `$2` is its bound (the newest page is "before the largest
/// id"), `$3` the limit. Both shapes are range scans of `chat_messages_pkey`
/// (conversation_id, id).
pub fn history_sql(page: Page) -> String {
    let (bound, order) = match page {
        Page::Latest | Page::Before(_) => ("<", "DESC"),
        Page::After(_) => (">", "ASC"),
    };
    format!(
        "SELECT {MESSAGE_COLUMNS} FROM chat_messages WHERE conversation_id = $1 AND id {bound} $2 ORDER BY id {order} LIMIT $3"
    )
}

impl ChatStore for PgChat {
    fn create_direct<'a>(
        &'a self,
        new: &'a NewConversation,
    ) -> crate::app::Fut<'a, (Conversation, bool)> {
        Box::pin(async move {
            let mut tx = self.pool.begin().await?;
            // Waits on a concurrent creator's uncommitted row, then does nothing: one row.
            let inserted: Option<(Uuid,)> = sqlx::query_as(
                "INSERT INTO chat_conversations (id, kind, name, created_by, direct_key, created_at) \
                 VALUES ($1, 'DIRECT', NULL, $2, $3, $4) \
                 ON CONFLICT ON CONSTRAINT chat_conversations_direct_key DO NOTHING RETURNING id",
            )
            .bind(new.id.uuid())
            .bind(new.created_by.as_str())
            .bind(&new.direct_key)
            .bind(new.created_at)
            .fetch_optional(&mut *tx)
            .await?;
            let (id, created) = match inserted {
                Some((id,)) => {
                    Self::insert(&mut tx, new).await?;
                    (id, true)
                }
                None => {
                    let (id,): (Uuid,) =
                        sqlx::query_as("SELECT id FROM chat_conversations WHERE direct_key = $1")
                            .bind(&new.direct_key)
                            .fetch_one(&mut *tx)
                            .await?;
                    (id, false)
                }
            };
            let c = Self::load(&mut tx, ConversationId::from_uuid(id))
                .await?
                .ok_or_else(|| corrupt("a direct conversation vanished while read"))?;
            tx.commit().await?;
            Ok((c, created))
        })
    }

    fn create<'a>(
        &'a self,
        key: &'a idempotency::Key,
        new: &'a NewConversation,
    ) -> crate::app::Fut<'a, Conversation> {
        Box::pin(async move {
            let mut tx = self.pool.begin().await?;
            let id = match idempotency::begin(&mut tx, key).await? {
                Begin::Replay(answer) => Self::decode::<ConversationId>(&answer)?,
                Begin::Fresh => {
                    sqlx::query(
                        "INSERT INTO chat_conversations (id, kind, name, created_by, created_at) VALUES ($1, $2, $3, $4, $5)",
                    )
                    .bind(new.id.uuid())
                    .bind(new.kind.as_str())
                    .bind(&new.name)
                    .bind(new.created_by.as_str())
                    .bind(new.created_at)
                    .execute(&mut *tx)
                    .await?;
                    Self::insert(&mut tx, new).await?;
                    idempotency::finish(&mut tx, key, &Self::encode(&new.id)?).await?;
                    new.id
                }
            };
            let c = Self::load(&mut tx, id)
                .await?
                .ok_or_else(|| corrupt("a created conversation vanished while read"))?;
            tx.commit().await?;
            Ok(c)
        })
    }

    fn conversation(&self, id: ConversationId) -> crate::app::Fut<'_, Option<Conversation>> {
        Box::pin(async move {
            let mut conn = self.pool.acquire().await?;
            Self::load(&mut conn, id).await
        })
    }

    fn add_member<'a>(
        &'a self,
        id: ConversationId,
        user: &'a UserId,
        max: u32,
        note: Draft<'a>,
    ) -> crate::app::Fut<'a, Option<Message>> {
        Box::pin(async move {
            let mut tx = self.pool.begin().await?;
            // The conversation's lock serialises concurrent additions against the maximum.
            sqlx::query("SELECT 1 FROM chat_conversations WHERE id = $1 FOR UPDATE")
                .bind(id.uuid())
                .execute(&mut *tx)
                .await?;
            let (count, present): (i64, bool) = sqlx::query_as(
                "SELECT count(*), bool_or(user_id = $2) IS TRUE FROM chat_members WHERE conversation_id = $1",
            )
            .bind(id.uuid())
            .bind(user.as_str())
            .fetch_one(&mut *tx)
            .await?;
            if present {
                return Ok(None);
            }
            if count >= i64::from(max) {
                return Err(ChatError::TooManyMembers {
                    conversation: id,
                    max,
                });
            }
            sqlx::query(
                "INSERT INTO chat_members (conversation_id, user_id, role, joined_at) VALUES ($1, $2, 'MEMBER', $3)",
            )
            .bind(id.uuid())
            .bind(user.as_str())
            .bind(note.at)
            .execute(&mut *tx)
            .await?;
            let m = Self::append(&mut tx, id, note).await?;
            tx.commit().await?;
            Ok(Some(m))
        })
    }

    fn remove_member<'a>(
        &'a self,
        id: ConversationId,
        user: &'a UserId,
        note: Draft<'a>,
    ) -> crate::app::Fut<'a, Option<Message>> {
        Box::pin(async move {
            let mut tx = self.pool.begin().await?;
            let removed =
                sqlx::query("DELETE FROM chat_members WHERE conversation_id = $1 AND user_id = $2")
                    .bind(id.uuid())
                    .bind(user.as_str())
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
            if removed == 0 {
                return Ok(None);
            }
            let m = Self::append(&mut tx, id, note).await?;
            tx.commit().await?;
            Ok(Some(m))
        })
    }

    fn conversations_of<'a>(
        &'a self,
        user: &'a str,
        after: Option<ConversationId>,
        limit: u32,
    ) -> crate::app::Fut<'a, Vec<(Conversation, u64)>> {
        Box::pin(async move {
            let rows: Vec<ConversationRow> = sqlx::query_as(
                "SELECT c.id, c.kind, c.name, c.created_by, c.created_at, c.last_message_id \
                   FROM chat_members m JOIN chat_conversations c ON c.id = m.conversation_id \
                  WHERE m.user_id = $1 AND ($2::uuid IS NULL OR m.conversation_id > $2) \
                  ORDER BY m.conversation_id LIMIT $3",
            )
            .bind(user)
            .bind(after.map(ConversationId::uuid))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
            let ids: Vec<Uuid> = rows.iter().map(|r| r.0).collect();
            let members: Vec<(Uuid, String, String, DateTime<Utc>)> = sqlx::query_as(
                "SELECT conversation_id, user_id, role, joined_at FROM chat_members \
                  WHERE conversation_id = ANY ($1) ORDER BY joined_at, user_id",
            )
            .bind(&ids)
            .fetch_all(&self.pool)
            .await?;
            let unread = unread(&self.pool, user, Some(&ids)).await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in rows {
                let id = row.0;
                let mine = members
                    .iter()
                    .filter(|m| m.0 == id)
                    .map(|(_, u, r, at)| member_of((u.clone(), r.clone(), *at)))
                    .collect::<Result<Vec<_>, _>>()?;
                let count = unread
                    .iter()
                    .find(|(c, _)| c.uuid() == id)
                    .map_or(0, |(_, n)| *n);
                out.push((conversation_of(row, mine)?, count));
            }
            Ok(out)
        })
    }

    fn unread_counts<'a>(
        &'a self,
        user: &'a str,
    ) -> crate::app::Fut<'a, Vec<(ConversationId, u64)>> {
        Box::pin(async move { unread(&self.pool, user, None).await })
    }

    fn send<'a>(
        &'a self,
        key: &'a idempotency::Key,
        conversation: &'a Conversation,
        draft: Draft<'a>,
        join: bool,
    ) -> crate::app::Fut<'a, Message> {
        Box::pin(async move {
            let mut tx = self.pool.begin().await?;
            if let Begin::Replay(answer) = idempotency::begin(&mut tx, key).await? {
                let id = Self::decode::<MessageId>(&answer)?;
                tx.commit().await?;
                return self
                    .message(conversation.id, id)
                    .await?
                    .ok_or_else(|| corrupt("a replayed message is missing"));
            }
            if join {
                sqlx::query(
                    "INSERT INTO chat_members (conversation_id, user_id, role, joined_at) VALUES ($1, $2, 'MEMBER', $3) ON CONFLICT DO NOTHING",
                )
                .bind(conversation.id.uuid())
                .bind(draft.sender.as_str())
                .bind(draft.at)
                .execute(&mut *tx)
                .await?;
            }
            let message = Self::append(&mut tx, conversation.id, draft).await?;
            let event = Envelope::new(
                &self.cell,
                MESSAGE_SENT,
                1,
                &MessageSent::of(&message, conversation.kind),
            )?;
            outbox::write(&mut tx, SERVICE, &event).await?;
            idempotency::finish(&mut tx, key, &Self::encode(&message.id)?).await?;
            tx.commit().await?;
            Ok(message)
        })
    }

    fn message(
        &self,
        conversation: ConversationId,
        id: MessageId,
    ) -> crate::app::Fut<'_, Option<Message>> {
        Box::pin(async move {
            self.one_message(
                &format!("SELECT {MESSAGE_COLUMNS} FROM chat_messages WHERE conversation_id = $1 AND id = $2"),
                conversation,
                id,
            )
            .await
        })
    }

    fn edit<'a>(
        &'a self,
        conversation: ConversationId,
        id: MessageId,
        text: &'a str,
        at: DateTime<Utc>,
    ) -> crate::app::Fut<'a, Option<Message>> {
        Box::pin(async move {
            let row: Option<MessageRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "UPDATE chat_messages SET content = $3, edited_at = $4 \
                  WHERE conversation_id = $1 AND id = $2 AND deleted_at IS NULL RETURNING {MESSAGE_COLUMNS}"
            )))
            .bind(conversation.uuid())
            .bind(id.uuid())
            .bind(text)
            .bind(at)
            .fetch_optional(&self.pool)
            .await?;
            row.map(message_of).transpose()
        })
    }

    fn delete(
        &self,
        conversation: ConversationId,
        id: MessageId,
        at: DateTime<Utc>,
    ) -> crate::app::Fut<'_, Option<Message>> {
        Box::pin(async move {
            let row: Option<MessageRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "UPDATE chat_messages SET content = '', metadata = '{{}}', deleted_at = COALESCE(deleted_at, $3) \
                  WHERE conversation_id = $1 AND id = $2 RETURNING {MESSAGE_COLUMNS}"
            )))
            .bind(conversation.uuid())
            .bind(id.uuid())
            .bind(at)
            .fetch_optional(&self.pool)
            .await?;
            row.map(message_of).transpose()
        })
    }

    fn history(
        &self,
        conversation: ConversationId,
        page: Page,
        limit: u32,
    ) -> crate::app::Fut<'_, Vec<Message>> {
        Box::pin(async move {
            let bound = match page {
                Page::Latest => Uuid::max(),
                Page::Before(id) | Page::After(id) => id.uuid(),
            };
            let mut page_messages = self
                .messages(history_sql(page), conversation, bound, limit)
                .await?;
            if !matches!(page, Page::After(_)) {
                page_messages.reverse();
            }
            Ok(page_messages)
        })
    }

    fn after_seq(
        &self,
        conversation: ConversationId,
        seq: i64,
        limit: u32,
    ) -> crate::app::Fut<'_, Vec<Message>> {
        Box::pin(async move {
            let rows: Vec<MessageRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {MESSAGE_COLUMNS} FROM chat_messages WHERE conversation_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"
            )))
            .bind(conversation.uuid())
            .bind(seq)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
            rows.into_iter().map(message_of).collect()
        })
    }

    fn seq_of(
        &self,
        conversation: ConversationId,
        id: MessageId,
    ) -> crate::app::Fut<'_, Option<i64>> {
        Box::pin(async move {
            let seq: Option<(i64,)> = sqlx::query_as(
                "SELECT seq FROM chat_messages WHERE conversation_id = $1 AND id = $2",
            )
            .bind(conversation.uuid())
            .bind(id.uuid())
            .fetch_optional(&self.pool)
            .await?;
            Ok(seq.map(|s| s.0))
        })
    }

    fn last_seq(&self, conversation: ConversationId) -> crate::app::Fut<'_, i64> {
        Box::pin(async move {
            let seq: Option<(i64,)> =
                sqlx::query_as("SELECT last_seq FROM chat_conversations WHERE id = $1")
                    .bind(conversation.uuid())
                    .fetch_optional(&self.pool)
                    .await?;
            Ok(seq.map_or(0, |s| s.0))
        })
    }

    fn mark<'a>(
        &'a self,
        conversation: ConversationId,
        user: &'a UserId,
        delivered: Option<MessageId>,
        read: Option<MessageId>,
        at: DateTime<Utc>,
    ) -> crate::app::Fut<'a, Result<Markers, &'static str>> {
        Box::pin(async move {
            for (field, id) in [("delivered_up_to", delivered), ("read_up_to", read)] {
                if let Some(id) = id
                    && self.seq_of(conversation, id).await?.is_none()
                {
                    return Ok(Err(field));
                }
            }
            let mut tx = self.pool.begin().await?;
            sqlx::query(
                "INSERT INTO chat_receipts (conversation_id, user_id, updated_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            )
            .bind(conversation.uuid())
            .bind(user.as_str())
            .bind(at)
            .execute(&mut *tx)
            .await?;
            let (old_delivered, old_read): (Option<Uuid>, Option<Uuid>) = sqlx::query_as(
                "SELECT delivered_up_to, read_up_to FROM chat_receipts WHERE conversation_id = $1 AND user_id = $2 FOR UPDATE",
            )
            .bind(conversation.uuid())
            .bind(user.as_str())
            .fetch_one(&mut *tx)
            .await?;
            let markers = Markers {
                delivered_up_to: old_delivered.map(MessageId::from_uuid),
                read_up_to: old_read.map(MessageId::from_uuid),
            }
            .advance(delivered, read);
            sqlx::query(
                "UPDATE chat_receipts SET delivered_up_to = $3, read_up_to = $4, updated_at = $5 WHERE conversation_id = $1 AND user_id = $2",
            )
            .bind(conversation.uuid())
            .bind(user.as_str())
            .bind(markers.delivered_up_to.map(MessageId::uuid))
            .bind(markers.read_up_to.map(MessageId::uuid))
            .bind(at)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(Ok(markers))
        })
    }

    fn receipts(&self, conversation: ConversationId) -> crate::app::Fut<'_, Vec<Receipt>> {
        Box::pin(async move {
            let rows: Vec<(String, Option<Uuid>, Option<Uuid>)> = sqlx::query_as(
                "SELECT user_id, delivered_up_to, read_up_to FROM chat_receipts WHERE conversation_id = $1 ORDER BY user_id",
            )
            .bind(conversation.uuid())
            .fetch_all(&self.pool)
            .await?;
            rows.into_iter()
                .map(|(user, d, r)| {
                    Ok(Receipt {
                        conversation_id: conversation,
                        user_id: stored_user(user)?,
                        markers: Markers {
                            delivered_up_to: d.map(MessageId::from_uuid),
                            read_up_to: r.map(MessageId::from_uuid),
                        },
                    })
                })
                .collect()
        })
    }
}

async fn unread(
    pool: &PgPool,
    user: &str,
    only: Option<&[Uuid]>,
) -> Result<Vec<(ConversationId, u64)>, ChatError> {
    let rows: Vec<(Uuid, i64)> = sqlx::query_as(include_str!("sql/unread.sql"))
        .bind(user)
        .bind(only)
        .fetch_all(pool)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(id, n)| (ConversationId::from_uuid(id), u64::try_from(n).unwrap_or(0)))
        .collect())
}
