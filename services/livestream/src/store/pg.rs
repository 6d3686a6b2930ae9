//! Streams, comments and purchases in PostgreSQL. A change locks the stream's row (`FOR
//! UPDATE`), so two callbacks of nginx, a seller's edit and a pin never interleave on one
//! stream; the key hash is cleared in the same statement that moves a stream past LIVE, so a
//! revoked key admits nobody. A purchase and its `livestream.purchased` outbox row commit
//! together.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool, Row, postgres::PgRow};
use titan_kit::{
    KitError,
    events::{Envelope, outbox},
    idempotency::{self, Begin},
};
use uuid::Uuid;

use crate::{
    app::{
        Change, Changed, CommentQuery, Decide, Fut, LivestreamError, NewStream, Purchase,
        StreamQuery, StreamStore, Target, Watched,
    },
    domain::{Comment, CommentId, ProductIds, SERVICE, Status, Stream, StreamId},
};

/// The event a purchase emits.
pub const PURCHASED: &str = "livestream.purchased";
/// The event of a viewer's minute of a stream.
pub const WATCHED: &str = "livestream.watched";

const COLUMNS: &str =
    "id, seller_id, title, status, scheduled_at, started_at, ended_at, recording_url, featured";
const COMMENT_COLUMNS: &str = "id, stream_id, user_id, text, created_at, pinned_at";

fn corrupt(what: impl std::fmt::Display) -> LivestreamError {
    LivestreamError::Kit(KitError::Other(format!(
        "stored livestream data does not parse: {what}"
    )))
}

fn stream_of(row: &PgRow) -> Result<Stream, LivestreamError> {
    let status: String = row.try_get("status")?;
    Ok(Stream {
        id: StreamId::from_uuid(row.try_get("id")?),
        seller_id: row.try_get("seller_id")?,
        title: row.try_get("title")?,
        status: Status::parse(&status).ok_or_else(|| corrupt(format!("status {status:?}")))?,
        scheduled_at: row.try_get("scheduled_at")?,
        started_at: row.try_get("started_at")?,
        ended_at: row.try_get("ended_at")?,
        recording_url: row.try_get("recording_url")?,
        featured: ProductIds::from_stored(row.try_get("featured")?),
    })
}

fn comment_of(row: &PgRow) -> Result<Comment, LivestreamError> {
    Ok(Comment {
        id: CommentId::from_uuid(row.try_get("id")?),
        stream_id: StreamId::from_uuid(row.try_get("stream_id")?),
        user_id: row.try_get("user_id")?,
        text: row.try_get("text")?,
        created_at: row.try_get("created_at")?,
        pinned_at: row.try_get("pinned_at")?,
    })
}

#[derive(Debug, Clone)]
pub struct PgStreams {
    pool: PgPool,
    cell: String,
}

impl PgStreams {
    pub fn new(pool: PgPool, cell: String) -> Self {
        Self { pool, cell }
    }

