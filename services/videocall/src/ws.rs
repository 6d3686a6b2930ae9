//! Calls and signaling over a WebSocket, `GET /v1/videocall/ws` (kit's handshake, frames and
//! close codes). On open the socket follows its user's topic: `call` frames (a call of the
//! user changed), `signal` frames (offer / answer / ice / hangup from the other party) and
//! `queue` frames (place in the support queue), from any replica. Client frames, each with an
//! `id` answered by an ack or an error frame: `signal {callId, kind, data}` (relayed to the
//! other participant of a RINGING or ACTIVE call, `data` untouched, at most 32 KiB encoded),
//! and the gRPC operations a browser needs: `initiate {requestId, calleeId?, type, media}`,
//! `answer`, `reject`, `end {requestId, callId}`, `fail {requestId, callId, reason}` and
//! `iceServers {callId}`.

use std::sync::Arc;

use serde::{Deserialize, de::DeserializeOwned};
use serde_json::{Value, json};
use titan_kit::realtime::{Close, Endpoint, FrameError, Realtime, Session};

use crate::{
    app::{CallFrame, CallStore, Videocall, VideocallError},
    domain::{CallKind, InputError, Media, user_topic},
};

pub const PATH: &str = "/v1/videocall/ws";

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Signal {
    call_id: String,
    kind: String,
    data: Value,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Initiate {
    #[serde(default)]
    request_id: String,
    #[serde(default)]
    callee_id: String,
    #[serde(rename = "type")]
    kind: String,
    media: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Act {
    #[serde(default)]
    request_id: String,
    call_id: String,
    #[serde(default)]
    reason: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Ice {
    call_id: String,
}

fn parse<T: DeserializeOwned>(payload: Value) -> Result<T, FrameError> {
    serde_json::from_value(payload).map_err(|e| FrameError::new("INVALID_ARGUMENT", e.to_string()))
}

fn refused(e: &VideocallError) -> FrameError {
    FrameError::from_service(e)
}

fn invalid(e: InputError) -> FrameError {
    refused(&e.into())
}

fn call_json(app: &Videocall<impl CallStore>, call: &crate::domain::Call) -> Value {
    let mut v = json!(CallFrame::of(call));
    v["recording"] = Value::Bool(app.recording(call));
    v
}

/// Registers a handler that gets the app, the session and the payload.
fn with_app<S, F, Fut>(
    endpoint: Endpoint,
    kind: &'static str,
    app: &Arc<Videocall<S>>,
    f: F,
) -> Endpoint
where
    S: CallStore,
    F: Fn(Arc<Videocall<S>>, Session, Value) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Value, FrameError>> + Send + 'static,
{
    let app = app.clone();
    endpoint.on(kind, move |s: Session, payload: Value| {
        f(app.clone(), s, payload)
    })
}

pub fn router<S: CallStore>(realtime: &Realtime, app: Arc<Videocall<S>>) -> axum::Router {
    let mut endpoint = Endpoint::new().on_open(|session: Session| async move {
        // Subscribed before the first client frame is read, so nothing sent to the user after
        // its first ack is missed.
        let topic = user_topic(&session.caller().user_id);
        session
            .subscribe(&topic)
            .await
            .map_err(|e| Close::new(Close::INTERNAL, e.to_string()))
    });
    endpoint = with_app(endpoint, "signal", &app, |app, s, payload| async move {
        let m: Signal = parse(payload)?;
        app.signal(s.caller(), &m.call_id, &m.kind, &m.data)
            .await
            .map_err(|e| refused(&e))?;
        Ok(Value::Null)
    });
    endpoint = with_app(endpoint, "initiate", &app, |app, s, payload| async move {
        let m: Initiate = parse(payload)?;
        let kind = CallKind::from_name(&m.kind).ok_or_else(|| {
            invalid(InputError::new(
                "type",
                "must be SUPPORT, SALES or CONSULTATION",
            ))
        })?;
        let media = Media::from_name(&m.media)
            .ok_or_else(|| invalid(InputError::new("media", "must be VIDEO or AUDIO")))?;
        let (call, position) = app
            .initiate(s.caller(), &m.request_id, &m.callee_id, kind, media)
            .await
            .map_err(|e| refused(&e))?;
        let mut v = call_json(&app, &call);
        v["queuePosition"] = json!(position);
        Ok(v)
    });
    endpoint = with_app(endpoint, "answer", &app, |app, s, payload| async move {
        let m: Act = parse(payload)?;
        let call = app
            .answer(s.caller(), &m.request_id, &m.call_id)
            .await
            .map_err(|e| refused(&e))?;
        Ok(call_json(&app, &call))
    });
    endpoint = with_app(endpoint, "reject", &app, |app, s, payload| async move {
        let m: Act = parse(payload)?;
        let call = app
            .reject(s.caller(), &m.request_id, &m.call_id)
            .await
            .map_err(|e| refused(&e))?;
        Ok(call_json(&app, &call))
    });
    endpoint = with_app(endpoint, "end", &app, |app, s, payload| async move {
        let m: Act = parse(payload)?;
        let call = app
            .end(s.caller(), &m.request_id, &m.call_id)
            .await
            .map_err(|e| refused(&e))?;
        Ok(call_json(&app, &call))
    });
    endpoint = with_app(endpoint, "fail", &app, |app, s, payload| async move {
        let m: Act = parse(payload)?;
        let call = app
            .fail(s.caller(), &m.request_id, &m.call_id, &m.reason)
            .await
            .map_err(|e| refused(&e))?;
        Ok(call_json(&app, &call))
    });
    endpoint = with_app(endpoint, "iceServers", &app, |app, s, payload| async move {
        let m: Ice = parse(payload)?;
        let ice = app
            .ice_servers(s.caller(), &m.call_id)
            .await
            .map_err(|e| refused(&e))?;
        Ok(json!({ "iceServers": ice.servers, "expiresAt": ice.expires_at }))
    });
    realtime.route(PATH, endpoint)
}
