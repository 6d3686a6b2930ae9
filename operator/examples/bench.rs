//! Benchmarks that print figures (no assertions on time): building every object of a full
//! 15-service cell, and reconciling 500 cells against the in-memory API server.
//!
//! Run: `cargo run --release -p titan-operator --example bench [-- CELLS]`.
#![allow(clippy::unwrap_used)]

// The fake API server and fixtures of the integration tests; the bench uses only part of them.
#[allow(dead_code)]
#[path = "../tests/operator/support.rs"]
mod support;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use kube::{Api, ResourceExt, api::PostParams};
use titan_crds::{Cell, Service};
use titan_operator::{
    Context, cell,
    metrics::Metrics,
    service::{self, build as service_build, validate},
    shared::CellView,
};

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn build_full_cell(cell: &Cell) -> usize {
    let objects = support::built(cell);
    let view = CellView::of(cell);
    let mut count = 1
        + objects.resource_quotas.len()
        + objects.limit_ranges.len()
        + objects.network_policies.len()
        + objects.secrets.len()
        + objects.config_maps.len()
        + objects.core_services.len()
        + objects.stateful_sets.len()
        + objects.clusters.len()
        + objects.deployments.len()
        + objects.services.len();
    for service in &objects.services {
        let rendered = validate::validate(service, &view.name).expect("valid");
        let built = service_build::build(service, &view, &rendered).expect("builds");
        count += 3 + usize::from(built.core_service.is_some()) + usize::from(built.hpa.is_some());
    }
    count
}

#[tokio::main]
async fn main() {
    let cells: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(500);

    let full = support::cell_fixture("full-cell.yaml");
    let iterations = 2000;
    let start = Instant::now();
    let mut objects = 0;
    for _ in 0..iterations {
        objects = build_full_cell(std::hint::black_box(&full));
    }
    let per_build = start.elapsed() / iterations;
    println!(
        "build: full 15-service cell = {objects} objects in {per_build:?} per cell ({iterations} iterations)"
    );

    let fake = support::Fake::new().await;
    let ctx = Arc::new(Context::new(
        fake.client.clone(),
        Metrics::new().expect("metrics"),
        None,
    ));
    let cells_api = Api::<Cell>::all(fake.client.clone());
    let template = support::cell_fixture("minimal-cell.yaml");
    let start = Instant::now();
    let mut slowest = Duration::ZERO;
    for i in 0..cells {
        let round_start = Instant::now();
        let mut cell = template.clone();
        cell.metadata.name = Some(format!("cell-{i}"));
        cells_api
            .create(&PostParams::default(), &cell)
            .await
            .expect("create");
        let cell = cells_api.get(&cell.name_any()).await.expect("get");
        let namespace = cell.namespace_name();
        cell::reconcile(Arc::new(cell), ctx.clone())
            .await
            .expect("cell");
        let services = Api::<Service>::namespaced(fake.client.clone(), &namespace)
            .list(&Default::default())
            .await
            .expect("list");
        for s in services.items {
            service::reconcile(Arc::new(s), ctx.clone())
                .await
                .expect("service");
        }
        let cell = cells_api.get(&format!("cell-{i}")).await.expect("get");
        cell::reconcile(Arc::new(cell), ctx.clone())
            .await
            .expect("cell");
        slowest = slowest.max(round_start.elapsed());
    }
    let total = start.elapsed();
    println!(
        "reconcile: {cells} cells (cell → 15 services → cell) in {total:?}: {:?} per cell, slowest {slowest:?}; {} writes, {} status writes",
        total / u32::try_from(cells.max(1)).unwrap_or(1),
        fake.writes(),
        fake.status_writes()
    );

    let start = Instant::now();
    let writes = fake.writes();
    for i in (0..cells).step_by(10) {
        let cell = cells_api.get(&format!("cell-{i}")).await.expect("get");
        cell::reconcile(Arc::new(cell), ctx.clone())
            .await
            .expect("cell");
    }
    println!(
        "re-reconcile: {} unchanged cells in {:?}, {} writes",
        cells.div_ceil(10),
        start.elapsed(),
        fake.writes() - writes
    );
    println!("peak RSS (VmHWM): {} MiB", peak_rss_kib() / 1024);
}
