//! Distributed tracing against a minimal OTLP receiver (the collector's trace service, from the
//! `opentelemetry-proto` definitions): a request's `traceparent` continues into the server's
//! spans, kit's clients pass theirs on, an event written in a traced request carries the trace
//! through the relay into its consumers, and without an endpoint nothing is exported.

use std::collections::HashMap;

use futures::FutureExt;
use opentelemetry::trace::TraceContextExt;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use titan_kit::{
    KitError, Mounted, ServiceContext, ServiceDef,
    config::{Config, EventsConfig},
    events::{
        Consumer, ConsumerOptions, Envelope, Handler, HandlerError, Outcome, outbox, relay::Relay,
    },
    telemetry::{self, Telemetry},
    testing::{self, TestPostgres, TestRedis, otlp::Receiver},
};

/// A service with one HTTP route answering whether its handler runs inside a span.
fn traced_service() -> ServiceDef {
    testing::service("traced", |ctx: ServiceContext| {
        async move {
            let routes = axum::Router::new().route(
                "/in-span",
                axum::routing::get(|| async {
                    tracing::Span::current().id().is_some().to_string()
                }),
            );
            Ok::<_, KitError>(Mounted::new(&ctx).http(routes))
        }
        .boxed()
    })
}

/// kit's telemetry for `service` under `config` (an exporter when it names an endpoint), made
/// this thread's subscriber until the guard drops: the test's runtime runs on this one thread,
/// so the servers' spans go to it.
fn tracing_as(config: &Config, service: &str) -> (Telemetry, tracing::subscriber::DefaultGuard) {
    let exporting =
        Telemetry::exporting(&config.tracing, service, &config.cell).expect("a valid exporter");
    let (subscriber, telemetry) = telemetry::subscriber(exporting);
    (telemetry, tracing::subscriber::set_default(subscriber))
}

fn config(otlp_endpoint: Option<&str>) -> Config {
    let mut vars = HashMap::from([
        ("TITAN_GRPC_ADDR", "127.0.0.1:0".to_owned()),
        ("TITAN_HTTP_ADDR", "127.0.0.1:0".to_owned()),
        ("TITAN_ADMIN_ADDR", "127.0.0.1:0".to_owned()),
        (
            "TITAN_AUTH_HS256_SECRET",
            "0123456789abcdef0123456789abcdef".to_owned(),
        ),
    ]);
    if let Some(endpoint) = otlp_endpoint {
        vars.insert("TITAN_OTLP_ENDPOINT", endpoint.to_owned());
    }
    Config::from_sources(Some("preStopDelaySeconds: 0\n"), move |name| {
        vars.get(name).cloned()
    })
    .expect("config")
}

/// A health check carrying `traceparent` (none: no header).
async fn check(channel: tonic::transport::Channel, traceparent: &str) {
    let mut request = tonic::Request::new(HealthCheckRequest {
        service: String::new(),
    });
    request
        .metadata_mut()
        .insert("traceparent", traceparent.parse().expect("metadata value"));
    HealthClient::new(channel)
        .check(request)
        .await
        .expect("health check");
}

/// `GET /in-span` on `http` with `traceparent`: whether the handler ran inside a span.
async fn in_span(http: std::net::SocketAddr, traceparent: &str) -> String {
    reqwest::Client::new()
        .get(format!("http://{http}/in-span"))
        .header("traceparent", traceparent)
        .send()
        .await
        .expect("request")
        .text()
        .await
        .expect("body")
}

const GRPC_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const GRPC_CALLER: &str = "00f067aa0ba902b7";
const HTTP_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const HTTP_CALLER: &str = "b7ad6b7169203331";
const CLIENT_TRACE: &str = "5c3a1e9f0b7d4c2a8e6f1d3b5a7c9e0f";
const CLIENT_CALLER: &str = "1a2b3c4d5e6f7a8b";

fn traceparent(trace: &str, span: &str) -> String {
    format!("00-{trace}-{span}-01")
}

/// With `tracing.otlpEndpoint`: a gRPC call's and an HTTP request's `traceparent` make the
/// server spans children of the caller's span in the caller's trace, exported over OTLP under
/// the service's name; a call through `telemetry::traced` carries the calling span's context.
#[tokio::test]
async fn a_traceparent_continues_into_spans_exported_over_otlp() {
    let receiver = Receiver::start().await;
    let config = config(Some(receiver.endpoint()));
    let (telemetry, _scoped) = tracing_as(&config, "traced");
    assert!(telemetry.is_exporting());
    let served = testing::serve(config, vec![traced_service()]).await;

    check(
        served.channel.clone(),
        &traceparent(GRPC_TRACE, GRPC_CALLER),
    )
    .await;
    assert_eq!(
        in_span(served.bound.http, &traceparent(HTTP_TRACE, HTTP_CALLER)).await,
        "true"
    );
    // A client call made while serving a request: the request's span is the caller.
    let serving = tracing::info_span!("serving a request");
    telemetry::continue_from(&serving, &{
        let mut carrier = HashMap::new();
        carrier.insert(
            "traceparent".to_owned(),
            traceparent(CLIENT_TRACE, CLIENT_CALLER),
        );
        carrier
    });
    let client_span = serving
        .context()
        .span()
        .span_context()
        .span_id()
        .to_string();
    HealthClient::new(telemetry::traced(served.channel.clone()))
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .instrument(serving)
        .await
        .expect("traced health check");

    served.stop.cancel();
    served.task.await.expect("join").expect("clean stop");
    telemetry.shutdown().await;

    let grpc = receiver
        .named("grpc.health.v1.Health/Check", GRPC_TRACE)
        .await;
    assert_eq!(
        (
            grpc.service.as_str(),
            grpc.kind,
            grpc.parent_span_id.as_str()
        ),
        ("traced", SpanKind::Server as i32, GRPC_CALLER)
    );
    let http = receiver.named("GET /in-span", HTTP_TRACE).await;
    assert_eq!(
        (
            http.service.as_str(),
            http.kind,
            http.parent_span_id.as_str()
        ),
        ("traced", SpanKind::Server as i32, HTTP_CALLER)
    );
    let caller = receiver.named("serving a request", CLIENT_TRACE).await;
    assert_eq!(
        (caller.span_id.as_str(), caller.parent_span_id.as_str()),
        (client_span.as_str(), CLIENT_CALLER)
    );
    let called = receiver
        .named("grpc.health.v1.Health/Check", CLIENT_TRACE)
        .await;
    assert_eq!(called.parent_span_id, client_span);
}

