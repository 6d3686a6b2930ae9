//! The videocall load generator: `titan serve videocall` on two replicas sharing PostgreSQL
//! and Redis. First the call setup rate: concurrent caller/callee pairs each run
//! Initiate (caller, replica A) → Answer (callee, replica B) → End (caller, A) over gRPC, and
//! every call must end ENDED. Then the signaling relay across replicas: pairs in ACTIVE calls,
//! each caller's WebSocket on A, each callee's on B; callers send `signal` frames (ICE
//! candidates) at a fixed total rate and the callees' sockets receive them through Redis.
//!
//! Latency is measured in this process alone: a sender writes the microseconds since a shared
//! start into the frame's `data` (relayed untouched) and the receiver subtracts them from its
//! own reading once the frame is parsed, so no clocks are compared across processes.

use std::{
    collections::BTreeMap,
    fmt,
    time::{Duration, Instant},
};

use anyhow::{Context, bail, ensure};
use futures::{SinkExt, StreamExt, stream};
use serde_json::{Value, json};
use titan_e2e::{Cell, CellOptions, Replica, authed};
use titan_proto::videocall::v1::{self as pb, videocall_service_client::VideocallServiceClient};
use tokio::{sync::mpsc, task::JoinSet};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use crate::{
    Latencies,
    ws::{Arrivals, Socket, connect, raise_file_limit, rss},
};

const PATH: &str = "/v1/videocall/ws";
/// No browser here, so no `Origin`; connection limits past what is measured.
const CONFIG: &str = "realtime: { allowMissingOrigin: true, maxConnections: 1000000 }\n";
/// Handshakes and set-up calls in flight at once.
const CONCURRENCY: usize = 64;
/// How long the benchmark waits for every frame before it reports what it has.
const PATIENCE: Duration = Duration::from_secs(60);

type Grpc = VideocallServiceClient<Channel>;

#[derive(Debug, Clone)]
pub struct VideocallOptions {
    /// Caller/callee pairs placing calls at once in the setup part.
    pub pairs: usize,
    /// Initiate → Answer → End cycles each pair runs.
    pub cycles: u32,
    /// Pairs in ACTIVE calls exchanging signaling frames.
    pub signalers: usize,
    /// Signaling frames sent in all.
    pub frames: u64,
    /// Frames sent per second, all callers together.
    pub rate: u32,
    /// Client source addresses 127.0.0.1 ..= 127.0.0.N.
    pub sources: u8,
    pub release: bool,
}

impl Default for VideocallOptions {
    fn default() -> Self {
        Self {
            pairs: 32,
            cycles: 50,
            signalers: 50,
            frames: 5_000,
            rate: 1_000,
            sources: 1,
            release: true,
        }
    }
}

impl VideocallOptions {
    /// CI's short mode: a few pairs and a few hundred frames, counted exactly.
    pub fn quick() -> Self {
        Self {
            pairs: 4,
            cycles: 5,
            signalers: 4,
            frames: 200,
            rate: 200,
            sources: 1,
            release: false,
        }
    }
}

/// What the setup part measured.
#[derive(Debug, Default)]
pub struct SetupReport {
    pub pairs: usize,
    /// Cycles started (pairs × cycles).
    pub cycles: u64,
    /// Calls whose End answered ENDED.
    pub ended: u64,
    /// Calls that failed at some step, by step and gRPC code.
    pub failed: BTreeMap<String, u64>,
    pub elapsed: Duration,
    /// One Initiate → Answer → End cycle, as the caller sees it.
    pub latencies: Latencies,
}

/// What the relay part measured.
#[derive(Debug, Default)]
pub struct RelayReport {
    pub signalers: usize,
    pub sent: u64,
    /// Signal frames answered with an error frame (must be 0).
    pub refused: u64,
    pub delivered: u64,
    /// Frames a callee saw twice or out of its caller's order (must be 0).
    pub disordered: u64,
    /// First frame sent to the last received.
    pub elapsed: Duration,
    pub latencies: Latencies,
    /// The relay calls ended ENDED afterwards.
    pub ended: u64,
}

#[derive(Debug, Default)]
pub struct VideocallReport {
    pub setup: SetupReport,
    pub relay: RelayReport,
    /// Resident memory of replica A and B after the run.
    pub rss: [u64; 2],
}

impl VideocallReport {
    /// Every call ENDED, every frame delivered once and in order, nothing refused.
    pub fn exact(&self) -> bool {
        self.setup.failed.is_empty()
            && self.setup.ended == self.setup.cycles
            && self.relay.refused == 0
            && self.relay.delivered == self.relay.sent
            && self.relay.disordered == 0
            && self.relay.ended == self.relay.signalers as u64
    }
}

fn per_second(n: u64, elapsed: Duration) -> f64 {
    n as f64 / elapsed.as_secs_f64().max(f64::EPSILON)
}

