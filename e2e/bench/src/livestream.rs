//! The livestream load generator: `titan serve livestream` on two replicas sharing PostgreSQL
//! and Redis, one stream taken LIVE through the RTMP publish callback. First the viewer
//! heartbeats one replica absorbs: concurrent gRPC callers, each a distinct viewer, for a
//! fixed time (heartbeats/s and the client p99). Then comment fan-out: viewers on the stream's
//! WebSocket, half on each replica, and comments posted over gRPC on replica A; each comment
//! carries its send time, and every socket measures send → frame parsed (one clock: this
//! process), p50/p99 over every delivery.

use std::{
    fmt,
    time::{Duration, Instant},
};

use anyhow::{Context, ensure};
use futures::StreamExt;
use serde_json::Value;
use titan_e2e::{Cell, CellOptions, authed};
use titan_proto::livestream::v1::{self as pb, livestream_service_client::LivestreamServiceClient};
use tokio::{sync::mpsc, task::JoinSet};
use tokio_tungstenite::tungstenite::Message;
use tonic::transport::Channel;

use crate::{
    Latencies,
    ws::{Socket, connect, raise_file_limit},
};

/// Connection limits raised past what is measured.
const CONFIG: &str = "realtime: { allowMissingOrigin: true, maxConnections: 1000000 }\n";
/// Handshakes in flight at once.
const CONNECTING: usize = 128;
/// How long the benchmark waits for every delivery before it reports what it has.
const PATIENCE: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct LivestreamOptions {
    /// Concurrent heartbeat callers (each a distinct viewer per call).
    pub callers: usize,
    pub heartbeat_duration: Duration,
    /// Viewers on the WebSocket, half per replica.
    pub viewers: usize,
    /// Comments posted, one every `comment_interval`.
    pub comments: usize,
    pub comment_interval: Duration,
    /// Client source addresses 127.0.0.1 ..= 127.0.0.N.
    pub sources: u8,
    pub release: bool,
}

impl LivestreamOptions {
    /// CI's short mode.
    pub fn quick() -> Self {
        Self {
            callers: 8,
            heartbeat_duration: Duration::from_secs(2),
            viewers: 100,
            comments: 5,
            comment_interval: Duration::from_millis(100),
            sources: 1,
            release: false,
        }
    }
}

#[derive(Debug, Default)]
pub struct LivestreamReport {
    pub heartbeats: u64,
    pub heartbeat_failures: u64,
    pub heartbeat_elapsed: Duration,
    pub heartbeat_latencies: Latencies,
    pub concurrent_seen: u64,
    pub viewers: usize,
    pub comments: usize,
    pub expected: u64,
    pub delivered: u64,
    pub fanout: Latencies,
}

impl LivestreamReport {
    /// Every comment reached every viewer.
    pub fn exact(&self) -> bool {
        self.delivered == self.expected && self.heartbeat_failures == 0
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

impl fmt::Display for LivestreamReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "livestream heartbeats on one replica: {} in {:.1} s = {:.0}/s ({} failed), client p50 {:.2} ms, p99 {:.2} ms; concurrent viewers counted at the end {}",
            self.heartbeats,
            self.heartbeat_elapsed.as_secs_f64(),
            self.heartbeats as f64 / self.heartbeat_elapsed.as_secs_f64().max(1e-9),
            self.heartbeat_failures,
            ms(self.heartbeat_latencies.quantile(0.5)),
            ms(self.heartbeat_latencies.quantile(0.99)),
            self.concurrent_seen,
        )?;
        writeln!(
            f,
            "livestream comment fan-out to {} viewers over two replicas: {} comments, {} of {} deliveries, p50 {:.2} ms, p99 {:.2} ms",
            self.viewers,
            self.comments,
            self.delivered,
            self.expected,
            ms(self.fanout.quantile(0.5)),
            ms(self.fanout.quantile(0.99)),
        )
    }
}

type Grpc = LivestreamServiceClient<Channel>;

/// A LIVE stream: scheduled by a seller, admitted by the publish callback as nginx sends it.
async fn live_stream(cell: &Cell, grpc: &mut Grpc) -> anyhow::Result<String> {
    let scheduled = grpc
        .schedule_stream(authed(
            pb::ScheduleStreamRequest {
                request_id: uuid::Uuid::new_v4().to_string(),
                title: "bench".into(),
                scheduled_at: Some(titan_e2e::seconds_from_now(0)),
            },
            &cell.token("bench-seller", &["seller"]),
        ))
        .await?
        .into_inner();
    let id = scheduled.stream.context("no stream")?.id;
    let response = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?
        .post(format!("http://{}/rtmp/publish", cell.http))
        .form(&[
            ("call", "publish"),
            ("app", "live"),
            ("name", &scheduled.stream_key),
        ])
        .send()
        .await?;
    ensure!(
        response.status().as_u16() == 302,
        "publish callback answered {}",
        response.status()
    );
    Ok(id)
}

