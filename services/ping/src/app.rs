//! Ping's use cases over a [`PingStore`]: the caller comes from the token, the message is
//! validated, and an emission is recorded with its event in one step of the store.

use std::future::Future;

use chrono::Utc;
use prometheus::{IntCounter, Registry};
use titan_kit::{
    ErrorCode, KitError, ServiceError,
    auth::Caller,
    events::Envelope,
    idempotency::{self, IdempotencyError},
};
use uuid::Uuid;

use crate::domain::{EMITTED, Emitted, Message, MessageError, Receipt, SERVICE};

#[derive(Debug, thiserror::Error)]
pub enum PingError {
    #[error(transparent)]
    Message(#[from] MessageError),
    #[error(transparent)]
    Idempotency(#[from] IdempotencyError),
    #[error(transparent)]
    Kit(#[from] KitError),
}

impl ServiceError for PingError {
    fn code(&self) -> ErrorCode {
        match self {
            Self::Message(_) => ErrorCode::InvalidArgument,
            Self::Idempotency(e) => e.code(),
            Self::Kit(e) => e.code(),
        }
    }
    fn reason(&self) -> Option<&'static str> {
        match self {
            Self::Message(_) => Some("INVALID_MESSAGE"),
            Self::Idempotency(e) => e.reason(),
            Self::Kit(_) => None,
        }
    }
}

/// Persists an emission, its event and its idempotency key atomically.
pub trait PingStore: Send + Sync + 'static {
    /// Records `emitted` with `event` unless `key` was seen, in which case the first receipt is
    /// returned.
    fn record(
        &self,
        key: &idempotency::Key,
        emitted: &Emitted,
        event: &Envelope,
    ) -> impl Future<Output = Result<Receipt, PingError>> + Send;
}

/// An answered `Ping`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pong {
    pub message: Option<Message>,
    pub caller: Caller,
    pub cell: String,
    pub served_at: chrono::DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct Pinger<S> {
    store: S,
    cell: String,
    emitted: IntCounter,
}

impl<S: PingStore> Pinger<S> {
    pub fn new(store: S, cell: String, registry: &Registry) -> Result<Self, KitError> {
        let emitted = titan_kit::metrics::register(
            registry,
            IntCounter::new(
                "titan_ping_emitted_total",
                "emissions recorded (first attempts, not replays)",
            )
            .map_err(|e| KitError::Other(e.to_string()))?,
        )?;
        Ok(Self {
            store,
            cell,
            emitted,
        })
    }

    pub fn ping(&self, caller: Caller, message: &str) -> Result<Pong, PingError> {
        Ok(Pong {
            message: Message::parse_echo(message)?,
            caller,
            cell: self.cell.clone(),
            served_at: Utc::now(),
        })
    }

    #[tracing::instrument(skip(self, message), fields(user = %caller.user_id))]
    pub async fn emit(
        &self,
        caller: &Caller,
        request_id: &str,
        message: &str,
    ) -> Result<Receipt, PingError> {
        let message = Message::parse(message)?;
        let key = idempotency::Key::new(
            SERVICE,
            "Emit",
            &caller.user_id,
            request_id,
            message.as_str().as_bytes(),
        )?;
        let emitted = Emitted {
            emission_id: Uuid::now_v7(),
            user_id: caller.user_id.clone(),
            message: message.as_str().to_owned(),
        };
        let event = Envelope::new(&self.cell, EMITTED, 1, &emitted)?;
        let receipt = self.store.record(&key, &emitted, &event).await?;
        if receipt.event_id == event.id {
            self.emitted.inc();
        }
        Ok(receipt)
    }
}
