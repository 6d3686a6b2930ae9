//! Assignment throughput: `Assign`'s work in process (the service's `assign_batch` over its
//! snapshot, exposures queued to the real ClickHouse writer) for new users and for 1,000
//! returning visitors (with the share of their first exposures that reached ClickHouse), and
//! `AssignBatch` of 100 experiments over gRPC through kit's runtime, on the test PostgreSQL
//! and ClickHouse servers.
//!
//! ```sh
//! eval "$(cargo xtask datastores env | grep export)"
//! cargo run --release -p titan-abtesting --example bench -- [seconds per phase, default 3]
//! ```

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use prost_types::{Struct, Value, value::Kind};
use serde_json::json;
use titan_abtesting::{
    App,
    app::Abtesting,
    config::Settings,
    domain::{RawSpec, experiment::Action},
    metrics::Metrics,
    service,
    store::{
        clickhouse::{ChResults, exposures},
        pg::PgStore,
    },
};
use titan_kit::{
    auth::{Authenticator, Caller},
    config::Config,
    runtime::{self, Bound},
    testing::{TestClickHouse, TestPostgres},
};
use titan_proto::abtesting::v1::{self as pb, ab_testing_service_client::AbTestingServiceClient};
use tokio_util::sync::CancellationToken;

const EXPERIMENTS: usize = 100;
const GRPC_CLIENTS: usize = 16;
/// The returning-visitor population.
const VISITORS: u64 = 1_000;

fn admin() -> Caller {
    Caller {
        user_id: "bench".into(),
        roles: vec!["admin".into()],
    }
}

fn spec(i: usize) -> RawSpec {
    let variants = 2 + i % 3;
    RawSpec {
        key: format!("exp-{i:03}"),
        variants: (0..variants)
            .map(|v| (format!("v{v}"), 0.0, false))
            .collect(),
        coverage: Some(if i.is_multiple_of(2) { 1.0 } else { 0.8 }),
        hash_version: if i.is_multiple_of(4) { 1 } else { 2 },
        ..RawSpec::default()
    }
}

