//! The WebSocket load generator, over `titan serve ping`'s `/v1/ping/ws` (kit::realtime as
//! every service uses it): first how many idle sockets one replica holds and what each costs
//! in resident memory, then the fan-out latency from a `publish` on one replica to every
//! subscriber of the topic on both replicas, through Redis pub/sub, drawn as a PNG histogram.
//!
//! Latency is measured in this process alone: the publisher writes the microseconds since a
//! shared start into the message, and a subscriber subtracts them from its own clock reading
//! once the frame is parsed, so no clocks are compared across processes.

use std::{
    fmt,
    net::{Ipv4Addr, SocketAddr},
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context, bail, ensure};
use futures::{SinkExt, StreamExt, stream};
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use serde_json::{Value, json};
use titan_e2e::{Cell, CellOptions, Process, Replica};
use tokio::{net::TcpSocket, sync::mpsc, task::JoinSet};
use tokio_tungstenite::{
    WebSocketStream, client_async,
    tungstenite::{Message, client::IntoClientRequest, http::HeaderValue},
};
use tokio_util::sync::CancellationToken;

use crate::Latencies;

const PATH: &str = "/v1/ping/ws";

/// No browser here, so no `Origin`; the connection limits are raised past what is measured so
/// that the replica, not its configuration, is what the figures describe.
const CONFIG: &str = "realtime: { allowMissingOrigin: true, maxConnections: 1000000 }\n";

/// File descriptors kept back from the limit for everything that is not a measured socket
/// (datastore pools, listeners, pipes, the runtime).
const RESERVED_FDS: u64 = 400;

/// Handshakes in flight at once while the sockets are opened.
const CONNECTING: usize = 256;

/// How long the benchmark waits for something that should happen (all sockets open, every
/// message delivered) before it reports what it has.
const PATIENCE: Duration = Duration::from_secs(120);

#[derive(Debug, Clone)]
pub struct WsOptions {
    /// Idle sockets to open on one replica (0 skips that part).
    pub idle: usize,
    /// Source addresses 127.0.0.1 ..= 127.0.0.<sources> the client sockets bind to, so the
    /// ephemeral ports of one address never run out.
    pub sources: u8,
    /// Subscribers, spread evenly over the two replicas.
    pub subscribers: usize,
    /// Topics; subscriber `i` listens to topic `i % topics`.
    pub topics: usize,
    /// Messages published per second, all publishers together.
    pub rate: u32,
    /// Publishing sockets, half on each replica. A socket's frames are handled one after the
    /// other (each `publish` waits for Redis), so few publishers at a high rate measure their
    /// own queue; many senders each sending a little is what a cell sees.
    pub publishers: usize,
    pub duration: Duration,
    /// Where the latency histogram is drawn.
    pub png: PathBuf,
    pub release: bool,
}

impl WsOptions {
    /// CI's short mode: a few hundred sockets, every message checked for exactly-once, in-order
    /// delivery across the two replicas, and the histogram drawn.
    pub fn quick(png: PathBuf) -> Self {
        Self {
            idle: 500,
            sources: 2,
            subscribers: 200,
            topics: 20,
            rate: 100,
            publishers: 4,
            duration: Duration::from_secs(2),
            png,
            release: false,
        }
    }
}

/// What the idle part measured.
#[derive(Debug, Default)]
pub struct IdleReport {
    pub requested: usize,
    /// Sockets the replica counted open at the measurement.
    pub held: usize,
    /// Why fewer than requested were opened, when they were.
    pub capped_by: Option<String>,
    pub opened_in: Duration,
    pub rss_before: u64,
    pub rss_after: u64,
}

impl IdleReport {
    pub fn bytes_per_socket(&self) -> u64 {
        match u64::try_from(self.held) {
            Ok(held) if held > 0 => self.rss_after.saturating_sub(self.rss_before) / held,
            _ => 0,
        }
    }

    /// The replica's resident memory with `sockets` idle sockets, at the measured cost each.
    pub fn projected_rss(&self, sockets: u64) -> u64 {
        self.rss_before + self.bytes_per_socket() * sockets
    }
}

/// What the fan-out part measured.
#[derive(Debug, Default)]
pub struct FanoutReport {
    pub subscribers: usize,
    pub topics: usize,
    pub publishers: usize,
    pub published: u64,
    pub publish_elapsed: Duration,
    /// Deliveries owed: each message times the subscribers of its topic.
    pub expected: u64,
    pub delivered: u64,
    /// Messages a subscriber saw twice or out of its publisher's order (must be 0).
    pub disordered: u64,
    pub latencies: Latencies,
    /// Resident memory of replica A and B after the run.
    pub rss: [u64; 2],
}

