//! Prometheus metrics: the per-RPC layer every service gets (request count and latency by
//! `grpc_service`, `grpc_method`, `grpc_code`), the request id that layer assigns, and the
//! text exposition served on the admin port. Services register their own metrics into the
//! registry the runtime hands them.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use http::{HeaderValue, Request, Response};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};
use tower_layer::Layer;
use tower_service::Service;

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The id of the request being served (from `x-request-id`, or generated), or `-` outside one.
pub fn current_request_id() -> String {
    REQUEST_ID
        .try_with(Clone::clone)
        .unwrap_or_else(|_| "-".to_owned())
}

/// Registers a collector, turning a duplicate registration into a clear error.
pub fn register<C: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    collector: C,
) -> Result<C, crate::KitError> {
    registry
        .register(Box::new(collector.clone()))
        .map_err(|e| crate::KitError::Other(format!("cannot register metric: {e}")))?;
    Ok(collector)
}

/// Renders every metric of `registry` in the Prometheus text format.
pub fn render(registry: &Registry) -> String {
    let mut buf = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&registry.gather(), &mut buf) {
        tracing::error!(error = %e, "cannot encode metrics");
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// Per-RPC metrics shared by every gRPC method of the process.
#[derive(Debug, Clone)]
pub struct GrpcMetrics {
    requests: IntCounterVec,
    duration: HistogramVec,
}

impl GrpcMetrics {
    pub fn new(registry: &Registry) -> Result<Self, crate::KitError> {
        let requests = register(
            registry,
            IntCounterVec::new(
                Opts::new(
                    "titan_grpc_requests_total",
                    "gRPC requests handled, by method and status code",
                ),
                &["grpc_service", "grpc_method", "grpc_code"],
            )
            .map_err(|e| crate::KitError::Other(e.to_string()))?,
        )?;
        let duration = register(
            registry,
            HistogramVec::new(
                HistogramOpts::new(
                    "titan_grpc_request_duration_seconds",
                    "time to the response headers of gRPC requests (whole call for unary), by method",
                )
                .buckets(vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]),
                &["grpc_service", "grpc_method"],
            )
            .map_err(|e| crate::KitError::Other(e.to_string()))?,
        )?;
        Ok(Self { requests, duration })
    }
}

/// The tower layer that measures every gRPC call and assigns its request id.
#[derive(Debug, Clone)]
pub struct GrpcMetricsLayer {
    metrics: Arc<GrpcMetrics>,
}

impl GrpcMetricsLayer {
    pub fn new(metrics: GrpcMetrics) -> Self {
        Self {
            metrics: Arc::new(metrics),
        }
    }
}

impl<S> Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetricsService {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct GrpcMetricsService<S> {
    inner: S,
    metrics: Arc<GrpcMetrics>,
}

impl<S, B, ResBody> Service<Request<B>> for GrpcMetricsService<S>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Send,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let (service, method) = split_path(request.uri().path());
        let request_id = request
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty() && v.len() <= 128)
            .map(str::to_owned)
            .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        let metrics = self.metrics.clone();
        let started = Instant::now();
        // At debug level: an info span per call cost a visible share of a flash-sale call
        // (its fields are formatted into the span on creation), and the one log line that
        // needs the request id, kit's internal-error line, reads it from the task-local.
        let span = tracing::debug_span!("grpc", grpc_service = %service, grpc_method = %method, request_id = %request_id);
        let future = span.in_scope(|| self.inner.call(request));
        let id = request_id.clone();
        Box::pin(REQUEST_ID.scope(
            request_id,
            tracing::Instrument::instrument(
                async move {
                    let mut response = future.await?;
                    // Trailers-only responses (every error of a unary call) carry the code in the headers;
                    // a response that starts streaming has succeeded so far.
                    let code = response
                        .headers()
                        .get("grpc-status")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<i32>().ok())
                        .map(tonic::Code::from_i32)
                        .unwrap_or(tonic::Code::Ok);
                    // Unknown paths would make label values unbounded: fold them into one.
                    let (service, method) = if code == tonic::Code::Unimplemented {
                        ("unknown", "unknown")
                    } else {
                        (service.as_str(), method.as_str())
                    };
                    metrics
                        .requests
                        .with_label_values(&[service, method, code_name(code)])
                        .inc();
                    metrics
                        .duration
                        .with_label_values(&[service, method])
                        .observe(started.elapsed().as_secs_f64());
                    if let Ok(value) = HeaderValue::from_str(&id) {
                        response.headers_mut().insert("x-request-id", value);
                    }
                    Ok(response)
                },
                span,
            ),
        ))
    }
}

fn split_path(path: &str) -> (String, String) {
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let service = parts.next().unwrap_or_default().to_owned();
    let method = parts.next().unwrap_or_default().to_owned();
    (service, method)
}

/// The canonical upper-camel name of a code, as gRPC dashboards expect.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "Canceled",
        Unknown => "Unknown",
        InvalidArgument => "InvalidArgument",
        DeadlineExceeded => "DeadlineExceeded",
        NotFound => "NotFound",
        AlreadyExists => "AlreadyExists",
        PermissionDenied => "PermissionDenied",
        ResourceExhausted => "ResourceExhausted",
        FailedPrecondition => "FailedPrecondition",
        Aborted => "Aborted",
        OutOfRange => "OutOfRange",
        Unimplemented => "Unimplemented",
        Internal => "Internal",
        Unavailable => "Unavailable",
        DataLoss => "DataLoss",
        Unauthenticated => "Unauthenticated",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_into_service_and_method() {
        assert_eq!(
            split_path("/titan.ping.v1.PingService/Ping"),
            ("titan.ping.v1.PingService".into(), "Ping".into())
        );
        assert_eq!(split_path("/"), (String::new(), String::new()));
    }

    #[test]
    fn rendering_lists_registered_metrics() {
        let registry = Registry::new();
        let m = GrpcMetrics::new(&registry).expect("metrics");
        m.requests.with_label_values(&["s", "m", "OK"]).inc();
        assert!(render(&registry).contains(
            "titan_grpc_requests_total{grpc_code=\"OK\",grpc_method=\"m\",grpc_service=\"s\"} 1"
        ));
        assert!(
            GrpcMetrics::new(&registry).is_err(),
            "a second registration is refused"
        );
    }
}
