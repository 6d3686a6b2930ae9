//! The A/B-testing load generator: an admin creates and starts experiments over gRPC, then the
//! web backend (role service, so exposures are logged) calls `AssignBatch` of all of them for
//! distinct users against `titan serve abtesting`, twice per user — the second visit answers
//! the same variants and is the repeat the service de-duplicates before queueing. At the end
//! ClickHouse must hold an exposure for every (experiment, user) the first visits put in an
//! experiment: results computed from it do not undercount.

use std::{
    collections::BTreeSet,
    fmt,
    time::{Duration, Instant},
};

use anyhow::{Context, ensure};
use prost_types::{Struct, Value, value::Kind};
use titan_e2e::{Cell, authed};
use titan_kit::testing::TestRedis;
use titan_proto::abtesting::v1::{self as pb, ab_testing_service_client::AbTestingServiceClient};
use tonic::transport::Channel;

use crate::{Latencies, load};

type Grpc = AbTestingServiceClient<Channel>;

/// How long the exposure writer may take to flush what was queued.
const FLUSH_PATIENCE: Duration = Duration::from_secs(30);
/// The exposure queue the bench's cell runs with: 2,097,152 rows (~500 MiB while full) hold a
/// whole burst of 20,000 users × 100 experiments even if ClickHouse took none of it meanwhile.
const BURST_QUEUE_ROWS: u32 = 1 << 21;

#[derive(Debug, Clone)]
pub struct AbtestingOptions {
    pub experiments: usize,
    /// Distinct users, two visits each.
    pub users: usize,
    /// Calls in flight.
    pub clients: usize,
    /// HTTP/2 connections they share.
    pub connections: usize,
    pub release: bool,
}

impl AbtestingOptions {
    /// CI's short mode: the checks, on a few users.
    pub fn quick() -> Self {
        Self {
            experiments: 10,
            users: 300,
            clients: 8,
            connections: 2,
            release: false,
        }
    }
}

#[derive(Debug, Default)]
pub struct AbtestingReport {
    pub experiments: usize,
    pub users: usize,
    /// Assignments answered by the first visits, and how long they took.
    pub assignments: u64,
    pub failed: u64,
    pub elapsed: Duration,
    /// Per AssignBatch call.
    pub latencies: Latencies,
    pub per_second: Vec<u64>,
    /// Second visits that answered exactly the first visit's assignments.
    pub repeats_same: u64,
    /// Distinct (experiment, user) the first visits put in an experiment.
    pub expected: u64,
    /// Distinct (experiment, user) exposures in ClickHouse at the end, and rows in all.
    pub stored: u64,
    pub rows: u64,
}

impl AbtestingReport {
    pub fn per_second_rate(&self) -> f64 {
        self.assignments as f64 / self.elapsed.as_secs_f64()
    }

    /// Whether every call answered, repeats agreed, and no exposure is missing.
    pub fn exact(&self) -> bool {
        self.failed == 0
            && self.assignments == (self.users * self.experiments) as u64
            && self.repeats_same == self.users as u64
            && self.expected > 0
            && self.stored == self.expected
    }
}

impl fmt::Display for AbtestingReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "abtesting AssignBatch over gRPC, {} experiments, distinct users",
            self.experiments
        )?;
        writeln!(
            f,
            "  assignments         {:.0}/s ({} in {:.1} s, {} calls failed)  call p50 {:?}  p99 {:?}",
            self.per_second_rate(),
            self.assignments,
            self.elapsed.as_secs_f64(),
            self.failed,
            self.latencies.quantile(0.5),
            self.latencies.quantile(0.99)
        )?;
        writeln!(
            f,
            "  second visits       {} of {} answered the same variants",
            self.repeats_same, self.users
        )?;
        write!(
            f,
            "  exposures           {} of {} (experiment, user) in ClickHouse ({} rows)",
            self.stored, self.expected, self.rows
        )
    }
}

fn key(e: usize) -> String {
    format!("bench-{e:03}")
}

/// Experiment `e`: two to four variants, some with partial coverage, both hash versions.
fn spec(e: usize) -> pb::ExperimentSpec {
    let variants = 2 + e % 3;
    pb::ExperimentSpec {
        key: key(e),
        variants: (0..variants)
            .map(|v| pb::Variant {
                key: format!("v{v}"),
                weight: 1.0 / variants as f64,
                is_control: v == 0,
            })
            .collect(),
        coverage: Some(if e.is_multiple_of(2) { 1.0 } else { 0.8 }),
        hash_version: if e.is_multiple_of(4) { 1 } else { 2 },
        metrics: vec!["purchase".into()],
        ..pb::ExperimentSpec::default()
    }
}

fn visitor(id: &str) -> Struct {
    Struct {
        fields: [(
            "id".to_owned(),
            Value {
                kind: Some(Kind::StringValue(id.to_owned())),
            },
        )]
        .into_iter()
        .collect(),
    }
}

