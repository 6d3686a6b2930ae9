//! Build stage, datastores: builtin PostgreSQL, Redis and ClickHouse as StatefulSets with a
//! volume, a headless Service, a readiness probe and resources; or a CloudNativePG `Cluster`.
//! External datastores build nothing here: [`super::connections`] reads their Secret.
//!
//! Passwords come from the cell's credentials Secret by reference, never inline, so changing
//! the spec never touches them.
//!
//! In a cell with TLS (`spec.tls`) the builtin servers serve the cell's certificate (Secret
//! `<cell>-tls`, mounted as the services mount it, the key readable by the server's group
//! only): PostgreSQL with `ssl=on` (clients ask `sslmode=verify-full`), Redis on its TLS port
//! only, ClickHouse over https on 8443 (its plaintext port stays for the readiness probe and
//! within the cell's network policy). None of them reloads a renewed certificate by itself, so
//! the certificate's hash is on their pod template: a renewal (every 60 days) restarts them.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::{
        apps::v1::{StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec},
        core::v1::{
            Container, EnvVar, ExecAction, HTTPGetAction, PersistentVolumeClaim,
            PersistentVolumeClaimSpec, PodSpec, PodTemplateSpec, Probe, ResourceRequirements,
            SecretVolumeSource, Service as CoreService, Volume, VolumeMount,
            VolumeResourceRequirements,
        },
    },
    apimachinery::pkg::{
        api::resource::Quantity,
        apis::meta::v1::{LabelSelector, ObjectMeta},
        util::intstr::IntOrString,
    },
};
use titan_crds::cell::{
    BackupMethod, DeletionPolicy, ObjectStorage, PostgresDatastore, PostgresProvider, Provider,
};

use super::{
    build::CellMeta,
    connections::{CLICKHOUSE, DATABASE_USER, POSTGRES, REDIS},
    credentials::{self, Credentials, Key},
    workload,
};
use crate::{
    cnpg::{
        self, Backup, BarmanObjectStore, Bootstrap, Cluster, ClusterSpec, Compression,
        ExternalCluster, InheritedMetadata, InitDb, LocalObjectReference, Recovery, RecoveryTarget,
        S3Credentials, ScheduledBackup, ScheduledBackupSpec, SecretKey, Storage,
        TypedLocalObjectReference, VolumeSnapshotBackup, VolumeSnapshots,
    },
    shared::{
        CellView, OBJECT_STORAGE_KEYS, TLS_CA_KEY, TLS_CERT_KEY, TLS_KEY_KEY, TLS_MOUNT,
        secret_env, value_env,
    },
};

/// Default image of a builtin PostgreSQL.
pub const POSTGRES_IMAGE: &str = "docker.io/library/postgres:17";
/// Default image of a builtin Redis.
pub const REDIS_IMAGE: &str = "docker.io/library/redis:7.4";
/// Default image of a builtin ClickHouse.
pub const CLICKHOUSE_IMAGE: &str = "docker.io/clickhouse/clickhouse-server:24.8";
/// ClickHouse's https port in a cell with TLS.
pub const CLICKHOUSE_HTTPS_PORT: i32 = 8443;
/// Volume size when the spec names none.
const DEFAULT_STORAGE: &str = "10Gi";
/// Instances of a CloudNativePG cluster when the spec names none: a primary and two replicas.
const DEFAULT_INSTANCES: i32 = 3;
/// How long CloudNativePG keeps base backups and WAL.
const BACKUP_RETENTION: &str = "30d";

/// The datastore objects of a cell.
#[derive(Debug, Clone, PartialEq)]
pub struct DatastoreObjects {
    /// Builtin servers.
    pub stateful_sets: Vec<StatefulSet>,
    /// Their headless Services.
    pub services: Vec<CoreService>,
    /// The CloudNativePG cluster.
    pub clusters: Vec<Cluster>,
    /// Its backup schedule.
    pub scheduled_backups: Vec<ScheduledBackup>,
}

