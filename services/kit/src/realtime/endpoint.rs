//! A service's WebSocket route: an [`Endpoint`] (a handler per client frame type and an
//! optional opening hook) mounted by [`super::Realtime::route`], and the handshake in front of
//! it. Before the upgrade a replica at its limits answers 503 (`realtime.maxConnections`) or
//! 429 (`realtime.maxConnectionsPerUser`) with a body naming the limit; a wrong `Origin` or a
//! missing, invalid or expired token is upgraded and closed at once with 4403 or 4401, so
//! that a browser (which cannot read a refused handshake) learns why. The token may come in
//! `Authorization`, in `Sec-WebSocket-Protocol: bearer, <token>` (`bearer` is echoed) or in
//! `?access_token=`; it is never logged (nothing here logs a header or a query).

use std::{collections::HashMap, sync::Arc};

use axum::{
    Router,
    extract::{Path, State, WebSocketUpgrade},
    http::{HeaderMap, StatusCode, Uri, header},
    response::{IntoResponse, Response},
    routing::get,
};
use futures::future::BoxFuture;
use serde_json::Value;

use super::{
    Realtime,
    connection::{self, Life},
    frame::{Close, FrameError},
    metrics::Refusal,
    session::{Outlet, Session},
};
use crate::auth::{AuthError, Caller};

/// Handles one client frame type: `Ok` is sent as the ack's payload, `Err` as the error frame
/// (when the frame has an id); the socket stays open either way.
pub type Handler =
    Arc<dyn Fn(Session, Value) -> BoxFuture<'static, Result<Value, FrameError>> + Send + Sync>;

/// Runs once a socket is open, before its first client frame is read; `Err` closes it.
pub type OnOpen = Arc<dyn Fn(Session) -> BoxFuture<'static, Result<(), Close>> + Send + Sync>;

/// The WebSocket protocol of one route: its client frame types and opening hook.
#[derive(Default)]
pub struct Endpoint {
    handlers: Handlers,
}

#[derive(Default)]
pub(crate) struct Handlers {
    pub handlers: HashMap<&'static str, Handler>,
    pub on_open: Option<OnOpen>,
}

impl std::fmt::Debug for Handlers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handlers")
            .field("types", &self.handlers.keys().collect::<Vec<_>>())
            .field("on_open", &self.on_open.is_some())
            .finish()
    }
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.handlers.fmt(f)
    }
}

impl Endpoint {
    pub fn new() -> Self {
        Self::default()
    }

    /// Handles client frames of type `kind` (`ack` and `error` are the server's own).
    pub fn on<F, Fut>(mut self, kind: &'static str, handler: F) -> Self
    where
        F: Fn(Session, Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, FrameError>> + Send + 'static,
    {
        self.handlers
            .handlers
            .insert(kind, Arc::new(move |s, v| Box::pin(handler(s, v))));
        self
    }

    /// Runs `hook` when a socket opens (check access, send a first frame, start feeding it).
    pub fn on_open<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(Session) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), Close>> + Send + 'static,
    {
        self.handlers.on_open = Some(Arc::new(move |s| Box::pin(hook(s))));
        self
    }
}

type RouteState = (Realtime, Arc<Handlers>);

/// The close reason of a handshake without a token: where one may be sent.
const MISSING_TOKEN: &str = "missing token: send 'authorization: Bearer <jwt>', subprotocols 'bearer, <jwt>' or ?access_token=<jwt>";

pub(crate) fn router(realtime: Realtime, path: &str, endpoint: Endpoint) -> Router {
    Router::new()
        .route(path, get(upgrade))
        .with_state((realtime, Arc::new(endpoint.handlers)))
}

async fn upgrade(
    State((realtime, handlers)): State<RouteState>,
    params: Option<Path<HashMap<String, String>>>,
    headers: HeaderMap,
    uri: Uri,
    ws: WebSocketUpgrade,
) -> Response {
    let inner = realtime.inner.clone();
    let config = &inner.config;
    let metrics = inner.metrics.clone();
    if inner.drain.is_cancelled() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "this replica is shutting down; connect to another",
        )
            .into_response();
    }
    let ws = ws
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_message_size(config.max_frame_bytes)
        .max_frame_size(config.max_frame_bytes);
    if let Err(close) = check_origin(&headers, config) {
        metrics.refused(Refusal::Origin);
        return ws.on_upgrade(move |socket| connection::refuse(socket, close));
    }
    let (token, via_protocol) = match bearer(&headers, &ws, &uri) {
        Ok(found) => found,
        Err(AuthError::Missing) => {
            metrics.refused(Refusal::Token);
            return ws.on_upgrade(move |socket| {
                connection::refuse(socket, Close::new(Close::UNAUTHENTICATED, MISSING_TOKEN))
            });
        }
        Err(e) => {
            metrics.refused(Refusal::Token);
            return ws.on_upgrade(move |socket| {
                connection::refuse(socket, Close::new(Close::UNAUTHENTICATED, e.to_string()))
            });
        }
    };
    let ws = if via_protocol {
        ws.protocols(["bearer"])
    } else {
        ws
    };
    let (caller, expires_at) = match inner.auth.verify_fetching(&token).await {
        Ok(verified) => verified,
        Err(e) => {
            metrics.refused(Refusal::Token);
            return ws.on_upgrade(move |socket| {
                connection::refuse(socket, Close::new(Close::UNAUTHENTICATED, e.to_string()))
            });
        }
    };
    let admission = match realtime.admit(&caller) {
        Ok(admission) => admission,
        Err((status, why, message)) => {
            metrics.refused(why);
            return (status, message).into_response();
        }
    };
    let (outlet, queue) = Outlet::new(admission.id, config.send_queue);
    let params = params.map(|Path(p)| p).unwrap_or_default();
    let session = Session::new(outlet, caller, params, realtime.clone());
    let life = Life {
        session,
        queue,
        handlers,
        metrics,
        expires_at,
        ping_interval: config.ping_interval,
        missed_pongs: config.missed_pongs,
        max_frame_bytes: config.max_frame_bytes,
        drain: inner.drain.clone(),
    };
    let tracker = inner.tracker.clone();
    ws.on_upgrade(move |socket| {
        tracker.track_future(async move {
            connection::run(socket, life).await;
            drop(admission);
        })
    })
}

