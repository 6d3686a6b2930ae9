//! The `Cell` resource (cluster-scoped): one complete, isolated copy of the platform in its own
//! namespace. The Cell controller turns it into the namespace and one `Service` per enabled
//! Titan service, and reports their aggregate status here.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::core::v1::ResourceRequirements,
    apimachinery::pkg::{api::resource::Quantity, apis::meta::v1::Condition},
};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{
    common::{Autoscaling, conditions_schema, preserve_unknown_object, resources_schema},
    config::{
        AbtestingConfig, AnalyticsConfig, CampaignConfig, ChatConfig, CouponConfig, DriverConfig,
        FlashsaleConfig, FraudConfig, GamificationConfig, LivestreamConfig, PricingConfig,
        PrivacyConfig, ShippingConfig, TrackingConfig, VideocallConfig, WarehouseConfig,
    },
    kind::ServiceKind,
};

/// A Cell's name is the value of the `commerce.titan.dev/cell` (and `app.kubernetes.io/instance`)
/// label on everything the cell owns: a label value has at most 63 characters. The API server
/// already holds the name to a DNS subdomain (lower-case letters, digits, `-`, `.`).
const NAME_IS_A_LABEL_VALUE: &str = "size(self.metadata.name) <= 63";
const NAME_IS_A_LABEL_VALUE_MESSAGE: &str = "a Cell name has at most 63 characters: it is the value of the commerce.titan.dev/cell label on every object of the cell";
/// Without `spec.namespace` the cell lives in `titan-<name>` ([`Cell::namespace_name`]), a DNS
/// label: at most 63 characters, so 57 for the name, and no `.` (a DNS subdomain without dots is
/// a DNS label). `namespace` is a CEL keyword: a field of that name is `__namespace__` in CEL
/// (newer API servers also accept the plain name, kube's client-side engine does not).
const NAME_MAKES_A_NAMESPACE: &str = "(has(self.spec) && has(self.spec.__namespace__)) || (size(self.metadata.name) <= 57 && !self.metadata.name.contains('.'))";
const NAME_MAKES_A_NAMESPACE_MESSAGE: &str = "a Cell without spec.namespace lives in the namespace titan-<name>, a DNS label: its name needs at most 57 characters and no '.' (or set spec.namespace)";

/// The desired state of a cell.
// kube's printcolumn(...) repeats `type_ = ...` per column, which clippy takes for duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[kube(
    group = "commerce.titan.dev",
    version = "v1alpha1",
    kind = "Cell",
    plural = "cells",
    shortname = "cell",
    category = "titan",
    status = "CellStatus",
    derive = "PartialEq",
    doc = "A cell: a complete, isolated copy of the Titan platform (every service and every datastore) in its own namespace, serving a slice of the users. Scale by adding cells.",
    // The name becomes label values and, without spec.namespace, the namespace `titan-<name>`:
    // a name that makes neither valid is refused at admission, not by a failing reconcile.
    validation = Rule::new(NAME_IS_A_LABEL_VALUE).message(NAME_IS_A_LABEL_VALUE_MESSAGE),
    validation = Rule::new(NAME_MAKES_A_NAMESPACE).message(NAME_MAKES_A_NAMESPACE_MESSAGE),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether every enabled service is ready"
    ),
    printcolumn(
        name = "Services",
        type_ = "string",
        json_path = ".status.services.summary",
        description = "Ready services out of enabled services"
    ),
    printcolumn(
        name = "Version",
        type_ = "string",
        json_path = ".status.version",
        description = "The Titan release every ready service runs"
    ),
    printcolumn(
        name = "Wave",
        type_ = "integer",
        json_path = ".spec.rollout.wave",
        description = "Rollout wave (0 = canary)"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "has(self.namespace) == has(oldSelf.namespace)",
    "message": "namespace cannot be added or removed after creation"
}, {
    "rule": IMAGE_TAG_IS_VERSION,
    "message": "spec.image has a tag other than spec.version: drop the tag (the version is the tag) or make them equal"
}, {
    "rule": PINNED_IMAGE_MOVES_WITH_VERSION,
    "message": "spec.image is pinned by digest: change its digest together with spec.version, or the services keep running the pinned image"
}]))]
pub struct CellSpec {
    /// Titan release: the default image tag of every service of the cell.
    #[schemars(
        length(max = 128),
        regex(pattern = r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
    )]
    pub version: String,
    /// Repository of the one `titan` service image (`host[:port]/path`); each service runs
    /// `image:version` unless it overrides its image. A tag here must equal `version`; with a
    /// digest (`repo@sha256:…` or `repo:version@sha256:…`) the image is used as it is, pinned.
    #[serde(default = "default_image")]
    // Bounded so that the API server's cost estimate of the CEL rules reading it stays small.
    #[schemars(length(min = 1, max = 512))]
    pub image: String,
    /// Cloud region the cell runs in; informational.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Namespace of the cell; defaults to `titan-<cell name>`. Cannot be changed after creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "namespace is immutable"}]))]
    pub namespace: Option<String>,
    /// The cell's hard size: scale by adding cells, not by growing one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<Capacity>,
    /// Where the cell stands in fleet rollouts.
    #[serde(default)]
    pub rollout: Rollout,
    /// The cell's share of the fleet's users in the cell router's table.
    #[serde(default)]
    pub routing: Routing,
    /// Switches for operating the cell: pause reconciliation or stop every service.
    #[serde(default)]
    pub operation: Operation,
    /// What happens to the cell's data when the Cell is deleted.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// Per-service settings; every Titan service is on unless disabled here.
    #[serde(default)]
    pub services: CellServices,
    /// The cell's datastores.
    #[serde(default)]
    pub datastores: Datastores,
    /// The cell's media servers (TURN for calls, RTMP for live streams).
    #[serde(default)]
    pub media: Media,
    /// Routes from a Gateway (Gateway API) to the cell's services; absent = no routes, and
    /// the ones the cell had are removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edge: Option<Edge>,
    /// Users' tokens from an identity provider, verified by every Titan service of the cell
    /// beside the cell's own HS256 key (which service-to-service calls keep using).
    #[serde(default)]
    pub auth: CellAuth,
    /// TLS on every Titan service's gRPC and HTTP ports, and its calls to other services
    /// verified against the cell's CA; absent = plaintext inside the cell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<CellTls>,
    /// Traces of every Titan service of the cell, exported over OTLP to an OpenTelemetry
    /// collector; absent = no exporter (and no tracing cost).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracing: Option<CellTracing>,
}

