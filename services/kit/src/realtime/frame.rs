//! The wire format of `kit::realtime`: JSON frames `{type, id, payload}` in text messages,
//! the acks and error frames answering a client frame with an id, and the close codes (with
//! their stable reasons) a socket ends with. Pure: no I/O.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{ErrorCode, ServiceError};

/// The longest close reason the protocol allows, in bytes (RFC 6455: 125 minus the code).
const MAX_CLOSE_REASON: usize = 123;

/// Why a socket is closed: the code the client reads and a reason for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Close {
    pub code: u16,
    pub reason: String,
}

impl Close {
    /// 1001: the replica drains (SIGTERM); reconnect elsewhere.
    pub const GOING_AWAY: u16 = 1001;
    /// 1011: the server failed; the cause is in its log.
    pub const INTERNAL: u16 = 1011;
    /// 4400: a frame that is not JSON `{type, id, payload}`, of an unknown type, binary, or
    /// larger than `realtime.maxFrameBytes`.
    pub const BAD_FRAME: u16 = 4400;
    /// 4401: the token is missing, invalid, or expired (at its `exp`).
    pub const UNAUTHENTICATED: u16 = 4401;
    /// 4403: the page's `Origin` is not allowed, or the caller may not open this socket.
    pub const FORBIDDEN: u16 = 4403;
    /// 4404: what the socket was opened on does not exist.
    pub const NOT_FOUND: u16 = 4404;
    /// 4408: the client reads too slowly (its send queue filled) or stopped answering pings.
    pub const SLOW_CONSUMER: u16 = 4408;
    /// 4409: the service refused the opening in the state things are in.
    pub const CONFLICT: u16 = 4409;
    /// 4429: the caller's budget of openings is spent.
    pub const RATE_LIMITED: u16 = 4429;

    /// A close with `reason` cut at a character boundary to what the protocol carries.
    pub fn new(code: u16, reason: impl Into<String>) -> Self {
        let mut reason = reason.into();
        if reason.len() > MAX_CLOSE_REASON {
            let mut end = MAX_CLOSE_REASON;
            while !reason.is_char_boundary(end) {
                end -= 1;
            }
            reason.truncate(end);
        }
        Self { code, reason }
    }

    /// How a service's refusal ends a socket: the code its error class maps to, and
    /// `REASON: message` (internal causes are logged, never sent).
    pub fn from_service<E: ServiceError + ?Sized>(err: &E) -> Self {
        let code = match err.code() {
            ErrorCode::InvalidArgument => Self::BAD_FRAME,
            ErrorCode::Unauthenticated => Self::UNAUTHENTICATED,
            ErrorCode::PermissionDenied => Self::FORBIDDEN,
            ErrorCode::NotFound => Self::NOT_FOUND,
            ErrorCode::ResourceExhausted => Self::RATE_LIMITED,
            ErrorCode::AlreadyExists | ErrorCode::FailedPrecondition | ErrorCode::Aborted => {
                Self::CONFLICT
            }
            ErrorCode::Unavailable | ErrorCode::Internal => {
                tracing::error!(error = %err, "websocket refused by a failure");
                return Self::new(Self::INTERNAL, "internal error");
            }
        };
        let reason = err.reason().unwrap_or_else(|| reason_of_code(err.code()));
        Self::new(code, format!("{reason}: {err}"))
    }
}

/// The stable reason of an error without one of its own.
fn reason_of_code(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::InvalidArgument => "INVALID_ARGUMENT",
        ErrorCode::NotFound => "NOT_FOUND",
        ErrorCode::AlreadyExists => "ALREADY_EXISTS",
        ErrorCode::FailedPrecondition => "FAILED_PRECONDITION",
        ErrorCode::ResourceExhausted => "RESOURCE_EXHAUSTED",
        ErrorCode::Unauthenticated => "UNAUTHENTICATED",
        ErrorCode::PermissionDenied => "PERMISSION_DENIED",
        ErrorCode::Aborted => "ABORTED",
        ErrorCode::Unavailable => "UNAVAILABLE",
        ErrorCode::Internal => "INTERNAL",
    }
}

/// A frame a client sent.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientFrame {
    #[serde(rename = "type")]
    pub kind: String,
    /// When present (a string or a number), the frame is answered by an ack or an error frame
    /// with this id.
    #[serde(default)]
    pub id: Option<Value>,
    #[serde(default)]
    pub payload: Value,
}

/// Why a client frame closes its socket (4400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadFrame {
    #[error("frame is not json {{type, id, payload}}: {0}")]
    Malformed(String),
    #[error("unknown frame type {0:?}")]
    UnknownType(String),
    #[error("binary frames are not accepted")]
    Binary,
    #[error("frame larger than {0} bytes")]
    TooLarge(usize),
}

impl BadFrame {
    pub fn close(&self) -> Close {
        Close::new(Close::BAD_FRAME, self.to_string())
    }
}

