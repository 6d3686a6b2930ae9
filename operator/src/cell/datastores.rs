//! Build stage, datastores: builtin PostgreSQL, Redis and ClickHouse as StatefulSets with a
//! volume, a headless Service, a readiness probe and resources; or a CloudNativePG `Cluster`.
//! External datastores build nothing here: [`super::connections`] reads their Secret.
//!
//! Passwords come from the cell's credentials Secret by reference, never inline, so changing
//! the spec never touches them.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::{
        apps::v1::{StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec},
        core::v1::{
            Container, EnvVar, ExecAction, HTTPGetAction, PersistentVolumeClaim,
            PersistentVolumeClaimSpec, PodSpec, PodTemplateSpec, Probe, ResourceRequirements,
            Service as CoreService, VolumeMount, VolumeResourceRequirements,
        },
    },
    apimachinery::pkg::{
        api::resource::Quantity,
        apis::meta::v1::{LabelSelector, ObjectMeta},
        util::intstr::IntOrString,
    },
};
use titan_crds::cell::{DeletionPolicy, PostgresProvider, Provider};

use super::{
    build::Scope,
    connections::{CLICKHOUSE, DATABASE_USER, POSTGRES, REDIS},
    credentials::{self, Key},
    workload,
};
use crate::{
    cnpg::{
        self, Backup, BarmanObjectStore, Bootstrap, Cluster, ClusterSpec, Compression,
        InheritedMetadata, InitDb, S3Credentials, SecretKey, Storage,
    },
    service::build::{OBJECT_STORAGE_KEYS, secret_env, value_env},
};

/// Default image of a builtin PostgreSQL.
pub const POSTGRES_IMAGE: &str = "docker.io/library/postgres:17";
/// Default image of a builtin Redis.
pub const REDIS_IMAGE: &str = "docker.io/library/redis:7.4";
/// Default image of a builtin ClickHouse.
pub const CLICKHOUSE_IMAGE: &str = "docker.io/clickhouse/clickhouse-server:24.8";
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
}

