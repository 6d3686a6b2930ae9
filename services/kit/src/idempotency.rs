//! Idempotent mutations: a repeated `request_id` (per service, method and user) returns the
//! first answer. The key row is inserted in the mutation's own transaction, so the answer is
//! recorded exactly when the change commits; a concurrent duplicate blocks on that row and then
//! replays the committed answer instead of running twice.

use sha2::{Digest, Sha256};
use sqlx::PgConnection;

use crate::{ErrorCode, KitError, ServiceError};

/// Identifies one mutating call.
#[derive(Debug, Clone)]
pub struct Key {
    service: &'static str,
    method: &'static str,
    user_id: String,
    request_id: String,
    request_hash: Vec<u8>,
}

/// What a retried call must do.
#[derive(Debug, PartialEq, Eq)]
pub enum Begin {
    /// First time: run the mutation, then [`finish`] in the same transaction.
    Fresh,
    /// Seen before: return this encoded answer.
    Replay(Vec<u8>),
}

#[derive(Debug, thiserror::Error)]
pub enum IdempotencyError {
    #[error(
        "request_id is required on every mutating call: send a unique id (a UUID) per intended change"
    )]
    MissingRequestId,
    #[error("request_id must be at most 128 printable ASCII characters")]
    BadRequestId,
    #[error(
        "request_id {0:?} was already used for a different request; send a new request_id for a new change"
    )]
    Reused(String),
    #[error(transparent)]
    Store(#[from] sqlx::Error),
}

impl ServiceError for IdempotencyError {
    fn code(&self) -> ErrorCode {
        match self {
            Self::MissingRequestId | Self::BadRequestId => ErrorCode::InvalidArgument,
            Self::Reused(_) => ErrorCode::FailedPrecondition,
            Self::Store(_) => ErrorCode::Internal,
        }
    }
    fn reason(&self) -> Option<&'static str> {
        matches!(self, Self::Reused(_)).then_some("REQUEST_ID_REUSED")
    }
}

impl Key {
    /// `request` is the encoded request (without auth), so a reused id with another body is caught.
    pub fn new(
        service: &'static str,
        method: &'static str,
        user_id: &str,
        request_id: &str,
        request: &[u8],
    ) -> Result<Self, IdempotencyError> {
        if request_id.is_empty() {
            return Err(IdempotencyError::MissingRequestId);
        }
        if request_id.len() > 128 || !request_id.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(IdempotencyError::BadRequestId);
        }
        Ok(Self {
            service,
            method,
            user_id: user_id.to_owned(),
            request_id: request_id.to_owned(),
            request_hash: Sha256::digest(request).to_vec(),
        })
    }
}

impl Key {
    /// The key of a gRPC request: the caller's id, and `body` (the decoded message, auth
    /// excluded) encoded again, so a reused id with another body is caught.
    pub fn of_message<M: prost::Message>(
        service: &'static str,
        method: &'static str,
        caller: &crate::auth::Caller,
        request_id: &str,
        body: &M,
    ) -> Result<Self, IdempotencyError> {
        Self::new(
            service,
            method,
            &caller.user_id,
            request_id,
            &body.encode_to_vec(),
        )
    }
}

/// Joins `parts` into one unambiguous key: each part is preceded by its length, so no choice
/// of separators inside a part (a `|` in a request id, an `auth0|…` subject) can make two
/// different part lists meet. Use it wherever a key or a request body is built from pieces.
pub fn composite(parts: &[&str]) -> String {
    let mut key = String::with_capacity(parts.iter().map(|p| p.len() + 4).sum());
    for part in parts {
        key.push_str(&part.len().to_string());
        key.push(':');
        key.push_str(part);
    }
    key
}

/// Claims the key inside `tx`; see [`Begin`].
pub async fn begin(tx: &mut PgConnection, key: &Key) -> Result<Begin, IdempotencyError> {
    let inserted = sqlx::query(
        "INSERT INTO titan_idempotency (service, method, user_id, request_id, request_hash)
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
    )
    .bind(key.service)
    .bind(key.method)
    .bind(&key.user_id)
    .bind(&key.request_id)
    .bind(&key.request_hash)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if inserted == 1 {
        return Ok(Begin::Fresh);
    }
    let (hash, response): (Vec<u8>, Option<Vec<u8>>) = sqlx::query_as(
        "SELECT request_hash, response FROM titan_idempotency
         WHERE service = $1 AND method = $2 AND user_id = $3 AND request_id = $4",
    )
    .bind(key.service)
    .bind(key.method)
    .bind(&key.user_id)
    .bind(&key.request_id)
    .fetch_one(&mut *tx)
    .await?;
    if hash != key.request_hash {
        return Err(IdempotencyError::Reused(key.request_id.clone()));
    }
    // A committed key always has its answer: `finish` runs in the same transaction.
    response
        .map(Begin::Replay)
        .ok_or_else(|| IdempotencyError::Reused(key.request_id.clone()))
}

