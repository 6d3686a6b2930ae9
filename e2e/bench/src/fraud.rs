//! The fraud load generator: `titan serve fraud` (release) over users with realistic
//! histories — earlier decisions in PostgreSQL (amounts for the anomaly, first-seen devices
//! and IPs) and a week of velocity entries in Redis per user, card, device and IP — then
//! `CheckTransaction` at a fixed rate (client latency from the request's send, server latency
//! from the service's `titan_fraud_check_seconds` histogram), then as fast as a fixed number
//! of concurrent callers go (the maximum sustained rate).

use std::{
    collections::BTreeMap,
    fmt,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, ensure};
use rand::{Rng, SeedableRng, rngs::StdRng};
use titan_e2e::{Cell, CellOptions, authed, process::cpu_by_command};
use titan_kit::reexport::{redis, sqlx};
use titan_proto::fraud::v1::{self as pb, fraud_service_client::FraudServiceClient};
use tonic::transport::Channel;

use crate::Latencies;

#[derive(Debug, Clone)]
pub struct FraudOptions {
    pub users: u32,
    /// Earlier transactions per user (a week of them).
    pub history: u32,
    /// Checks per second in the fixed-rate phase.
    pub rate: u32,
    pub duration: Duration,
    /// Concurrent callers of the maximum-rate phase.
    pub clients: usize,
    pub max_duration: Duration,
    /// HTTP/2 connections the callers share.
    pub connections: usize,
    pub release: bool,
}

impl FraudOptions {
    /// CI's short mode: a few users, for the checks only.
    pub fn quick() -> Self {
        Self {
            users: 500,
            history: 5,
            rate: 200,
            duration: Duration::from_secs(2),
            clients: 8,
            max_duration: Duration::from_secs(2),
            connections: 2,
            release: false,
        }
    }
}

#[derive(Debug, Default)]
pub struct FraudReport {
    pub users: u32,
    pub history: u32,
    pub rate: u32,
    pub sent: u64,
    pub failed: u64,
    pub degraded: u64,
    pub elapsed: Duration,
    pub client: Latencies,
    /// Upper bounds of the histogram buckets holding the server-side p50 and p99.
    pub server_p50: Option<f64>,
    pub server_p99: Option<f64>,
    /// The share of checks the service answered within the target's 2 ms (a bucket bound), so
    /// a p99 one bucket over says how far over it is.
    pub server_within_target: Option<f64>,
    /// Where the server's time went, stage by stage.
    pub stages: Vec<Stage>,
    /// Checks of the fixed-rate phase that scored from the history cached in Redis, and from
    /// PostgreSQL (not cached yet, or Redis down).
    pub from_redis: u64,
    pub from_postgres: u64,
    /// The service's CPU time (every thread) over the fixed-rate phase.
    pub service_cpu: Duration,
    /// Cores each program used over the fixed-rate phase ([`MACHINE`] order, then everything
    /// else): the service, its datastores and this load generator share the machine.
    pub machine: Vec<(&'static str, f64)>,
    pub max_checks: u64,
    pub max_failed: u64,
    pub max_elapsed: Duration,
    pub max_client: Latencies,
}

/// One stage of the server's checks over the fixed-rate phase.
#[derive(Debug)]
pub struct Stage {
    pub name: &'static str,
    /// Exact, from the histogram's sum and count.
    pub mean: Option<Duration>,
    /// The bound of the bucket holding the p99.
    pub p99: Option<f64>,
}

impl FraudReport {
    /// Every check answered, none degraded.
    pub fn held(&self) -> bool {
        self.failed == 0 && self.max_failed == 0 && self.degraded == 0 && self.sent > 0
    }
}

fn ms(s: Option<f64>) -> String {
    match s {
        None => "n/a".into(),
        Some(s) if s.is_infinite() => "beyond the largest bucket (100 ms)".into(),
        Some(s) => format!("<= {:.2} ms", s * 1000.0),
    }
}

impl fmt::Display for FraudReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "fraud over {} users with {} earlier transactions each (PostgreSQL and Redis)",
            self.users, self.history
        )?;
        let secs = self.elapsed.as_secs_f64();
        writeln!(
            f,
            "  fixed rate {}/s     {} checks in {secs:.1} s ({:.0}/s), {} failed, {} degraded",
            self.rate,
            self.sent,
            self.sent as f64 / secs,
            self.failed,
            self.degraded
        )?;
        writeln!(
            f,
            "  client latency      p50 {:?}  p99 {:?}  p99.9 {:?}  (target p99 < 5 ms)",
            self.client.quantile(0.5),
            self.client.quantile(0.99),
            self.client.quantile(0.999)
        )?;
        writeln!(
            f,
            "  server latency      p50 {}  p99 {}, {} within 2 ms  (histogram bucket bounds; target p99 < 2 ms)",
            ms(self.server_p50),
            ms(self.server_p99),
            self.server_within_target
                .map_or_else(|| "n/a".into(), |s| format!("{:.2} %", s * 100.0))
        )?;
        for st in &self.stages {
            writeln!(
                f,
                "    {:<8}          mean {:?}  p99 {}",
                st.name,
                st.mean.unwrap_or_default(),
                ms(st.p99)
            )?;
        }
        writeln!(
            f,
            "  service cpu         {:.0} µs per check ({:.2} of a core at the offered rate)",
            self.service_cpu.as_secs_f64() * 1e6 / self.sent.max(1) as f64,
            self.service_cpu.as_secs_f64() / secs
        )?;
        let total: f64 = self.machine.iter().map(|(_, c)| c).sum();
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        write!(f, "  machine cpu         {total:.2} of {cores} cores:")?;
        for (name, c) in &self.machine {
            write!(f, " {name} {c:.2}")?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "  user histories      {} from the Redis copy, {} from PostgreSQL",
            self.from_redis, self.from_postgres
        )?;
        let secs = self.max_elapsed.as_secs_f64();
        write!(
            f,
            "  maximum sustained   {:.0} checks/s ({} in {secs:.1} s, {} failed), p50 {:?}  p99 {:?}",
            self.max_checks as f64 / secs,
            self.max_checks,
            self.max_failed,
            self.max_client.quantile(0.5),
            self.max_client.quantile(0.99)
        )
    }
}

