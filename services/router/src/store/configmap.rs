//! The table in a Kubernetes ConfigMap: the document of
//! [`encoding`](crate::domain::encoding) under the key [`TABLE_KEY`], watched through the API
//! server so a change reaches every replica within the watch's latency. The operator writes it
//! with [`configmap`]; the router only reads (RBAC: `get`, `list`, `watch` on that ConfigMap).
//! A deleted ConfigMap leaves the served table in place.

use std::{collections::BTreeMap, sync::Arc};

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{
    Api, Client,
    api::ObjectMeta,
    runtime::{WatchStreamExt, watcher},
};
use titan_kit::KitError;
use tokio_util::sync::CancellationToken;

use crate::{
    app::Router,
    domain::{Table, encoding},
};

/// The ConfigMap key that holds the table.
pub const TABLE_KEY: &str = "table.json";

/// The ConfigMap `name` in `namespace` holding `table`, as the operator applies it.
pub fn configmap(name: &str, namespace: &str, table: &Table) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: Some(BTreeMap::from([
                (
                    "app.kubernetes.io/name".to_owned(),
                    "titan-router".to_owned(),
                ),
                ("app.kubernetes.io/part-of".to_owned(), "titan".to_owned()),
            ])),
            annotations: Some(BTreeMap::from([(
                "commerce.titan.dev/router-table-version".to_owned(),
                table.version().to_string(),
            )])),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(
            TABLE_KEY.to_owned(),
            encoding::encode(table),
        )])),
        ..ConfigMap::default()
    }
}

/// The admin client of the local control plane that `cargo xtask test` (or `cargo xtask kube
/// up`) runs, for tests against a real API server (the router's and the operator's, which
/// writes this ConfigMap); `Err` says why there is none, for the test's skip line.
pub async fn test_control_plane() -> Result<Client, String> {
    let dir = std::env::var_os("TITAN_TEST_KUBE_DIR").ok_or(
        "TITAN_TEST_KUBE_DIR is not set: `cargo xtask test` starts a local control plane (it \
         needs Go), or run `cargo xtask kube up` and `eval \"$(cargo xtask kube env)\"` first",
    )?;
    let path = std::path::Path::new(&dir).join("admin.kubeconfig");
    let kubeconfig = kube::config::Kubeconfig::read_from(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .map_err(|e| e.to_string())?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    Client::try_from(config).map_err(|e| e.to_string())
}

/// Creates a fresh namespace `<prefix>-<process id>` on the test control plane for one test's
/// objects; the test deletes it when done.
pub async fn test_namespace(client: &Client, prefix: &str) -> Result<String, kube::Error> {
    let name = format!("{prefix}-{}", std::process::id());
    Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone())
        .create(
            &kube::api::PostParams::default(),
            &k8s_openapi::api::core::v1::Namespace {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    ..ObjectMeta::default()
                },
                ..Default::default()
            },
        )
        .await?;
    Ok(name)
}

/// A client from the pod's service account, or the kubeconfig of `KUBECONFIG` elsewhere.
pub async fn client() -> Result<Client, KitError> {
    // kube's TLS is rustls; binaries pick the provider (see the workspace's rustls note).
    let _ = rustls::crypto::ring::default_provider().install_default();
    Client::try_default()
        .await
        .map_err(|e| KitError::Other(format!("connecting to the Kubernetes API server: {e}")))
}

/// Watches one ConfigMap and feeds every version of it to the router.
#[derive(Debug)]
pub struct ConfigMapSource {
    api: Api<ConfigMap>,
    name: String,
    router: Arc<Router>,
}

impl ConfigMapSource {
    /// `namespace` `None`: the client's default namespace (the pod's).
    pub fn new(client: Client, namespace: Option<&str>, name: &str, router: Arc<Router>) -> Self {
        let api = match namespace {
            Some(ns) => Api::namespaced(client, ns),
            None => Api::default_namespaced(client),
        };
        Self {
            api,
            name: name.to_owned(),
            router,
        }
    }

    /// Watches until `shutdown`; the watch restarts by itself (with backoff) after errors.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), KitError> {
        let config = watcher::Config::default().fields(&format!("metadata.name={}", self.name));
        let events = watcher(self.api.clone(), config).default_backoff();
        let mut events = std::pin::pin!(events);
        loop {
            let event = tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                event = events.next() => event,
            };
            match event {
                Some(Ok(watcher::Event::Apply(cm) | watcher::Event::InitApply(cm))) => {
                    self.apply(&cm);
                }
                Some(Ok(watcher::Event::Delete(_))) => {
                    tracing::warn!(configmap = %self.name, "routing table ConfigMap deleted; the served table stays");
                }
                Some(Ok(watcher::Event::Init | watcher::Event::InitDone)) => {}
                Some(Err(e)) => self.router.refused("source", &e),
                None => {
                    return Err(KitError::Other(format!(
                        "the watch of ConfigMap {} ended",
                        self.name
                    )));
                }
            }
        }
    }

    fn apply(&self, cm: &ConfigMap) {
        let origin = format!(
            "ConfigMap {}/{}",
            cm.metadata.namespace.as_deref().unwrap_or_default(),
            self.name
        );
        match cm.data.as_ref().and_then(|d| d.get(TABLE_KEY)) {
            // The router logs and counts refusals itself.
            Some(text) => drop(self.router.reload(text, &origin)),
            None => self.router.refused(
                "malformed",
                &KitError::Other(format!("{origin} has no key {TABLE_KEY}")),
            ),
        }
    }
}