#[derive(Debug, Default)]
pub struct WsReport {
    pub idle: Option<IdleReport>,
    pub fanout: FanoutReport,
    pub png: Option<PathBuf>,
}

impl WsReport {
    /// Every owed delivery arrived once and in order.
    pub fn exact(&self) -> bool {
        self.fanout.delivered == self.fanout.expected && self.fanout.disordered == 0
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

impl fmt::Display for WsReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(idle) = &self.idle {
            writeln!(f, "ws idle sockets on one replica")?;
            writeln!(
                f,
                "  held                {:>10}  of {} requested, opened in {:.1} s",
                idle.held,
                idle.requested,
                idle.opened_in.as_secs_f64()
            )?;
            if let Some(why) = &idle.capped_by {
                writeln!(f, "  capped              {why}")?;
            }
            writeln!(
                f,
                "  replica RSS         {:.1} MiB before, {:.1} MiB with them: {:.1} KiB per socket",
                mib(idle.rss_before),
                mib(idle.rss_after),
                idle.bytes_per_socket() as f64 / 1024.0
            )?;
            let projected = idle.projected_rss(50_000);
            writeln!(
                f,
                "  50,000 sockets      {:.0} MiB projected at that cost (target < 2048 MiB: {})",
                mib(projected),
                if projected < 2 << 30 { "met" } else { "MISSED" }
            )?;
        }
        let out = &self.fanout;
        let secs = out.publish_elapsed.as_secs_f64();
        writeln!(
            f,
            "ws fan-out over two replicas: {} subscribers on {} topics, {} publishers",
            out.subscribers, out.topics, out.publishers
        )?;
        writeln!(
            f,
            "  published           {:>10}  ({:.0}/s for {secs:.1} s)",
            out.published,
            out.published as f64 / secs
        )?;
        writeln!(
            f,
            "  delivered           {:>10}  of {} owed ({:.0}/s), {} duplicated or out of order",
            out.delivered,
            out.expected,
            out.delivered as f64 / secs,
            out.disordered
        )?;
        let p99 = out.latencies.quantile(0.99);
        writeln!(
            f,
            "  latency             p50 {:?}  p99 {:?}  p99.9 {:?}  max {:?} (target p99 < 50 ms: {})",
            out.latencies.quantile(0.5),
            p99,
            out.latencies.quantile(0.999),
            out.latencies.quantile(1.0),
            if p99 < Duration::from_millis(50) {
                "met"
            } else {
                "MISSED"
            }
        )?;
        writeln!(
            f,
            "  replica RSS         A {:.1} MiB, B {:.1} MiB",
            mib(out.rss[0]),
            mib(out.rss[1])
        )?;
        if let Some(png) = &self.png {
            writeln!(f, "  histogram           {}", png.display())?;
        }
        Ok(())
    }
}

/// A client WebSocket (the chat load generator's too).
pub(crate) type Socket = WebSocketStream<tokio::net::TcpStream>;

/// Raises this process's soft file limit to the hard one (children inherit it) and returns
/// it: both ends of every socket live on this machine, each end in one process.
pub(crate) fn raise_file_limit() -> anyhow::Result<u64> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).context("read the file limit")?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).context("raise the file limit")?;
    }
    Ok(hard)
}

/// Resident memory of a process, from `/proc/<pid>/status`.
pub(crate) fn rss(process: &Process) -> anyhow::Result<u64> {
    let path = format!("/proc/{}/status", process.id());
    let status = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
    let kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .with_context(|| format!("no VmRSS in {path}"))?;
    Ok(kib * 1024)
}

/// The `titan_realtime_connections` gauge of a replica's admin port.
async fn open_sockets(admin: SocketAddr) -> anyhow::Result<usize> {
    metric(admin, "titan_realtime_connections")
        .await?
        .context("no titan_realtime_connections in /metrics")
}

/// The value of one series (name and labels exactly as Prometheus text writes them) on a
/// replica's /metrics, `None` while the replica has not written it yet.
async fn metric(admin: SocketAddr, series: &str) -> anyhow::Result<Option<usize>> {
    let text = reqwest::get(format!("http://{admin}/metrics"))
        .await
        .context("read /metrics")?
        .text()
        .await
        .context("read /metrics")?;
    Ok(text.lines().find_map(|line| {
        line.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    }))
}