fn ip(i: u32) -> String {
    format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255)
}

/// Histories straight into the stores: the measurement is the check, not the seeding.
async fn seed(cell: &Cell, o: &FraudOptions) -> anyhow::Result<()> {
    let pool = &cell.db.pool;
    sqlx::query(
        "INSERT INTO fraud_users (user_id, first_seen_at, account_created_at, successful_orders)
         SELECT 'u' || i, now() - interval '200 days', now() - interval '300 days', i % 20
           FROM generate_series(0, $1 - 1) AS i",
    )
    .bind(i64::from(o.users))
    .execute(pool)
    .await
    .context("seed users")?;
    sqlx::query(
        "INSERT INTO fraud_seen (user_id, kind, value, first_seen_at)
         SELECT 'u' || i, k.kind,
                CASE k.kind WHEN 'device' THEN 'd' || i
                     ELSE '10.' || ((i >> 16) & 255) || '.' || ((i >> 8) & 255) || '.' || (i & 255) END,
                now() - interval '200 days'
           FROM generate_series(0, $1 - 1) AS i, (VALUES ('device'), ('ip')) AS k(kind)",
    )
    .bind(i64::from(o.users))
    .execute(pool)
    .await
    .context("seed first-seen")?;
    sqlx::query(
        "INSERT INTO fraud_decisions (transaction_id, user_id, amount, currency, request, facts,
             features, reasons, rule_hits, score, level, decision, degraded, decided_at)
         SELECT 'h' || i || '-' || j, 'u' || i, 2000 + (i * 7 + j * 131) % 3000, 'EUR', '{}', '{}',
                array_fill(0::float8, ARRAY[10]), '[]', '[]', 0, 'LOW', 'APPROVE', false,
                now() - make_interval(hours => (j * 7 * 24 / ($2 + 1))::int)
           FROM generate_series(0, $1 - 1) AS i, generate_series(1, $2) AS j",
    )
    .bind(i64::from(o.users))
    .bind(i64::from(o.history))
    .execute(pool)
    .await
    .context("seed decisions")?;
    sqlx::query("ANALYZE")
        .execute(pool)
        .await
        .context("analyze")?;

    let mut conn = cell.redis.handle.conn.clone();
    let now = chrono::Utc::now().timestamp_millis();
    let week = 7 * 86_400_000_i64;
    for chunk in (0..o.users).collect::<Vec<_>>().chunks(500) {
        let mut pipe = redis::pipe();
        for &i in chunk {
            let keys = [
                format!("user:u{i}"),
                format!("card:c{i}"),
                format!("device:d{i}"),
                format!("ip:{}", ip(i)),
            ];
            for key in keys {
                let key = cell.redis.handle.key(&format!("fraud:v:{key}"));
                for j in 1..=o.history {
                    let at = now - week * i64::from(j) / i64::from(o.history + 1);
                    let amount = 2000 + (i * 7 + j * 131) % 3000;
                    pipe.zadd(&key, format!("{amount}:h{i}-{j}"), at).ignore();
                }
            }
        }
        pipe.query_async::<()>(&mut conn)
            .await
            .context("seed velocity")?;
    }
    Ok(())
}

