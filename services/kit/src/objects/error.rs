//! What can go wrong with object storage, classified once here from `object_store`'s errors so
//! that a service maps each to a gRPC code through [`ServiceError`] and an operator reading a
//! log or `/readyz` learns what to fix.

use std::time::Duration;

use object_store::client::{HttpError, HttpErrorKind};

use super::key::InvalidKey;
use crate::{ErrorCode, ServiceError};

/// An object storage call that failed.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error(transparent)]
    InvalidKey(#[from] InvalidKey),
    #[error("invalid content type {0:?}: expected a media type like image/jpeg")]
    InvalidContentType(String),
    #[error("a presigned url must expire within {min:?} to {max:?}, not {requested:?}")]
    InvalidExpiry {
        requested: Duration,
        min: Duration,
        max: Duration,
    },
    #[error("a listing page holds 1 to {max} objects, not {requested}")]
    InvalidLimit { requested: usize, max: usize },
    #[error("object {key} not found")]
    NotFound { key: String },
    /// Not reachable, or answering with server errors: worth retrying later.
    #[error(
        "object storage at {endpoint} is unavailable: {detail}; check that the server runs and \
         that TITAN_S3_ENDPOINT points at it"
    )]
    Unavailable {
        endpoint: String,
        detail: String,
        #[source]
        source: object_store::Error,
    },
    /// The server refused titan's own keys: a deployment mistake no client can fix.
    #[error(
        "object storage at {endpoint} refused the credentials ({detail}); check \
         TITAN_S3_ACCESS_KEY_ID and TITAN_S3_SECRET_ACCESS_KEY"
    )]
    Credentials {
        endpoint: String,
        detail: String,
        #[source]
        source: object_store::Error,
    },
    #[error("bucket {bucket} does not exist at {endpoint}; create it or fix TITAN_S3_BUCKET")]
    NoSuchBucket {
        endpoint: String,
        bucket: String,
        #[source]
        source: object_store::Error,
    },
    /// A local file to upload could not be read.
    #[error("cannot read {path} to upload it: {source}")]
    LocalFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The stream a body was read from failed (or its owner refused it) before the end: the
    /// upload was aborted and nothing was stored.
    #[error("the body of an upload stopped before its end: {detail}")]
    Body { detail: String },
    #[error("object storage at {endpoint} failed to {operation}: {source}")]
    Other {
        endpoint: String,
        operation: &'static str,
        #[source]
        source: object_store::Error,
    },
}

impl ServiceError for ObjectError {
    fn code(&self) -> ErrorCode {
        match self {
            Self::InvalidKey(_)
            | Self::InvalidContentType(_)
            | Self::InvalidExpiry { .. }
            | Self::InvalidLimit { .. }
            | Self::Body { .. } => ErrorCode::InvalidArgument,
            Self::NotFound { .. } => ErrorCode::NotFound,
            Self::Unavailable { .. } => ErrorCode::Unavailable,
            // Wrong keys or a missing bucket are the deployment's fault, not the caller's:
            // `Unauthenticated`/`PermissionDenied` would tell a client its own token is bad, and
            // `Unavailable` would invite retries that cannot succeed. `Internal` keeps the cause
            // in the log (with what to fix) and sends the client a request id.
            Self::Credentials { .. }
            | Self::NoSuchBucket { .. }
            | Self::LocalFile { .. }
            | Self::Other { .. } => ErrorCode::Internal,
        }
    }
}

/// Where a failed call went: enough to say which server and what was asked of it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Call<'a> {
    pub endpoint: &'a str,
    pub bucket: &'a str,
    pub operation: &'static str,
    /// The object, when the call was about one (a listing is not).
    pub key: Option<&'a str>,
}