/// Without an endpoint there is no exporter and the servers add no span to a request, even one
/// that carries a `traceparent`.
#[tokio::test]
async fn without_an_endpoint_nothing_is_traced() {
    let receiver = Receiver::start().await;
    let config = config(None);
    let (telemetry, _scoped) = tracing_as(&config, "traced");
    assert!(!telemetry.is_exporting());
    let served = testing::serve(config, vec![traced_service()]).await;

    check(
        served.channel.clone(),
        &traceparent(GRPC_TRACE, GRPC_CALLER),
    )
    .await;
    assert_eq!(
        in_span(served.bound.http, &traceparent(HTTP_TRACE, HTTP_CALLER)).await,
        "false"
    );
    served.stop.cancel();
    served.task.await.expect("join").expect("clean stop");
    telemetry.shutdown().await;
    assert_eq!(receiver.spans(), []);
}

/// Handles every event, inside the consumer's span: the span a handler's own work runs in.
#[derive(Debug, Clone, Copy)]
struct Accept;

impl Handler for Accept {
    async fn handle(
        &self,
        _tx: &mut sqlx::PgConnection,
        event: &Envelope,
    ) -> Result<(), HandlerError> {
        tracing::info_span!("applying the event", event = %event.id).in_scope(|| Ok(()))
    }
}

const EVENT_TRACE: &str = "7d1e8a2b4c6f0e9d3a5b7c9e1f2a4b6c";
const EVENT_CALLER: &str = "2c4e6a8b0d1f3e5a";

/// An event written inside a traced request carries its `traceparent`; the relay's span and the
/// consumer's span (and what the handler does inside it) continue that request's trace.
#[tokio::test]
async fn an_event_continues_the_trace_of_the_request_that_wrote_it() {
    let receiver = Receiver::start().await;
    let config = config(Some(receiver.endpoint()));
    let (telemetry, _scoped) = tracing_as(&config, "orders");
    let (db, redis) = (TestPostgres::new().await, TestRedis::new().await);

    // The request: a span continuing its caller's trace writes the event in its transaction.
    let request = tracing::info_span!("placing an order");
    telemetry::continue_from(
        &request,
        &HashMap::from([(
            "traceparent".to_owned(),
            traceparent(EVENT_TRACE, EVENT_CALLER),
        )]),
    );
    let request_span = request
        .context()
        .span()
        .span_context()
        .span_id()
        .to_string();
    let event = async {
        let event = Envelope::new("test", "orders.placed", 1, &serde_json::json!({ "n": 1 }))
            .expect("event");
        let mut tx = db.pool.begin().await.expect("tx");
        outbox::write(&mut tx, "orders", &event)
            .await
            .expect("outbox");
        tx.commit().await.expect("commit");
        event
    }
    .instrument(request)
    .await;
    assert_eq!(
        event.traceparent.as_deref().map(|tp| tp.split('-').nth(1)),
        Some(Some(EVENT_TRACE))
    );

    let events = EventsConfig::default();
    Relay::new(db.pool.clone(), redis.handle.clone(), "orders", &events)
        .relay_once()
        .await
        .expect("relay");
    let mut options = ConsumerOptions::new("orders", "billing", "c1", &events);
    options.block = std::time::Duration::from_millis(100);
    let mut consumer = Consumer::new(db.pool.clone(), redis.handle.clone(), options, Accept)
        .await
        .expect("consumer");
    // The first read is the consumer's own pending list (empty); the event, relayed already,
    // comes with the next.
    assert!(
        consumer
            .next_batch()
            .await
            .expect("read pending")
            .is_empty()
    );
    let message = consumer
        .next_batch()
        .await
        .expect("read")
        .into_iter()
        .next()
        .expect("the relayed event");
    let outcome = consumer.handle(&message).await;
    assert_eq!(outcome, Outcome::Handled);
    consumer.settle(&message, &outcome).await.expect("settle");
    telemetry.shutdown().await;

    let relayed = receiver.named("relay orders.placed", EVENT_TRACE).await;
    assert_eq!(
        (
            relayed.service.as_str(),
            relayed.kind,
            relayed.parent_span_id.as_str()
        ),
        ("orders", SpanKind::Producer as i32, request_span.as_str())
    );
    let handled = receiver.named("handle orders.placed", EVENT_TRACE).await;
    assert_eq!(
        (
            handled.kind,
            handled.parent_span_id.as_str(),
            handled
                .attributes
                .get("messaging.consumer.group.name")
                .map(String::as_str),
        ),
        (
            SpanKind::Consumer as i32,
            request_span.as_str(),
            Some("billing")
        )
    );
    let applied = receiver.named("applying the event", EVENT_TRACE).await;
    assert_eq!(applied.parent_span_id, handled.span_id);
}