    async fn load(
        conn: &mut PgConnection,
        id: StreamId,
    ) -> Result<Option<Stream>, LivestreamError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM livestream_streams WHERE id = $1"
        )))
        .bind(id.uuid())
        .fetch_optional(conn)
        .await?;
        row.as_ref().map(stream_of).transpose()
    }

    async fn locked(
        conn: &mut PgConnection,
        target: Target,
    ) -> Result<Option<Stream>, LivestreamError> {
        let row = match target {
            Target::Id(id) => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {COLUMNS} FROM livestream_streams WHERE id = $1 FOR UPDATE"
                )))
                .bind(id.uuid())
                .fetch_optional(conn)
                .await?
            }
            Target::Key(hash) => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {COLUMNS} FROM livestream_streams WHERE key_hash = $1 FOR UPDATE"
                )))
                .bind(hash.as_bytes())
                .fetch_optional(conn)
                .await?
            }
        };
        row.as_ref().map(stream_of).transpose()
    }

    async fn apply(
        conn: &mut PgConnection,
        id: StreamId,
        change: Change,
    ) -> Result<Stream, LivestreamError> {
        let query = match change {
            Change::Edit {
                title,
                scheduled_at,
            } => sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE livestream_streams SET title = COALESCE($2, title),
                 scheduled_at = COALESCE($3, scheduled_at) WHERE id = $1 RETURNING {COLUMNS}"
            )))
            .bind(id.uuid())
            .bind(title.map(|t| t.as_str().to_owned()))
            .bind(scheduled_at),
            Change::Rotate(hash) => sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE livestream_streams SET key_hash = $2 WHERE id = $1 RETURNING {COLUMNS}"
            )))
            .bind(id.uuid())
            .bind(hash.as_bytes().to_vec()),
            // started_at when it goes LIVE, ended_at when it ends or is cancelled; the key
            // is kept only while it may still admit (or is admitting) its publisher.
            Change::Status { to, at } => sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE livestream_streams SET status = $2,
                 started_at = CASE WHEN $2 = 'LIVE' THEN $3 ELSE started_at END,
                 ended_at = CASE WHEN $2 IN ('ENDED', 'CANCELLED') THEN $3 ELSE ended_at END,
                 key_hash = CASE WHEN $4 THEN key_hash END
                 WHERE id = $1 RETURNING {COLUMNS}"
            )))
            .bind(id.uuid())
            .bind(to.as_str())
            .bind(at)
            .bind(to.key_active()),
            Change::Featured(products) => sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE livestream_streams SET featured = $2 WHERE id = $1 RETURNING {COLUMNS}"
            )))
            .bind(id.uuid())
            .bind(products.as_slice().to_vec()),
            Change::Recording(url) => sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE livestream_streams SET recording_url = $2 WHERE id = $1 RETURNING {COLUMNS}"
            )))
            .bind(id.uuid())
            .bind(url),
        };
        stream_of(&query.fetch_one(conn).await?)
    }

    fn encode(id: Uuid) -> Vec<u8> {
        id.as_bytes().to_vec()
    }

    fn decode(answer: &[u8]) -> Result<Uuid, LivestreamError> {
        Uuid::from_slice(answer).map_err(|e| corrupt(format!("idempotent answer: {e}")))
    }
}

