//! Livestream on the HTTP port: the callbacks of the cell's RTMP server (`POST
//! /rtmp/publish`, `/rtmp/publish-done`, and `/rtmp/recorded` from `titan recorder`), accepted
//! only from the media server's network (see [`crate::domain::rtmp`]), and the viewers'
//! WebSocket `GET /v1/livestream/streams/{stream_id}/ws`.
//!
//! The socket: opening it needs a token and an existing stream (4404 otherwise); the server
//! sends `stream {streamId, status, featuredProductIds}` first and then pushes `comment`,
//! `pinned`, `unpinned`, `featured {streamId, productIds}` and `status {streamId, status}`
//! from every replica. Client frames: `heartbeat {}` (counts the viewer; the ack carries the
//! viewer figures), `comment {requestId, text}`, `like {}` and `share {}`.

use std::{net::SocketAddr, sync::Arc};

use axum::{
    Form, Router,
    extract::{ConnectInfo, Request, State},
    http::{HeaderValue, StatusCode, header::LOCATION},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::post,
};
use serde::{Deserialize, de::DeserializeOwned};
use serde_json::{Value, json};
use titan_kit::{
    ErrorCode, ServiceError,
    realtime::{Close, Endpoint, FrameError, Realtime, Session},
};

use crate::{
    app::{Admission, Livestream, LivestreamError, StreamStore},
    domain::{
        rtmp::{self, Callback, ON_PUBLISH_DONE_PATH, ON_PUBLISH_PATH, RECORDED_PATH},
        topic,
        viewers::Reaction,
    },
    metrics::CallbackOutcome,
};

pub const WATCH_PATH: &str = "/v1/livestream/streams/{stream_id}/ws";

type App<S> = Arc<Livestream<S>>;

/// Every route of the service on the HTTP port.
pub fn router<S: StreamStore>(realtime: &Realtime, app: App<S>) -> Router {
    callbacks(app.clone()).merge(watch(realtime, app))
}

/// The RTMP callbacks alone (tests serve them with `ConnectInfo`, as the runtime does).
pub fn callbacks<S: StreamStore>(app: App<S>) -> Router {
    Router::new()
        .route(ON_PUBLISH_PATH, post(publish::<S>))
        .route(ON_PUBLISH_DONE_PATH, post(publish_done::<S>))
        .route(RECORDED_PATH, post(recorded::<S>))
        .route_layer(middleware::from_fn_with_state(app.clone(), media_only::<S>))
        .with_state(app)
}

/// Refuses a callback from outside the media server's networks before its body is read.
async fn media_only<S: StreamStore>(
    State(app): State<App<S>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    if rtmp::media_source(peer.ip()) {
        next.run(request).await
    } else {
        app.metrics().callback(CallbackOutcome::ForeignSource);
        tracing::warn!(%peer, path = %request.uri().path(), "rtmp callback from outside the media network refused");
        (
            StatusCode::FORBIDDEN,
            "callbacks are accepted from the cell's media server only\n",
        )
            .into_response()
    }
}

