//! The life of one open socket, in one task: sends what its queue holds, reads client frames
//! and runs their handlers (answering each frame with an id), pings every `pingIntervalSeconds`
//! and gives up after `missedPongs` unanswered pings, closes at the token's `exp` (4401), on a
//! bad frame (4400), when its queue overflows (4408) and on drain (1001, after the queue is
//! flushed). Every ending is counted by reason.

use std::{sync::Arc, time::Duration};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures::{SinkExt, StreamExt, stream::SplitSink, stream::SplitStream};
use tokio::{sync::mpsc, time::Instant};
use tokio_tungstenite::tungstenite;
use tokio_util::sync::CancellationToken;

use super::{
    endpoint::Handlers,
    frame::{self, BadFrame, ClientFrame, Close},
    metrics::{Disconnect, Metrics},
    session::Session,
};

/// How long a closing socket may take to send its last frames and the close frame (a slow
/// consumer's close waits for it to read what its kernel buffers hold).
const CLOSE_SEND_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the server waits for the client's answer to its close frame.
const CLOSE_REPLY_TIMEOUT: Duration = Duration::from_secs(2);

/// What the loop of one socket needs besides the socket.
#[derive(Debug)]
pub(crate) struct Life {
    pub session: Session,
    pub queue: mpsc::Receiver<Utf8Bytes>,
    pub handlers: Arc<Handlers>,
    pub metrics: Metrics,
    /// The token's `exp`, in seconds since the epoch.
    pub expires_at: u64,
    pub ping_interval: Duration,
    pub missed_pongs: u32,
    pub max_frame_bytes: usize,
    pub drain: CancellationToken,
}

/// How the loop ended.
enum End {
    /// The client is gone: nothing more to send.
    Gone,
    /// Send `Close` (after the queue when `flush`), counted as the disconnect reason.
    Close(Close, Disconnect, bool),
}

/// Serves one socket until it ends.
pub(crate) async fn run(socket: WebSocket, mut life: Life) {
    let (mut sink, mut stream) = socket.split();
    let outlet = life.session.outlet().clone();
    if let Some(open) = &life.handlers.on_open
        && let Err(close) = open(life.session.clone()).await
    {
        outlet.close(close, Disconnect::Service);
    }
    let mut ping =
        tokio::time::interval_at(Instant::now() + life.ping_interval, life.ping_interval);
    let expiry = Instant::now() + until(life.expires_at);
    let mut unanswered = 0u32;
    let end = loop {
        tokio::select! {
            biased;
            () = outlet.closing() => break closing(&outlet),
            () = life.drain.cancelled() => break End::Close(
                Close::new(Close::GOING_AWAY, "going away: this replica is shutting down"),
                Disconnect::GoingAway,
                true,
            ),
            () = tokio::time::sleep_until(expiry) => break End::Close(
                Close::new(Close::UNAUTHENTICATED, "token expired"),
                Disconnect::TokenExpired,
                false,
            ),
            _ = ping.tick() => {
                if unanswered >= life.missed_pongs {
                    break End::Close(
                        Close::new(Close::SLOW_CONSUMER, format!("no pong to {unanswered} pings")),
                        Disconnect::MissedPongs,
                        false,
                    );
                }
                unanswered += 1;
                if let Some(end) = send(&mut sink, &outlet, Message::Ping(Default::default())).await {
                    break end;
                }
            }
            Some(text) = life.queue.recv() => {
                if let Some(end) = send(&mut sink, &outlet, Message::Text(text)).await {
                    break end;
                }
            }
            incoming = stream.next() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    if let Err(bad) = receive(&life, text.as_str()).await {
                        break End::Close(bad.close(), Disconnect::BadFrame, false);
                    }
                }
                Some(Ok(Message::Binary(_))) => {
                    break End::Close(BadFrame::Binary.close(), Disconnect::BadFrame, false);
                }
                Some(Ok(Message::Pong(_))) => unanswered = 0,
                // Answered by the protocol layer.
                Some(Ok(Message::Ping(_))) => {}
                Some(Ok(Message::Close(_))) | None => break End::Gone,
                Some(Err(e)) if too_large(&e) => break End::Close(
                    BadFrame::TooLarge(life.max_frame_bytes).close(),
                    Disconnect::BadFrame,
                    false,
                ),
                Some(Err(_)) => break End::Gone,
            },
        }
    };
    // Counted and detached at once: the socket stops receiving while its close goes out.
    outlet.gone();
    life.session.leave_all();
    match end {
        End::Gone => life.metrics.disconnected(Disconnect::Client),
        End::Close(close, why, flush) => {
            life.metrics.disconnected(why);
            finish(&mut sink, &mut stream, &mut life.queue, close, flush).await;
        }
    }
}