/// A tag in `spec.image` (a colon after the last `/`, before any `@`) must be `spec.version`.
const IMAGE_TAG_IS_VERSION: &str = "!self.image.matches('^([^@/]*/)*[^@/:]+:[^@/:]+(@.*)?$') || self.image.endsWith(':' + self.version) || self.image.contains(':' + self.version + '@')";
/// A digest pins the image: a version bump alone would relabel pods that keep the old image.
const PINNED_IMAGE_MOVES_WITH_VERSION: &str =
    "self.version == oldSelf.version || !self.image.contains('@') || self.image != oldSelf.image";

fn default_image() -> String {
    "ghcr.io/titan/titan".into()
}

/// A cell's size limits, turned into a ResourceQuota on its namespace.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Capacity {
    /// Users this cell is sized for; the cell router assigns no more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_users: Option<i64>,
    /// CPU the cell's pods may request in total.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Quantity>,
    /// Memory the cell's pods may request in total.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Quantity>,
}

/// Fleet rollout settings.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Rollout {
    /// Rollout wave: wave 0 is the canary; wave N+1 takes a version only after waves up to N run
    /// it ready.
    #[serde(default = "default_wave")]
    #[schemars(range(min = 0, max = 100))]
    pub wave: i32,
    /// The `Fleet` whose version this cell runs once the fleet releases it to the cell's wave;
    /// until then (and without a fleet) the cell runs `spec.version`. A member's `spec.image`
    /// should carry no digest: a pinned image cannot move with the fleet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub fleet: Option<String>,
}

fn default_wave() -> i32 {
    1
}

impl Default for Rollout {
    fn default() -> Self {
        Self {
            wave: default_wave(),
            fleet: None,
        }
    }
}

/// The cell's place in the table of the fleet's cell router (`titan serve router`), which the
/// operator keeps from the Cells: a cell enters it once it is first Ready.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Routing {
    /// Relative capacity: a cell of weight 2 serves twice the buckets (users) of a cell of
    /// weight 1. Changing it moves buckets between cells.
    #[serde(default = "default_weight")]
    #[schemars(range(min = 1, max = 1000))]
    pub weight: u32,
    /// A draining cell keeps every user it serves and takes no new ones. Its users move only
    /// when the Cell is deleted (after their data has moved).
    #[serde(default)]
    pub draining: bool,
}

fn default_weight() -> u32 {
    1
}

impl Default for Routing {
    fn default() -> Self {
        Self {
            weight: default_weight(),
            draining: false,
        }
    }
}

