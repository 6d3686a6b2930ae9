//! Build stage of the Cell controller (pure: a Cell, its credentials and resolved connections
//! in; every object the cell should own out). The parts live in their own modules: isolation,
//! datastores, media; this one assembles them with the namespace, the Secrets and the Services.

use std::collections::BTreeMap;

use k8s_openapi::{
    ByteString,
    api::{
        apps::v1::{Deployment, StatefulSet},
        core::v1::{
            ConfigMap, LimitRange, Namespace, ResourceQuota, Secret, Service as CoreService,
        },
        networking::v1::NetworkPolicy,
    },
    apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference},
};
use kube::{Resource, ResourceExt};
use titan_crds::{
    Cell, DatastoreKind, Service, ServiceKind, ServiceSpec, cell::DeletionPolicy,
    config::CampaignConfig,
};

use super::{
    certificates::{self, Certificate, Tls},
    connections::Connections,
    credentials::{self, Credentials, Key},
    datastores,
    gateway::{self, BackendTlsPolicy, GrpcRoute, HttpRoute},
    isolation, media, observe,
};
use crate::{
    cnpg::{Cluster, ScheduledBackup},
    labels,
    shared::{CLICKHOUSE_LOGIN_KEYS, CellView, TURN_SECRET_KEY},
};

/// Key (and variable) of the token key in the auth Secret.
const AUTH_SECRET_KEY: &str = "TITAN_AUTH_HS256_SECRET";

/// Everything the Cell controller applies, in apply order (isolation first, so no pod ever runs
/// unfenced; Secrets and ConfigMaps before the workloads that read them; the Services, then the
/// routes to them, last):
/// destructure it so that a new kind of object cannot be built and then forgotten by `apply`.
#[derive(Debug, Clone, PartialEq)]
pub struct CellObjects {
    /// The cell's namespace.
    pub namespace: Namespace,
    /// The cell's share of the cluster, from `spec.capacity` (none without CPU or memory).
    pub resource_quotas: Vec<ResourceQuota>,
    /// Default and largest container requests, so the quota can be enforced.
    pub limit_ranges: Vec<LimitRange>,
    /// Default-deny and the allowed paths.
    pub network_policies: Vec<NetworkPolicy>,
    /// Credentials (kept under Retain), and the Secrets services read: auth, TURN, and
    /// datastores once every datastore's connection is known.
    pub secrets: Vec<Secret>,
    /// Rendered configs of the media servers.
    pub config_maps: Vec<ConfigMap>,
    /// Headless Services of the builtin datastores and the media servers' Services.
    pub core_services: Vec<CoreService>,
    /// Builtin datastores.
    pub stateful_sets: Vec<StatefulSet>,
    /// The CloudNativePG cluster, when PostgreSQL's provider is cloudnative-pg.
    pub clusters: Vec<Cluster>,
    /// Its backup schedule, when `spec.datastores.postgres.backup` is set.
    pub scheduled_backups: Vec<ScheduledBackup>,
    /// Media servers.
    pub deployments: Vec<Deployment>,
    /// One `Service` per enabled Titan service.
    pub services: Vec<Service>,
    /// The cell's GRPCRoute (`spec.edge`), to the Services' gRPC ports.
    pub grpc_routes: Vec<GrpcRoute>,
    /// The cell's HTTPRoute (`spec.edge`), to the Services' HTTP ports.
    pub http_routes: Vec<HttpRoute>,
    /// Under `spec.edge` and `spec.tls`, how the Gateway reaches each Service over TLS.
    pub backend_tls_policies: Vec<BackendTlsPolicy>,
    /// cert-manager's `Certificate` of the services (`spec.tls.certManager`); applied before
    /// the Services, whose pods mount the Secret it writes.
    pub certificates: Vec<Certificate>,
}

/// The cell an object is built for, and the metadata every object of it carries.
#[derive(Debug, Clone)]
pub struct CellMeta<'a> {
    /// The cell.
    pub cell: &'a Cell,
    /// Its name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    owner: Option<OwnerReference>,
}

impl<'a> CellMeta<'a> {
    /// The metadata of the objects of `cell`.
    pub fn new(cell: &'a Cell) -> Self {
        Self {
            cell,
            name: cell.name_any(),
            namespace: cell.namespace_name(),
            owner: cell.controller_owner_ref(&()),
        }
    }

