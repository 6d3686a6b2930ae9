//! Structured logs and distributed traces. Logs: JSON when stderr is not a terminal (in pods),
//! human-readable otherwise; the filter comes from `TITAN_LOG` (default `info`). Traces: with
//! `tracing.otlpEndpoint`, the `tracing` spans also become OpenTelemetry spans exported over
//! OTLP/gRPC; the servers take the W3C `traceparent` of each request ([`TraceContextLayer`]) and
//! kit's gRPC clients pass it on ([`traced`]). Without an endpoint none of it is installed.

use std::{
    collections::HashMap,
    future::Future,
    io::IsTerminal,
    sync::atomic::{AtomicBool, Ordering},
    task::{Context as TaskContext, Poll},
};

use opentelemetry::{
    KeyValue,
    propagation::{Extractor, Injector, TextMapPropagator},
    trace::TracerProvider as _,
};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::{
    Resource,
    propagation::TraceContextPropagator,
    trace::{Sampler, SdkTracerProvider},
};
use tonic::{service::interceptor::InterceptedService, transport::Channel};
use tracing::{Instrument, Subscriber, instrument::Instrumented};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{EnvFilter, fmt, layer::SubscriberExt, util::SubscriberInitExt};

use crate::{KitError, config::TracingConfig};

/// Whether this process has built a trace exporter: without one, events carry no trace context
/// and the relay and consumers look for none (one load instead of a span lookup per event).
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Installs the global subscriber for logs only (commands other than `serve`); later calls
/// are no-ops so tests may call it freely.
pub fn init() {
    let (subscriber, _no_traces) = subscriber(None);
    let _already_set = subscriber.try_init();
}

/// Installs the global subscriber of a served process: logs, and traces exported when
/// `tracing.otlpEndpoint` is set. The returned [`Telemetry`] flushes them at the end.
pub fn init_serving(
    config: &TracingConfig,
    service: &str,
    cell: &str,
) -> Result<Telemetry, KitError> {
    let exporter = Telemetry::exporting(config, service, cell)?;
    let (subscriber, telemetry) = subscriber(exporter);
    let _already_set = subscriber.try_init();
    Ok(telemetry)
}

/// The subscriber [`init`] and [`init_serving`] install, for a test to scope with
/// `tracing::subscriber::set_default`: logs, plus the OpenTelemetry layer when `telemetry`
/// exports (see [`Telemetry::exporting`]).
pub fn subscriber(
    telemetry: Option<Telemetry>,
) -> (impl Subscriber + Send + Sync + 'static, Telemetry) {
    let filter = EnvFilter::try_from_env("TITAN_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let terminal = std::io::stderr().is_terminal();
    let plain = terminal.then(|| fmt::layer().with_writer(std::io::stderr));
    let json = (!terminal).then(|| {
        fmt::layer()
            .with_writer(std::io::stderr)
            .json()
            .flatten_event(true)
            .with_current_span(true)
    });
    let telemetry = telemetry.unwrap_or(Telemetry { provider: None });
    // No exporter, no layer: spans then cost what they cost for logs, nothing more.
    let traces = telemetry
        .provider
        .as_ref()
        .map(|provider| tracing_opentelemetry::layer().with_tracer(provider.tracer("titan")));
    let subscriber = tracing_subscriber::registry()
        .with(filter)
        .with(plain)
        .with(json)
        .with(traces);
    (subscriber, telemetry)
}

/// The trace exporter of a process, if any; [`Telemetry::shutdown`] flushes what it holds.
#[derive(Debug)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// An OTLP/gRPC exporter to `config.otlp_endpoint` for spans of `service` in `cell`, or
    /// `None` without an endpoint. Must run inside the Tokio runtime (the exporter's channel
    /// lives there).
    pub fn exporting(
        config: &TracingConfig,
        service: &str,
        cell: &str,
    ) -> Result<Option<Self>, KitError> {
        let Some(endpoint) = &config.otlp_endpoint else {
            return Ok(None);
        };
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint.clone())
            .build()
            .map_err(|e| KitError::config("tracing.otlpEndpoint", e.to_string()))?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            // A caller's decision wins, so one trace is recorded whole or not at all.
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                config.sample_ratio,
            ))))
            .with_resource(
                Resource::builder()
                    .with_service_name(service.to_owned())
                    .with_attribute(KeyValue::new("service.namespace", "titan"))
                    .with_attribute(KeyValue::new("titan.cell", cell.to_owned()))
                    .build(),
            )
            .build();
        EXPORTING.store(true, Ordering::Relaxed);
        Ok(Some(Self {
            provider: Some(provider),
        }))
    }

    /// Whether spans are exported.
    pub fn is_exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Exports the spans still batched and stops the exporter (kit's graceful stop).
    pub async fn shutdown(self) {
        let Some(provider) = self.provider else {
            return;
        };
        // The SDK blocks until the batch is sent, over a channel served by this runtime.
        let done = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        match done {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot flush the last spans"),
            Err(e) => tracing::warn!(error = %e, "flushing the last spans panicked"),
        }
    }
}

