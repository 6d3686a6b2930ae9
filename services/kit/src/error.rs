//! Errors: [`KitError`] for the runtime itself, and the one place where a service's domain
//! error becomes a gRPC status ([`ServiceError`] + [`to_status`]). Business refusals carry a
//! machine-readable reason in `google.rpc.ErrorInfo`; internal causes are logged with the
//! request id and never sent to the client.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The small set of outcomes a service error can have, mapped to gRPC codes in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidArgument,
    NotFound,
    AlreadyExists,
    FailedPrecondition,
    ResourceExhausted,
    Unauthenticated,
    PermissionDenied,
    Aborted,
    Unavailable,
    Internal,
}

impl ErrorCode {
    pub fn grpc(self) -> Code {
        match self {
            Self::InvalidArgument => Code::InvalidArgument,
            Self::NotFound => Code::NotFound,
            Self::AlreadyExists => Code::AlreadyExists,
            Self::FailedPrecondition => Code::FailedPrecondition,
            Self::ResourceExhausted => Code::ResourceExhausted,
            Self::Unauthenticated => Code::Unauthenticated,
            Self::PermissionDenied => Code::PermissionDenied,
            Self::Aborted => Code::Aborted,
            Self::Unavailable => Code::Unavailable,
            Self::Internal => Code::Internal,
        }
    }
}

/// Implemented by each service's error enum.
pub trait ServiceError: std::error::Error {
    fn code(&self) -> ErrorCode;

    /// A stable, upper-snake-case reason for refusals a client acts on (`SOLD_OUT`).
    fn reason(&self) -> Option<&'static str> {
        None
    }
}

/// Turns a service error into the status a client receives. `domain` names the service in the
/// `ErrorInfo` (`flashsale.titan.dev`).
pub fn to_status<E: ServiceError + ?Sized>(domain: &str, err: &E) -> Status {
    let code = err.code();
    if code == ErrorCode::Internal || code == ErrorCode::Unavailable {
        let request_id = crate::metrics::current_request_id();
        tracing::error!(error = %err, source = ?std::error::Error::source(err), %request_id, "request failed");
        let what = if code == ErrorCode::Internal {
            "internal error"
        } else {
            "service unavailable, retry later"
        };
        // The cause stays in the log; a reason (BUFFER_FULL) still tells a client why.
        return with_reason(
            code,
            format!("{what} (request id {request_id})"),
            err.reason(),
            domain,
        );
    }
    with_reason(code, err.to_string(), err.reason(), domain)
}

fn with_reason(code: ErrorCode, message: String, reason: Option<&str>, domain: &str) -> Status {
    match reason {
        Some(reason) => Status::with_error_details(
            code.grpc(),
            message,
            ErrorDetails::with_error_info(
                reason,
                domain,
                std::collections::HashMap::<String, String>::new(),
            ),
        ),
        None => Status::new(code.grpc(), message),
    }
}

/// Reads the machine-readable reason back out of a status (clients and tests use it).
pub fn reason_of(status: &Status) -> Option<String> {
    status
        .get_error_details()
        .error_info()
        .map(|info| info.reason.clone())
}

/// Failures of the runtime: configuration, datastores, servers.
#[derive(Debug, thiserror::Error)]
pub enum KitError {
    #[error("invalid setting {setting}: {message}")]
    Config { setting: String, message: String },
    #[error("postgres: {0}")]
    Postgres(#[from] sqlx::Error),
    #[error("migrations of {service}: {source}")]
    Migrate {
        service: String,
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    #[error("{0}")]
    Migration(String),
    #[error("metric: {0}")]
    Metric(#[from] prometheus::Error),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("clickhouse: {0}")]
    ClickHouse(#[from] clickhouse::error::Error),
    /// Keeps its own code: a missing object stays `NotFound`, a bad key `InvalidArgument`.
    /// Boxed: it is the largest variant, and every `Result<_, KitError>` would carry its size.
    #[error("object storage: {0}")]
    Objects(Box<crate::objects::ObjectError>),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("event: {0}")]
    Event(String),
    #[error("service {service} needs {datastore}: set {hint}")]
    MissingDatastore {
        service: String,
        datastore: &'static str,
        hint: &'static str,
    },
    #[error("unknown service {0:?}")]
    UnknownService(String),
    #[error("{0}")]
    Other(String),
}

impl KitError {
    pub fn config(setting: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Config {
            setting: setting.into(),
            message: message.into(),
        }
    }
}

impl From<crate::objects::ObjectError> for KitError {
    fn from(e: crate::objects::ObjectError) -> Self {
        Self::Objects(Box::new(e))
    }
}

impl ServiceError for KitError {
    fn code(&self) -> ErrorCode {
        match self {
            Self::Postgres(sqlx::Error::PoolTimedOut)
            | Self::Redis(_)
            | Self::ClickHouse(
                clickhouse::error::Error::Network(_) | clickhouse::error::Error::TimedOut,
            ) => ErrorCode::Unavailable,
            Self::Objects(e) => e.code(),
            _ => ErrorCode::Internal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    enum SaleError {
        #[error("sale 42 is sold out")]
        SoldOut,
        #[error("database exploded at 10.0.0.7")]
        Db,
        #[error("buffer of 10.0.0.7 full")]
        Busy,
    }

    impl ServiceError for SaleError {
        fn code(&self) -> ErrorCode {
            match self {
                Self::SoldOut => ErrorCode::FailedPrecondition,
                Self::Db => ErrorCode::Internal,
                Self::Busy => ErrorCode::Unavailable,
            }
        }
        fn reason(&self) -> Option<&'static str> {
            match self {
                Self::SoldOut => Some("SOLD_OUT"),
                Self::Busy => Some("BUFFER_FULL"),
                Self::Db => None,
            }
        }
    }

    #[test]
    fn unavailable_keeps_its_cause_but_says_its_reason() {
        let status = to_status("analytics.titan.dev", &SaleError::Busy);
        assert_eq!(status.code(), Code::Unavailable);
        assert!(
            !status.message().contains("10.0.0.7"),
            "{}",
            status.message()
        );
        assert_eq!(reason_of(&status).as_deref(), Some("BUFFER_FULL"));
    }

    #[test]
    fn refusals_carry_a_reason() {
        let status = to_status("flashsale.titan.dev", &SaleError::SoldOut);
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert_eq!(status.message(), "sale 42 is sold out");
        assert_eq!(reason_of(&status).as_deref(), Some("SOLD_OUT"));
    }

    #[test]
    fn internal_causes_are_not_sent() {
        let status = to_status("flashsale.titan.dev", &SaleError::Db);
        assert_eq!(status.code(), Code::Internal);
        assert!(
            !status.message().contains("10.0.0.7"),
            "{}",
            status.message()
        );
        assert!(status.message().contains("request id"));
    }
}