/// Runs `workers` threads calling the service's `assign_batch` over every running experiment
/// for `phase`, worker `w`'s `i`-th call for user `user(w, i)`, as a trusted caller so that
/// exposures are logged as in production. Returns the assignments, the seconds and the calls
/// of each worker.
async fn drive(
    app: &Arc<App>,
    workers: usize,
    phase: Duration,
    user: impl Fn(usize, u64) -> String + Send + Copy + 'static,
) -> Result<(u64, f64, Vec<u64>), Box<dyn std::error::Error>> {
    let done = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let handles: Vec<_> = (0..workers)
        .map(|w| {
            let (app, done, count) = (app.clone(), done.clone(), count.clone());
            std::thread::spawn(move || {
                let caller = admin();
                let (mut n, mut calls) = (0u64, 0u64);
                while !done.load(Ordering::Relaxed) {
                    let attrs = json!({ "id": user(w, calls), "country": "SG" });
                    let attrs = attrs.as_object().cloned().unwrap_or_default();
                    n += app
                        .assign_batch(Some(&caller), &[], &attrs)
                        .map_or(0, |a| a.len() as u64);
                    calls += 1;
                }
                count.fetch_add(n, Ordering::Relaxed);
                calls
            })
        })
        .collect();
    tokio::time::sleep(phase).await;
    done.store(true, Ordering::Relaxed);
    let calls = handles
        .into_iter()
        .map(|h| h.join().map_err(|_| "worker panicked"))
        .collect::<Result<_, _>>()?;
    Ok((
        count.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64(),
        calls,
    ))
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let seconds: u64 = std::env::args()
        .nth(1)
        .map_or(Ok(3), |s| s.parse())
        .map_err(|e| format!("seconds per phase: {e}"))?;
    let phase = Duration::from_secs(seconds);
    let db = TestPostgres::new().await;
    let ch = TestClickHouse::new().await;
    let vars = BTreeMap::from([
        ("TITAN_GRPC_ADDR", "127.0.0.1:0".to_owned()),
        ("TITAN_HTTP_ADDR", "127.0.0.1:0".to_owned()),
        ("TITAN_ADMIN_ADDR", "127.0.0.1:0".to_owned()),
        (
            "TITAN_AUTH_HS256_SECRET",
            "0123456789abcdef0123456789abcdef".to_owned(),
        ),
        ("TITAN_POSTGRES_URL", db.url.clone()),
        ("TITAN_CLICKHOUSE_URL", ch.config.url.clone()),
        ("TITAN_CLICKHOUSE_DATABASE", ch.config.database.clone()),
    ]);
    let config = Config::from_sources(None, move |name| vars.get(name).cloned())?;
    runtime::migrate(&config, &[service()]).await?;

    // In process: the service's own use case over its snapshot, exposures to ClickHouse.
    let settings = Settings::default();
    let metrics = Metrics::new(&prometheus::Registry::new())?;
    let (sink, writer) = exposures(
        ch.client.clone(),
        &settings,
        "bench".into(),
        metrics.clone(),
    );
    let stop_writer = CancellationToken::new();
    let writer = tokio::spawn(writer.run(stop_writer.clone()));
    let app = Arc::new(Abtesting::new(
        PgStore::new(db.pool.clone()),
        sink,
        ChResults::new(ch.client.clone()),
        settings,
        metrics.clone(),
        Arc::new(chrono::Utc::now),
    ));
    for i in 0..EXPERIMENTS {
        app.create_experiment(&admin(), &format!("c{i}"), spec(i))
            .await?;
        app.change_status(
            &admin(),
            &format!("s{i}"),
            &format!("exp-{i:03}"),
            Action::Start,
        )
        .await?;
    }
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    for workers in [1, threads] {
        let (n, elapsed, _) = drive(&app, workers, phase, |w, i| format!("user-{w}-{i}")).await?;
        println!(
            "in process, {workers} thread(s): {n} assignments in {elapsed:.2} s = {:.0} assignments/s ({:.0} batches of {EXPERIMENTS}/s)",
            n as f64 / elapsed,
            n as f64 / elapsed / EXPERIMENTS as f64,
        );
    }
    let (written, dropped, repeats) = (
        metrics.written_count(),
        metrics.dropped_count(),
        metrics.deduplicated_count(),
    );

    // Returning visitors: a population that comes back page after page, as a shop's does.
    // Each worker owns a stripe of VISITORS and walks it round and round.
    let stripe = VISITORS / threads as u64;
    let (n, elapsed, calls) = drive(&app, threads, phase, move |w, i| {
        format!("visitor-{}", w as u64 + threads as u64 * (i % stripe))
    })
    .await?;
    stop_writer.cancel();
    writer.await??;
    // The exposures a perfect log holds: each visitor's in-experiment assignments, counted
    // with an anonymous caller, which logs nothing.
    let mut expected = 0u64;
    for (w, calls) in calls.iter().enumerate() {
        for k in 0..(*calls).min(stripe) {
            let attrs = json!({ "id": format!("visitor-{}", w as u64 + threads as u64 * k), "country": "SG" });
            let attrs = attrs.as_object().cloned().unwrap_or_default();
            expected += app
                .assign_batch(None, &[], &attrs)
                .map_or(0, |a| a.iter().filter(|a| a.in_experiment).count() as u64);
        }
    }
    let logged: u64 = ch
        .client
        .query(
            "SELECT count() FROM (SELECT DISTINCT experiment_key, user_id \
             FROM abtesting_exposures WHERE startsWith(user_id, 'visitor-'))",
        )
        .fetch_one()
        .await?;
    println!(
        "in process, {threads} thread(s), {VISITORS} returning visitors: {n} assignments in {elapsed:.2} s = {:.0}/s; \
         first exposures in ClickHouse {logged} of {expected} ({:.2} %); repeats not queued {}, dropped {} (queue full)",
        n as f64 / elapsed,
        100.0 * logged as f64 / expected.max(1) as f64,
        metrics.deduplicated_count() - repeats,
        metrics.dropped_count() - dropped,
    );
    println!(
        "new users: exposures written to ClickHouse: {written}; dropped because the writer's queue was full: {dropped} (Assign never waits for ClickHouse)",
    );

    // Over gRPC: the service in kit's runtime, AssignBatch of every running experiment, as the
    // web backend (role service) calls it, so that exposures are logged.
    let token: tonic::metadata::MetadataValue<_> = format!(
        "Bearer {}",
        Authenticator::new(&config.auth)?.mint(
            "web-backend",
            &["service".into()],
            Duration::from_secs(3600)
        )?
    )
    .parse()?;
    let stop = CancellationToken::new();
    let (tx, rx) = tokio::sync::oneshot::channel::<Bound>();
    let server = tokio::spawn(runtime::serve(
        config,
        vec![service()],
        stop.clone(),
        move |b| {
            let _ = tx.send(b);
        },
    ));
    let bound = rx.await?;
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", bound.grpc))?
        .connect()
        .await?;
    let done = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let calls = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let clients: Vec<_> = (0..GRPC_CLIENTS)
        .map(|c| {
            let mut client = AbTestingServiceClient::new(channel.clone());
            let (done, count, calls) = (done.clone(), count.clone(), calls.clone());
            let token = token.clone();
            tokio::spawn(async move {
                let mut user = 0u64;
                while !done.load(Ordering::Relaxed) {
                    let attributes = Struct {
                        fields: [(
                            "id".to_owned(),
                            Value {
                                kind: Some(Kind::StringValue(format!("user-{c}-{user}"))),
                            },
                        )]
                        .into_iter()
                        .collect(),
                    };
                    let mut request = tonic::Request::new(pb::AssignBatchRequest {
                        experiment_keys: vec![],
                        attributes: Some(attributes),
                    });
                    request
                        .metadata_mut()
                        .insert("authorization", token.clone());
                    let r = client.assign_batch(request).await;
                    if let Ok(r) = r {
                        count.fetch_add(r.into_inner().assignments.len() as u64, Ordering::Relaxed);
                        calls.fetch_add(1, Ordering::Relaxed);
                    }
                    user += 1;
                }
            })
        })
        .collect();
    tokio::time::sleep(phase).await;
    done.store(true, Ordering::Relaxed);
    for c in clients {
        c.await?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let (n, k) = (count.load(Ordering::Relaxed), calls.load(Ordering::Relaxed));
    println!(
        "over gRPC, {GRPC_CLIENTS} concurrent clients on one connection: {k} AssignBatch calls of {EXPERIMENTS} in {elapsed:.2} s = {:.0} calls/s = {:.0} assignments/s",
        k as f64 / elapsed,
        n as f64 / elapsed
    );
    stop.cancel();
    server.await??;
    Ok(())
}