/// Operating switches of a cell.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Operation {
    /// When true the operator only reads the cell and updates status: nothing it manages is
    /// created, changed or deleted (condition `ReconciliationPaused`).
    #[serde(default)]
    pub reconciliation_paused: bool,
    /// When true every service, media server and builtin datastore is scaled to zero and a
    /// CloudNativePG cluster hibernates; data, Secrets and volumes are kept (condition
    /// `Stopped`).
    #[serde(default)]
    pub stopped: bool,
}

/// What deleting a Cell does to its data.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DeletionPolicy {
    /// Keep the data: the volumes (PVCs), the credentials Secret and the namespace holding them
    /// stay; workloads and services are removed. A Cell re-created with the same name adopts
    /// them, passwords included.
    #[default]
    Retain,
    /// Delete the namespace and everything in it, data included.
    Delete,
}

/// Settings of one Titan service in a cell.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!(has(self.replicas) && has(self.autoscaling))",
    "message": "set replicas or autoscaling, not both: with autoscaling the autoscaler owns replicas"
}]))]
pub struct CellService<C> {
    /// Whether the service runs in this cell; disabling it removes its objects.
    #[serde(default = "enabled")]
    pub enabled: bool,
    /// Replicas of the service. When set, the Cell owns the field and wins over
    /// `kubectl scale`; when absent, the Service's replicas are left to `kubectl scale tsvc/<name>`
    /// (or default to 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub replicas: Option<i32>,
    /// Image of the service, overriding `spec.image:spec.version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The service's typed configuration; absent fields take the service's defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<C>,
    /// CPU autoscaling of the service; replaces `replicas`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<Autoscaling>,
    /// CPU and memory requests and limits of the service's container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "resources_schema")]
    pub resources: Option<ResourceRequirements>,
    /// A JSON merge patch applied to the service's pod template (metadata and spec), for what
    /// the other fields do not cover: node selectors, tolerations, extra volumes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserve_unknown_object")]
    pub pod_overrides: Option<serde_json::Value>,
}

fn enabled() -> bool {
    true
}

impl<C> Default for CellService<C> {
    fn default() -> Self {
        Self {
            enabled: true,
            replicas: None,
            image: None,
            config: None,
            autoscaling: None,
            resources: None,
            pod_overrides: None,
        }
    }
}

/// Settings of every Titan service in a cell; an absent service runs with its defaults.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CellServices {
    /// The flashsale service (limited-time sales).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flashsale: Option<CellService<FlashsaleConfig>>,
    /// The coupon service (discounts and vouchers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coupon: Option<CellService<CouponConfig>>,
    /// The gamification service (points, levels, badges, rewards).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gamification: Option<CellService<GamificationConfig>>,
    /// The campaign service (multi-channel marketing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign: Option<CellService<CampaignConfig>>,
    /// The abtesting service (experiments and feature flags).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abtesting: Option<CellService<AbtestingConfig>>,
    /// The fraud service (transaction risk).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fraud: Option<CellService<FraudConfig>>,
    /// The pricing service (dynamic pricing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pricing: Option<CellService<PricingConfig>>,
    /// The analytics service (events, funnels, cohorts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analytics: Option<CellService<AnalyticsConfig>>,
    /// The chat service (buyers and sellers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat: Option<CellService<ChatConfig>>,
    /// The livestream service (live video shopping).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub livestream: Option<CellService<LivestreamConfig>>,
    /// The videocall service (support calls).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub videocall: Option<CellService<VideocallConfig>>,
    /// The driver service (last-mile delivery).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<CellService<DriverConfig>>,
    /// The tracking service (package tracking).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking: Option<CellService<TrackingConfig>>,
    /// The warehouse service (inventory and stock movements).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warehouse: Option<CellService<WarehouseConfig>>,
    /// The shipping service (carriers and labels).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipping: Option<CellService<ShippingConfig>>,
    /// The privacy service (a person's data exported or erased across the cell).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privacy: Option<CellService<PrivacyConfig>>,
}

/// One service's settings with its config as JSON, whatever its type.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct ServiceSettings {
    /// See [`CellService::enabled`].
    pub enabled: bool,
    /// See [`CellService::replicas`].
    pub replicas: Option<i32>,
    /// See [`CellService::image`].
    pub image: Option<String>,
    /// See [`CellService::config`].
    pub config: Option<serde_json::Value>,
    /// See [`CellService::autoscaling`].
    pub autoscaling: Option<Autoscaling>,
    /// See [`CellService::resources`].
    pub resources: Option<ResourceRequirements>,
    /// See [`CellService::pod_overrides`].
    pub pod_overrides: Option<serde_json::Value>,
}