/// `Ok` when the handshake's `Origin` is allowed (or absent and absence is allowed).
fn check_origin(headers: &HeaderMap, config: &crate::config::RealtimeConfig) -> Result<(), Close> {
    match headers.get(header::ORIGIN).map(|v| v.to_str()) {
        None if config.allow_missing_origin => Ok(()),
        None => Err(Close::new(
            Close::FORBIDDEN,
            "origin missing: browsers send one; other clients need realtime.allowMissingOrigin",
        )),
        Some(Ok(origin))
            if config
                .allowed_origins
                .iter()
                .any(|allowed| allowed.eq_ignore_ascii_case(origin)) =>
        {
            Ok(())
        }
        Some(Ok(origin)) => Err(Close::new(
            Close::FORBIDDEN,
            format!("origin {origin} is not allowed"),
        )),
        Some(Err(_)) => Err(Close::new(Close::FORBIDDEN, "origin is not valid text")),
    }
}

/// The bearer token of a handshake, and whether it came as a subprotocol (which must then be
/// echoed): `Authorization: Bearer`, then `Sec-WebSocket-Protocol: bearer, <token>`, then
/// `?access_token=`.
fn bearer(
    headers: &HeaderMap,
    ws: &WebSocketUpgrade,
    uri: &Uri,
) -> Result<(String, bool), AuthError> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let value = value.to_str().map_err(|_| AuthError::Malformed)?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or(AuthError::Malformed)?;
        return Ok((token.trim().to_owned(), false));
    }
    let protocols: Vec<&str> = ws
        .requested_protocols()
        .filter_map(|p| p.to_str().ok())
        .collect();
    if protocols.contains(&"bearer") {
        let tokens: Vec<&&str> = protocols.iter().filter(|p| **p != "bearer").collect();
        return match tokens.as_slice() {
            [token] => Ok(((**token).to_owned(), true)),
            _ => Err(AuthError::Invalid(
                "Sec-WebSocket-Protocol must be 'bearer, <token>'".into(),
            )),
        };
    }
    uri.query()
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|pair| pair.strip_prefix("access_token="))
        .map(|token| (token.to_owned(), false))
        .ok_or(AuthError::Missing)
}

/// Counts a socket against the replica's and its user's limits while it is open.
#[derive(Debug)]
pub(crate) struct Admission {
    pub id: u64,
    user: String,
    realtime: Realtime,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.realtime.release(&self.user);
    }
}

impl Realtime {
    /// Admits one more socket of `caller`, or says which limit refuses it.
    pub(crate) fn admit(
        &self,
        caller: &Caller,
    ) -> Result<Admission, (StatusCode, Refusal, String)> {
        let config = &self.inner.config;
        let mut open = self.inner.lock_open();
        if open.total >= config.max_connections {
            return Err((
                StatusCode::SERVICE_UNAVAILABLE,
                Refusal::MaxConnections,
                format!(
                    "this replica holds its maximum of {} websocket connections (realtime.maxConnections); retry later or on another replica",
                    config.max_connections
                ),
            ));
        }
        let mine = open.per_user.get(&caller.user_id).copied().unwrap_or(0);
        if mine >= config.max_connections_per_user {
            return Err((
                StatusCode::TOO_MANY_REQUESTS,
                Refusal::MaxConnectionsPerUser,
                format!(
                    "user {} already has {mine} websocket connections on this replica, the most realtime.maxConnectionsPerUser allows",
                    caller.user_id
                ),
            ));
        }
        open.total += 1;
        *open.per_user.entry(caller.user_id.clone()).or_default() += 1;
        self.inner.metrics.connections.inc();
        let id = self
            .inner
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(Admission {
            id,
            user: caller.user_id.clone(),
            realtime: self.clone(),
        })
    }

    fn release(&self, user: &str) {
        let mut open = self.inner.lock_open();
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.per_user.get_mut(user) {
            *n -= 1;
            if *n == 0 {
                open.per_user.remove(user);
            }
        }
        self.inner.metrics.connections.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RealtimeConfig;

    fn config(origins: &[&str], allow_missing: bool) -> RealtimeConfig {
        RealtimeConfig {
            allowed_origins: origins.iter().map(|o| (*o).to_owned()).collect(),
            allow_missing_origin: allow_missing,
            ..RealtimeConfig::default()
        }
    }

    fn with_origin(origin: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(origin) = origin {
            headers.insert(header::ORIGIN, origin.parse().expect("header"));
        }
        headers
    }

    #[test]
    fn origins_are_checked_against_the_allow_list() {
        let strict = config(&["https://shop.example"], false);
        assert_eq!(
            check_origin(&with_origin(Some("https://SHOP.example")), &strict),
            Ok(())
        );
        assert_eq!(
            check_origin(&with_origin(Some("https://evil.example")), &strict),
            Err(Close::new(
                4403,
                "origin https://evil.example is not allowed"
            ))
        );
        assert_eq!(
            check_origin(&with_origin(None), &strict).map_err(|c| c.code),
            Err(4403)
        );
        let lenient = config(&[], true);
        assert_eq!(check_origin(&with_origin(None), &lenient), Ok(()));
    }
}