/// The committed answer of `key`, if any, without claiming it: for a mutation that must not
/// touch another store (Redis) when it is a replay or a reused id. `Reused` when the id was
/// committed with another body. A key in flight (not committed) reads as absent; [`begin`]
/// still decides then.
pub async fn peek(conn: &mut PgConnection, key: &Key) -> Result<Option<Vec<u8>>, IdempotencyError> {
    let row: Option<(Vec<u8>, Option<Vec<u8>>)> = sqlx::query_as(
        "SELECT request_hash, response FROM titan_idempotency
         WHERE service = $1 AND method = $2 AND user_id = $3 AND request_id = $4",
    )
    .bind(key.service)
    .bind(key.method)
    .bind(&key.user_id)
    .bind(&key.request_id)
    .fetch_optional(&mut *conn)
    .await?;
    match row {
        None => Ok(None),
        Some((hash, _)) if hash != key.request_hash => {
            Err(IdempotencyError::Reused(key.request_id.clone()))
        }
        Some((_, response)) => Ok(response),
    }
}

/// Records the answer; call in the transaction that [`begin`] returned `Fresh` in.
pub async fn finish(
    tx: &mut PgConnection,
    key: &Key,
    response: &[u8],
) -> Result<(), IdempotencyError> {
    sqlx::query(
        "UPDATE titan_idempotency SET response = $5
         WHERE service = $1 AND method = $2 AND user_id = $3 AND request_id = $4",
    )
    .bind(key.service)
    .bind(key.method)
    .bind(&key.user_id)
    .bind(&key.request_id)
    .bind(response)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Claims every key in one statement with its answer already recorded, for a group commit
/// whose answers are known before it writes. Returns how many keys were claimed: fewer than
/// `claims.len()` means some key exists (a replay, a reused id, or the same key twice in the
/// batch), and the caller must roll the transaction back and take those items one by one with
/// [`begin`], which answers each precisely.
pub async fn claim_all(
    tx: &mut PgConnection,
    claims: &[(&Key, Vec<u8>)],
) -> Result<u64, IdempotencyError> {
    let n = claims.len();
    let (mut services, mut methods, mut users, mut requests, mut hashes, mut responses) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for (key, response) in claims {
        services.push(key.service);
        methods.push(key.method);
        users.push(key.user_id.as_str());
        requests.push(key.request_id.as_str());
        hashes.push(key.request_hash.as_slice());
        responses.push(response.as_slice());
    }
    Ok(sqlx::query(
        "INSERT INTO titan_idempotency (service, method, user_id, request_id, request_hash, response)
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::bytea[], $6::bytea[])
         ON CONFLICT DO NOTHING",
    )
    .bind(services)
    .bind(methods)
    .bind(users)
    .bind(requests)
    .bind(hashes)
    .bind(responses)
    .execute(&mut *tx)
    .await?
    .rows_affected())
}

/// Deletes keys older than `keep`; clients retry within minutes, not days.
pub async fn purge(pool: &sqlx::PgPool, keep: std::time::Duration) -> Result<u64, KitError> {
    let done = sqlx::query(
        "DELETE FROM titan_idempotency WHERE created_at < now() - make_interval(secs => $1)",
    )
    .bind(keep.as_secs_f64())
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_key_is_the_callers_and_hashes_the_encoded_body() {
        let caller = crate::testing::caller("u1", &[]);
        let body = prost_types::Duration {
            seconds: 5,
            nanos: 0,
        };
        let k = Key::of_message("s", "m", &caller, "r1", &body).expect("key");
        assert_eq!(k.user_id, "u1");
        assert_eq!(k.request_id, "r1");
        assert_eq!(
            k.request_hash,
            Sha256::digest(prost::Message::encode_to_vec(&body)).to_vec()
        );
        assert!(matches!(
            Key::of_message("s", "m", &caller, "", &body),
            Err(IdempotencyError::MissingRequestId)
        ));
    }

    #[test]
    fn request_ids_are_validated() {
        assert!(matches!(
            Key::new("s", "m", "u", "", b""),
            Err(IdempotencyError::MissingRequestId)
        ));
        assert!(matches!(
            Key::new("s", "m", "u", "a b", b""),
            Err(IdempotencyError::BadRequestId)
        ));
        assert!(matches!(
            Key::new("s", "m", "u", &"x".repeat(129), b""),
            Err(IdempotencyError::BadRequestId)
        ));
        assert!(Key::new("s", "m", "u", "0193-abc", b"body").is_ok());
    }

    /// Buyer `a` with request `x|r` and buyer `a|x` with request `r` joined with `|` both
    /// give `a|x|r`; the composite keeps them apart.
    #[test]
    fn composite_keys_cannot_collide() {
        assert_eq!("a".to_owned() + "|" + "x|r", "a|x".to_owned() + "|" + "r");
        assert_ne!(composite(&["a", "x|r"]), composite(&["a|x", "r"]));
        assert_ne!(composite(&["1:a", ""]), composite(&["", "a"]));
        assert_ne!(composite(&["ab", "c"]), composite(&["a", "bc"]));
        assert_eq!(composite(&["a|x", "r"]), "3:a|x1:r");
    }
}