fn erase<C: Serialize>(s: Option<&CellService<C>>) -> ServiceSettings {
    let Some(s) = s else {
        return ServiceSettings {
            enabled: true,
            ..Default::default()
        };
    };
    ServiceSettings {
        enabled: s.enabled,
        replicas: s.replicas,
        image: s.image.clone(),
        // Config types are plain data and always serialize.
        config: s.config.as_ref().and_then(|c| serde_json::to_value(c).ok()),
        autoscaling: s.autoscaling.clone(),
        resources: s.resources.clone(),
        pod_overrides: s.pod_overrides.clone(),
    }
}

impl CellServices {
    /// The settings of one Titan service (`None` for `custom`, which a Cell does not create).
    pub fn get(&self, kind: ServiceKind) -> Option<ServiceSettings> {
        Some(match kind {
            ServiceKind::Flashsale => erase(self.flashsale.as_ref()),
            ServiceKind::Coupon => erase(self.coupon.as_ref()),
            ServiceKind::Gamification => erase(self.gamification.as_ref()),
            ServiceKind::Campaign => erase(self.campaign.as_ref()),
            ServiceKind::Abtesting => erase(self.abtesting.as_ref()),
            ServiceKind::Fraud => erase(self.fraud.as_ref()),
            ServiceKind::Pricing => erase(self.pricing.as_ref()),
            ServiceKind::Analytics => erase(self.analytics.as_ref()),
            ServiceKind::Chat => erase(self.chat.as_ref()),
            ServiceKind::Livestream => erase(self.livestream.as_ref()),
            ServiceKind::Videocall => erase(self.videocall.as_ref()),
            ServiceKind::Driver => erase(self.driver.as_ref()),
            ServiceKind::Tracking => erase(self.tracking.as_ref()),
            ServiceKind::Warehouse => erase(self.warehouse.as_ref()),
            ServiceKind::Shipping => erase(self.shipping.as_ref()),
            ServiceKind::Privacy => erase(self.privacy.as_ref()),
            ServiceKind::Custom => return None,
        })
    }
}

/// The cell's datastores.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!has(self.postgres) || !has(self.postgres.backup) || (has(self.postgres.backup.method) && self.postgres.backup.method != 'barmanObjectStore') || has(self.objectStorage)", "message": "postgres backups to the object store need spec.datastores.objectStorage"},
    {"rule": "!has(self.postgres) || !has(self.postgres.restore) || has(self.postgres.restore.volumeSnapshot) || has(self.objectStorage)", "message": "restoring postgres from the object store needs spec.datastores.objectStorage (its endpoint and credentials)"}
]))]
pub struct Datastores {
    /// The cell's PostgreSQL.
    #[serde(default)]
    pub postgres: PostgresDatastore,
    /// The cell's Redis (a builtin one keeps an append-only file, so stock and counters survive
    /// a restart).
    #[serde(default)]
    pub redis: Datastore,
    /// The cell's ClickHouse.
    #[serde(default)]
    pub clickhouse: Datastore,
    /// S3-compatible object storage for recordings, labels and proofs of delivery; absent =
    /// recordings and uploads are off, and status says so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_storage: Option<ObjectStorage>,
}

/// Who runs the cell's PostgreSQL.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PostgresProvider {
    /// A StatefulSet run by the operator.
    #[default]
    #[serde(rename = "builtin")]
    Builtin,
    /// A CloudNativePG `Cluster` (HA and backups).
    #[serde(rename = "cloudnative-pg")]
    CloudnativePg,
    /// A server run elsewhere; `secretName` holds its URL.
    #[serde(rename = "external")]
    External,
}

/// Who runs a datastore that has no operator of its own.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// A StatefulSet run by the operator.
    #[default]
    Builtin,
    /// A server run elsewhere; `secretName` holds its URL.
    External,
}

const STORAGE_IMMUTABLE: &str = "self.provider != 'builtin' || oldSelf.provider != 'builtin' || (has(self.storage) == has(oldSelf.storage) && (!has(self.storage) || self.storage == oldSelf.storage))";
const STORAGE_IMMUTABLE_MESSAGE: &str = "storage of a builtin datastore cannot change: a StatefulSet's volume claim is immutable; expand its PVC instead";
const EXTERNAL_NEEDS_SECRET: &str = "self.provider != 'external' || has(self.secretName)";
const EXTERNAL_NEEDS_SECRET_MESSAGE: &str =
    "an external datastore needs secretName: the Secret that holds its connection URL";

