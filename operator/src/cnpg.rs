//! The one foreign resource the Cell controller writes: CloudNativePG's `Cluster`
//! (`postgresql.cnpg.io/v1`), typed down to the fields Titan sets and reads. Everything else of
//! the real CRD is left to CloudNativePG's defaults, and the API server keeps it as it is.

use k8s_openapi::api::core::v1::ResourceRequirements;
use kube::CustomResource;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Suffix of the Secret CloudNativePG creates for the application user; its `uri` key is a
/// `postgres://` URL of the read-write service.
pub const APP_SECRET_SUFFIX: &str = "-app";
/// Key of the connection URL in the application Secret.
pub const APP_SECRET_URI_KEY: &str = "uri";
/// Annotation that hibernates a cluster (`on`): its pods stop, its volumes stay.
pub const HIBERNATION: &str = "cnpg.io/hibernation";
/// Phase CloudNativePG reports when every instance serves.
pub const HEALTHY_PHASE: &str = "Cluster in healthy state";

/// A PostgreSQL cluster run by CloudNativePG.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "postgresql.cnpg.io",
    version = "v1",
    kind = "Cluster",
    namespaced,
    status = "ClusterStatus",
    schema = "disabled",
    derive = "PartialEq",
    derive = "Default"
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterSpec {
    /// Instances: one primary, the rest streaming replicas.
    pub instances: i32,
    /// Operand image; CloudNativePG's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_name: Option<String>,
    /// Labels CloudNativePG copies to every object it creates (pods, PVCs, Services).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inherited_metadata: Option<InheritedMetadata>,
    /// Volume of each instance.
    pub storage: Storage,
    /// How the first instance creates the database.
    pub bootstrap: Bootstrap,
    /// Requests and limits of each instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Continuous archiving and base backups to object storage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<Backup>,
}

/// `spec.inheritedMetadata`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct InheritedMetadata {
    /// Labels put on every generated object.
    pub labels: BTreeMap<String, String>,
}

/// `spec.storage`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct Storage {
    /// Size of each instance's PVC, as a quantity.
    pub size: String,
}

/// `spec.bootstrap`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct Bootstrap {
    /// Start from an empty `initdb`.
    pub initdb: InitDb,
}

/// `spec.bootstrap.initdb`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct InitDb {
    /// Database created for the application.
    pub database: String,
    /// Owner of that database; the `-app` Secret holds its credentials.
    pub owner: String,
}

/// `spec.backup`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Backup {
    /// Where WAL and base backups go.
    pub barman_object_store: BarmanObjectStore,
    /// How long backups are kept (`30d`).
    pub retention_policy: String,
}

/// `spec.backup.barmanObjectStore`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct BarmanObjectStore {
    /// `s3://bucket/path`.
    pub destination_path: String,
    /// Endpoint of the S3 API.
    #[serde(rename = "endpointURL")]
    pub endpoint_url: String,
    /// Credentials, from a Secret.
    pub s3_credentials: S3Credentials,
    /// Compression of archived WAL.
    pub wal: Compression,
    /// Compression of base backups.
    pub data: Compression,
}

/// `spec.backup.barmanObjectStore.s3Credentials`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct S3Credentials {
    /// The access key id.
    pub access_key_id: SecretKey,
    /// The secret access key.
    pub secret_access_key: SecretKey,
}

/// A key of a Secret in the cluster's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct SecretKey {
    /// The Secret.
    pub name: String,
    /// The key in it.
    pub key: String,
}

/// A compression setting.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct Compression {
    /// `gzip`, `bzip2`, `snappy`.
    pub compression: String,
}

/// What CloudNativePG reports of a cluster (the fields Titan reads).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    /// Instances that are ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_instances: Option<i32>,
    /// Phase in words (`Cluster in healthy state`, `Setting up primary`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
}
