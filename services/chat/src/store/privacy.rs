//! A person's chat records for the privacy jobs (`crate::privacy`): everything held about them,
//! and their erasure. Conversations stay for the other participants: the person's messages
//! stay in their place as deleted messages of the pseudonym (bodies and metadata blanked), their
//! memberships and the conversations they created carry the pseudonym, the service's notes
//! that name them name the pseudonym; their receipts go, and Redis forgets their presence,
//! typing and send budget.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgPool, types::Json};
use titan_kit::ratelimit::RateLimiter;
use uuid::Uuid;

use super::redis::{Live, SEND_SCOPE};
use crate::{
    app::ChatError,
    domain::{ConversationId, Metadata},
};

/// A conversation the person belongs to or created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct ConversationRecord {
    pub id: Uuid,
    pub kind: String,
    pub name: Option<String>,
    pub created_by_me: bool,
    /// None when the person created the conversation and has left it.
    pub role: Option<String>,
    pub joined_at: Option<DateTime<Utc>>,
}

/// A message the person wrote (the service's SYSTEM notes are not theirs: they name others
/// and repeat what the memberships say).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct MessageRecord {
    pub conversation_id: Uuid,
    pub id: Uuid,
    pub seq: i64,
    pub kind: String,
    pub content: String,
    pub metadata: Json<Metadata>,
    pub sent_at: DateTime<Utc>,
    pub edited_at: Option<DateTime<Utc>>,
    pub deleted_at: Option<DateTime<Utc>>,
}

/// How far the person has received and read a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct ReceiptRecord {
    pub conversation_id: Uuid,
    pub delivered_up_to: Option<Uuid>,
    pub read_up_to: Option<Uuid>,
    pub updated_at: DateTime<Utc>,
}

/// Everything chat holds about one person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Records {
    pub user_id: String,
    pub conversations: Vec<ConversationRecord>,
    /// Every message they sent, all conversations, oldest first.
    pub messages: Vec<MessageRecord>,
    pub receipts: Vec<ReceiptRecord>,
    /// When a connection of theirs was last alive (Redis keeps it while it is recent).
    pub last_seen: Option<DateTime<Utc>>,
}

/// What an erasure did, by kind of record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Erased {
    /// Messages whose body and metadata were blanked (not deleted before).
    pub message_bodies: u64,
    /// Messages now sent by the pseudonym (all of theirs, notes included).
    pub messages: u64,
    /// SYSTEM notes naming the person, now naming the pseudonym.
    pub notes: u64,
    pub memberships: u64,
    /// Conversations they created, or DIRECT ones whose pair key named them.
    pub conversations: u64,
    pub receipts: u64,
    pub presence: u64,
    pub typing: u64,
    pub rate: u64,
}

#[derive(Debug, Clone)]
pub struct PersonalStore {
    pool: PgPool,
    live: Live,
    sends: RateLimiter,
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

impl PersonalStore {
    pub fn new(pool: PgPool, live: Live) -> Self {
        let sends = RateLimiter::new(live.redis().clone(), SEND_SCOPE);
        Self { pool, live, sends }
    }