    /// The common labels plus the component label, without a version: the cell's own objects
    /// (datastores, media servers, Secrets, policies) do not run the cell's Titan release, so a
    /// version bump must not touch them.
    pub fn labels(&self, component: &str) -> BTreeMap<String, String> {
        let mut labels = labels::unversioned(&self.name, component);
        labels.insert(labels::COMPONENT.into(), component.into());
        labels
    }

    /// The labels of a workload running `image` (and of its pods): [`Self::labels`] with the
    /// image's tag as `app.kubernetes.io/version`, which changes only with the image itself.
    pub fn workload_labels(&self, component: &str, image: &str) -> BTreeMap<String, String> {
        let mut labels = self.labels(component);
        labels.insert(
            labels::VERSION.into(),
            labels::label_value(labels::image_tag(image)),
        );
        labels
    }

    /// The labels selecting a component's pods.
    pub fn selector(&self, component: &str) -> BTreeMap<String, String> {
        labels::component_selector(&self.name, component)
    }

    /// Metadata of an object the Cell owns: garbage collection removes it with the Cell.
    pub fn meta(&self, name: &str, component: &str) -> ObjectMeta {
        ObjectMeta {
            owner_references: self.owner.clone().map(|o| vec![o]),
            ..self.data_meta(name, component)
        }
    }

    /// Metadata of an object that holds data (credentials, a database): owned by the Cell only
    /// under `deletionPolicy: Delete`, so under Retain it outlives the Cell and a Cell created
    /// again with the same name adopts it.
    pub fn data_meta(&self, name: &str, component: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.into()),
            namespace: Some(self.namespace.clone()),
            labels: Some(self.labels(component)),
            owner_references: self.owner_if_delete(),
            ..Default::default()
        }
    }

    fn owner_if_delete(&self) -> Option<Vec<OwnerReference>> {
        match self.cell.spec.deletion_policy {
            DeletionPolicy::Delete => self.owner.clone().map(|o| vec![o]),
            DeletionPolicy::Retain => None,
        }
    }

    /// Replicas of a one-instance workload: none while the cell is stopped, whose data stays.
    pub fn replicas(&self) -> i32 {
        if self.cell.spec.operation.stopped {
            0
        } else {
            1
        }
    }

    /// The image of the `titan` binary at the cell's version: `spec.image` as it is when it
    /// carries a tag or a digest (the CRD refuses a tag other than `spec.version`, and a digest
    /// pins the image whatever the version says), else `spec.image:spec.version`.
    pub fn titan_image(&self) -> String {
        let image = &self.cell.spec.image;
        let reference = labels::ImageRef::parse(image);
        if reference.tag.is_some() || reference.digest.is_some() {
            image.clone()
        } else {
            format!("{image}:{}", self.cell.spec.version)
        }
    }
}