/// The answer nginx gets for a refusal or failure: it only reads the status code.
fn refusal(e: &LivestreamError) -> Response {
    let code = match e.code() {
        ErrorCode::InvalidArgument => StatusCode::BAD_REQUEST,
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::FailedPrecondition => StatusCode::CONFLICT,
        _ => {
            tracing::error!(error = %e, "rtmp callback failed");
            return (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into_response();
        }
    };
    (code, format!("{e}\n")).into_response()
}

async fn publish<S: StreamStore>(State(app): State<App<S>>, Form(cb): Form<Callback>) -> Response {
    match app.on_publish(&cb.app, &cb.name).await {
        Ok(Admission::Admitted(id)) => {
            app.metrics().callback(CallbackOutcome::Admitted);
            tracing::info!(stream = %id, "publisher admitted");
            // A 3xx with a plain name makes nginx-rtmp publish under that name: HLS files and
            // recordings are named by the stream's id, never by its secret key.
            match HeaderValue::from_str(&id.to_string()) {
                Ok(location) => (StatusCode::FOUND, [(LOCATION, location)]).into_response(),
                Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
            }
        }
        Ok(Admission::Refused(why)) => {
            app.metrics().callback(CallbackOutcome::Refused);
            tracing::info!(reason = %why, "publisher refused");
            (StatusCode::FORBIDDEN, "publishing refused\n").into_response()
        }
        Err(e) => refusal(&e),
    }
}

async fn publish_done<S: StreamStore>(
    State(app): State<App<S>>,
    Form(cb): Form<Callback>,
) -> Response {
    match app.on_publish_done(&cb.name).await {
        Ok(Some(s)) => {
            app.metrics().callback(CallbackOutcome::Ended);
            tracing::info!(stream = %s.id, "publisher done");
            StatusCode::OK.into_response()
        }
        Ok(None) => (StatusCode::NOT_FOUND, "no stream has this name\n").into_response(),
        Err(e) => refusal(&e),
    }
}

async fn recorded<S: StreamStore>(State(app): State<App<S>>, Form(cb): Form<Callback>) -> Response {
    match app.recorded(&cb.name, &cb.key).await {
        Ok(s) => {
            app.metrics().callback(CallbackOutcome::Recorded);
            tracing::info!(stream = %s.id, key = %cb.key, "recording stored");
            StatusCode::OK.into_response()
        }
        Err(e) => refusal(&e),
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CommentFrame {
    #[serde(default)]
    request_id: String,
    text: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Empty {}

fn parse<T: DeserializeOwned>(payload: Value) -> Result<T, FrameError> {
    // `{}` and an absent payload are the same empty payload.
    let payload = if payload.is_null() {
        json!({})
    } else {
        payload
    };
    serde_json::from_value(payload).map_err(|e| FrameError::new("INVALID_ARGUMENT", e.to_string()))
}

fn json_of<T: serde::Serialize>(v: &T) -> Result<Value, FrameError> {
    serde_json::to_value(v).map_err(|e| FrameError::new("INTERNAL", e.to_string()))
}

fn stream_of(s: &Session) -> &str {
    s.param("stream_id").unwrap_or_default()
}

/// Registers a handler that gets the app, the session and the payload.
fn with_app<S, F, Fut>(endpoint: Endpoint, kind: &'static str, app: &App<S>, f: F) -> Endpoint
where
    S: StreamStore,
    F: Fn(App<S>, Session, Value) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Value, FrameError>> + Send + 'static,
{
    let app = app.clone();
    endpoint.on(kind, move |s: Session, payload: Value| {
        f(app.clone(), s, payload)
    })
}

async fn react<S: StreamStore>(
    app: App<S>,
    s: Session,
    payload: Value,
    reaction: Reaction,
) -> Result<Value, FrameError> {
    let Empty {} = parse(payload)?;
    let stats = app
        .react(s.caller(), stream_of(&s), reaction)
        .await
        .map_err(|e| FrameError::from_service(&e))?;
    json_of(&stats)
}

/// The viewers' socket.
pub fn watch<S: StreamStore>(realtime: &Realtime, app: App<S>) -> Router {
    let open_app = app.clone();
    let mut endpoint = Endpoint::new().on_open(move |session: Session| {
        let app = open_app.clone();
        async move {
            let stream = app
                .watchable(stream_of(&session))
                .await
                .map_err(|e| Close::from_service(&e))?;
            session
                .subscribe(&topic(stream.id))
                .await
                .map_err(|e| Close::new(Close::INTERNAL, e.to_string()))?;
            session
                .send(
                    "stream",
                    &json!({
                        "streamId": stream.id,
                        "status": stream.status.as_str(),
                        "featuredProductIds": stream.featured.as_slice(),
                    }),
                )
                .map_err(|_| Close::new(Close::GOING_AWAY, "closed while opening"))?;
            Ok(())
        }
    });
    endpoint = with_app(endpoint, "heartbeat", &app, |app, s, payload| async move {
        let Empty {} = parse(payload)?;
        let stats = app
            .heartbeat(s.caller(), stream_of(&s))
            .await
            .map_err(|e| FrameError::from_service(&e))?;
        json_of(&stats)
    });
    endpoint = with_app(endpoint, "comment", &app, |app, s, payload| async move {
        let c: CommentFrame = parse(payload)?;
        let comment = app
            .post_comment(s.caller(), &c.request_id, stream_of(&s), &c.text)
            .await
            .map_err(|e| FrameError::from_service(&e))?;
        json_of(&comment)
    });
    endpoint = with_app(endpoint, "like", &app, |app, s, payload| {
        react(app, s, payload, Reaction::Like)
    });
    endpoint = with_app(endpoint, "share", &app, |app, s, payload| {
        react(app, s, payload, Reaction::Share)
    });
    realtime.route(WATCH_PATH, endpoint)
}