impl StreamStore for PgStreams {
    fn schedule<'a>(
        &'a self,
        key: &'a idempotency::Key,
        new: &'a NewStream,
    ) -> Fut<'a, (Stream, bool)> {
        Box::pin(async move {
            let mut tx = self.pool.begin().await?;
            let (id, fresh) = match idempotency::begin(&mut tx, key).await? {
                Begin::Replay(answer) => (StreamId::from_uuid(Self::decode(&answer)?), false),
                Begin::Fresh => {
                    sqlx::query(
                        "INSERT INTO livestream_streams (id, seller_id, title, status, key_hash, scheduled_at)
                         VALUES ($1, $2, $3, 'SCHEDULED', $4, $5)",
                    )
                    .bind(new.id.uuid())
                    .bind(&new.seller_id)
                    .bind(new.title.as_str())
                    .bind(new.key.as_bytes().to_vec())
                    .bind(new.scheduled_at)
                    .execute(&mut *tx)
                    .await?;
                    idempotency::finish(&mut tx, key, &Self::encode(new.id.uuid())).await?;
                    (new.id, true)
                }
            };
            let stream = Self::load(&mut tx, id)
                .await?
                .ok_or_else(|| corrupt("a scheduled stream vanished while read"))?;
            tx.commit().await?;
            Ok((stream, fresh))
        })
    }

    fn change<'a>(
        &'a self,
        target: Target,
        key: Option<&'a idempotency::Key>,
        decide: Decide<'a>,
    ) -> Fut<'a, Option<Changed>> {
        Box::pin(async move {
            let mut tx = self.pool.begin().await?;
            if let Some(key) = key
                && let Begin::Replay(answer) = idempotency::begin(&mut tx, key).await?
            {
                let id = StreamId::from_uuid(Self::decode(&answer)?);
                let stream = Self::load(&mut tx, id).await?;
                tx.commit().await?;
                return Ok(stream.map(|stream| Changed {
                    stream,
                    replayed: true,
                }));
            }
            let Some(stream) = Self::locked(&mut tx, target).await? else {
                return Ok(None);
            };
            let stream = match decide(&stream)? {
                None => stream,
                Some(change) => Self::apply(&mut tx, stream.id, change).await?,
            };
            if let Some(key) = key {
                idempotency::finish(&mut tx, key, &Self::encode(stream.id.uuid())).await?;
            }
            tx.commit().await?;
            Ok(Some(Changed {
                stream,
                replayed: false,
            }))
        })
    }

    fn stream(&self, id: StreamId) -> Fut<'_, Option<Stream>> {
        Box::pin(async move {
            let mut conn = self.pool.acquire().await?;
            Self::load(&mut conn, id).await
        })
    }

    fn streams<'a>(&'a self, q: &'a StreamQuery) -> Fut<'a, Vec<Stream>> {
        Box::pin(async move {
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM livestream_streams
                 WHERE ($1::text IS NULL OR seller_id = $1)
                   AND ($2::text IS NULL OR status = $2)
                   AND ($3::uuid IS NULL OR id < $3)
                 ORDER BY id DESC LIMIT $4"
            )))
            .bind(q.seller_id.as_deref())
            .bind(q.status.map(Status::as_str))
            .bind(q.before)
            .bind(i64::from(q.limit))
            .fetch_all(&self.pool)
            .await?;
            rows.iter().map(stream_of).collect()
        })
    }

    fn comment<'a>(
        &'a self,
        key: &'a idempotency::Key,
        c: &'a Comment,
    ) -> Fut<'a, (Comment, bool)> {
        Box::pin(async move {
            let mut tx = self.pool.begin().await?;
            let (id, fresh) = match idempotency::begin(&mut tx, key).await? {
                Begin::Replay(answer) => (Self::decode(&answer)?, false),
                Begin::Fresh => {
                    sqlx::query(
                        "INSERT INTO livestream_comments (stream_id, id, user_id, text, created_at)
                         VALUES ($1, $2, $3, $4, $5)",
                    )
                    .bind(c.stream_id.uuid())
                    .bind(c.id.uuid())
                    .bind(&c.user_id)
                    .bind(&c.text)
                    .bind(c.created_at)
                    .execute(&mut *tx)
                    .await?;
                    idempotency::finish(&mut tx, key, &Self::encode(c.id.uuid())).await?;
                    (c.id.uuid(), true)
                }
            };
            let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {COMMENT_COLUMNS} FROM livestream_comments WHERE stream_id = $1 AND id = $2"
            )))
            .bind(c.stream_id.uuid())
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| corrupt("a replayed comment is not in its stream"))?;
            tx.commit().await?;
            Ok((comment_of(&row)?, fresh))
        })
    }

    fn comments(&self, q: CommentQuery) -> Fut<'_, Vec<Comment>> {
        Box::pin(async move {
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {COMMENT_COLUMNS} FROM livestream_comments
                 WHERE stream_id = $1 AND (NOT $2 OR pinned_at IS NOT NULL)
                   AND ($3::uuid IS NULL OR id < $3)
                 ORDER BY id DESC LIMIT $4"
            )))
            .bind(q.stream.uuid())
            .bind(q.pinned_only)
            .bind(q.before)
            .bind(i64::from(q.limit))
            .fetch_all(&self.pool)
            .await?;
            rows.iter().map(comment_of).collect()
        })
    }

    fn pin(
        &self,
        stream: StreamId,
        comment: CommentId,
        pin: Option<DateTime<Utc>>,
        max: u32,
    ) -> Fut<'_, Option<Comment>> {
        Box::pin(async move {
            let mut tx = self.pool.begin().await?;
            // The stream's lock orders concurrent pins, so the count below stays true.
            sqlx::query("SELECT 1 FROM livestream_streams WHERE id = $1 FOR UPDATE")
                .bind(stream.uuid())
                .execute(&mut *tx)
                .await?;
            let row = sqlx::query(
                "SELECT pinned_at IS NOT NULL AS pinned FROM livestream_comments
                 WHERE stream_id = $1 AND id = $2",
            )
            .bind(stream.uuid())
            .bind(comment.uuid())
            .fetch_optional(&mut *tx)
            .await?;
            let Some(row) = row else {
                return Ok(None);
            };
            let pinned: bool = row.try_get("pinned")?;
            if let Some(at) = pin.filter(|_| !pinned) {
                let count: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM livestream_comments WHERE stream_id = $1 AND pinned_at IS NOT NULL",
                )
                .bind(stream.uuid())
                .fetch_one(&mut *tx)
                .await?;
                crate::domain::comment::may_pin(
                    stream,
                    u32::try_from(count).unwrap_or(u32::MAX),
                    max,
                )?;
                sqlx::query("UPDATE livestream_comments SET pinned_at = $3 WHERE stream_id = $1 AND id = $2")
                    .bind(stream.uuid())
                    .bind(comment.uuid())
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
            } else if pin.is_none() && pinned {
                sqlx::query("UPDATE livestream_comments SET pinned_at = NULL WHERE stream_id = $1 AND id = $2")
                    .bind(stream.uuid())
                    .bind(comment.uuid())
                    .execute(&mut *tx)
                    .await?;
            }
            let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {COMMENT_COLUMNS} FROM livestream_comments WHERE stream_id = $1 AND id = $2"
            )))
            .bind(stream.uuid())
            .bind(comment.uuid())
            .fetch_one(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(Some(comment_of(&row)?))
        })
    }

    fn purchase<'a>(&'a self, p: &'a Purchase) -> Fut<'a, bool> {
        Box::pin(async move {
            let mut tx = self.pool.begin().await?;
            let inserted = sqlx::query(
                "INSERT INTO livestream_purchases
                   (order_id, stream_id, buyer_id, product_id, quantity, amount_minor, currency, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (order_id) DO NOTHING",
            )
            .bind(&p.order_id)
            .bind(p.stream_id.uuid())
            .bind(&p.user_id)
            .bind(&p.product_id)
            .bind(i32::try_from(p.quantity).map_err(|_| corrupt("quantity above i32"))?)
            .bind(p.total.minor_units)
            .bind(p.total.currency.as_str())
            .bind(p.purchased_at)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            if !inserted {
                // The same order again: a retry when every detail matches, else a conflict.
                let same: bool = sqlx::query_scalar(
                    "SELECT stream_id = $2 AND buyer_id = $3 AND product_id = $4 AND quantity = $5
                            AND amount_minor = $6 AND currency = $7
                     FROM livestream_purchases WHERE order_id = $1",
                )
                .bind(&p.order_id)
                .bind(p.stream_id.uuid())
                .bind(&p.user_id)
                .bind(&p.product_id)
                .bind(i32::try_from(p.quantity).map_err(|_| corrupt("quantity above i32"))?)
                .bind(p.total.minor_units)
                .bind(p.total.currency.as_str())
                .fetch_one(&mut *tx)
                .await?;
                tx.commit().await?;
                return if same {
                    Ok(false)
                } else {
                    Err(LivestreamError::OrderConflict(p.order_id.clone()))
                };
            }
            let event = Envelope::new(&self.cell, PURCHASED, 1, p)?;
            outbox::write(&mut tx, SERVICE, &event).await?;
            tx.commit().await?;
            Ok(true)
        })
    }

    fn watched<'a>(&'a self, w: &'a Watched) -> Fut<'a, ()> {
        Box::pin(async move {
            let mut event = Envelope::new(&self.cell, WATCHED, 1, w)?;
            // analytics files the event at this time: the minute's, not the insert's.
            event.occurred_at = w.watched_at;
            let mut conn = self.pool.acquire().await?;
            outbox::write(&mut conn, SERVICE, &event).await?;
            Ok(())
        })
    }
}
