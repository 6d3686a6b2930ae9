//! Carriers' webhooks on the HTTP port: `POST /webhooks/tracking/{carrier}` with a JSON body
//! `{"events": [...]}` (1 to [`MAX_EVENTS_PER_CALL`] events, at most [`MAX_BODY`] bytes),
//! signed as [`crate::domain::signature`] says with the carrier's secret from
//! `TITAN_TRACKING_<CARRIER>_WEBHOOK_SECRET`. Answers:
//! - 200 `{"appended": n, "duplicates": m}`: every event appended or already there;
//! - 401: a missing, stale or wrong signature (nothing read further);
//! - 400 `{"error": "events[2].type: ..."}`: a body or event that is not valid, naming the
//!   field; nothing appended;
//! - 404: no secret for the carrier, or a tracking number the carrier does not track;
//!   nothing appended;
//! - 503: the store did not answer; the carrier should send again (nothing is appended twice).

use std::sync::Arc;

use axum::{
    Json, Router,
    body::Bytes,
    extract::{DefaultBodyLimit, Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::post,
};
use serde::Deserialize;
use serde_json::json;
use titan_kit::ServiceError;

use crate::{
    app::{CarrierEvents, Tracking, TrackingError, TrackingStore},
    domain::{
        EventInput, input,
        signature::{self, MIN_SECRET},
    },
};

/// Largest webhook body read, in bytes.
pub const MAX_BODY: usize = 256 * 1024;
/// Most events one webhook call may carry.
pub const MAX_EVENTS_PER_CALL: usize = 100;
/// The header carrying the signing time, unix seconds.
pub const TIMESTAMP_HEADER: &str = "x-titan-timestamp";
/// The header carrying `sha256=<hex>`.
pub const SIGNATURE_HEADER: &str = "x-titan-signature";

/// A carrier's webhook secret by carrier name; `None` when the carrier has none.
pub type Secrets = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Secrets read from the process environment (`TITAN_TRACKING_<CARRIER>_WEBHOOK_SECRET`, as
/// the operator sets them from the Cell's `webhooks`) when a call arrives, so a rotated Secret
/// mounted as an environment variable takes effect with the next pod.
pub fn env_secrets() -> Secrets {
    Arc::new(|carrier| std::env::var(titan_crds::config::webhook_secret_env(carrier)).ok())
}

struct Hooks<S> {
    app: Arc<Tracking<S>>,
    secrets: Secrets,
}

pub fn router<S: TrackingStore>(app: Arc<Tracking<S>>, secrets: Secrets) -> Router {
    Router::new()
        .route("/webhooks/tracking/{carrier}", post(receive::<S>))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(Arc::new(Hooks { app, secrets }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    events: Vec<EventInput>,
}

fn refuse(code: StatusCode, message: impl std::fmt::Display) -> Response {
    (code, Json(json!({ "error": message.to_string() }))).into_response()
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

async fn receive<S: TrackingStore>(
    State(hooks): State<Arc<Hooks<S>>>,
    Path(carrier): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let no_webhook = || refuse(StatusCode::NOT_FOUND, "no webhook for this carrier");
    let Ok(carrier) = input::carrier("carrier", &carrier, false) else {
        return no_webhook();
    };
    let Some(secret) = (hooks.secrets)(&carrier) else {
        return no_webhook();
    };
    if secret.len() < MIN_SECRET {
        tracing::warn!(%carrier, "the carrier's webhook secret is shorter than {MIN_SECRET} bytes; its webhook is refused");
        return no_webhook();
    }
    let now = hooks.app.now();
    if let Err(e) = signature::verify(
        secret.as_bytes(),
        header(&headers, TIMESTAMP_HEADER),
        header(&headers, SIGNATURE_HEADER),
        &body,
        now,
    ) {
        return refuse(StatusCode::UNAUTHORIZED, e);
    }
    let parsed: Body = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, format!("body: {e}")),
    };
    if parsed.events.is_empty() || parsed.events.len() > MAX_EVENTS_PER_CALL {
        return refuse(
            StatusCode::BAD_REQUEST,
            format!(
                "events: has {}; 1 to {MAX_EVENTS_PER_CALL} are allowed",
                parsed.events.len()
            ),
        );
    }
    let checked: Result<CarrierEvents, _> = parsed
        .events
        .iter()
        .enumerate()
        .map(|(i, e)| e.check(&format!("events[{i}]"), now))
        .collect();
    let checked = match checked {
        Ok(c) => c,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, e),
    };
    match hooks.app.receive(&carrier, &checked).await {
        Ok(r) => (
            StatusCode::OK,
            Json(json!({ "appended": r.appended, "duplicates": r.duplicates })),
        )
            .into_response(),
        Err(e @ TrackingError::NotFound(_)) => refuse(StatusCode::NOT_FOUND, e),
        Err(e @ TrackingError::TooManyEvents(_)) => refuse(StatusCode::UNPROCESSABLE_ENTITY, e),
        Err(e) => {
            tracing::error!(%carrier, error = %e, code = ?e.code(), "tracking webhook failed");
            refuse(StatusCode::SERVICE_UNAVAILABLE, "try again later")
        }
    }
}