/// Waits until a replica counts `want` open sockets.
async fn wait_open(admin: SocketAddr, want: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let open = open_sockets(admin).await?;
        if open == want {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "the replica counts {open} open sockets, not {want}, after {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One client socket to `path` from source address 127.0.0.`source`, authenticated as a
/// token's user.
pub(crate) async fn connect(
    http: SocketAddr,
    path: &str,
    source: u8,
    token: &str,
) -> anyhow::Result<Socket> {
    let socket = TcpSocket::new_v4()?;
    socket
        .bind(SocketAddr::from((Ipv4Addr::new(127, 0, 0, source), 0)))
        .with_context(|| format!("bind 127.0.0.{source}"))?;
    let stream = socket
        .connect(http)
        .await
        .with_context(|| format!("connect to {http} from 127.0.0.{source}"))?;
    let mut request = format!("ws://{http}{path}").into_client_request()?;
    request.headers_mut().insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {token}"))?,
    );
    let (ws, _) = client_async(request, stream)
        .await
        .context("websocket handshake")?;
    Ok(ws)
}

/// Opens `count` sockets to `http`, users `<prefix><i>`, `CONNECTING` handshakes at a time.
async fn open_many(
    cell: &Cell,
    http: SocketAddr,
    prefix: &str,
    range: std::ops::Range<usize>,
    sources: u8,
) -> anyhow::Result<Vec<Socket>> {
    let sources = sources.max(1);
    stream::iter(range)
        .map(|i| {
            let token = cell.token(&format!("{prefix}{i}"), &[]);
            // `i % sources` < sources ≤ 255, so it fits; 0 is not a loopback source.
            let source = u8::try_from(i % usize::from(sources)).unwrap_or(0) + 1;
            async move { connect(http, PATH, source, &token).await }
        })
        .buffer_unordered(CONNECTING)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

/// Keeps sockets open and answers the replica's pings (tungstenite queues a pong for every
/// ping it reads and sends it with the next read), until cancelled.
fn hold(sockets: Vec<Socket>, stop: &CancellationToken) -> JoinSet<()> {
    let mut tasks = JoinSet::new();
    for mut ws in sockets {
        let stop = stop.clone();
        tasks.spawn(async move {
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    next = ws.next() => if !matches!(next, Some(Ok(_))) { return },
                }
            }
        });
    }
    tasks
}

async fn idle(cell: &Cell, options: &WsOptions, file_limit: u64) -> anyhow::Result<IdleReport> {
    let fits = usize::try_from(file_limit.saturating_sub(RESERVED_FDS)).unwrap_or(usize::MAX);
    let (count, capped_by) = if options.idle > fits {
        (
            fits,
            Some(format!(
                "the hard file limit (RLIMIT_NOFILE) is {file_limit}: {fits} sockets per process \
                 after {RESERVED_FDS} reserved; raising it needs CAP_SYS_RESOURCE"
            )),
        )
    } else {
        (options.idle, None)
    };
    wait_open(cell.admin, 0).await?;
    let rss_before = rss(&cell.process)?;
    let started = Instant::now();
    let sockets = open_many(cell, cell.http, "idle-", 0..count, options.sources).await?;
    let opened_in = started.elapsed();
    let stop = CancellationToken::new();
    let mut held = hold(sockets, &stop);
    wait_open(cell.admin, count).await?;
    // Let the replica's allocations for the new sockets settle (first pings, buffers).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after = rss(&cell.process)?;
    let held_now = open_sockets(cell.admin).await?;
    stop.cancel();
    while held.join_next().await.is_some() {}
    wait_open(cell.admin, 0).await?;
    Ok(IdleReport {
        requested: options.idle,
        held: held_now,
        capped_by,
        opened_in,
        rss_before,
        rss_after,
    })
}

/// Reads one socket's frames until `stop`: the acks of its `subscribe` and `publish` frames and
/// the messages of its topic. For a subscriber, returns each message's latency and how many
/// arrived twice or out of order.
async fn read_subscriber(
    mut ws: Socket,
    topic: String,
    base: Instant,
    stop: CancellationToken,
    owed: u64,
) -> anyhow::Result<(Vec<u32>, u64)> {
    ws.send(Message::Text(
        json!({"type": "subscribe", "id": 1, "payload": {"topic": topic}})
            .to_string()
            .into(),
    ))
    .await?;
    let mut arrivals = Arrivals::expecting(owed);
    loop {
        let message = tokio::select! {
            () = stop.cancelled() => break,
            message = ws.next() => message,
        };
        let text = match message {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(frame))) => bail!("subscriber closed by the replica: {frame:?}"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.into()),
            None => bail!("subscriber socket ended"),
        };
        let now = base.elapsed();
        let frame: Value = serde_json::from_str(text.as_str())?;
        match frame["type"].as_str() {
            Some("message") => {
                if !arrivals.record(&frame["payload"]["data"], now) {
                    bail!("a message without its sequence and time: {text}");
                }
                if arrivals.complete() {
                    break;
                }
            }
            Some("ack") => {}
            _ => bail!("unexpected frame: {text}"),
        }
    }
    Ok(arrivals.into_parts())
}

