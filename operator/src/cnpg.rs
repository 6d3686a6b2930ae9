//! The foreign resources the Cell controller writes: CloudNativePG's `Cluster` and
//! `ScheduledBackup` (`postgresql.cnpg.io/v1`), typed down to the fields Titan sets and reads.
//! Everything else of the real CRDs is left to CloudNativePG's defaults, and the API server keeps
//! it as it is.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use kube::{Api, Client, CustomResource, ResourceExt, api::DeleteParams};
use serde::{Deserialize, Serialize};

use crate::{Error, apply};

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
    /// Other clusters' backups, named by a recovery bootstrap.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub external_clusters: Vec<ExternalCluster>,
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

/// `spec.bootstrap`: one of its methods.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct Bootstrap {
    /// Start from an empty `initdb`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initdb: Option<InitDb>,
    /// Start from a backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery: Option<Recovery>,
}

/// `spec.bootstrap.recovery`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Recovery {
    /// The external cluster (of `spec.externalClusters`) whose object store holds the backups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The VolumeSnapshots to start from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_snapshots: Option<VolumeSnapshots>,
    /// Where WAL replay stops; the end of the archive when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_target: Option<RecoveryTarget>,
    /// Database of the application, for the `-app` Secret.
    pub database: String,
    /// Its owner.
    pub owner: String,
}

/// `spec.bootstrap.recovery.volumeSnapshots`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct VolumeSnapshots {
    /// The snapshot of the data volume.
    pub storage: TypedLocalObjectReference,
}

/// A typed reference to an object of the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct TypedLocalObjectReference {
    /// Its name.
    pub name: String,
    /// Its kind (`VolumeSnapshot`).
    pub kind: String,
    /// Its API group (`snapshot.storage.k8s.io`).
    pub api_group: String,
}

/// `spec.bootstrap.recovery.recoveryTarget`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RecoveryTarget {
    /// RFC 3339 time to stop at.
    pub target_time: String,
}

/// `spec.externalClusters[]`: a cluster known by its backups.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ExternalCluster {
    /// Name the recovery bootstrap refers to.
    pub name: String,
    /// Its object store.
    pub barman_object_store: BarmanObjectStore,
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
    /// Where WAL and Barman base backups go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub barman_object_store: Option<BarmanObjectStore>,
    /// Base backups as volume snapshots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_snapshot: Option<VolumeSnapshotBackup>,
    /// How long backups are kept in the object store (`30d`).
    pub retention_policy: String,
}

/// `spec.backup.volumeSnapshot`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSnapshotBackup {
    /// VolumeSnapshotClass of the snapshots; the cluster's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_name: Option<String>,
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
    /// Name of the server in the store; the cluster's name when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// Compression of archived WAL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wal: Option<Compression>,
    /// Compression of base backups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Compression>,
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

/// Base backups of a cluster on a schedule.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "postgresql.cnpg.io",
    version = "v1",
    kind = "ScheduledBackup",
    namespaced,
    schema = "disabled",
    derive = "PartialEq",
    derive = "Default"
)]
#[serde(rename_all = "camelCase")]
pub struct ScheduledBackupSpec {
    /// Cron with seconds first (`0 0 3 * * *`), or a descriptor (`@daily`).
    pub schedule: String,
    /// The cluster to back up.
    pub cluster: LocalObjectReference,
    /// `barmanObjectStore` or `volumeSnapshot`.
    pub method: String,
    /// Who owns the `Backup` objects it creates: `cluster`, so they live as long as the data
    /// they describe, whatever happens to the schedule.
    pub backup_owner_reference: String,
}

/// A reference to an object of the same namespace, by name.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct LocalObjectReference {
    /// Its name.
    pub name: String,
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

/// Applies the cell's ScheduledBackup (`desired`: none or one), or deletes the one a cell on
/// CloudNativePG had once its backups are turned off. Read by name, never listed or pruned: a
/// cell elsewhere may run on a cluster without the CRD, and a failing read must not pass for "no
/// schedule". The `Backup`s it made belong to the Cluster and stay.
pub async fn sync_scheduled_backup(
    client: &Client,
    namespace: &str,
    on_cloudnative_pg: bool,
    desired: Vec<ScheduledBackup>,
    name: &str,
) -> Result<(), Error> {
    if !on_cloudnative_pg {
        return Ok(());
    }
    let api: Api<ScheduledBackup> = Api::namespaced(client.clone(), namespace);
    let live = api
        .get_opt(name)
        .await
        .map_err(Error::api("get", "ScheduledBackup", name))?;
    if desired.is_empty() {
        let ours = live.as_ref().is_some_and(|l| {
            l.labels()
                .get(crate::labels::MANAGED_BY)
                .map(String::as_str)
                == Some(crate::MANAGER)
        });
        if ours {
            match api.delete(name, &DeleteParams::background()).await {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(e) => return Err(Error::api("delete", "ScheduledBackup", name)(e)),
            }
        }
        return Ok(());
    }
    for scheduled in desired {
        apply::apply(&api, scheduled, live.as_ref()).await?;
    }
    Ok(())
}
