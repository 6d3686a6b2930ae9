//! The cell router's load generator: `Lookup` (one key per call) and `LookupMany` (batches)
//! over gRPC against one `titan serve router` replica fed from a table file (16,384 buckets,
//! eight cells), every answer checked against the same table computed here; then the reload
//! time: a rebalanced table written to the file until the replica answers from it (the file is
//! polled every 50 ms, so that bounds the figure from above), and the in-process cost of
//! decoding and swapping a table.

use std::{
    fmt,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context, ensure};
use titan_e2e::{Cell, CellOptions};
use titan_kit::testing::TestRedis;
use titan_proto::router::v1::{
    LookupManyRequest, LookupRequest, router_service_client::RouterServiceClient,
};
use titan_router::domain::{
    BucketCount, CellEntry, CellName, PartitionKey, Table, encoding, initial, rebalance,
};
use tonic::transport::Channel;

use crate::{Latencies, load};

/// How long the replica may take to serve a table written to its file.
const RELOAD_PATIENCE: Duration = Duration::from_secs(10);
/// Distinct keys the calls cycle through.
const KEYS: usize = 100_000;

#[derive(Debug, Clone)]
pub struct RouterOptions {
    /// `Lookup` calls.
    pub lookups: usize,
    /// `LookupMany` calls, of `batch` keys each.
    pub batches: usize,
    pub batch: usize,
    /// Calls in flight.
    pub clients: usize,
    /// HTTP/2 connections they share.
    pub connections: usize,
    /// Table reloads timed.
    pub reloads: usize,
    pub release: bool,
}

impl RouterOptions {
    /// CI's short mode: the checks, on a few calls.
    pub fn quick() -> Self {
        Self {
            lookups: 2_000,
            batches: 50,
            batch: 100,
            clients: 8,
            connections: 2,
            reloads: 2,
            release: false,
        }
    }
}

#[derive(Debug, Default)]
pub struct RouterReport {
    pub lookups: usize,
    pub lookup_elapsed: Duration,
    pub lookup_latencies: Latencies,
    pub per_second: Vec<u64>,
    /// CPU time the replica's process spent during the `Lookup` run (user + system): what one
    /// lookup costs the server, whatever the load generator sharing the machine takes.
    pub lookup_server_cpu: Duration,
    pub batch: usize,
    pub batches: usize,
    pub batch_elapsed: Duration,
    pub batch_latencies: Latencies,
    /// Calls that failed or answered another cell than the table says.
    pub failed: usize,
    pub wrong: usize,
    /// From the file's rename to the first answer from the new table, per reload.
    pub reload_times: Vec<Duration>,
    /// Decoding a 16,384-bucket table, per table (in process, release or debug as the bench).
    pub decode_time: Duration,
}

impl RouterReport {
    pub fn lookups_per_second(&self) -> f64 {
        self.lookups as f64 / self.lookup_elapsed.as_secs_f64()
    }

    /// The replica's CPU time per `Lookup`.
    pub fn server_cpu_per_lookup(&self) -> Duration {
        self.lookup_server_cpu / u32::try_from(self.lookups.max(1)).unwrap_or(u32::MAX)
    }

    /// `Lookup`s one core of the replica serves per second at that cost: the replica's
    /// capacity with the load generator elsewhere (here it takes a share of the same two cores).
    pub fn lookups_per_server_core(&self) -> f64 {
        self.lookups as f64 / self.lookup_server_cpu.as_secs_f64().max(f64::EPSILON)
    }

    pub fn batched_keys_per_second(&self) -> f64 {
        (self.batches * self.batch) as f64 / self.batch_elapsed.as_secs_f64()
    }

    /// The slowest reload seen.
    pub fn worst_reload(&self) -> Duration {
        self.reload_times.iter().copied().max().unwrap_or_default()
    }

    /// Every call answered, each with the cell of the table.
    pub fn exact(&self) -> bool {
        self.failed == 0 && self.wrong == 0
    }
}

impl fmt::Display for RouterReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "router over gRPC, one replica, 16,384 buckets over 8 cells"
        )?;
        writeln!(
            f,
            "  Lookup              {:.0}/s ({} in {:.1} s)  p50 {:?}  p99 {:?}",
            self.lookups_per_second(),
            self.lookups,
            self.lookup_elapsed.as_secs_f64(),
            self.lookup_latencies.quantile(0.5),
            self.lookup_latencies.quantile(0.99)
        )?;
        writeln!(
            f,
            "  server cpu          {:.1} µs per Lookup: {:.0} lookups/s per core of the replica",
            self.server_cpu_per_lookup().as_secs_f64() * 1e6,
            self.lookups_per_server_core()
        )?;
        writeln!(
            f,
            "  LookupMany of {:<5} {:.0} keys/s ({} calls in {:.1} s)  p50 {:?}  p99 {:?}",
            self.batch,
            self.batched_keys_per_second(),
            self.batches,
            self.batch_elapsed.as_secs_f64(),
            self.batch_latencies.quantile(0.5),
            self.batch_latencies.quantile(0.99)
        )?;
        writeln!(
            f,
            "  answers             {} failed, {} with another cell than the table's",
            self.failed, self.wrong
        )?;
        write!(
            f,
            "  reload              file renamed -> served: {:?} (worst of {}, file polled every 50 ms); decode of one table {:?}",
            self.worst_reload(),
            self.reload_times.len(),
            self.decode_time
        )
    }
}