    /// Everything held about `user`, all of it (no page limits), from one snapshot.
    pub async fn records(&self, user: &str) -> Result<Records, ChatError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .execute(&mut *tx)
            .await?;
        let conversations = sqlx::query_as(
            "SELECT c.id, c.kind, c.name, c.created_by = $1 AS created_by_me, m.role, m.joined_at
               FROM chat_conversations c
               LEFT JOIN chat_members m ON m.conversation_id = c.id AND m.user_id = $1
              WHERE m.user_id IS NOT NULL OR c.created_by = $1
              ORDER BY c.created_at, c.id",
        )
        .bind(user)
        .fetch_all(&mut *tx)
        .await?;
        let messages = sqlx::query_as(
            "SELECT conversation_id, id, seq, kind, content, metadata, sent_at, edited_at, deleted_at
               FROM chat_messages WHERE sender_id = $1 AND kind <> 'SYSTEM'
              ORDER BY sent_at, id",
        )
        .bind(user)
        .fetch_all(&mut *tx)
        .await?;
        let receipts = sqlx::query_as(
            "SELECT conversation_id, delivered_up_to, read_up_to, updated_at
               FROM chat_receipts WHERE user_id = $1 ORDER BY conversation_id",
        )
        .bind(user)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Records {
            user_id: user.to_owned(),
            conversations,
            messages,
            receipts,
            last_seen: self.live.last_seen(user).await?,
        })
    }

    /// Erases `user`, keeping their place in others' conversations under `pseudonym`.
    /// Idempotent: a second run finds nothing and reports zeros.
    ///
    /// Redis goes first, while PostgreSQL still says which conversations are theirs: a crash
    /// after it leaves the rows to the next run, which finds the same conversations. The rows
    /// change in one transaction.
    pub async fn erase(&self, user: &str, pseudonym: &str) -> Result<Erased, ChatError> {
        let conversations: Vec<Uuid> = sqlx::query_scalar(
            "SELECT conversation_id FROM chat_members WHERE user_id = $1 ORDER BY conversation_id",
        )
        .bind(user)
        .fetch_all(&self.pool)
        .await?;
        let conversations: Vec<ConversationId> = conversations
            .into_iter()
            .map(ConversationId::from_uuid)
            .collect();
        let forgotten = self.live.forget(user, &conversations).await?;
        let budget = self.sends.forget(user).await?;

        let mut tx = self.pool.begin().await?;
        let receipts = sqlx::query("DELETE FROM chat_receipts WHERE user_id = $1")
            .bind(user)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        // Notes before messages: the notes are found by the words that name the person, the
        // messages by their sender.
        let notes = sqlx::query(include_str!("sql/erase_notes.sql"))
            .bind(user)
            .bind(pseudonym)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let had_body: Vec<bool> = sqlx::query_scalar(include_str!("sql/erase_messages.sql"))
            .bind(user)
            .bind(pseudonym)
            .fetch_all(&mut *tx)
            .await?;
        // A DIRECT conversation's pair key named them: the erased pair no longer needs to be
        // found, and a key of the conversation's own id cannot collide with any other.
        let conversations_changed = sqlx::query(
            "UPDATE chat_conversations
                SET created_by = CASE WHEN created_by = $1 THEN $2 ELSE created_by END,
                    direct_key = CASE WHEN kind = 'DIRECT' THEN 'erased:' || id::text END
              WHERE created_by = $1
                 OR (kind = 'DIRECT' AND direct_key <> 'erased:' || id::text
                     AND id IN (SELECT conversation_id FROM chat_members WHERE user_id = $1))",
        )
        .bind(user)
        .bind(pseudonym)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        // The pseudonym may be a member already (the person was erased before, came back and
        // joined the same group): their row merges into it.
        let (merged, renamed): (i64, i64) = sqlx::query_as(
            "WITH merged AS (
                 DELETE FROM chat_members m
                  WHERE m.user_id = $1
                    AND EXISTS (SELECT 1 FROM chat_members p
                                 WHERE p.conversation_id = m.conversation_id AND p.user_id = $2)
                 RETURNING 1),
             renamed AS (
                 UPDATE chat_members SET user_id = $2
                  WHERE user_id = $1
                    AND NOT EXISTS (SELECT 1 FROM chat_members p
                                     WHERE p.conversation_id = chat_members.conversation_id
                                       AND p.user_id = $2)
                 RETURNING 1)
             SELECT (SELECT count(*) FROM merged), (SELECT count(*) FROM renamed)",
        )
        .bind(user)
        .bind(pseudonym)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Erased {
            message_bodies: had_body.iter().filter(|b| **b).count() as u64,
            messages: had_body.len() as u64,
            notes,
            memberships: count(merged) + count(renamed),
            conversations: conversations_changed,
            receipts,
            presence: forgotten.presence,
            typing: forgotten.typing,
            rate: u64::from(budget),
        })
    }
}