impl fmt::Display for VideocallReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.setup;
        writeln!(
            f,
            "videocall setup over two replicas: {} pairs, Initiate (A) → Answer (B) → End (A)",
            s.pairs
        )?;
        writeln!(
            f,
            "  calls ended         {:>10}  of {} ({:.0} cycles/s over {:.1} s), failed {:?}",
            s.ended,
            s.cycles,
            per_second(s.ended, s.elapsed),
            s.elapsed.as_secs_f64(),
            s.failed
        )?;
        writeln!(
            f,
            "  cycle latency       p50 {:?}  p95 {:?}  p99 {:?}  max {:?}",
            s.latencies.quantile(0.5),
            s.latencies.quantile(0.95),
            s.latencies.quantile(0.99),
            s.latencies.quantile(1.0)
        )?;
        let r = &self.relay;
        writeln!(
            f,
            "videocall signaling relay, caller on A → callee on B: {} active calls",
            r.signalers
        )?;
        writeln!(
            f,
            "  frames delivered    {:>10}  of {} sent ({:.0}/s over {:.1} s), {} refused, {} duplicated or out of order",
            r.delivered,
            r.sent,
            per_second(r.delivered, r.elapsed),
            r.elapsed.as_secs_f64(),
            r.refused,
            r.disordered
        )?;
        writeln!(
            f,
            "  relay latency       p50 {:?}  p95 {:?}  p99 {:?}  max {:?}",
            r.latencies.quantile(0.5),
            r.latencies.quantile(0.95),
            r.latencies.quantile(0.99),
            r.latencies.quantile(1.0)
        )?;
        writeln!(
            f,
            "  calls ended         {:>10}  of {}",
            r.ended, r.signalers
        )?;
        writeln!(
            f,
            "  replica RSS         A {:.1} MiB, B {:.1} MiB",
            self.rss[0] as f64 / (1024.0 * 1024.0),
            self.rss[1] as f64 / (1024.0 * 1024.0)
        )
    }
}

fn request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

async fn initiate(grpc: &mut Grpc, token: &str, callee: &str) -> Result<pb::Call, tonic::Status> {
    grpc.initiate_call(authed(
        pb::InitiateCallRequest {
            request_id: request_id(),
            callee_id: callee.to_owned(),
            r#type: pb::CallType::Sales as i32,
            media: pb::Media::Video as i32,
        },
        token,
    ))
    .await
    .map(|r| r.into_inner().call.unwrap_or_default())
}

async fn answer(grpc: &mut Grpc, token: &str, call: &str) -> Result<pb::Call, tonic::Status> {
    grpc.answer_call(authed(
        pb::AnswerCallRequest {
            request_id: request_id(),
            call_id: call.to_owned(),
        },
        token,
    ))
    .await
    .map(|r| r.into_inner().call.unwrap_or_default())
}

async fn end(grpc: &mut Grpc, token: &str, call: &str) -> Result<pb::Call, tonic::Status> {
    grpc.end_call(authed(
        pb::EndCallRequest {
            request_id: request_id(),
            call_id: call.to_owned(),
        },
        token,
    ))
    .await
    .map(|r| r.into_inner().call.unwrap_or_default())
}

/// One pair's cycles: each answers its ENDED count, its failures and cycle latencies.
async fn cycle_pair(
    mut on_a: Grpc,
    mut on_b: Grpc,
    caller: String,
    callee: (String, String),
    cycles: u32,
) -> (u64, BTreeMap<String, u64>, Vec<u32>) {
    let (callee_id, callee_token) = callee;
    let mut ended = 0;
    let mut failed = BTreeMap::new();
    let mut latencies = Vec::with_capacity(cycles as usize);
    for _ in 0..cycles {
        let started = Instant::now();
        let outcome = async {
            let call = initiate(&mut on_a, &caller, &callee_id)
                .await
                .map_err(|e| format!("initiate {:?}", e.code()))?;
            answer(&mut on_b, &callee_token, &call.id)
                .await
                .map_err(|e| format!("answer {:?}", e.code()))?;
            end(&mut on_a, &caller, &call.id)
                .await
                .map_err(|e| format!("end {:?}", e.code()))
        }
        .await;
        match outcome {
            Ok(call) if call.status == pb::CallStatus::Ended as i32 => {
                ended += 1;
                let micros = started.elapsed().as_micros();
                latencies.push(u32::try_from(micros).unwrap_or(u32::MAX));
            }
            Ok(call) => {
                *failed
                    .entry(format!("end status {}", call.status))
                    .or_insert(0) += 1
            }
            Err(step) => *failed.entry(step).or_insert(0) += 1,
        }
    }
    (ended, failed, latencies)
}