/// What sets one builtin server apart from another.
struct Builtin {
    component: &'static str,
    image: String,
    storage: Quantity,
    data_path: &'static str,
    ports: Vec<(&'static str, i32)>,
    command: Option<Vec<String>>,
    env: Vec<EnvVar>,
    readiness: Probe,
    resources: ResourceRequirements,
    /// The uid the image's server runs as.
    uid: i64,
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

fn password_env(scope: &Scope, variable: &str, key: Key) -> EnvVar {
    secret_env(
        variable,
        &credentials::secret_name(&scope.name),
        key.as_str(),
    )
}

fn stateful_set(scope: &Scope, builtin: Builtin) -> (StatefulSet, CoreService) {
    let Builtin {
        component,
        image,
        storage,
        data_path,
        ports,
        command,
        env,
        readiness,
        resources,
        uid,
    } = builtin;
    let labels = scope.labels(component);
    // A StatefulSet's volume claim templates cannot change: keep the cell's version out of them,
    // or the first upgrade would be refused.
    let mut claim_labels = labels.clone();
    claim_labels.remove(crate::labels::VERSION);
    let container = Container {
        name: component.into(),
        image: Some(image),
        image_pull_policy: Some("IfNotPresent".into()),
        command,
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
        volume_mounts: Some(vec![VolumeMount {
            name: "data".into(),
            mount_path: data_path.into(),
            ..Default::default()
        }]),
        ..Default::default()
    };
    let retention = match scope.cell.spec.deletion_policy {
        DeletionPolicy::Retain => "Retain",
        DeletionPolicy::Delete => "Delete",
    };
    let set = StatefulSet {
        metadata: scope.meta(component, component),
        spec: Some(StatefulSetSpec {
            replicas: Some(scope.replicas()),
            service_name: Some(component.into()),
            selector: LabelSelector {
                match_labels: Some(scope.selector(component)),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels.clone()),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
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
        scope,
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

fn postgres(scope: &Scope) -> Builtin {
    let spec = &scope.cell.spec.datastores.postgres;
    Builtin {
        component: POSTGRES,
        image: spec.image.clone().unwrap_or_else(|| POSTGRES_IMAGE.into()),
        storage: storage_or_default(&spec.storage),
        data_path: "/var/lib/postgresql/data",
        ports: vec![("postgres", 5432)],
        command: None,
        env: vec![
            value_env("POSTGRES_USER", DATABASE_USER),
            value_env("POSTGRES_DB", DATABASE_USER),
            password_env(scope, "POSTGRES_PASSWORD", Key::PostgresPassword),
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
    }
}

fn redis(scope: &Scope) -> Builtin {
    let spec = &scope.cell.spec.datastores.redis;
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
            .to_vec(),
        ),
        env: vec![password_env(scope, "REDIS_PASSWORD", Key::RedisPassword)],
        readiness: exec_probe(&[
            "sh",
            "-c",
            "redis-cli --no-auth-warning -a \"$REDIS_PASSWORD\" ping | grep -q PONG",
        ]),
        resources: spec
            .resources
            .clone()
            .unwrap_or_else(|| workload::resources("100m", "256Mi", "512Mi")),
        uid: 999,
    }
}

fn clickhouse(scope: &Scope) -> Builtin {
    let spec = &scope.cell.spec.datastores.clickhouse;
    Builtin {
        component: CLICKHOUSE,
        image: spec
            .image
            .clone()
            .unwrap_or_else(|| CLICKHOUSE_IMAGE.into()),
        storage: storage_or_default(&spec.storage),
        data_path: "/var/lib/clickhouse",
        ports: vec![("http", 8123), ("native", 9000)],
        command: None,
        env: vec![
            value_env("CLICKHOUSE_USER", DATABASE_USER),
            password_env(scope, "CLICKHOUSE_PASSWORD", Key::ClickHousePassword),
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
    }
}

fn cloudnative_pg(scope: &Scope) -> Cluster {
    let spec = &scope.cell.spec.datastores.postgres;
    let backup = scope
        .cell
        .spec
        .datastores
        .object_storage
        .as_ref()
        .map(|storage| {
            let [access_key, secret_key] = OBJECT_STORAGE_KEYS;
            let key = |key: &str| SecretKey {
                name: storage.credentials_secret.clone(),
                key: key.into(),
            };
            Backup {
                barman_object_store: BarmanObjectStore {
                    destination_path: format!("s3://{}/{}/postgres", storage.bucket, scope.name),
                    endpoint_url: storage.endpoint.clone(),
                    s3_credentials: S3Credentials {
                        access_key_id: key(access_key),
                        secret_access_key: key(secret_key),
                    },
                    wal: Compression {
                        compression: "gzip".into(),
                    },
                    data: Compression {
                        compression: "gzip".into(),
                    },
                },
                retention_policy: BACKUP_RETENTION.into(),
            }
        });
    let mut cluster = Cluster::new(
        POSTGRES,
        ClusterSpec {
            instances: spec.instances.unwrap_or(DEFAULT_INSTANCES),
            image_name: spec.image.clone(),
            inherited_metadata: Some(InheritedMetadata {
                labels: scope.selector(POSTGRES),
            }),
            storage: Storage {
                size: storage_or_default(&spec.storage).0,
            },
            bootstrap: Bootstrap {
                initdb: InitDb {
                    database: DATABASE_USER.into(),
                    owner: DATABASE_USER.into(),
                },
            },
            resources: spec.resources.clone(),
            backup,
        },
    );
    // CloudNativePG owns its volumes through the Cluster, so under Retain the Cluster itself is
    // the data that must outlive the Cell.
    cluster.metadata = scope.data_meta(POSTGRES, POSTGRES);
    // A stopped cell's cluster hibernates: CloudNativePG stops its pods and keeps its volumes.
    if scope.cell.spec.operation.stopped {
        cluster.metadata.annotations = Some(BTreeMap::from([(
            cnpg::HIBERNATION.to_string(),
            "on".to_string(),
        )]));
    }
    cluster
}

/// The datastore objects of the cell in `scope`.
pub fn build(scope: &Scope) -> DatastoreObjects {
    let stores = &scope.cell.spec.datastores;
    let mut builtins = Vec::new();
    let mut clusters = Vec::new();
    match stores.postgres.provider {
        PostgresProvider::Builtin => builtins.push(postgres(scope)),
        PostgresProvider::CloudnativePg => clusters.push(cloudnative_pg(scope)),
        PostgresProvider::External => {}
    }
    if stores.redis.provider == Provider::Builtin {
        builtins.push(redis(scope));
    }
    if stores.clickhouse.provider == Provider::Builtin {
        builtins.push(clickhouse(scope));
    }
    let (stateful_sets, services) = builtins
        .into_iter()
        .map(|builtin| stateful_set(scope, builtin))
        .unzip();
    DatastoreObjects {
        stateful_sets,
        services,
        clusters,
    }
}