fn request(user: u32, n: u64, rng: &mut StdRng) -> pb::CheckTransactionRequest {
    pb::CheckTransactionRequest {
        transaction_id: format!("b{n}"),
        user_id: format!("u{user}"),
        amount: rng.random_range(2_000..5_000),
        currency: "EUR".into(),
        ip: ip(user),
        device_fingerprint: format!("d{user}"),
        card_fingerprint: format!("c{user}"),
        user_agent: "titan-bench".into(),
        country: "FR".into(),
        billing_country: "FR".into(),
        shipping_country: "FR".into(),
        ..pb::CheckTransactionRequest::default()
    }
}

/// The programs whose share of the machine the report names; the rest is summed as "other".
const MACHINE: [&str; 4] = ["titan", "postgres", "redis-server", "titan-bench"];

/// Cores each of [`MACHINE`] (and all other programs together) used between two readings.
fn machine_cores(
    before: &BTreeMap<String, Duration>,
    after: &BTreeMap<String, Duration>,
    over: Duration,
) -> Vec<(&'static str, f64)> {
    let secs = over.as_secs_f64().max(f64::EPSILON);
    let mut named = [0.0; MACHINE.len()];
    let mut other = 0.0;
    for (comm, cpu) in after {
        let used = cpu.saturating_sub(before.get(comm).copied().unwrap_or_default());
        let cores = used.as_secs_f64() / secs;
        match MACHINE.iter().position(|m| m == comm) {
            Some(i) => named[i] += cores,
            None => other += cores,
        }
    }
    MACHINE
        .into_iter()
        .zip(named)
        .chain([("other", other)])
        .collect()
}

/// The server-side p99 target in seconds: a bound of `titan_fraud_check_seconds`' buckets.
const SERVER_TARGET: f64 = 0.002;

/// The stages of a check the service times (`titan_fraud_check_stage_seconds{stage}`).
const STAGES: [&str; 3] = ["history", "score", "store"];

/// One histogram as the service's /metrics said at one moment.
#[derive(Debug, Default, Clone)]
struct Histo {
    /// Cumulative counts by bucket bound.
    buckets: Vec<(f64, u64)>,
    count: u64,
    sum: f64,
}