/// The objects a cell should own; `tls` is its certificates as resolved this round, `network`
/// says who outside the cell its policies admit.
pub fn build(
    cell: &Cell,
    credentials: &Credentials,
    tls: &Tls,
    connections: &Connections,
    network: &isolation::NetworkSettings,
) -> CellObjects {
    let cell_meta = CellMeta::new(cell);
    let view = CellView::of(cell);

    // The namespace says which release the cell runs; relabelling it restarts nothing.
    let mut ns_labels = labels::common(&cell_meta.name, "cell", &cell.spec.version);
    // NetworkPolicies select namespaces by this label (the API server also sets it).
    ns_labels.insert(
        "kubernetes.io/metadata.name".into(),
        cell_meta.namespace.clone(),
    );
    let namespace = Namespace {
        metadata: ObjectMeta {
            name: Some(cell_meta.namespace.clone()),
            labels: Some(ns_labels),
            // Under Retain the namespace holds the kept volumes and credentials.
            owner_references: cell_meta.owner_if_delete(),
            ..Default::default()
        },
        ..Default::default()
    };

    let secret = |meta: ObjectMeta, data: BTreeMap<String, String>| Secret {
        metadata: meta,
        type_: Some("Opaque".into()),
        data: Some(
            data.into_iter()
                .map(|(k, v)| (k, ByteString(v.into_bytes())))
                .collect(),
        ),
        ..Default::default()
    };
    let mut secrets = vec![
        Secret {
            metadata: cell_meta
                .data_meta(&credentials::secret_name(&cell_meta.name), "credentials"),
            type_: Some("Opaque".into()),
            data: Some(credentials.data()),
            ..Default::default()
        },
        secret(
            cell_meta.meta(&view.auth_secret(), "auth"),
            BTreeMap::from([(
                AUTH_SECRET_KEY.into(),
                credentials.get(Key::AuthSecret).into(),
            )]),
        ),
    ];
    if view.turn {
        secrets.push(secret(
            cell_meta.meta(&view.turn_secret(), "turn"),
            BTreeMap::from([(
                TURN_SECRET_KEY.into(),
                credentials.get(Key::TurnSecret).into(),
            )]),
        ));
    }
    // Without every connection there is no datastores Secret: services wait rather than start
    // with a variable missing.
    if let Some(values) = connections.datastore_values() {
        secrets.push(secret(
            cell_meta.meta(&view.datastores_secret(), "datastores"),
            values,
        ));
    }

    let (tls_secrets, certificates) = certificates::build(&cell_meta, tls);
    secrets.extend(tls_secrets);

    let isolation::IsolationObjects {
        resource_quotas,
        limit_ranges,
        network_policies,
    } = isolation::build(&cell_meta, network);
    let datastores::DatastoreObjects {
        stateful_sets,
        services: datastore_services,
        clusters,
        scheduled_backups,
    } = datastores::build(&cell_meta, credentials, tls.certificate.as_deref());
    let media::MediaObjects {
        config_maps,
        services: media_services,
        deployments,
    } = media::build(
        &cell_meta,
        credentials,
        object_storage_values(connections),
        tls.bundle.as_deref(),
    );
    let mut core_services = datastore_services;
    core_services.extend(media_services);
    let gateway::Routes {
        grpc_routes,
        http_routes,
        backend_tls_policies,
        ca_bundles,
    } = gateway::build(&cell_meta, tls.bundle.as_deref());
    let mut config_maps = config_maps;
    config_maps.extend(ca_bundles);

    CellObjects {
        namespace,
        resource_quotas,
        limit_ranges,
        network_policies,
        secrets,
        config_maps,
        core_services,
        stateful_sets,
        clusters,
        scheduled_backups,
        deployments,
        services: services(&cell_meta, &view, credentials, tls, connections),
        grpc_routes,
        http_routes,
        backend_tls_policies,
        certificates,
    }
}

/// The object storage credentials, once they resolved.
fn object_storage_values(connections: &Connections) -> Option<&BTreeMap<String, String>> {
    connections
        .object_storage
        .as_ref()
        .and_then(|r| r.as_ref().ok())
}

/// The [`labels::SECRETS_HASH`] of one Titan service: the Secret values its pods read (the
/// token key, the keys of the datastores it uses, the TURN secret for videocall, the object
/// storage credentials for the services that upload, the CA bundle under TLS), by the variable
/// they set. Not the services' certificate: kit reloads a renewed one in place, where a rollout
/// would only drop connections.
fn service_secrets_hash(
    kind: ServiceKind,
    view: &CellView,
    credentials: &Credentials,
    tls: &Tls,
    connections: &Connections,
) -> String {
    let datastores = connections.datastore_values().unwrap_or_default();
    let mut consumed: Vec<(&str, &str)> = vec![(AUTH_SECRET_KEY, credentials.get(Key::AuthSecret))];
    for store in kind.default_datastores() {
        let mut keys = vec![store.env_var()];
        if store == DatastoreKind::ClickHouse {
            keys.extend(CLICKHOUSE_LOGIN_KEYS);
        }
        consumed.extend(
            keys.into_iter()
                .filter_map(|key| Some((key, datastores.get(key)?.as_str()))),
        );
    }
    if view.turn && kind == ServiceKind::Videocall {
        consumed.push((TURN_SECRET_KEY, credentials.get(Key::TurnSecret)));
    }
    if let Some(bundle) = &tls.bundle {
        consumed.push(("TITAN_TLS_CA_FILE", bundle));
    }
    if kind.uses_object_storage() {
        consumed.extend(
            object_storage_values(connections)
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        );
    }
    labels::secrets_hash(consumed)
}