/// What sets one builtin server apart from another.
struct Builtin {
    component: &'static str,
    image: String,
    storage: Quantity,
    data_path: &'static str,
    ports: Vec<(&'static str, i32)>,
    command: Option<Vec<String>>,
    /// Arguments to the image's entrypoint (its command kept).
    args: Option<Vec<String>>,
    env: Vec<EnvVar>,
    readiness: Probe,
    resources: ResourceRequirements,
    /// The uid the image's server runs as.
    uid: i64,
    /// The credential the server reads (its password), hashed onto its pod template.
    password: Key,
}

fn exec_probe(command: &[&str]) -> Probe {
    Probe {
        exec: Some(ExecAction {
            command: Some(command.iter().map(|s| s.to_string()).collect()),
        }),
        period_seconds: Some(5),
        timeout_seconds: Some(3),
        failure_threshold: Some(3),
        ..Default::default()
    }
}

fn password_env(cell_meta: &CellMeta, variable: &str, key: Key) -> EnvVar {
    secret_env(
        variable,
        &credentials::secret_name(&cell_meta.name),
        key.as_str(),
    )
}

/// Where a builtin server finds `key` of the cell's TLS Secret.
fn tls_file(key: &str) -> String {
    format!("{TLS_MOUNT}/{key}")
}

fn stateful_set(
    cell_meta: &CellMeta,
    credentials: &Credentials,
    certificate: Option<&str>,
    builtin: Builtin,
) -> (StatefulSet, CoreService) {
    let tls = cell_meta.cell.spec.tls.is_some();
    let Builtin {
        component,
        image,
        storage,
        data_path,
        ports,
        command,
        args,
        env,
        readiness,
        resources,
        uid,
        password,
    } = builtin;
    // The pods carry their server's version (the image tag), never the cell's: a Titan upgrade
    // must not restart a database.
    let labels = cell_meta.workload_labels(component, &image);
    // A StatefulSet's volume claim templates cannot change: keep any version out of them, or
    // the first image upgrade would be refused.
    let claim_labels = cell_meta.labels(component);
    let container = Container {
        name: component.into(),
        image: Some(image),
        image_pull_policy: Some("IfNotPresent".into()),
        command,
        args,
        env: Some(env),
        ports: Some(
            ports
                .iter()
                .map(|(name, port)| workload::container_port(name, *port, "TCP"))
                .collect(),
        ),
        readiness_probe: Some(readiness),
        resources: Some(resources),
        security_context: Some(workload::container_security(uid)),
        volume_mounts: Some(
            [
                Some(VolumeMount {
                    name: "data".into(),
                    mount_path: data_path.into(),
                    ..Default::default()
                }),
                tls.then(|| VolumeMount {
                    name: "tls".into(),
                    mount_path: TLS_MOUNT.into(),
                    read_only: Some(true),
                    ..Default::default()
                }),
            ]
            .into_iter()
            .flatten()
            .collect(),
        ),
        ..Default::default()
    };
    // Owned by root and the pod's group (its fsGroup is the server's): PostgreSQL refuses a key
    // others can read, and accepts a root-owned one its group reads.
    let volumes = tls.then(|| {
        vec![Volume {
            name: "tls".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(CellView::of(cell_meta.cell).tls_secret()),
                default_mode: Some(0o440),
                ..Default::default()
            }),
            ..Default::default()
        }]
    });
    // A changed password restarts the server that reads it, and so does a renewed certificate.
    let mut consumed = vec![(password.as_str(), credentials.get(password))];
    consumed.extend(certificate.map(|cert| (TLS_CERT_KEY, cert)));
    let retention = match cell_meta.cell.spec.deletion_policy {
        DeletionPolicy::Retain => "Retain",
        DeletionPolicy::Delete => "Delete",
    };
    let set = StatefulSet {
        metadata: ObjectMeta {
            labels: Some(labels.clone()),
            ..cell_meta.meta(component, component)
        },
        spec: Some(StatefulSetSpec {
            replicas: Some(cell_meta.replicas()),
            service_name: Some(component.into()),
            selector: LabelSelector {
                match_labels: Some(cell_meta.selector(component)),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels.clone()),
                    annotations: Some(BTreeMap::from([(
                        crate::labels::SECRETS_HASH.to_string(),
                        crate::labels::secrets_hash(consumed),
                    )])),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    volumes,
                    security_context: Some(workload::pod_security(uid)),
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    termination_grace_period_seconds: Some(60),
                    ..Default::default()
                }),
            },
            // The volume outlives the StatefulSet (Retain), so a Cell created again with the
            // same name finds `data-<name>-0` and runs on the same data.
            persistent_volume_claim_retention_policy: Some(
                StatefulSetPersistentVolumeClaimRetentionPolicy {
                    when_deleted: Some(retention.into()),
                    when_scaled: Some("Retain".into()),
                },
            ),
            volume_claim_templates: Some(vec![PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some("data".into()),
                    labels: Some(claim_labels),
                    ..Default::default()
                },
                spec: Some(PersistentVolumeClaimSpec {
                    access_modes: Some(vec!["ReadWriteOnce".into()]),
                    resources: Some(VolumeResourceRequirements {
                        requests: Some(BTreeMap::from([("storage".to_string(), storage)])),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let service = workload::service(
        cell_meta,
        component,
        "ClusterIP",
        true,
        ports
            .iter()
            .map(|(name, port)| workload::service_port(name, *port, *port, "TCP"))
            .collect(),
    );
    (set, service)
}

fn storage_or_default(storage: &Option<Quantity>) -> Quantity {
    storage
        .clone()
        .unwrap_or_else(|| Quantity(DEFAULT_STORAGE.into()))
}

fn postgres(cell_meta: &CellMeta, tls: bool) -> Builtin {
    let spec = &cell_meta.cell.spec.datastores.postgres;
    Builtin {
        component: POSTGRES,
        image: spec.image.clone().unwrap_or_else(|| POSTGRES_IMAGE.into()),
        storage: storage_or_default(&spec.storage),
        data_path: "/var/lib/postgresql/data",
        ports: vec![("postgres", 5432)],
        command: None,
        // The image's entrypoint runs what follows it, `postgres` first.
        args: tls.then(|| {
            [
                "postgres".to_string(),
                "-c".into(),
                "ssl=on".into(),
                "-c".into(),
                format!("ssl_cert_file={}", tls_file(TLS_CERT_KEY)),
                "-c".into(),
                format!("ssl_key_file={}", tls_file(TLS_KEY_KEY)),
            ]
            .to_vec()
        }),
        env: vec![
            value_env("POSTGRES_USER", DATABASE_USER),
            value_env("POSTGRES_DB", DATABASE_USER),
            password_env(cell_meta, "POSTGRES_PASSWORD", Key::PostgresPassword),
            // A subdirectory: the volume's root holds lost+found, which initdb refuses.
            value_env("PGDATA", "/var/lib/postgresql/data/pgdata"),
        ],
        readiness: exec_probe(&[
            "pg_isready",
            "-h",
            "127.0.0.1",
            "-U",
            DATABASE_USER,
            "-d",
            DATABASE_USER,
        ]),
        resources: spec
            .resources
            .clone()
            .unwrap_or_else(|| workload::resources("250m", "512Mi", "1Gi")),
        uid: 999,
        password: Key::PostgresPassword,
    }
}

fn redis(cell_meta: &CellMeta, tls: bool) -> Builtin {
    let spec = &cell_meta.cell.spec.datastores.redis;
    Builtin {
        component: REDIS,
        image: spec.image.clone().unwrap_or_else(|| REDIS_IMAGE.into()),
        storage: storage_or_default(&spec.storage),
        data_path: "/data",
        ports: vec![("redis", 6379)],
        // The append-only file makes stock counters and reservations survive a restart; an
        // fsync a second bounds what a crash can lose to one second of writes.
        command: Some(
            [
                "redis-server",
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--dir",
                "/data",
                "--requirepass",
                "$(REDIS_PASSWORD)",
            ]
            .map(String::from)
            .into_iter()
            // Under TLS the one port speaks TLS only; clients are not asked for certificates
            // (they authenticate with the password).
            .chain(
                tls.then(|| {
                    [
                        "--port".to_string(),
                        "0".into(),
                        "--tls-port".into(),
                        "6379".into(),
                        "--tls-cert-file".into(),
                        tls_file(TLS_CERT_KEY),
                        "--tls-key-file".into(),
                        tls_file(TLS_KEY_KEY),
                        "--tls-ca-cert-file".into(),
                        tls_file(TLS_CA_KEY),
                        "--tls-auth-clients".into(),
                        "no".into(),
                    ]
                })
                .into_iter()
                .flatten(),
            )
            .collect(),
        ),
        args: None,
        env: vec![password_env(
            cell_meta,
            "REDIS_PASSWORD",
            Key::RedisPassword,
        )],
        readiness: exec_probe(&[
            "sh",
            "-c",
            &format!(
                "redis-cli {}--no-auth-warning -a \"$REDIS_PASSWORD\" ping | grep -q PONG",
                if tls {
                    format!("--tls --cacert {} ", tls_file(TLS_CA_KEY))
                } else {
                    String::new()
                }
            ),
        ]),
        resources: spec
            .resources
            .clone()
            .unwrap_or_else(|| workload::resources("100m", "256Mi", "512Mi")),
        uid: 999,
        password: Key::RedisPassword,
    }
}

fn clickhouse(cell_meta: &CellMeta, tls: bool) -> Builtin {
    let spec = &cell_meta.cell.spec.datastores.clickhouse;
    Builtin {
        component: CLICKHOUSE,
        image: spec
            .image
            .clone()
            .unwrap_or_else(|| CLICKHOUSE_IMAGE.into()),
        storage: storage_or_default(&spec.storage),
        data_path: "/var/lib/clickhouse",
        ports: [("http", 8123), ("native", 9000)]
            .into_iter()
            .chain(tls.then_some(("https", CLICKHOUSE_HTTPS_PORT)))
            .collect(),
        command: None,
        // The image's entrypoint passes arguments after `--` to the server as config overrides.
        args: tls.then(|| {
            [
                "--".to_string(),
                format!("--https_port={CLICKHOUSE_HTTPS_PORT}"),
                format!(
                    "--openSSL.server.certificateFile={}",
                    tls_file(TLS_CERT_KEY)
                ),
                format!("--openSSL.server.privateKeyFile={}", tls_file(TLS_KEY_KEY)),
            ]
            .to_vec()
        }),
        env: vec![
            value_env("CLICKHOUSE_USER", DATABASE_USER),
            password_env(cell_meta, "CLICKHOUSE_PASSWORD", Key::ClickHousePassword),
            value_env("CLICKHOUSE_DEFAULT_ACCESS_MANAGEMENT", "1"),
        ],
        readiness: Probe {
            http_get: Some(HTTPGetAction {
                path: Some("/ping".into()),
                port: IntOrString::String("http".into()),
                ..Default::default()
            }),
            period_seconds: Some(5),
            failure_threshold: Some(3),
            ..Default::default()
        },
        resources: spec
            .resources
            .clone()
            .unwrap_or_else(|| workload::resources("500m", "1Gi", "2Gi")),
        uid: 101,
        password: Key::ClickHousePassword,
    }
}

/// The Barman object store of the cell's object storage at `destination_path`.
fn object_store(storage: &ObjectStorage, destination_path: String) -> BarmanObjectStore {
    let [access_key, secret_key] = OBJECT_STORAGE_KEYS;
    let key = |key: &str| SecretKey {
        name: storage.credentials_secret.clone(),
        key: key.into(),
    };
    BarmanObjectStore {
        destination_path,
        endpoint_url: storage.endpoint.clone(),
        s3_credentials: S3Credentials {
            access_key_id: key(access_key),
            secret_access_key: key(secret_key),
        },
        server_name: None,
        wal: None,
        data: None,
    }
}

/// Where a cell's CloudNativePG cluster archives its WAL and Barman base backups.
fn backup_path(bucket: &str, cell: &str) -> String {
    format!("s3://{bucket}/{cell}/postgres")
}

/// Name, in `spec.externalClusters`, of the cluster a restore reads from.
const RESTORE_SOURCE: &str = "origin";

/// How the cluster starts: an empty database, or `spec.datastores.postgres.restore`.
fn bootstrap(
    spec: &PostgresDatastore,
    storage: Option<&ObjectStorage>,
) -> (Bootstrap, Vec<ExternalCluster>) {
    let Some(restore) = &spec.restore else {
        return (
            Bootstrap {
                initdb: Some(InitDb {
                    database: DATABASE_USER.into(),
                    owner: DATABASE_USER.into(),
                }),
                recovery: None,
            },
            Vec::new(),
        );
    };
    let mut recovery = Recovery {
        database: DATABASE_USER.into(),
        owner: DATABASE_USER.into(),
        recovery_target: restore
            .target_time
            .clone()
            .map(|target_time| RecoveryTarget { target_time }),
        ..Default::default()
    };
    let mut external = Vec::new();
    let path = match (&restore.cell, &restore.destination_path, storage) {
        (Some(cell), _, Some(storage)) => Some(backup_path(&storage.bucket, cell)),
        (None, Some(path), Some(_)) => Some(path.clone()),
        _ => None,
    };
    match (&restore.volume_snapshot, path, storage) {
        (Some(snapshot), _, _) => {
            recovery.volume_snapshots = Some(VolumeSnapshots {
                storage: TypedLocalObjectReference {
                    name: snapshot.clone(),
                    kind: "VolumeSnapshot".into(),
                    api_group: "snapshot.storage.k8s.io".into(),
                },
            });
        }
        (None, Some(path), Some(storage)) => {
            recovery.source = Some(RESTORE_SOURCE.into());
            external.push(ExternalCluster {
                name: RESTORE_SOURCE.into(),
                barman_object_store: BarmanObjectStore {
                    // The backups were taken by a cluster named like this one.
                    server_name: Some(POSTGRES.into()),
                    ..object_store(storage, path)
                },
            });
        }
        // The CRD requires object storage for a restore from it; an object that predates the
        // rule restores nothing rather than guessing.
        (None, _, _) => {}
    }
    (
        Bootstrap {
            initdb: None,
            recovery: Some(recovery),
        },
        external,
    )
}

fn cloudnative_pg(cell_meta: &CellMeta) -> Cluster {
    let spec = &cell_meta.cell.spec.datastores.postgres;
    let storage = cell_meta.cell.spec.datastores.object_storage.as_ref();
    let schedule = spec.backup.as_ref();
    // With object storage the cluster archives its WAL there, whatever the base backup method,
    // so the data can be recovered to any point in time.
    let barman_object_store = storage.map(|storage| BarmanObjectStore {
        wal: Some(Compression {
            compression: "gzip".into(),
        }),
        data: Some(Compression {
            compression: "gzip".into(),
        }),
        ..object_store(storage, backup_path(&storage.bucket, &cell_meta.name))
    });
    let volume_snapshot = schedule
        .filter(|b| b.method == BackupMethod::VolumeSnapshot)
        .map(|b| VolumeSnapshotBackup {
            class_name: b.volume_snapshot_class.clone(),
        });
    let backup = (barman_object_store.is_some() || volume_snapshot.is_some()).then(|| Backup {
        barman_object_store,
        volume_snapshot,
        retention_policy: schedule
            .and_then(|b| b.retention_policy.clone())
            .unwrap_or_else(|| BACKUP_RETENTION.into()),
    });
    let (bootstrap, external_clusters) = bootstrap(spec, storage);
    let mut cluster = Cluster::new(
        POSTGRES,
        ClusterSpec {
            instances: spec.instances.unwrap_or(DEFAULT_INSTANCES),
            image_name: spec.image.clone(),
            inherited_metadata: Some(InheritedMetadata {
                labels: cell_meta.selector(POSTGRES),
            }),
            storage: Storage {
                size: storage_or_default(&spec.storage).0,
            },
            bootstrap,
            resources: spec.resources.clone(),
            backup,
            external_clusters,
        },
    );
    // CloudNativePG owns its volumes through the Cluster, so under Retain the Cluster itself is
    // the data that must outlive the Cell.
    cluster.metadata = cell_meta.data_meta(POSTGRES, POSTGRES);
    // A stopped cell's cluster hibernates: CloudNativePG stops its pods and keeps its volumes.
    if cell_meta.cell.spec.operation.stopped {
        cluster.metadata.annotations = Some(BTreeMap::from([(
            cnpg::HIBERNATION.to_string(),
            "on".to_string(),
        )]));
    }
    cluster
}

/// The cluster's ScheduledBackup, when `spec.datastores.postgres.backup` is set. Kept like the
/// Cluster under Retain, so a retained database goes on being backed up.
fn scheduled_backup(cell_meta: &CellMeta) -> Option<ScheduledBackup> {
    let backup = cell_meta.cell.spec.datastores.postgres.backup.as_ref()?;
    let mut scheduled = ScheduledBackup::new(
        POSTGRES,
        ScheduledBackupSpec {
            schedule: backup.schedule.clone(),
            cluster: LocalObjectReference {
                name: POSTGRES.into(),
            },
            method: match backup.method {
                BackupMethod::BarmanObjectStore => "barmanObjectStore",
                BackupMethod::VolumeSnapshot => "volumeSnapshot",
            }
            .into(),
            backup_owner_reference: "cluster".into(),
        },
    );
    scheduled.metadata = cell_meta.data_meta(POSTGRES, POSTGRES);
    Some(scheduled)
}

/// The datastore objects of the cell in `cell_meta`, whose generated passwords are
/// `credentials`; `certificate` is the services' certificate (PEM) once the cell has one.
pub fn build(
    cell_meta: &CellMeta,
    credentials: &Credentials,
    certificate: Option<&str>,
) -> DatastoreObjects {
    let stores = &cell_meta.cell.spec.datastores;
    let tls = cell_meta.cell.spec.tls.is_some();
    let mut builtins = Vec::new();
    let mut clusters = Vec::new();
    let mut scheduled_backups = Vec::new();
    match stores.postgres.provider {
        PostgresProvider::Builtin => builtins.push(postgres(cell_meta, tls)),
        PostgresProvider::CloudnativePg => {
            clusters.push(cloudnative_pg(cell_meta));
            scheduled_backups.extend(scheduled_backup(cell_meta));
        }
        PostgresProvider::External => {}
    }
    if stores.redis.provider == Provider::Builtin {
        builtins.push(redis(cell_meta, tls));
    }
    if stores.clickhouse.provider == Provider::Builtin {
        builtins.push(clickhouse(cell_meta, tls));
    }
    let (stateful_sets, services) = builtins
        .into_iter()
        .map(|builtin| stateful_set(cell_meta, credentials, certificate, builtin))
        .unzip();
    DatastoreObjects {
        stateful_sets,
        services,
        clusters,
        scheduled_backups,
    }
}