/// The cell's PostgreSQL.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": EXTERNAL_NEEDS_SECRET, "message": EXTERNAL_NEEDS_SECRET_MESSAGE},
    {"rule": STORAGE_IMMUTABLE, "message": STORAGE_IMMUTABLE_MESSAGE},
    {"rule": "self.provider == 'cloudnative-pg' || !has(self.instances)", "message": "instances is a cloudnative-pg setting: a builtin PostgreSQL runs one instance"},
    {"rule": "self.provider == 'cloudnative-pg' || (!has(self.backup) && !has(self.restore))", "message": "backup and restore are cloudnative-pg settings"},
    {"rule": "has(self.restore) == has(oldSelf.restore) && (!has(self.restore) || self.restore == oldSelf.restore)", "message": "restore only bootstraps a new cluster: set it when the cell is created, and leave it as it is"}
]))]
pub struct PostgresDatastore {
    /// Who runs it.
    #[serde(default)]
    pub provider: PostgresProvider,
    /// Size of its volume (builtin and cloudnative-pg; default 10Gi); fixed once a builtin
    /// server exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<Quantity>,
    /// Secret in the cell's namespace with the key `url`, a `postgres://` URL (required for
    /// external).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// Image of the server: builtin defaults to `docker.io/library/postgres:17`; cloudnative-pg
    /// uses CloudNativePG's default operand image when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub image: Option<String>,
    /// PostgreSQL instances of the CloudNativePG cluster: one primary, the rest replicas
    /// (cloudnative-pg only; default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 9))]
    pub instances: Option<i32>,
    /// CPU and memory requests and limits of each server container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "resources_schema")]
    pub resources: Option<ResourceRequirements>,
    /// Scheduled base backups of the CloudNativePG cluster (cloudnative-pg only). With object
    /// storage the cluster also archives its WAL there, backup or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<PostgresBackup>,
    /// Bootstrap the CloudNativePG cluster from a backup instead of an empty database
    /// (cloudnative-pg only): set when the cell is created, never changed after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<PostgresRestore>,
}

/// How CloudNativePG takes base backups.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum BackupMethod {
    /// Barman to the cell's object storage, beside the archived WAL (point-in-time recovery).
    #[default]
    #[serde(rename = "barmanObjectStore")]
    BarmanObjectStore,
    /// CSI volume snapshots of the instances' volumes (a VolumeSnapshotClass must exist).
    #[serde(rename = "volumeSnapshot")]
    VolumeSnapshot,
}

/// Scheduled backups of a CloudNativePG PostgreSQL: a `ScheduledBackup` of the cluster.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "(has(self.method) && self.method == 'volumeSnapshot') || !has(self.volumeSnapshotClass)", "message": "volumeSnapshotClass is a volumeSnapshot setting"}
]))]
pub struct PostgresBackup {
    /// When to take a base backup: CloudNativePG's cron with seconds first (`0 0 3 * * *` is
    /// every day at 03:00), or a descriptor such as `@daily`.
    #[schemars(regex(
        pattern = r"^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|@every [0-9a-z.]+|(\S+ +){5}\S+)$"
    ))]
    pub schedule: String,
    /// How: `barmanObjectStore` (default; needs object storage) or `volumeSnapshot`.
    #[serde(default)]
    pub method: BackupMethod,
    /// How long base backups and WAL are kept in the object store (`30d`, `4w`, `6m`; default
    /// `30d`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[1-9][0-9]*[dwm]$"))]
    pub retention_policy: Option<String>,
    /// VolumeSnapshotClass of the snapshots (volumeSnapshot; default the cluster's default
    /// class).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub volume_snapshot_class: Option<String>,
}

/// Where a new CloudNativePG cluster's data comes from: exactly one of `cell`,
/// `destinationPath` and `volumeSnapshot`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "(has(self.cell) ? 1 : 0) + (has(self.destinationPath) ? 1 : 0) + (has(self.volumeSnapshot) ? 1 : 0) == 1", "message": "restore from exactly one of cell, destinationPath and volumeSnapshot"},
    {"rule": "!has(self.volumeSnapshot) || !has(self.targetTime)", "message": "targetTime needs the archived WAL of an object store: a volume snapshot restores as it was taken"}
]))]
pub struct PostgresRestore {
    /// A cell whose backups are in this cell's object storage bucket
    /// (`s3://<bucket>/<cell>/postgres`): usually a deleted or damaged cell of another name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub cell: Option<String>,
    /// Or the Barman object store path of the backups (`s3://bucket/path`), reached with this
    /// cell's object storage endpoint and credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024), regex(pattern = r"^s3://"))]
    pub destination_path: Option<String>,
    /// Or a VolumeSnapshot in the cell's namespace, taken by a `volumeSnapshot` backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub volume_snapshot: Option<String>,
    /// Point in time to recover to (RFC 3339, object store only); default the end of the
    /// archived WAL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 64),
        regex(
            pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$"
        )
    )]
    pub target_time: Option<String>,
}