async fn setup(
    cell: &Cell,
    b: &Replica,
    options: &VideocallOptions,
) -> anyhow::Result<SetupReport> {
    let (a_channel, b_channel) = (cell.channel().await, b.channel().await);
    let mut pairs = JoinSet::new();
    let started = Instant::now();
    for i in 0..options.pairs {
        let caller = cell.token(&format!("setup-caller-{i}"), &[]);
        let callee_id = format!("setup-callee-{i}");
        let callee = (callee_id.clone(), cell.token(&callee_id, &[]));
        pairs.spawn(cycle_pair(
            VideocallServiceClient::new(a_channel.clone()),
            VideocallServiceClient::new(b_channel.clone()),
            caller,
            callee,
            options.cycles,
        ));
    }
    let mut report = SetupReport {
        pairs: options.pairs,
        cycles: options.pairs as u64 * u64::from(options.cycles),
        ..SetupReport::default()
    };
    let mut all = Vec::new();
    while let Some(done) = pairs.join_next().await {
        let (ended, failed, latencies) = done.context("a setup pair panicked")?;
        report.ended += ended;
        for (step, n) in failed {
            *report.failed.entry(step).or_insert(0) += n;
        }
        all.extend(latencies);
    }
    report.elapsed = started.elapsed();
    all.sort_unstable();
    report.latencies = Latencies(all);
    Ok(report)
}

/// Sends a frame the service refuses (a bad call id) and waits for its error: once answered,
/// the socket follows its user's topic on its replica.
async fn primed(mut ws: Socket) -> anyhow::Result<Socket> {
    ws.send(Message::Text(
        json!({"type": "iceServers", "id": 0, "payload": {"callId": "none"}})
            .to_string()
            .into(),
    ))
    .await?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => {
                let frame: Value = serde_json::from_str(text.as_str())?;
                if frame["id"] == json!(0) {
                    return Ok(ws);
                }
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
            None => bail!("socket closed before its first answer"),
        }
    }
}

/// One relay pair: the call's id, the caller's socket (A) and the callee's (B).
struct Pair {
    call: String,
    caller: String,
    caller_ws: Socket,
    callee_ws: Socket,
}

async fn open_pair(
    cell: &Cell,
    b: &Replica,
    grpc: (Grpc, Grpc),
    j: usize,
    sources: u8,
) -> anyhow::Result<Pair> {
    let (mut on_a, mut on_b) = grpc;
    let caller = cell.token(&format!("sig-caller-{j}"), &[]);
    let callee_id = format!("sig-callee-{j}");
    let callee = cell.token(&callee_id, &[]);
    // `j % sources` < sources ≤ 255, so it fits; 0 is not a loopback source.
    let source = u8::try_from(j % usize::from(sources.max(1))).unwrap_or(0) + 1;
    let caller_ws = primed(connect(cell.http, PATH, source, &caller).await?).await?;
    let callee_ws = primed(connect(b.http, PATH, source, &callee).await?).await?;
    let call = initiate(&mut on_a, &caller, &callee_id).await?;
    let active = answer(&mut on_b, &callee, &call.id).await?;
    ensure!(
        active.status == pb::CallStatus::Active as i32,
        "relay call {} is {} after its answer",
        call.id,
        active.status
    );
    Ok(Pair {
        call: call.id,
        caller,
        caller_ws,
        callee_ws,
    })
}

/// Reads a callee's socket until it has `owed` signal frames (or `stop`): their latencies and
/// how many came twice or out of order.
async fn receive(
    mut ws: Socket,
    base: Instant,
    owed: u64,
    stop: CancellationToken,
) -> anyhow::Result<(Vec<u32>, u64)> {
    let mut arrivals = Arrivals::expecting(owed);
    while !arrivals.complete() {
        let message = tokio::select! {
            () = stop.cancelled() => break,
            m = ws.next() => m,
        };
        let text = match message {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(frame))) => bail!("callee closed by the replica: {frame:?}"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.into()),
            None => bail!("callee socket ended"),
        };
        let now = base.elapsed();
        let frame: Value = serde_json::from_str(text.as_str())?;
        if frame["type"] != "signal" {
            continue;
        }
        if !arrivals.record(&frame["payload"]["data"], now) {
            bail!("a signal without its sequence and time: {text}");
        }
    }
    Ok(arrivals.into_parts())
}

/// How many of `total` frames, sent round-robin over `pairs`, go to pair `j`.
fn frames_of(j: usize, pairs: usize, total: u64) -> u64 {
    let (pairs, j) = (pairs as u64, j as u64);
    total / pairs + u64::from(j < total % pairs)
}