/// What a receiver of numbered, timestamped frames (`{"s": seq, "t": µs since the run's base}`)
/// saw: each frame's latency, and how many came twice or out of order.
#[derive(Debug)]
pub(crate) struct Arrivals {
    owed: u64,
    next_seq: u64,
    disordered: u64,
    latencies: Vec<u32>,
}

impl Arrivals {
    pub(crate) fn expecting(owed: u64) -> Self {
        Self {
            owed,
            next_seq: 0,
            disordered: 0,
            latencies: Vec::with_capacity(usize::try_from(owed).unwrap_or(0)),
        }
    }

    /// Records a frame's `data` received `now` after the base; false when it carries no
    /// sequence and time.
    pub(crate) fn record(&mut self, data: &Value, now: Duration) -> bool {
        let (Some(seq), Some(sent_us)) = (data["s"].as_u64(), data["t"].as_u64()) else {
            return false;
        };
        if seq == self.next_seq {
            self.next_seq += 1;
        } else {
            self.disordered += 1;
            self.next_seq = self.next_seq.max(seq + 1);
        }
        let micros = u64::try_from(now.as_micros())
            .unwrap_or(u64::MAX)
            .saturating_sub(sent_us);
        self.latencies
            .push(u32::try_from(micros).unwrap_or(u32::MAX));
        true
    }

    /// Whether every owed frame has come.
    pub(crate) fn complete(&self) -> bool {
        self.latencies.len() as u64 >= self.owed
    }

    /// (latencies, frames that came twice or out of order).
    pub(crate) fn into_parts(self) -> (Vec<u32>, u64) {
        (self.latencies, self.disordered)
    }
}

/// How many of `total` messages, sent round-robin over `topics`, go to `topic`.
fn messages_of(topic: usize, topics: usize, total: u64) -> u64 {
    let (topics, topic) = (topics as u64, topic as u64);
    total / topics + u64::from(topic < total % topics)
}