/// The cell's Redis or ClickHouse.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": EXTERNAL_NEEDS_SECRET, "message": EXTERNAL_NEEDS_SECRET_MESSAGE},
    {"rule": STORAGE_IMMUTABLE, "message": STORAGE_IMMUTABLE_MESSAGE}
]))]
pub struct Datastore {
    /// Who runs it.
    #[serde(default)]
    pub provider: Provider,
    /// Size of its volume (builtin; default 10Gi); fixed once the server exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<Quantity>,
    /// Secret in the cell's namespace with the key `url` (required for external); for
    /// ClickHouse also the optional keys `user` and `password`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// Image of the builtin server (defaults: `docker.io/library/redis:7.4`,
    /// `docker.io/clickhouse/clickhouse-server:24.8`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub image: Option<String>,
    /// CPU and memory requests and limits of the builtin server's container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "resources_schema")]
    pub resources: Option<ResourceRequirements>,
}

/// S3-compatible object storage.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ObjectStorage {
    /// Endpoint URL of the S3 API.
    #[schemars(regex(pattern = r"^https?://"))]
    pub endpoint: String,
    /// Bucket the cell writes to.
    #[schemars(length(min = 3, max = 63))]
    pub bucket: String,
    /// Region of the bucket, for request signing (default `us-east-1`, which S3-compatible
    /// servers without regions accept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub region: Option<String>,
    /// Secret in the cell's namespace with the keys `accessKeyId` and `secretAccessKey`.
    #[schemars(length(min = 1))]
    pub credentials_secret: String,
}

/// The cell's media servers.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Media {
    /// TURN server for support calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turn: Option<Turn>,
    /// RTMP ingest and HLS playback for live streams.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtmp: Option<Rtmp>,
}

/// A coturn server with TURN REST authentication (`use-auth-secret`); its secret also reaches
/// the videocall service, which mints time-limited credentials from it.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!self.enabled || has(self.realm)", "message": "an enabled TURN server needs a realm"},
    {"rule": "self.minPort <= self.maxPort && self.maxPort - self.minPort < 200", "message": "the relay port range must be ordered and hold at most 200 ports: each one is a port of the TURN Service"}
]))]
pub struct Turn {
    /// Whether the cell runs a TURN server.
    #[serde(default = "enabled")]
    pub enabled: bool,
    /// TURN realm, usually a domain of the cell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub realm: Option<String>,
    /// Public IP address clients reach the TURN server at; the server advertises it in relayed
    /// addresses and its Service becomes a LoadBalancer. Absent: reachable inside the cluster
    /// only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub external_address: Option<String>,
    /// Port of TURN and STUN, on UDP and TCP.
    #[serde(default = "default_turn_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub listening_port: i32,
    /// Lowest UDP port of the relay range.
    #[serde(default = "default_min_port")]
    #[schemars(range(min = 1024, max = 65535))]
    pub min_port: i32,
    /// Highest UDP port of the relay range.
    #[serde(default = "default_max_port")]
    #[schemars(range(min = 1024, max = 65535))]
    pub max_port: i32,
    /// Image with `turnserver` (default `docker.io/coturn/coturn:4.6`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub image: Option<String>,
    /// CPU and memory requests and limits of the TURN container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "resources_schema")]
    pub resources: Option<ResourceRequirements>,
}

fn default_turn_port() -> i32 {
    3478
}

fn default_min_port() -> i32 {
    49160
}

fn default_max_port() -> i32 {
    49200
}

/// An nginx RTMP server: ingest on 1935, HLS over HTTP, and (with object storage) recordings
/// uploaded by a `titan recorder` sidecar.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Rtmp {
    /// Whether the cell runs an RTMP server.
    #[serde(default = "enabled")]
    pub enabled: bool,
    /// Image with nginx and the RTMP module (default `ghcr.io/titan/nginx-rtmp:1.22`: Debian's
    /// nginx with `libnginx-mod-rtmp`, built from `manifests/images/nginx-rtmp`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub image: Option<String>,
    /// Path of the dynamic RTMP module in the image, loaded with `load_module` (default Debian's
    /// `/usr/lib/nginx/modules/ngx_rtmp_module.so`); empty for an image with the module built in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module_path: Option<String>,
    /// Host name broadcasters and players reach the server at, for the endpoints in status
    /// (default the Service's name inside the cluster).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub public_host: Option<String>,
    /// CPU and memory requests and limits of the nginx container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "resources_schema")]
    pub resources: Option<ResourceRequirements>,
}