impl Histo {
    /// Reads one line of the histogram whose series start with `prefix` (the name and any
    /// labels before `le`, e.g. `m_bucket{stage="score",`); false when the line is not its.
    fn read(&mut self, name: &str, labels: &str, line: &str) -> anyhow::Result<bool> {
        let bucket = format!("{name}_bucket{{{labels}le=\"");
        let (count, sum) = if labels.is_empty() {
            (format!("{name}_count "), format!("{name}_sum "))
        } else {
            let l = labels.trim_end_matches(',');
            (
                format!("{name}_count{{{l}}} "),
                format!("{name}_sum{{{l}}} "),
            )
        };
        if let Some(rest) = line.strip_prefix(&bucket) {
            let (le, value) = rest.split_once("\"} ").context("bucket line")?;
            // `+Inf` is kept (as infinity): a quantile past the largest finite bound is still
            // a measurement, not a missing one.
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse()?
            };
            self.buckets.push((le, value.trim().parse()?));
        } else if let Some(v) = line.strip_prefix(&count) {
            self.count = v.trim().parse()?;
        } else if let Some(v) = line.strip_prefix(&sum) {
            self.sum = v.trim().parse()?;
        } else {
            return Ok(false);
        }
        Ok(true)
    }

    /// The bound of the first bucket holding quantile `q` of what was observed since
    /// `before` (infinity past the largest finite bound); `None` only when nothing was.
    fn quantile(&self, before: &Histo, q: f64) -> Option<f64> {
        let total = self.count.saturating_sub(before.count);
        if total == 0 {
            return None;
        }
        let need = (total as f64 * q).ceil() as u64;
        self.buckets
            .iter()
            .zip(&before.buckets)
            .find(|((_, a), (_, b))| a.saturating_sub(*b) >= need)
            .map(|((le, _), _)| *le)
    }

    /// The share of what was observed since `before` that fell within `bound`, which must be
    /// one of the bucket bounds; `None` when nothing was observed or `bound` is not a bound.
    fn share_within(&self, before: &Histo, bound: f64) -> Option<f64> {
        let total = self.count.saturating_sub(before.count);
        let within = self
            .buckets
            .iter()
            .zip(&before.buckets)
            .find(|((le, _), _)| *le == bound)
            .map(|((_, a), (_, b))| a.saturating_sub(*b))?;
        (total > 0).then(|| within as f64 / total as f64)
    }

    /// The mean of what was observed since `before`.
    fn mean(&self, before: &Histo) -> Option<Duration> {
        let n = self.count.saturating_sub(before.count);
        (n > 0).then(|| Duration::from_secs_f64((self.sum - before.sum).max(0.0) / n as f64))
    }
}

/// What the service's /metrics said at one moment.
#[derive(Debug, Default)]
struct Scrape {
    /// `titan_fraud_check_seconds`: a whole check.
    check: Histo,
    /// `titan_fraud_check_stage_seconds`, in the order of [`STAGES`].
    stages: [Histo; 3],
    /// `titan_fraud_history_reads_total` by store.
    from_redis: u64,
    from_postgres: u64,
}

async fn scrape(cell: &Cell) -> anyhow::Result<Scrape> {
    let text = reqwest::get(format!("http://{}/metrics", cell.admin))
        .await
        .context("read /metrics")?
        .text()
        .await
        .context("read /metrics")?;
    let mut s = Scrape::default();
    let stage_labels = STAGES.map(|st| format!("stage=\"{st}\","));
    'line: for line in text.lines() {
        if s.check.read("titan_fraud_check_seconds", "", line)? {
            continue;
        }
        for (h, labels) in s.stages.iter_mut().zip(&stage_labels) {
            if h.read("titan_fraud_check_stage_seconds", labels, line)? {
                continue 'line;
            }
        }
        if let Some(v) = line.strip_prefix("titan_fraud_history_reads_total{store=\"redis\"} ") {
            s.from_redis = v.trim().parse()?;
        } else if let Some(v) =
            line.strip_prefix("titan_fraud_history_reads_total{store=\"postgres\"} ")
        {
            s.from_postgres = v.trim().parse()?;
        }
    }
    Ok(s)
}