impl Call<'_> {
    /// Classifies `err`, from the most specific evidence to the least: the variant
    /// `object_store` chose, a transport failure in the chain, then the status and S3 error
    /// code in the message (the status of most failures is only in there).
    pub fn error(self, err: object_store::Error) -> ObjectError {
        let endpoint = self.endpoint.to_owned();
        let text = chain_text(&err);
        let status = http_status(&text);
        let code = s3_code(&text);
        if code.as_deref() == Some("NoSuchBucket") {
            return ObjectError::NoSuchBucket {
                endpoint,
                bucket: self.bucket.to_owned(),
                source: err,
            };
        }
        if let Some(kind) = transport_failure(&err) {
            return ObjectError::Unavailable {
                endpoint,
                detail: format!("{kind} ({})", innermost(&err)),
                source: err,
            };
        }
        let refused = matches!(
            err,
            object_store::Error::PermissionDenied { .. }
                | object_store::Error::Unauthenticated { .. }
        ) || matches!(status, Some(401 | 403));
        if refused {
            let detail = match (status, code) {
                (Some(status), Some(code)) => format!("{status} {code}"),
                (Some(status), None) => format!("{status}"),
                (None, Some(code)) => code,
                (None, None) => "access denied".to_owned(),
            };
            return ObjectError::Credentials {
                endpoint,
                detail,
                source: err,
            };
        }
        if let (object_store::Error::NotFound { .. }, Some(key)) = (&err, self.key) {
            return ObjectError::NotFound {
                key: key.to_owned(),
            };
        }
        // 5xx, and S3's "200 with an error body" (InternalError, SlowDown), are the server's
        // trouble; object_store has already retried them.
        let server_trouble = matches!(status, Some(500..=599))
            || matches!(code.as_deref(), Some("InternalError" | "SlowDown"));
        if server_trouble {
            let detail = match (status, code) {
                (Some(status), Some(code)) => format!("it answered {status} ({code})"),
                (Some(status), None) => format!("it answered {status}"),
                (None, code) => format!("it answered {}", code.unwrap_or_default()),
            };
            return ObjectError::Unavailable {
                endpoint,
                detail,
                source: err,
            };
        }
        ObjectError::Other {
            endpoint,
            operation: self.operation,
            source: err,
        }
    }
}

/// What kind of transport failure the chain holds, said for a person.
fn transport_failure(err: &object_store::Error) -> Option<&'static str> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = current {
        if let Some(http) = e.downcast_ref::<HttpError>() {
            return match http.kind() {
                HttpErrorKind::Connect => Some("cannot connect"),
                HttpErrorKind::Timeout => Some("no answer in time"),
                HttpErrorKind::Request | HttpErrorKind::Interrupted => {
                    Some("the connection failed")
                }
                // A body it could not decode (or a kind added later) is not a reachability
                // problem.
                _ => None,
            };
        }
        current = e.source();
    }
    None
}

/// Every message of the chain, joined: `object_store` puts the status and the server's XML
/// body in an inner error's message.
fn chain_text(err: &object_store::Error) -> String {
    let mut text = err.to_string();
    let mut current = std::error::Error::source(err);
    while let Some(e) = current {
        text.push_str(" | ");
        text.push_str(&e.to_string());
        current = e.source();
    }
    text
}