fn key(i: usize) -> String {
    format!("user-{}", i % KEYS)
}

fn cells(n: usize) -> Vec<CellEntry> {
    (1..=n)
        .map(|i| CellEntry::new(CellName::parse(&format!("cell-{i}")).expect("a DNS label")))
        .collect()
}

fn expected(table: &Table, key: &str) -> String {
    table
        .route(PartitionKey::parse(key).expect("a short key"))
        .cell
        .to_string()
}

/// Writes `table` where the replica reads it, in one rename.
fn publish(path: &Path, table: &Table) -> anyhow::Result<()> {
    let staging = path.with_extension("staging");
    std::fs::write(&staging, encoding::encode(table)).context("writing the table")?;
    std::fs::rename(&staging, path).context("renaming the table into place")
}

/// Runs the scenario.
pub async fn router(options: &RouterOptions) -> anyhow::Result<RouterReport> {
    ensure!(
        options.clients > 0 && options.connections > 0 && (1..=1000).contains(&options.batch),
        "clients and connections must be positive, batch 1 to 1000"
    );
    let dir = tempfile::tempdir().context("temporary directory")?;
    let path = dir.path().join("router-table.json");
    let mut table = initial(BucketCount::default(), &cells(8)).context("the first table")?;
    publish(&path, &table)?;
    let config = format!(
        "services:\n  router:\n    table:\n      file: {}\n      filePollMillis: 50\n",
        path.display()
    );
    let cell = Cell::start_on(
        CellOptions {
            services: vec!["router".into()],
            config: Some(config),
            release: options.release,
        },
        TestRedis::new().await,
    )
    .await;
    let mut channels: Vec<Channel> = Vec::with_capacity(options.connections);
    for _ in 0..options.connections {
        channels.push(cell.channel().await);
    }
    let client = |i: usize| RouterServiceClient::new(channels[i % channels.len()].clone());
    let mut report = RouterReport {
        batch: options.batch,
        ..RouterReport::default()
    };

    let cpu_before = cell.process.cpu_time().context("the replica's cpu time")?;
    let run = load::calls(options.lookups, options.clients, |i| {
        let mut client = client(i);
        async move {
            client
                .lookup(LookupRequest { key: key(i) })
                .await
                .map(|r| r.into_inner())
        }
    })
    .await;
    report.lookup_server_cpu = cell
        .process
        .cpu_time()
        .context("the replica's cpu time")?
        .saturating_sub(cpu_before);
    for (i, answer) in run.answers.iter().enumerate() {
        match answer {
            Ok(a) if a.cell == expected(&table, &key(i)) && a.table_version == 1 => {}
            Ok(_) => report.wrong += 1,
            Err(_) => report.failed += 1,
        }
    }
    report.lookups = options.lookups;
    report.lookup_elapsed = run.elapsed;
    report.lookup_latencies = run.latencies;
    report.per_second = run.per_second;

    let batch = options.batch;
    let run = load::calls(options.batches, options.clients, |i| {
        let mut client = client(i);
        let keys = (0..batch).map(|k| key(i * batch + k)).collect();
        async move {
            client
                .lookup_many(LookupManyRequest { keys })
                .await
                .map(|r| r.into_inner())
        }
    })
    .await;
    for (i, answer) in run.answers.iter().enumerate() {
        match answer {
            Ok(a) => {
                report.wrong += a
                    .routes
                    .iter()
                    .enumerate()
                    .filter(|(k, r)| r.cell != expected(&table, &key(i * batch + k)))
                    .count();
            }
            Err(_) => report.failed += 1,
        }
    }
    report.batches = options.batches;
    report.batch_elapsed = run.elapsed;
    report.batch_latencies = run.latencies;

    // Reloads: each adds a cell; a key that moves to it tells which table answered.
    let mut client = client(0);
    for n in 0..options.reloads {
        let next = rebalance(&table, &cells(9 + n)).context("rebalancing")?;
        let newcomer = format!("cell-{}", 9 + n);
        let probe = (0..)
            .map(key)
            .find(|k| expected(&next, k) == newcomer)
            .context("no key moves to the new cell")?;
        let written = Instant::now();
        publish(&path, &next)?;
        loop {
            let answer = client
                .lookup(LookupRequest { key: probe.clone() })
                .await
                .context("lookup during a reload")?
                .into_inner();
            if answer.table_version == next.version() {
                ensure!(
                    answer.cell == newcomer,
                    "the new table answered {}",
                    answer.cell
                );
                break;
            }
            ensure!(
                written.elapsed() < RELOAD_PATIENCE,
                "table version {} not served within {RELOAD_PATIENCE:?}",
                next.version()
            );
        }
        report.reload_times.push(written.elapsed());
        table = next;
    }
    let text = encoding::encode(&table);
    let started = Instant::now();
    for _ in 0..100 {
        std::hint::black_box(encoding::decode(&text).context("decoding the table")?);
    }
    report.decode_time = started.elapsed() / 100;
    drop(cell);
    Ok(report)
}