/// A DNS subdomain (RFC 1123), as the Gateway API checks a Gateway's and a listener's name.
const DNS_SUBDOMAIN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
/// The Gateway API's `Hostname`: a DNS subdomain, optionally under a wildcard label (`*.`).
const HOSTNAME: &str = r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

/// How clients outside the cluster reach the cell: a `GRPCRoute` for the services' gRPC APIs
/// and an `HTTPRoute` for their WebSocket and link routes (`gateway.networking.k8s.io/v1`),
/// both attached to one Gateway. The cluster must serve the Gateway API; the Gateway's listener
/// must admit routes from the cell's namespace.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Edge {
    /// The Gateway the routes attach to.
    pub gateway: GatewayRef,
    /// Host names clients reach this cell at (DNS names, a leading `*.` allowed), as the
    /// routes' `hostnames`. At least one: cells sharing a Gateway are told apart by host name,
    /// and routes without one would claim the same requests for every cell.
    #[schemars(
        length(min = 1, max = 16),
        inner(
            length(min = 1, max = 253),
            regex(
                pattern = HOSTNAME
            )
        )
    )]
    pub hostnames: Vec<String>,
}

/// How the cell's services verify tokens an identity provider issued (OIDC): its signing keys
/// and the claims every token must carry. Without `jwksUrl` only the cell's own HS256 key
/// verifies tokens.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CellAuth {
    /// The provider's key set (its discovery document's `jwks_uri`), fetched by each service,
    /// cached, refreshed on its `Cache-Control` schedule and on an unknown `kid` (rate
    /// limited); RS256 keys are used. http is allowed for a provider inside the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048), regex(pattern = r"^https?://[^\s]+$"))]
    pub jwks_url: Option<String>,
    /// The `iss` every token must carry (the cell's own tokens are minted with it too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    pub issuer: Option<String>,
    /// The `aud` every token must carry (the cell's own tokens are minted with it too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    pub audience: Option<String>,
}

/// Where a cell's services send their traces.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CellTracing {
    /// The collector's OTLP/gRPC endpoint, `http://host:port` (`http://otel-collector.observability:4317`).
    #[schemars(length(min = 1, max = 2048), regex(pattern = r"^http://[^\s/]+/?$"))]
    pub otlp_endpoint: String,
    /// The share of new traces recorded, a decimal from `"0"` to `"1"` (quoted: no floats in a
    /// spec); `"1"` when absent. A request that arrives with a `traceparent` follows its caller's
    /// decision instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^(0(\.[0-9]{1,6})?|1(\.0{1,6})?)$"))]
    pub sample_ratio: Option<String>,
}

/// Where a cell's TLS certificate comes from. Without `certManager` the operator keeps a CA of
/// the cell's own (Secret `<cell>-ca`) and issues the services' certificate from it (Secret
/// `<cell>-tls`, 90 days, renewed 30 days before expiry; the CA lives 10 years and its successor
/// is trusted a year before it signs).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CellTls {
    /// Certificates from cert-manager (a `Certificate` writing Secret `<cell>-tls`) instead of
    /// the operator's per-cell CA. cert-manager must be installed and the issuer must be a CA
    /// issuer (its Secret carries `ca.crt`, the bundle the services verify each other with).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_manager: Option<CertManagerTls>,
}

/// The cert-manager issuer of a cell's certificate.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CertManagerTls {
    /// The issuer, as a cert-manager `Certificate`'s `issuerRef`.
    pub issuer_ref: IssuerRef,
}

/// A cert-manager issuer.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IssuerRef {
    /// Name of the issuer.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN))]
    pub name: String,
    /// `ClusterIssuer`, or `Issuer` (one in the cell's namespace).
    pub kind: IssuerKind,
    /// API group of the issuer: `cert-manager.io` unless it is an external issuer.
    #[serde(default = "default_issuer_group")]
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN))]
    pub group: String,
}

fn default_issuer_group() -> String {
    "cert-manager.io".into()
}

/// Kind of a cert-manager issuer.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum IssuerKind {
    /// A cluster-wide issuer.
    ClusterIssuer,
    /// An issuer in the cell's namespace.
    Issuer,
}