/// Creates and starts the experiments, then waits until a probe visit sees every one running.
async fn set_up(
    grpc: &mut Grpc,
    admin: &str,
    backend: &str,
    keys: &[String],
) -> anyhow::Result<()> {
    for (e, key) in keys.iter().enumerate() {
        grpc.create_experiment(authed(
            pb::CreateExperimentRequest {
                request_id: uuid::Uuid::new_v4().to_string(),
                spec: Some(spec(e)),
            },
            admin,
        ))
        .await
        .context("CreateExperiment")?;
        grpc.start_experiment(authed(
            pb::ChangeExperimentStatusRequest {
                request_id: uuid::Uuid::new_v4().to_string(),
                key: key.clone(),
            },
            admin,
        ))
        .await
        .context("StartExperiment")?;
    }
    let deadline = Instant::now() + FLUSH_PATIENCE;
    loop {
        let probe = grpc
            .assign_batch(authed(
                pb::AssignBatchRequest {
                    experiment_keys: keys.to_vec(),
                    attributes: Some(visitor("probe")),
                },
                backend,
            ))
            .await
            .context("AssignBatch")?
            .into_inner();
        let not_running = probe
            .assignments
            .iter()
            .filter(|a| a.outcome == pb::AssignmentOutcome::NotRunning as i32)
            .count();
        if probe.assignments.len() == keys.len() && not_running == 0 {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "{not_running} experiments still not running after {FLUSH_PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Distinct (experiment, user) exposures of the bench's users, and their rows.
async fn exposures(cell: &Cell) -> anyhow::Result<(u64, u64)> {
    cell.clickhouse
        .client
        .query(
            "SELECT uniqExact(experiment_key, user_id), count() FROM abtesting_exposures
             WHERE startsWith(user_id, 'user-')",
        )
        .fetch_one::<(u64, u64)>()
        .await
        .context("count exposures")
}

/// Runs the scenario.
pub async fn abtesting(options: &AbtestingOptions) -> anyhow::Result<AbtestingReport> {
    ensure!(
        (1..=100).contains(&options.experiments),
        "--experiments must be 1 to 100"
    );
    ensure!(options.users >= 1, "--users must be at least 1");
    ensure!(
        options.clients >= 1 && options.connections >= 1,
        "--clients and --connections must be positive"
    );
    // The burst (~1.8 million exposures in seconds) outruns ClickHouse here; the queue is sized
    // to hold all of it, as a deployment expecting such bursts would size it.
    let (cell, channels) = crate::serve_one_on(
        "abtesting",
        Some(format!(
            "services:\n  abtesting: {{ exposureQueueRows: {BURST_QUEUE_ROWS} }}\n"
        )),
        options.release,
        options.connections,
        TestRedis::new().await,
    )
    .await;
    let admin = cell.token("bench-admin", &["admin"]);
    let backend = cell.token("web-backend", &["service"]);
    let keys: Vec<String> = (0..options.experiments).map(key).collect();
    set_up(&mut Grpc::new(channels[0].clone()), &admin, &backend, &keys).await?;

    let visit = |i: usize| {
        let mut grpc = Grpc::new(channels[i % channels.len()].clone());
        let request = pb::AssignBatchRequest {
            experiment_keys: keys.clone(),
            attributes: Some(visitor(&format!("user-{i}"))),
        };
        let backend = backend.clone();
        async move {
            grpc.assign_batch(authed(request, &backend))
                .await
                .map(|r| r.into_inner().assignments)
        }
    };
    let first = load::calls(options.users, options.clients, visit).await;
    let mut report = AbtestingReport {
        experiments: options.experiments,
        users: options.users,
        elapsed: first.elapsed,
        latencies: first.latencies,
        ..AbtestingReport::default()
    };
    let mut expected = BTreeSet::new();
    let mut per_second = first.per_second;
    for (i, answer) in first.answers.iter().enumerate() {
        match answer {
            Ok(assignments) => {
                report.assignments += assignments.len() as u64;
                for a in assignments.iter().filter(|a| a.in_experiment) {
                    expected.insert((a.experiment_key.clone(), i));
                }
            }
            Err(e) => {
                report.failed += 1;
                eprintln!("AssignBatch for user-{i} failed: {e}");
            }
        }
    }
    // Calls per second, as assignments per second: every call assigns all experiments.
    for n in &mut per_second {
        *n *= options.experiments as u64;
    }
    report.per_second = per_second;
    report.expected = expected.len() as u64;

    let second = load::calls(options.users, options.clients, visit).await;
    for (answer, first) in second.answers.iter().zip(&first.answers) {
        if let (Ok(a), Ok(b)) = (answer, first)
            && a == b
        {
            report.repeats_same += 1;
        }
    }

    // The writer flushes in batches: wait for the expected count, and report what is there
    // when it does not come (an undercount is the finding, not an error of the bench).
    let deadline = Instant::now() + FLUSH_PATIENCE;
    loop {
        (report.stored, report.rows) = exposures(&cell).await?;
        if report.stored >= report.expected || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(report)
}