async fn heartbeats(
    cell: &Cell,
    grpc: &Grpc,
    stream: &str,
    options: &LivestreamOptions,
) -> (u64, u64, Duration, Latencies) {
    let tokens: Vec<String> = (0..1_000)
        .map(|i| cell.token(&format!("v{i}"), &[]))
        .collect();
    let began = Instant::now();
    let mut callers = JoinSet::new();
    for c in 0..options.callers {
        let (mut grpc, tokens, stream) = (grpc.clone(), tokens.clone(), stream.to_owned());
        let until = began + options.heartbeat_duration;
        callers.spawn(async move {
            let (mut ok, mut failed, mut lat) = (0u64, 0u64, Vec::new());
            let mut n = c;
            while Instant::now() < until {
                let t = Instant::now();
                let r = grpc
                    .heartbeat(authed(
                        pb::HeartbeatRequest {
                            stream_id: stream.clone(),
                        },
                        &tokens[n % tokens.len()],
                    ))
                    .await;
                match r {
                    Ok(_) => {
                        ok += 1;
                        lat.push(u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX));
                    }
                    Err(_) => failed += 1,
                }
                n += 7;
            }
            (ok, failed, lat)
        });
    }
    let (mut ok, mut failed, mut all) = (0, 0, Vec::new());
    for (o, f, l) in callers.join_all().await {
        ok += o;
        failed += f;
        all.extend(l);
    }
    let elapsed = began.elapsed();
    all.sort_unstable();
    (ok, failed, elapsed, Latencies(all))
}

/// Reads a socket until it closes: for each comment, the microseconds since `start` written
/// in it, subtracted from now.
async fn read(mut ws: Socket, start: Instant, out: mpsc::UnboundedSender<u32>) {
    while let Some(Ok(message)) = ws.next().await {
        let Message::Text(text) = message else {
            continue;
        };
        let Ok(frame) = serde_json::from_str::<Value>(text.as_str()) else {
            continue;
        };
        if frame["type"] != "comment" {
            continue;
        }
        let sent = frame["payload"]["text"]
            .as_str()
            .and_then(|c| c.strip_prefix("t="))
            .and_then(|t| t.parse::<u128>().ok());
        if let Some(sent) = sent {
            let now = start.elapsed().as_micros();
            let _ = out.send(u32::try_from(now.saturating_sub(sent)).unwrap_or(u32::MAX));
        }
    }
}

/// Opens a viewer's socket and waits for its first `stream` frame (subscribed by then).
async fn open(
    http: std::net::SocketAddr,
    path: String,
    source: u8,
    token: String,
) -> anyhow::Result<Socket> {
    let mut ws = connect(http, &path, source, &token).await?;
    loop {
        let next = tokio::time::timeout(PATIENCE, ws.next())
            .await
            .context("no stream frame in time")?;
        match next {
            Some(Ok(Message::Text(text))) => {
                let frame: Value = serde_json::from_str(text.as_str())?;
                if frame["type"] == "stream" {
                    return Ok(ws);
                }
            }
            Some(Ok(_)) => {}
            other => anyhow::bail!("socket closed while opening: {other:?}"),
        }
    }
}

pub async fn livestream(options: &LivestreamOptions) -> anyhow::Result<LivestreamReport> {
    raise_file_limit()?;
    let cell = Cell::start_with(CellOptions {
        services: vec!["livestream".into()],
        config: Some(CONFIG.into()),
        release: options.release,
    })
    .await;
    let b = cell.replica();
    let mut grpc = LivestreamServiceClient::new(cell.channel().await);
    let stream = live_stream(&cell, &mut grpc).await?;

    let (heartbeats, heartbeat_failures, heartbeat_elapsed, heartbeat_latencies) =
        heartbeats(&cell, &grpc, &stream, options).await;
    let concurrent_seen = grpc
        .get_viewer_stats(pb::GetViewerStatsRequest {
            stream_id: stream.clone(),
        })
        .await?
        .into_inner()
        .stats
        .context("no stats")?
        .concurrent;

    let path = format!("/v1/livestream/streams/{stream}/ws");
    let start = Instant::now();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut opening = futures::stream::iter((0..options.viewers).map(|i| {
        let http = if i % 2 == 0 { cell.http } else { b.http };
        let source = u8::try_from(i % usize::from(options.sources.max(1)) + 1).unwrap_or(1);
        open(
            http,
            path.clone(),
            source,
            cell.token(&format!("w{i}"), &[]),
        )
    }))
    .buffer_unordered(CONNECTING);
    while let Some(ws) = opening.next().await {
        tokio::spawn(read(ws?, start, tx.clone()));
    }
    drop(opening);

    let mut tick = tokio::time::interval(options.comment_interval);
    for n in 0..options.comments {
        tick.tick().await;
        grpc.post_comment(authed(
            pb::PostCommentRequest {
                request_id: uuid::Uuid::new_v4().to_string(),
                stream_id: stream.clone(),
                text: format!("t={}", start.elapsed().as_micros()),
            },
            // One commenter per comment: each has a budget of its own.
            &cell.token(&format!("commenter{n}"), &[]),
        ))
        .await?;
    }
    let expected = (options.viewers * options.comments) as u64;
    let mut all = Vec::with_capacity(usize::try_from(expected)?);
    while (all.len() as u64) < expected {
        match tokio::time::timeout(PATIENCE, rx.recv()).await {
            Ok(Some(micros)) => all.push(micros),
            _ => break,
        }
    }
    all.sort_unstable();
    Ok(LivestreamReport {
        heartbeats,
        heartbeat_failures,
        heartbeat_elapsed,
        heartbeat_latencies,
        concurrent_seen,
        viewers: options.viewers,
        comments: options.comments,
        expected,
        delivered: all.len() as u64,
        fanout: Latencies(all),
    })
}