/// livestream's config with the cell's HLS base as `hlsBaseUrl` unless the cell sets its own:
/// without it livestream answers no playback URL.
fn with_hls_base(
    config: Option<serde_json::Value>,
    hls_base: Option<String>,
) -> Option<serde_json::Value> {
    let Some(base) = hls_base else {
        return config;
    };
    let mut config = config.unwrap_or_else(|| serde_json::json!({}));
    if let Some(fields) = config.as_object_mut() {
        fields
            .entry("hlsBaseUrl")
            .or_insert(serde_json::Value::String(base));
    }
    Some(config)
}

/// videocall's config with the cell's TURN URIs as `turn.uris` unless the cell lists its own:
/// without them videocall hands its clients no TURN server, and calls between two NATs fail.
fn with_turn_uris(
    config: Option<serde_json::Value>,
    uris: Vec<String>,
) -> Option<serde_json::Value> {
    if uris.is_empty() {
        return config;
    }
    let mut config = config.unwrap_or_else(|| serde_json::json!({}));
    if let Some(fields) = config.as_object_mut() {
        let turn = fields
            .entry("turn")
            .or_insert_with(|| serde_json::json!({}));
        if let Some(turn) = turn.as_object_mut() {
            let listed = turn
                .get("uris")
                .and_then(serde_json::Value::as_array)
                .is_some_and(|u| !u.is_empty());
            if !listed {
                turn.insert("uris".into(), serde_json::json!(uris));
            }
        }
    }
    Some(config)
}

/// campaign's config with `abtestingUrl` over https where it names the cell's own abtesting
/// service (absent, or the default, which the typed config fills in): under TLS that service
/// answers nothing else. A URL of the user's own is kept.
fn with_abtesting_over_tls(config: Option<serde_json::Value>) -> Option<serde_json::Value> {
    let plaintext = CampaignConfig::default().abtesting_url;
    let mut config = config.unwrap_or_else(|| serde_json::json!({}));
    if let Some(fields) = config.as_object_mut() {
        let own = fields
            .get("abtestingUrl")
            .is_none_or(|url| url.as_str() == Some(plaintext.as_str()));
        if own {
            fields.insert(
                "abtestingUrl".into(),
                serde_json::Value::String(plaintext.replacen("http://", "https://", 1)),
            );
        }
    }
    Some(config)
}

fn services(
    cell_meta: &CellMeta,
    view: &CellView,
    credentials: &Credentials,
    tls: &Tls,
    connections: &Connections,
) -> Vec<Service> {
    let cell = cell_meta.cell;
    let version = &cell.spec.version;
    ServiceKind::TITAN
        .into_iter()
        .filter_map(|kind| {
            let settings = cell.spec.services.get(kind)?;
            if !settings.enabled {
                return None;
            }
            let mut service_labels = labels::common(&cell_meta.name, kind.as_str(), version);
            service_labels.insert(labels::SERVICE.into(), kind.as_str().into());
            let mut service = Service::new(
                kind.as_str(),
                ServiceSpec {
                    cell: cell_meta.name.clone(),
                    service: kind,
                    image: settings.image.unwrap_or_else(|| cell_meta.titan_image()),
                    replicas: settings.replicas,
                    config: match kind {
                        ServiceKind::Livestream => {
                            with_hls_base(settings.config, observe::hls_base(cell))
                        }
                        ServiceKind::Videocall => {
                            with_turn_uris(settings.config, observe::turn_uris(cell))
                        }
                        ServiceKind::Campaign if view.tls => {
                            with_abtesting_over_tls(settings.config)
                        }
                        _ => settings.config,
                    },
                    datastores: None,
                    command: None,
                    args: None,
                    autoscaling: settings.autoscaling,
                    resources: settings.resources,
                    pod_overrides: settings.pod_overrides,
                },
            );
            service.metadata.namespace = Some(cell_meta.namespace.clone());
            service.metadata.labels = Some(service_labels);
            // The Service controller copies it onto the pod template.
            service.metadata.annotations = Some(BTreeMap::from([(
                labels::SECRETS_HASH.to_string(),
                service_secrets_hash(kind, view, credentials, tls, connections),
            )]));
            service.metadata.owner_references = cell_meta.owner.clone().map(|o| vec![o]);
            Some(service)
        })
        .collect()
}