impl IssuerKind {
    /// The kind's name.
    pub fn as_str(self) -> &'static str {
        match self {
            IssuerKind::ClusterIssuer => "ClusterIssuer",
            IssuerKind::Issuer => "Issuer",
        }
    }
}

/// A Gateway, by namespace and name, and optionally one of its listeners.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GatewayRef {
    /// Name of the Gateway.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = DNS_SUBDOMAIN)
    )]
    pub name: String,
    /// Namespace of the Gateway.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub namespace: String,
    /// The listener of the Gateway to attach to (its `name`); every listener that admits the
    /// routes when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = DNS_SUBDOMAIN)
    )]
    pub section_name: Option<String>,
}

/// What the operator observed of a cell.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct CellStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Progressing`, `Degraded`, `ReconciliationPaused` and `Stopped`, each with the
    /// generation it was computed for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// How many of the enabled services are ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services: Option<ServicesSummary>,
    /// The version every ready service actually runs; absent while they differ.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The namespace the cell lives in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Each datastore: who runs it and whether it is ready, and why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datastores: Option<DatastoresStatus>,
    /// Each enabled media server and whether it is ready, and why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media: Option<MediaStatus>,
    /// Where clients and other systems reach the cell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<Endpoints>,
    /// The cell's place in its fleet's rollout (`spec.rollout.fleet`): the version it waits
    /// for and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutStatus>,
    /// The services' TLS certificate, while `spec.tls` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsStatus>,
}

/// The certificate a cell's services serve.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct TlsStatus {
    /// Who issues it: `cell-ca` (the operator's CA of the cell) or `cert-manager`.
    pub issuer: String,
    /// When the certificate expires (RFC 3339), once it is issued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<String>,
    /// When the operator renews it (RFC 3339); cert-manager renews its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renews_at: Option<String>,
    /// When the CA that signs it expires (RFC 3339), for the cell's own CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_not_after: Option<String>,
}

/// Where a fleet member stands in its fleet's rollout.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStatus {
    /// The fleet the cell belongs to.
    pub fleet: String,
    /// The fleet's target version (absent while the fleet cannot be read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_version: Option<String>,
    /// The version the cell waits for, while it runs another one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_for: Option<String>,
    /// Why it waits, or that it runs the target (`wave 0 baking until 2026-01-02T03:04:05Z`,
    /// `rollout halted by cell sg-1`, `paused`).
    pub reason: String,
}

/// The state of one datastore or media server.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ComponentStatus {
    /// Who runs it (`builtin`, `cloudnative-pg`, `external`); absent for media servers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// Whether it serves.
    pub ready: bool,
    /// CamelCase reason of the state.
    pub reason: String,
    /// What a person should know or do.
    pub message: String,
}

/// The state of the cell's datastores.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct DatastoresStatus {
    /// The cell's PostgreSQL.
    pub postgres: ComponentStatus,
    /// The cell's Redis.
    pub redis: ComponentStatus,
    /// The cell's ClickHouse.
    pub clickhouse: ComponentStatus,
    /// The object storage, when configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_storage: Option<ComponentStatus>,
}

/// The state of the cell's enabled media servers.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct MediaStatus {
    /// The TURN server, when enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turn: Option<ComponentStatus>,
    /// The RTMP server, when enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtmp: Option<ComponentStatus>,
}

/// Where a cell is reached.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Endpoints {
    /// URL broadcasters publish to (`rtmp://host:1935/live`; the stream key is appended).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtmp_ingest: Option<String>,
    /// Base URL of HLS playlists (`<hlsBase>/<stream id>.m3u8`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hls_base: Option<String>,
    /// TURN URIs for ICE servers, UDP and TCP.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub turn_uris: Vec<String>,
    /// gRPC address (`host:port`) of each enabled service, by service name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub grpc: BTreeMap<String, String>,
}

/// Ready and enabled services of a cell.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ServicesSummary {
    /// Services that observed their latest spec and are ready.
    pub ready: i32,
    /// Enabled services.
    pub total: i32,
    /// `ready/total`, for `kubectl get cells`.
    pub summary: String,
}

impl Cell {
    /// The namespace the cell lives in: `spec.namespace`, else `titan-<name>`.
    pub fn namespace_name(&self) -> String {
        match &self.spec.namespace {
            Some(ns) => ns.clone(),
            None => format!(
                "titan-{}",
                self.metadata.name.as_deref().unwrap_or_default()
            ),
        }
    }
}