/// The deepest cause's message (`Connection refused (os error 111)`).
fn innermost(err: &object_store::Error) -> String {
    let mut last: &(dyn std::error::Error + 'static) = err;
    while let Some(next) = last.source() {
        last = next;
    }
    last.to_string()
}

/// The HTTP status in `object_store`'s "status code: 503 Service Unavailable".
fn http_status(text: &str) -> Option<u16> {
    let (_, rest) = text.split_once("status code: ")?;
    rest.get(..3)?.parse().ok()
}

/// The S3 error code of an XML error body (`<Code>NoSuchBucket</Code>`).
fn s3_code(text: &str) -> Option<String> {
    let (_, rest) = text.split_once("<Code>")?;
    let (code, _) = rest.split_once("</Code>")?;
    Some(code.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    struct Message(String);

    fn generic(message: &str) -> object_store::Error {
        object_store::Error::Generic {
            store: "S3",
            source: Box::new(Message(message.to_owned())),
        }
    }

    const CALL: Call<'static> = Call {
        endpoint: "http://127.0.0.1:9000",
        bucket: "titan",
        operation: "put an object",
        key: Some("proofs/1/photo.jpg"),
    };

    #[test]
    fn server_errors_are_unavailable_with_the_status() {
        let err = CALL.error(generic(
            "Error performing PUT http://127.0.0.1:9000/titan/x in 1s - Server returned non-2xx \
             status code: 503 Service Unavailable: <Error><Code>SlowDown</Code></Error>",
        ));
        assert_eq!(err.code(), ErrorCode::Unavailable);
        assert_eq!(
            err.to_string(),
            "object storage at http://127.0.0.1:9000 is unavailable: it answered 503 (SlowDown); \
             check that the server runs and that TITAN_S3_ENDPOINT points at it"
        );
    }

    #[test]
    fn a_transport_failure_is_unavailable_with_its_cause() {
        let http = HttpError::new(
            HttpErrorKind::Connect,
            Message("Connection refused (os error 111)".into()),
        );
        let err = CALL.error(object_store::Error::Generic {
            store: "S3",
            source: Box::new(http),
        });
        assert_eq!(err.code(), ErrorCode::Unavailable);
        assert!(
            err.to_string()
                .contains("is unavailable: cannot connect (Connection refused (os error 111))"),
            "{err}"
        );
    }

    #[test]
    fn refused_credentials_say_which_variables_to_check() {
        let err = CALL.error(generic(
            "Server returned non-2xx status code: 403 Forbidden: \
             <Error><Code>InvalidAccessKeyId</Code></Error>",
        ));
        assert_eq!(err.code(), ErrorCode::Internal);
        assert_eq!(
            err.to_string(),
            "object storage at http://127.0.0.1:9000 refused the credentials (403 \
             InvalidAccessKeyId); check TITAN_S3_ACCESS_KEY_ID and TITAN_S3_SECRET_ACCESS_KEY"
        );
    }

    #[test]
    fn not_found_names_the_key_and_a_missing_bucket_the_bucket() {
        let err = CALL.error(object_store::Error::NotFound {
            path: "proofs/1/photo.jpg".into(),
            source: Box::new(Message("404".into())),
        });
        assert_eq!(err.code(), ErrorCode::NotFound);
        assert_eq!(err.to_string(), "object proofs/1/photo.jpg not found");
        let err = CALL.error(object_store::Error::NotFound {
            path: "proofs/1/photo.jpg".into(),
            source: Box::new(Message("<Error><Code>NoSuchBucket</Code></Error>".into())),
        });
        assert_eq!(err.code(), ErrorCode::Internal);
        assert_eq!(
            err.to_string(),
            "bucket titan does not exist at http://127.0.0.1:9000; create it or fix TITAN_S3_BUCKET"
        );
    }

    #[test]
    fn anything_else_is_internal_and_names_the_operation() {
        let err = CALL.error(generic(
            "Server returned non-2xx status code: 400 Bad Request",
        ));
        assert_eq!(err.code(), ErrorCode::Internal);
        assert!(
            err.to_string()
                .starts_with("object storage at http://127.0.0.1:9000 failed to put an object: "),
            "{err}"
        );
    }

    #[test]
    fn reads_status_and_code() {
        assert_eq!(http_status("x status code: 502 Bad Gateway"), Some(502));
        assert_eq!(http_status("no status here"), None);
        assert_eq!(http_status("status code: 5"), None);
        assert_eq!(
            s3_code("<Error><Code>AccessDenied</Code><Message>..</Message></Error>").as_deref(),
            Some("AccessDenied")
        );
        assert_eq!(s3_code("<Code>unterminated"), None);
    }
}