pub async fn fraud(o: &FraudOptions) -> anyhow::Result<FraudReport> {
    let cell = Cell::start_with(CellOptions {
        services: vec!["fraud".into()],
        config: None,
        release: o.release,
    })
    .await;
    seed(&cell, o).await?;
    let mut channels = Vec::new();
    for _ in 0..o.connections.max(1) {
        channels.push(FraudServiceClient::new(cell.channel().await));
    }
    let token = cell.token("checkout", &["service"]);
    let next = Arc::new(AtomicU64::new(0));

    // Warm-up, outside the measurement: connections, pools and plans, and one check per user,
    // as each user's previous checkout would have made — so their history is cached in Redis
    // as in a running cell.
    warm(&channels, &token, o.users, o.clients, &next).await?;
    let before = scrape(&cell).await?;
    let cpu_before = cell.process.cpu_time().context("service cpu time")?;
    let machine_before = cpu_by_command().context("cpu by command")?;
    let (sent, failed, degraded, elapsed, client) =
        run_fixed(&channels, &token, o.users, o.rate, o.duration, &next).await?;
    let service_cpu = cell
        .process
        .cpu_time()
        .context("service cpu time")?
        .saturating_sub(cpu_before);
    let machine = machine_cores(
        &machine_before,
        &cpu_by_command().context("cpu by command")?,
        elapsed,
    );
    let after = scrape(&cell).await?;
    ensure!(
        after.check.count > before.check.count,
        "the service observed no checks"
    );

    let checks = Arc::new(AtomicU64::new(0));
    let max_failed = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..o.clients {
        let mut client = channels[c % channels.len()].clone();
        let (token, next, checks, max_failed) = (
            token.clone(),
            next.clone(),
            checks.clone(),
            max_failed.clone(),
        );
        let (users, deadline) = (o.users, start + o.max_duration);
        tasks.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(c as u64);
            let mut lat = Vec::new();
            while Instant::now() < deadline {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let req = request(rng.random_range(0..users), n, &mut rng);
                let t0 = Instant::now();
                let ok = client.check_transaction(authed(req, &token)).await.is_ok();
                lat.push(u32::try_from(t0.elapsed().as_micros()).unwrap_or(u32::MAX));
                checks.fetch_add(1, Ordering::Relaxed);
                if !ok {
                    max_failed.fetch_add(1, Ordering::Relaxed);
                }
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.context("caller task")?);
    }
    let max_elapsed = start.elapsed();
    all.sort_unstable();

    Ok(FraudReport {
        users: o.users,
        history: o.history,
        rate: o.rate,
        sent,
        failed,
        degraded,
        elapsed,
        client,
        server_p50: after.check.quantile(&before.check, 0.5),
        server_p99: after.check.quantile(&before.check, 0.99),
        server_within_target: after.check.share_within(&before.check, SERVER_TARGET),
        stages: STAGES
            .iter()
            .zip(after.stages.iter().zip(&before.stages))
            .map(|(name, (a, b))| Stage {
                name,
                mean: a.mean(b),
                p99: a.quantile(b, 0.99),
            })
            .collect(),
        from_redis: after.from_redis - before.from_redis,
        from_postgres: after.from_postgres - before.from_postgres,
        service_cpu,
        machine,
        max_checks: checks.load(Ordering::Relaxed),
        max_failed: max_failed.load(Ordering::Relaxed),
        max_elapsed,
        max_client: Latencies(all),
    })
}

