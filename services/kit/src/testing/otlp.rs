//! A minimal OTLP receiver for tests of distributed tracing: the trace service of an
//! OpenTelemetry collector (from the `opentelemetry-proto` definitions) on a free loopback port,
//! keeping every span it is sent. Point `TITAN_OTLP_ENDPOINT` (`tracing.otlpEndpoint`) at
//! [`Receiver::endpoint`].

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
    common::v1::{KeyValue, any_value::Value},
};
use tokio_stream::wrappers::TcpListenerStream;

use super::eventually;

/// A span as the receiver got it, with the service that sent it; ids in lower-case hex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The resource's `service.name`.
    pub service: String,
    pub name: String,
    /// `opentelemetry_proto::tonic::trace::v1::span::SpanKind` as a number.
    pub kind: i32,
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a trace's root.
    pub parent_span_id: String,
    /// The span's string attributes.
    pub attributes: BTreeMap<String, String>,
}

/// The trace service of a collector, serving until the test's runtime ends.
#[derive(Debug, Clone)]
pub struct Receiver {
    spans: Arc<Mutex<Vec<Received>>>,
    endpoint: String,
}

#[derive(Debug, Clone)]
struct Service(Arc<Mutex<Vec<Received>>>);

fn strings(attributes: &[KeyValue]) -> BTreeMap<String, String> {
    attributes
        .iter()
        .filter_map(|kv| match kv.value.as_ref()?.value.as_ref()? {
            Value::StringValue(s) => Some((kv.key.clone(), s.clone())),
            _ => None,
        })
        .collect()
}

#[tonic::async_trait]
impl TraceService for Service {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.0.lock().expect("receiver lock");
        for resource in request.into_inner().resource_spans {
            let service = resource
                .resource
                .map(|r| strings(&r.attributes))
                .and_then(|mut a| a.remove("service.name"))
                .unwrap_or_default();
            for span in resource.scope_spans.into_iter().flat_map(|s| s.spans) {
                spans.push(Received {
                    service: service.clone(),
                    attributes: strings(&span.attributes),
                    name: span.name,
                    kind: span.kind,
                    trace_id: hex::encode(span.trace_id),
                    span_id: hex::encode(span.span_id),
                    parent_span_id: hex::encode(span.parent_span_id),
                });
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

impl Receiver {
    /// Serves a receiver on a free loopback port.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the OTLP receiver");
        let addr = listener.local_addr().expect("receiver address");
        let spans = Arc::new(Mutex::new(Vec::new()));
        let server = tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(Service(spans.clone())))
            .serve_with_incoming(TcpListenerStream::new(listener));
        tokio::spawn(server);
        Self {
            spans,
            endpoint: format!("http://{addr}"),
        }
    }

    /// Its OTLP/gRPC endpoint, `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<Received> {
        self.spans.lock().expect("receiver lock").clone()
    }

    /// The first span that `matches`, once it arrived (the test fails after a deadline).
    pub async fn span(&self, what: &str, matches: impl Fn(&Received) -> bool) -> Received {
        eventually(what, || async { self.spans().into_iter().find(&matches) }).await
    }

    /// The span named `name` in trace `trace_id`, once it arrived.
    pub async fn named(&self, name: &str, trace_id: &str) -> Received {
        self.span(&format!("span {name} of trace {trace_id}"), |s| {
            s.name == name && s.trace_id == trace_id
        })
        .await
    }

    /// Whether `ancestor` is `span`'s parent, or its parent's, and so on, among the spans
    /// received.
    pub fn descends(&self, span: &Received, ancestor: &str) -> bool {
        let spans = self.spans();
        let mut parent = span.parent_span_id.clone();
        // A chain is at most as long as the spans received (no loop on bad data).
        for _ in 0..=spans.len() {
            if parent == ancestor {
                return true;
            }
            match spans.iter().find(|s| s.span_id == parent) {
                Some(next) => parent.clone_from(&next.parent_span_id),
                None => return false,
            }
        }
        false
    }
}