/// The close a socket was asked for (by the hub, a handler or the service).
fn closing(outlet: &super::session::Outlet) -> End {
    match outlet.reason() {
        Some((close, why)) => End::Close(close, why, why == Disconnect::Service),
        None => End::Gone,
    }
}

/// Sends one message, giving up when the socket is asked to close meanwhile (a reader that
/// stopped reading must not hold its writer for ever).
async fn send(
    sink: &mut SplitSink<WebSocket, Message>,
    outlet: &super::session::Outlet,
    message: Message,
) -> Option<End> {
    tokio::select! {
        sent = sink.send(message) => sent.is_err().then_some(End::Gone),
        () = outlet.closing() => Some(closing(outlet)),
    }
}

/// Handles one client text frame: `Err` closes the socket (4400).
async fn receive(life: &Life, text: &str) -> Result<(), BadFrame> {
    if text.len() > life.max_frame_bytes {
        return Err(BadFrame::TooLarge(life.max_frame_bytes));
    }
    let frame = ClientFrame::parse(text)?;
    let Some((kind, handler)) = life.handlers.handlers.get_key_value(frame.kind.as_str()) else {
        life.metrics.frame_in("unknown");
        return Err(BadFrame::UnknownType(frame.kind));
    };
    life.metrics.frame_in(kind);
    let result = handler(life.session.clone(), frame.payload).await;
    if let Some(id) = &frame.id {
        // A full queue closes the socket (4408) by itself; nothing more to do here.
        let _ = match &result {
            Ok(payload) => life.session.push("ack", frame::ack(id, payload)),
            Err(e) => life.session.push("error", frame::error(id, e)),
        };
    }
    Ok(())
}

/// Sends the queued frames (when `flush`), then `close`, then waits briefly for the client's
/// close frame, so the client reads the code rather than a reset connection.
async fn finish(
    sink: &mut SplitSink<WebSocket, Message>,
    stream: &mut SplitStream<WebSocket>,
    queue: &mut mpsc::Receiver<Utf8Bytes>,
    close: Close,
    flush: bool,
) {
    let sent = tokio::time::timeout(CLOSE_SEND_TIMEOUT, async {
        if flush {
            while let Ok(text) = queue.try_recv() {
                sink.feed(Message::Text(text)).await?;
            }
        }
        sink.send(Message::Close(Some(CloseFrame {
            code: close.code,
            reason: close.reason.into(),
        })))
        .await
    })
    .await;
    if !matches!(sent, Ok(Ok(()))) {
        return;
    }
    let _ = tokio::time::timeout(CLOSE_REPLY_TIMEOUT, async {
        while let Some(Ok(message)) = stream.next().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

/// Whether reading failed on a message above `realtime.maxFrameBytes` (the socket can still
/// say so) rather than on the connection.
fn too_large(e: &axum::Error) -> bool {
    matches!(
        std::error::Error::source(e).and_then(|inner| inner.downcast_ref::<tungstenite::Error>()),
        Some(tungstenite::Error::Capacity(_))
    )
}

/// How long from now until `exp` (seconds since the epoch); zero when past.
fn until(exp: u64) -> Duration {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Duration::from_secs(exp).saturating_sub(now)
}

/// Closes a socket refused at its opening (bad token, wrong origin) with `close`.
pub(crate) async fn refuse(socket: WebSocket, close: Close) {
    let (mut sink, mut stream) = socket.split();
    let (_keep, mut empty) = mpsc::channel(1);
    finish(&mut sink, &mut stream, &mut empty, close, false).await;
}