async fn relay(
    cell: &Cell,
    b: &Replica,
    options: &VideocallOptions,
) -> anyhow::Result<RelayReport> {
    ensure!(options.signalers > 0, "at least one relay pair");
    let (a_channel, b_channel) = (cell.channel().await, b.channel().await);
    let pairs: Vec<Pair> = stream::iter(0..options.signalers)
        .map(|j| {
            let grpc = (
                VideocallServiceClient::new(a_channel.clone()),
                VideocallServiceClient::new(b_channel.clone()),
            );
            open_pair(cell, b, grpc, j, options.sources)
        })
        .buffer_unordered(CONCURRENCY)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;

    let base = Instant::now();
    let stop = CancellationToken::new();
    let mut readers = JoinSet::new();
    let mut senders = Vec::new();
    let mut writers = JoinSet::new();
    let mut ends = Vec::new();
    for (j, pair) in pairs.into_iter().enumerate() {
        let owed = frames_of(j, options.signalers, options.frames);
        readers.spawn(receive(pair.callee_ws, base, owed, stop.clone()));
        let (tx, mut rx) = mpsc::channel::<String>(1024);
        senders.push(tx);
        let (mut write, mut read) = pair.caller_ws.split();
        writers.spawn(async move {
            // Acks are read so the replica's queue never backs up; error frames are counted.
            let refused = tokio::spawn(async move {
                let mut refused = 0u64;
                while let Some(Ok(message)) = read.next().await {
                    if let Message::Text(text) = message
                        && serde_json::from_str::<Value>(text.as_str())
                            .is_ok_and(|f| f["type"] == "error")
                    {
                        refused += 1;
                    }
                }
                refused
            });
            while let Some(frame) = rx.recv().await {
                write.send(Message::Text(frame.into())).await?;
            }
            // Every frame sent is answered before the socket closes: the replica handles a
            // socket's frames in order and writes the answer of each.
            write.send(Message::Close(None)).await?;
            let refused = tokio::time::timeout(PATIENCE, refused)
                .await
                .context("a caller socket still open long after its close")?;
            anyhow::Ok(refused.unwrap_or(0))
        });
        ends.push((pair.call, pair.caller));
    }

    let mut seq = vec![0u64; options.signalers];
    let period = Duration::from_secs(1) / options.rate.max(1);
    let started = Instant::now();
    for k in 0..options.frames {
        let due = started + period * u32::try_from(k).unwrap_or(u32::MAX);
        tokio::time::sleep_until(due.into()).await;
        let j = usize::try_from(k % options.signalers as u64).unwrap_or(0);
        let sent_us = u64::try_from(base.elapsed().as_micros()).unwrap_or(u64::MAX);
        let frame = json!({
            "type": "signal",
            "id": seq[j] + 1,
            "payload": {
                "callId": ends[j].0,
                "kind": "ice",
                "data": {
                    "candidate": "candidate:842163049 1 udp 1677729535 127.0.0.1 49170 typ host",
                    "sdpMid": "0",
                    "s": seq[j],
                    "t": sent_us,
                },
            },
        });
        seq[j] += 1;
        senders[j]
            .send(frame.to_string())
            .await
            .context("a caller socket stopped")?;
    }
    drop(senders);

    let stopper = {
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(PATIENCE).await;
            stop.cancel();
        })
    };
    let mut all = Vec::new();
    let mut disordered = 0;
    while let Some(done) = readers.join_next().await {
        let (latencies, wrong) = done??;
        all.extend(latencies);
        disordered += wrong;
    }
    let elapsed = started.elapsed();
    stopper.abort();
    let mut refused = 0;
    while let Some(done) = writers.join_next().await {
        refused += done??;
    }
    all.sort_unstable();

    let mut on_a = VideocallServiceClient::new(a_channel);
    let mut ended = 0;
    for (call, caller) in &ends {
        if end(&mut on_a, caller, call).await?.status == pb::CallStatus::Ended as i32 {
            ended += 1;
        }
    }
    Ok(RelayReport {
        signalers: options.signalers,
        sent: options.frames,
        refused,
        delivered: all.len() as u64,
        disordered,
        elapsed,
        latencies: Latencies(all),
        ended,
    })
}

/// Runs both parts against two `titan serve videocall` replicas on private datastores.
pub async fn videocall(options: &VideocallOptions) -> anyhow::Result<VideocallReport> {
    raise_file_limit()?;
    let cell = Cell::start_with(CellOptions {
        services: vec!["videocall".into()],
        config: Some(CONFIG.into()),
        release: options.release,
    })
    .await;
    let b = cell.replica();
    let setup = setup(&cell, &b, options).await?;
    let relay = relay(&cell, &b, options).await?;
    Ok(VideocallReport {
        setup,
        relay,
        rss: [rss(&cell.process)?, rss(&b.process)?],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_shared_round_robin_over_pairs() {
        assert_eq!(frames_of(0, 3, 10), 4);
        assert_eq!(frames_of(2, 3, 10), 3);
        assert_eq!((0..7).map(|j| frames_of(j, 7, 5_000)).sum::<u64>(), 5_000);
    }
}
