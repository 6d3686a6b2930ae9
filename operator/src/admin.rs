//! The admin HTTP server: `/metrics` (Prometheus text), `/healthz` (the process is alive) and
//! `/readyz` (it has reached the API server and runs or waits for leadership).

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use axum::{Router, extract::State, http::StatusCode, routing::get};

use crate::metrics::Metrics;

/// What the admin endpoints report.
#[derive(Debug, Clone)]
pub struct AdminState {
    /// The metrics to expose.
    pub metrics: Metrics,
    /// Set once the operator can serve (client ready, controllers started or standing by).
    pub ready: Arc<AtomicBool>,
    /// Set while this replica holds the leader lease.
    pub leader: Arc<AtomicBool>,
}

/// The admin routes.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(state)
}

async fn metrics(State(state): State<AdminState>) -> String {
    state.metrics.encode()
}

async fn readyz(State(state): State<AdminState>) -> (StatusCode, &'static str) {
    match (
        state.ready.load(Ordering::Relaxed),
        state.leader.load(Ordering::Relaxed),
    ) {
        (false, _) => (StatusCode::SERVICE_UNAVAILABLE, "starting"),
        (true, true) => (StatusCode::OK, "leader"),
        // A standby is healthy and ready to take over; it just does not reconcile.
        (true, false) => (StatusCode::OK, "standby"),
    }
}