impl ClientFrame {
    pub fn parse(text: &str) -> Result<Self, BadFrame> {
        let frame: Self =
            serde_json::from_str(text).map_err(|e| BadFrame::Malformed(e.to_string()))?;
        if frame.kind.is_empty() {
            return Err(BadFrame::Malformed("type is empty".into()));
        }
        if frame
            .id
            .as_ref()
            .is_some_and(|id| !(id.is_string() || id.is_number()))
        {
            return Err(BadFrame::Malformed(
                "id must be a string or a number".into(),
            ));
        }
        Ok(frame)
    }
}

/// A frame the server sends.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServerFrame<'a, T: Serialize> {
    #[serde(rename = "type")]
    pub kind: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<&'a Value>,
    pub payload: T,
}

impl<T: Serialize> ServerFrame<'_, T> {
    /// The frame as the text message that carries it.
    pub fn text(&self) -> String {
        // A map with string keys and serialisable values cannot fail to serialise.
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{}"))
    }
}

/// A handler's refusal of one frame: sent as `{type: "error", id, payload: {reason, message}}`;
/// the socket stays open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{reason}: {message}")]
pub struct FrameError {
    /// Stable and upper-snake-case (`RATE_LIMITED`), for clients to act on.
    pub reason: &'static str,
    pub message: String,
}

impl FrameError {
    pub fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }

    /// A service error as an error frame; internal causes are logged, never sent.
    pub fn from_service<E: ServiceError + ?Sized>(err: &E) -> Self {
        let reason = err.reason().unwrap_or_else(|| reason_of_code(err.code()));
        match err.code() {
            ErrorCode::Internal | ErrorCode::Unavailable => {
                tracing::error!(error = %err, "websocket frame failed");
                Self::new(reason, "internal error")
            }
            _ => Self::new(reason, err.to_string()),
        }
    }
}

/// The answer to a client frame with an id.
pub fn ack(id: &Value, payload: &Value) -> String {
    ServerFrame {
        kind: "ack",
        id: Some(id),
        payload,
    }
    .text()
}

/// The refusal of a client frame with an id.
pub fn error(id: &Value, err: &FrameError) -> String {
    ServerFrame {
        kind: "error",
        id: Some(id),
        payload: err,
    }
    .text()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn client_frames_parse_or_say_why_not() {
        assert_eq!(
            ClientFrame::parse(r#"{"type":"subscribe","id":"7","payload":{"topic":"a"}}"#),
            Ok(ClientFrame {
                kind: "subscribe".into(),
                id: Some(json!("7")),
                payload: json!({"topic": "a"}),
            })
        );
        assert_eq!(
            ClientFrame::parse(r#"{"type":"ping"}"#),
            Ok(ClientFrame {
                kind: "ping".into(),
                id: None,
                payload: Value::Null,
            })
        );
        for bad in [
            "not json",
            r#"{"id":"1"}"#,
            r#"{"type":""}"#,
            r#"{"type":"a","extra":1}"#,
            r#"{"type":"a","id":{"x":1}}"#,
            "[]",
        ] {
            assert!(
                matches!(ClientFrame::parse(bad), Err(BadFrame::Malformed(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn acks_and_errors_echo_the_id() {
        assert_eq!(
            ack(&json!("7"), &json!({"ok": true})),
            r#"{"type":"ack","id":"7","payload":{"ok":true}}"#
        );
        assert_eq!(
            error(&json!(8), &FrameError::new("RATE_LIMITED", "slow down")),
            r#"{"type":"error","id":8,"payload":{"reason":"RATE_LIMITED","message":"slow down"}}"#
        );
        let pushed = ServerFrame {
            kind: "sale",
            id: None,
            payload: json!(1),
        };
        assert_eq!(pushed.text(), r#"{"type":"sale","payload":1}"#);
    }

    #[test]
    fn close_reasons_fit_the_protocol() {
        let long = "é".repeat(100);
        let close = Close::new(Close::BAD_FRAME, long);
        assert_eq!(close.reason.len(), 122);
        assert_eq!(close.code, 4400);
    }

    #[derive(Debug, thiserror::Error)]
    #[error("sale 1 was not found")]
    struct Missing;

    impl ServiceError for Missing {
        fn code(&self) -> ErrorCode {
            ErrorCode::NotFound
        }
    }

    #[derive(Debug, thiserror::Error)]
    #[error("database exploded at 10.0.0.7")]
    struct Broken;

    impl ServiceError for Broken {
        fn code(&self) -> ErrorCode {
            ErrorCode::Unavailable
        }
    }

    #[test]
    fn service_errors_map_to_codes_without_leaking_causes() {
        assert_eq!(
            Close::from_service(&Missing),
            Close::new(4404, "NOT_FOUND: sale 1 was not found")
        );
        assert_eq!(
            Close::from_service(&Broken),
            Close::new(1011, "internal error")
        );
        assert_eq!(
            FrameError::from_service(&Broken),
            FrameError::new("UNAVAILABLE", "internal error")
        );
    }
}
