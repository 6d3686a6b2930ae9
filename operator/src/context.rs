//! What every reconcile round shares: the client, metrics, the Event recorder and the per-object
//! error backoff.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::{
    Client,
    runtime::{
        controller::Action,
        events::{Event, EventType, Recorder, Reporter},
    },
};

use crate::{Error, MANAGER, cache::Caches, cell::isolation::NetworkSettings, metrics::Metrics};

/// Shared state of the controllers.
#[derive(Clone)]
pub struct Context {
    /// Client of the API server.
    pub client: Client,
    /// Reconcile metrics.
    pub metrics: Metrics,
    recorder: Recorder,
    failures: Arc<Mutex<HashMap<String, u32>>>,
    /// How often a healthy object is looked at again even without a change.
    pub resync: Duration,
    /// Who outside a cell its NetworkPolicies admit (DNS, CloudNativePG, monitoring).
    pub network: NetworkSettings,
    /// Watch caches of the cells' children; without them (tests, `render`) rounds LIST.
    pub caches: Option<Caches>,
    /// Whether the API server served the Gateway API's GRPCRoute and HTTPRoute when the
    /// operator started: only then are a cell's routes read, applied and pruned (a request for
    /// a kind the server does not serve fails every time).
    pub gateway_api: bool,
    /// Whether the API server served cert-manager's `Certificate` when the operator started:
    /// only then are the Certificates of cells on `spec.tls.certManager` read, applied and
    /// pruned.
    pub cert_manager: bool,
    /// Whether the API server served the Gateway API's `BackendTLSPolicy` (v1) when the
    /// operator started: only then are the policies of cells with `spec.edge` and `spec.tls`
    /// read, applied and pruned.
    pub backend_tls: bool,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("resync", &self.resync)
            .finish_non_exhaustive()
    }
}

impl Context {
    /// A context reporting Events as `titan-operator` (instance `instance`).
    pub fn new(client: Client, metrics: Metrics, instance: Option<String>) -> Self {
        let reporter = Reporter {
            controller: MANAGER.to_string(),
            instance,
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            failures: Arc::default(),
            resync: Duration::from_secs(300),
            network: NetworkSettings::default(),
            caches: None,
            gateway_api: false,
            cert_manager: false,
            backend_tls: false,
        }
    }

    /// The same context, with the Gateway API served (or not).
    pub fn with_gateway_api(self, gateway_api: bool) -> Self {
        Self {
            gateway_api,
            ..self
        }
    }

    /// The same context, with the Gateway API's BackendTLSPolicy served (or not).
    pub fn with_backend_tls(self, backend_tls: bool) -> Self {
        Self {
            backend_tls,
            ..self
        }
    }

    /// The same context, with cert-manager installed (or not).
    pub fn with_cert_manager(self, cert_manager: bool) -> Self {
        Self {
            cert_manager,
            ..self
        }
    }

    /// The same context, reading the cells' children from `caches`.
    pub fn with_caches(self, caches: Caches) -> Self {
        Self {
            caches: Some(caches),
            ..self
        }
    }

    /// The same context, admitting `network`'s peers to the cells it builds.
    pub fn with_network(self, network: NetworkSettings) -> Self {
        Self { network, ..self }
    }

    /// Publishes an Event about `object`; a failure is logged, never fatal, because an Event is
    /// a courtesy to people and must not stall a reconcile.
    pub async fn event(
        &self,
        object: &ObjectReference,
        warning: bool,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let event = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.to_string(),
            note: Some(note.chars().take(1024).collect()),
            action: action.to_string(),
            secondary: None,
        };
        if let Err(error) = self.recorder.publish(&event, object).await {
            tracing::warn!(%error, reason, "cannot publish event");
        }
    }

    /// The delay before retrying `key` after another failure: 5 s doubling up to 5 minutes.
    pub fn backoff(&self, key: &str) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = failures.entry(key.to_string()).or_insert(0);
        *n = n.saturating_add(1);
        let seconds = 5u64.saturating_mul(1 << (*n - 1).min(6));
        Duration::from_secs(seconds.min(300))
    }

    /// Runs one reconcile round of `object`: records the metrics, clears the backoff on success,
    /// and turns a failure into a Warning Event with its stable reason.
    pub async fn round(
        &self,
        controller: &'static str,
        key: &str,
        object: &ObjectReference,
        round: impl Future<Output = Result<Action, Error>>,
    ) -> Result<Action, Error> {
        let start = Instant::now();
        let result = round.await;
        let failure = result
            .as_ref()
            .err()
            .filter(|e| e.waiting().is_none())
            .map(Error::reason);
        self.metrics.observe(controller, start, failure);
        match &result {
            // Waiting is progress, not a failure: no backoff grows and nobody is warned.
            Ok(_) => self.succeeded(key),
            Err(error) if error.waiting().is_some() => self.succeeded(key),
            Err(error) => {
                self.event(object, true, error.reason(), "Reconcile", error.to_string())
                    .await
            }
        }
        result
    }

    /// Forgets the failures of `key` after a round succeeded.
    pub fn succeeded(&self, key: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures.remove(key);
    }
}