/// The current span's W3C trace context as `traceparent` (and `tracestate`) entries in
/// `carrier`; nothing without an exporter (no span lookup either).
pub fn inject(carrier: &mut dyn Injector) {
    if exporting() {
        TraceContextPropagator::new().inject_context(&tracing::Span::current().context(), carrier);
    }
}

/// Whether a trace exporter exists in this process (see [`Telemetry::exporting`]).
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// The current span's `traceparent`, for an event envelope; `None` without an exporter or
/// outside a recorded span.
pub fn traceparent() -> Option<String> {
    if !exporting() {
        // Not even the map.
        return None;
    }
    let mut carrier = HashMap::new();
    inject(&mut carrier);
    carrier.remove("traceparent")
}

/// `span` continuing the trace of an event's `traceparent`.
pub fn continue_event(span: &tracing::Span, traceparent: &str) {
    continue_from(span, &Traceparent(traceparent));
}

/// A lone `traceparent` (an event's) read as a trace context carrier.
struct Traceparent<'a>(&'a str);

impl Extractor for Traceparent<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        (key == "traceparent").then_some(self.0)
    }

    fn keys(&self) -> Vec<&str> {
        vec!["traceparent"]
    }
}

/// Makes `span` a child of the remote span named by the W3C trace context in `carrier` (none:
/// `span` starts a trace).
pub fn continue_from(span: &tracing::Span, carrier: &dyn Extractor) {
    let parent = TraceContextPropagator::new().extract(carrier);
    // Fails only without the OpenTelemetry layer, where there is nothing to continue.
    let _ = span.set_parent(parent);
}

/// Request headers (gRPC metadata travels as headers) read as a trace context carrier.
struct Headers<'a>(&'a http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// Outgoing gRPC metadata written as a trace context carrier.
struct Metadata<'a>(&'a mut tonic::metadata::MetadataMap);

impl Injector for Metadata<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            value.parse(),
        ) {
            self.0.insert(key, value);
        }
    }
}

/// A tower layer of kit's servers: each request runs in a server span that continues the trace
/// of its `traceparent` header. Installed only when traces are exported.
#[derive(Debug, Clone, Copy)]
pub struct TraceContextLayer {
    /// `grpc` or `http`: how the span is named and described.
    protocol: &'static str,
}

impl TraceContextLayer {
    /// For the gRPC server: spans named `package.Service/Method`.
    pub fn grpc() -> Self {
        Self { protocol: "grpc" }
    }

    /// For the HTTP server: spans named `METHOD /path`.
    pub fn http() -> Self {
        Self { protocol: "http" }
    }
}

impl<S> tower_layer::Layer<S> for TraceContextLayer {
    type Service = TraceContext<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TraceContext {
            inner,
            protocol: self.protocol,
        }
    }
}

/// The service of [`TraceContextLayer`].
#[derive(Debug, Clone)]
pub struct TraceContext<S> {
    inner: S,
    protocol: &'static str,
}

impl<S, B> tower_service::Service<http::Request<B>> for TraceContext<S>
where
    S: tower_service::Service<http::Request<B>>,
    S::Future: Future,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Instrumented<S::Future>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let path = request.uri().path();
        let span = if self.protocol == "grpc" {
            let name = path.trim_start_matches('/');
            let (service, method) = name.split_once('/').unwrap_or((name, ""));
            tracing::info_span!(
                "grpc request",
                otel.name = name,
                otel.kind = "server",
                rpc.system = "grpc",
                rpc.service = service,
                rpc.method = method,
            )
        } else {
            tracing::info_span!(
                "http request",
                otel.name = format!("{} {path}", request.method()),
                otel.kind = "server",
                http.request.method = %request.method(),
                url.path = path,
            )
        };
        continue_from(&span, &Headers(request.headers()));
        self.inner.call(request).instrument(span)
    }
}

/// The channel type of kit's gRPC clients: every call carries the caller's trace context.
pub type TracedChannel = InterceptedService<Channel, PropagateTraceContext>;

/// `channel` with every call carrying the current span's `traceparent`; a client of another
/// service (`FooServiceClient::new(traced(endpoint.connect_lazy()))`) continues the trace of the
/// request it serves. Without an exporter nothing is added.
pub fn traced(channel: Channel) -> TracedChannel {
    InterceptedService::new(channel, PropagateTraceContext)
}

/// The interceptor of [`traced`].
#[derive(Debug, Clone, Copy, Default)]
pub struct PropagateTraceContext;

impl tonic::service::Interceptor for PropagateTraceContext {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        inject(&mut Metadata(request.metadata_mut()));
        Ok(request)
    }
}