/// Checks every user once from `callers` concurrent callers; fails if any check fails.
async fn warm(
    channels: &[FraudServiceClient<Channel>],
    token: &str,
    users: u32,
    callers: usize,
    next: &Arc<AtomicU64>,
) -> anyhow::Result<()> {
    let user = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for c in 0..callers.max(1) {
        let mut client = channels[c % channels.len()].clone();
        let (token, next, user) = (token.to_owned(), next.clone(), user.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(c as u64);
            loop {
                let u = user.fetch_add(1, Ordering::Relaxed);
                let Ok(u) = u32::try_from(u) else { break };
                if u >= users {
                    break;
                }
                let n = next.fetch_add(1, Ordering::Relaxed);
                client
                    .check_transaction(authed(request(u, n, &mut rng), &token))
                    .await
                    .context("warm-up check")?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await.context("warm-up task")??;
    }
    Ok(())
}

/// Sends checks at `rate` per second for `duration` whatever the answers take (an open loop,
/// so a slow answer does not slow the offered load), and returns (sent, failed, degraded,
/// elapsed, client latencies).
async fn run_fixed(
    channels: &[FraudServiceClient<Channel>],
    token: &str,
    users: u32,
    rate: u32,
    duration: Duration,
    next: &AtomicU64,
) -> anyhow::Result<(u64, u64, u64, Duration, Latencies)> {
    let total = (f64::from(rate) * duration.as_secs_f64()) as u64;
    let mut rng = StdRng::seed_from_u64(total);
    let start = tokio::time::Instant::now();
    let mut handles = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    for i in 0..total {
        tokio::time::sleep_until(start + Duration::from_secs_f64(i as f64 / f64::from(rate))).await;
        let n = next.fetch_add(1, Ordering::Relaxed);
        let req = authed(request(rng.random_range(0..users), n, &mut rng), token);
        let mut client = channels[usize::try_from(i).unwrap_or(0) % channels.len()].clone();
        handles.push(tokio::spawn(async move {
            let t0 = Instant::now();
            let answer = client.check_transaction(req).await;
            (t0.elapsed(), answer.map(|a| a.into_inner().degraded))
        }));
    }
    let (mut failed, mut degraded) = (0, 0);
    let mut lat = Vec::with_capacity(handles.len());
    for h in handles {
        let (took, answer) = h.await.context("check task")?;
        lat.push(u32::try_from(took.as_micros()).unwrap_or(u32::MAX));
        match answer {
            Ok(true) => degraded += 1,
            Ok(false) => {}
            Err(_) => failed += 1,
        }
    }
    let elapsed = start.elapsed();
    lat.sort_unstable();
    Ok((total, failed, degraded, elapsed, Latencies(lat)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
titan_fraud_check_stage_seconds_bucket{stage=\"store\",le=\"0.001\"} 3
titan_fraud_check_stage_seconds_bucket{stage=\"store\",le=\"0.002\"} 9
titan_fraud_check_stage_seconds_bucket{stage=\"store\",le=\"+Inf\"} 10
titan_fraud_check_stage_seconds_sum{stage=\"store\"} 0.025
titan_fraud_check_stage_seconds_count{stage=\"store\"} 10
titan_fraud_check_seconds_bucket{le=\"0.001\"} 1
titan_fraud_check_seconds_count 1
";

    #[test]
    fn the_machine_is_split_by_program_and_the_rest_summed() {
        let ms = Duration::from_millis;
        let before = BTreeMap::from([
            ("titan".to_owned(), ms(1_000)),
            ("postgres".to_owned(), ms(500)),
            ("rustc".to_owned(), ms(100)),
        ]);
        let after = BTreeMap::from([
            ("titan".to_owned(), ms(2_500)),
            ("postgres".to_owned(), ms(1_000)),
            ("rustc".to_owned(), ms(600)),
            // Started during the phase: all of its time is the phase's.
            ("cc1".to_owned(), ms(250)),
        ]);
        assert_eq!(
            machine_cores(&before, &after, Duration::from_secs(2)),
            vec![
                ("titan", 0.75),
                ("postgres", 0.25),
                ("redis-server", 0.0),
                ("titan-bench", 0.0),
                ("other", 0.375),
            ]
        );
    }

    #[test]
    fn a_labelled_histogram_is_read_apart_from_its_neighbours() {
        let mut h = Histo::default();
        let mut mine = 0;
        for line in TEXT.lines() {
            if h.read("titan_fraud_check_stage_seconds", "stage=\"store\",", line)
                .expect("a well-formed line")
            {
                mine += 1;
            }
        }
        assert_eq!(mine, 5);
        assert_eq!(h.buckets, vec![(0.001, 3), (0.002, 9), (f64::INFINITY, 10)]);
        let zero = Histo {
            buckets: vec![(0.001, 0), (0.002, 0), (f64::INFINITY, 0)],
            ..Histo::default()
        };
        assert_eq!(h.quantile(&zero, 0.5), Some(0.002));
        assert_eq!(h.quantile(&zero, 0.99), Some(f64::INFINITY));
        assert_eq!(h.share_within(&zero, 0.002), Some(0.9));
        assert_eq!(h.share_within(&zero, 0.003), None);
        assert_eq!(h.share_within(&h, 0.002), None);
        assert_eq!(h.mean(&zero), Some(Duration::from_micros(2500)));
        assert_eq!(h.mean(&h), None);
    }
}