async fn fanout(cell: &Cell, b: &Replica, options: &WsOptions) -> anyhow::Result<FanoutReport> {
    ensure!(
        options.topics > 0 && options.subscribers >= options.topics,
        "every topic needs a subscriber: {} subscribers for {} topics",
        options.subscribers,
        options.topics
    );
    ensure!(
        options.publishers >= 2,
        "at least one publisher on each replica"
    );
    let total = u64::from(options.rate) * options.duration.as_secs().max(1);
    ensure!(
        total >= options.topics as u64,
        "{total} messages leave topics without any: publish at least one per topic"
    );
    let half = options.subscribers / 2;
    let mut sockets = open_many(cell, cell.http, "sub-", 0..half, options.sources).await?;
    sockets.extend(
        open_many(
            cell,
            b.http,
            "sub-",
            half..options.subscribers,
            options.sources,
        )
        .await?,
    );
    // Half the publishers on each replica; topic `t` is always published by publisher
    // `t % publishers`, so each topic has one sender and its order is that sender's order.
    let senders_half = options.publishers / 2;
    let mut publishers =
        open_many(cell, cell.http, "pub-", 0..senders_half, options.sources).await?;
    publishers.extend(
        open_many(
            cell,
            b.http,
            "pub-",
            senders_half..options.publishers,
            options.sources,
        )
        .await?,
    );

    let base = Instant::now();
    let stop = CancellationToken::new();
    let mut readers = JoinSet::new();
    for (i, ws) in sockets.into_iter().enumerate() {
        let topic = i % options.topics;
        let owed = messages_of(topic, options.topics, total);
        readers.spawn(read_subscriber(
            ws,
            format!("t{topic}"),
            base,
            stop.clone(),
            owed,
        ));
    }
    // Every subscription is confirmed by Redis before its ack; both replicas' gauges then say
    // the sockets are open, and a publication now reaches them all.
    wait_open(cell.admin, half + senders_half).await?;
    wait_open(
        b.admin,
        options.subscribers - half + options.publishers - senders_half,
    )
    .await?;
    wait_subscribed(&cell.admin, &b.admin, options.subscribers).await?;

    let mut senders = Vec::new();
    let mut writers = JoinSet::new();
    for ws in publishers {
        let (tx, mut rx) = mpsc::channel::<String>(1024);
        senders.push(tx);
        let (mut write, mut read) = ws.split();
        writers.spawn(async move {
            // The acks are read (and dropped) so that the replica's queue never backs up.
            let drain = tokio::spawn(async move { while let Some(Ok(_)) = read.next().await {} });
            while let Some(frame) = rx.recv().await {
                write.send(Message::Text(frame.into())).await?;
            }
            drain.abort();
            anyhow::Ok(())
        });
    }
    let mut seq = vec![0u64; options.topics];
    let period = Duration::from_secs(1) / options.rate.max(1);
    let started = Instant::now();
    for k in 0..total {
        let due = started + period * u32::try_from(k).unwrap_or(u32::MAX);
        tokio::time::sleep_until(due.into()).await;
        let topic = usize::try_from(k % options.topics as u64).unwrap_or(0);
        let sent_us = u64::try_from(base.elapsed().as_micros()).unwrap_or(u64::MAX);
        let frame = json!({
            "type": "publish",
            "payload": {"topic": format!("t{topic}"), "data": {"s": seq[topic], "t": sent_us}},
        });
        seq[topic] += 1;
        senders[topic % senders.len()]
            .send(frame.to_string())
            .await
            .context("a publisher stopped")?;
    }
    let publish_elapsed = started.elapsed();
    drop(senders);
    while let Some(done) = writers.join_next().await {
        done??;
    }

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
    stopper.abort();
    all.sort_unstable();
    let expected = (0..options.subscribers)
        .map(|i| messages_of(i % options.topics, options.topics, total))
        .sum();
    Ok(FanoutReport {
        subscribers: options.subscribers,
        topics: options.topics,
        publishers: options.publishers,
        published: total,
        publish_elapsed,
        expected,
        delivered: all.len() as u64,
        disordered,
        latencies: Latencies(all),
        rss: [rss(&cell.process)?, rss(&b.process)?],
    })
}

/// Waits until every subscriber's `subscribe` frame was handled on its replica: the frames-in
/// counters of type `subscribe` add up to `subscribers`. The ack itself comes after Redis
/// confirmed the channel, so a frame counted and acked is a topic that receives.
async fn wait_subscribed(a: &SocketAddr, b: &SocketAddr, subscribers: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let mut acked = 0;
        for admin in [a, b] {
            // No acknowledgement sent yet: the counter is not written until its first.
            acked += metric(*admin, "titan_realtime_frames_out_total{type=\"ack\"}")
                .await?
                .unwrap_or(0);
        }
        if acked >= subscribers {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "{acked} of {subscribers} subscriptions acknowledged after {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs both parts against `titan serve ping` (two replicas on private datastores).
pub async fn ws(options: &WsOptions) -> anyhow::Result<WsReport> {
    let file_limit = raise_file_limit()?;
    let cell = Cell::start_with(CellOptions {
        services: vec!["ping".into()],
        config: Some(CONFIG.into()),
        release: options.release,
    })
    .await;
    let b = cell.replica();
    let idle = if options.idle > 0 {
        Some(idle(&cell, options, file_limit).await?)
    } else {
        None
    };
    let fanout = fanout(&cell, &b, options).await?;
    crate::plot::histogram(
        &fanout.latencies,
        crate::plot::Labels {
            title: "WebSocket fan-out latency",
            items: "deliveries",
            span: "publish to subscriber",
        },
        &options.png,
    )?;
    Ok(WsReport {
        idle,
        fanout,
        png: Some(options.png.clone()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_shared_round_robin_over_topics() {
        assert_eq!(messages_of(0, 3, 10), 4);
        assert_eq!(messages_of(1, 3, 10), 3);
        assert_eq!(messages_of(2, 3, 10), 3);
        assert_eq!((0..7).map(|t| messages_of(t, 7, 1000)).sum::<u64>(), 1000);
    }

    #[test]
    fn the_cost_per_socket_is_the_growth_over_the_sockets() {
        let idle = IdleReport {
            held: 1000,
            rss_before: 50 << 20,
            rss_after: (50 << 20) + 10_240_000,
            ..IdleReport::default()
        };
        assert_eq!(idle.bytes_per_socket(), 10_240);
        assert_eq!(idle.projected_rss(50_000), (50 << 20) + 512_000_000);
    }
}
