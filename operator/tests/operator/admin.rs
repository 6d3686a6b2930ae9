//! The admin endpoints: metrics in the Prometheus format, liveness, and readiness that says
//! whether this replica leads.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use http::{Request, StatusCode};
use titan_operator::{
    admin::{AdminState, router},
    metrics::Metrics,
};
use tower::ServiceExt;

async fn get(state: &AdminState, path: &str) -> (StatusCode, String) {
    let request = Request::get(path)
        .body(axum::body::Body::empty())
        .expect("request");
    let response = router(state.clone())
        .oneshot(request)
        .await
        .expect("response");
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("body");
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn metrics_health_and_readiness_are_served() {
    let metrics = Metrics::new().expect("metrics");
    metrics.observe("cell", std::time::Instant::now(), None);
    metrics.observe("service", std::time::Instant::now(), Some("ApiError"));
    let state = AdminState {
        metrics,
        ready: Arc::new(AtomicBool::new(false)),
        leader: Arc::new(AtomicBool::new(false)),
    };
    assert_eq!(get(&state, "/healthz").await.0, StatusCode::OK);
    assert_eq!(
        get(&state, "/readyz").await,
        (StatusCode::SERVICE_UNAVAILABLE, "starting".into())
    );
    state.ready.store(true, Ordering::Relaxed);
    assert_eq!(
        get(&state, "/readyz").await,
        (StatusCode::OK, "standby".into())
    );
    state.leader.store(true, Ordering::Relaxed);
    assert_eq!(
        get(&state, "/readyz").await,
        (StatusCode::OK, "leader".into())
    );

    let (status, text) = get(&state, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        text.contains("titan_operator_reconciliations_total{controller=\"cell\"} 1"),
        "{text}"
    );
    assert!(text.contains(
        "titan_operator_reconcile_errors_total{controller=\"service\",reason=\"ApiError\"} 1"
    ));
    assert!(text.contains("titan_operator_reconcile_duration_seconds_bucket"));
}
