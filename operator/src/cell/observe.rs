//! Status stage, first half (pure): the state of each datastore and media server of a cell from
//! its live objects and its resolved connections, and where the cell is reached. The Cell's
//! conditions are derived from these in [`super::status`].

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use kube::ResourceExt;
use titan_crds::{
    Cell,
    cell::{ComponentStatus, DatastoresStatus, Endpoints, MediaStatus, PostgresProvider, Provider},
};

use super::{
    connections::{CLICKHOUSE, Connections, POSTGRES, REDIS, Resolution},
    media::{self, HLS_SERVICE_PORT, RTMP, RTMP_PORT, TURN},
    nginx::HLS_DIR,
};
use crate::{
    cnpg::{Cluster, HEALTHY_PHASE},
    shared::GRPC_PORT,
};

/// The cell's own workloads as the API server has them.
#[derive(Debug, Clone, Copy)]
pub struct LiveWorkloads<'a> {
    /// Builtin datastores.
    pub stateful_sets: &'a [StatefulSet],
    /// Media servers.
    pub deployments: &'a [Deployment],
    /// The CloudNativePG cluster.
    pub clusters: &'a [Cluster],
}

/// What the status stage learned about the cell's components.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Components {
    /// Each datastore.
    pub datastores: DatastoresStatus,
    /// Each enabled media server.
    pub media: MediaStatus,
    /// Misconfigurations a person must fix (a user's Secret lacks keys), for `Degraded`.
    pub problems: Vec<String>,
    /// Whether a datastore waits for a person rather than for time (a user's Secret is wrong).
    pub datastores_misconfigured: bool,
}

fn status(provider: Option<&str>, ready: bool, reason: &str, message: String) -> ComponentStatus {
    ComponentStatus {
        provider: provider.map(str::to_string),
        ready,
        reason: reason.into(),
        message,
    }
}

/// What a workload's controller reports of a rollout.
struct Rollout {
    generation: Option<i64>,
    observed: Option<i64>,
    wanted: i32,
    ready: i32,
}

impl Rollout {
    fn of_stateful_set(set: &StatefulSet) -> Self {
        let status = set.status.as_ref();
        Self {
            generation: set.metadata.generation,
            observed: status.and_then(|s| s.observed_generation),
            wanted: set.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
            ready: status.and_then(|s| s.ready_replicas).unwrap_or(0),
        }
    }

    fn of_deployment(deployment: &Deployment) -> Self {
        let status = deployment.status.as_ref();
        Self {
            generation: deployment.metadata.generation,
            observed: status.and_then(|s| s.observed_generation),
            wanted: deployment
                .spec
                .as_ref()
                .and_then(|s| s.replicas)
                .unwrap_or(1),
            ready: status.and_then(|s| s.ready_replicas).unwrap_or(0),
        }
    }
}

/// The state of workload `kind/name`: it counts only once its controller observed its latest
/// spec and every replica is ready, as a ready pod of an older spec is not the truth about the
/// current one.
fn workload_status(
    kind: &str,
    name: &str,
    provider: Option<&str>,
    rollout: Option<Rollout>,
) -> ComponentStatus {
    let Some(Rollout {
        generation,
        observed,
        wanted,
        ready,
    }) = rollout
    else {
        return status(
            provider,
            false,
            "NotCreated",
            format!("{kind} {name} does not exist yet"),
        );
    };
    if observed.is_some() && observed == generation && ready >= wanted {
        status(provider, true, "Running", format!("{kind} {name} is ready"))
    } else {
        status(
            provider,
            false,
            "Starting",
            format!("{kind} {name}: {ready} of {wanted} replicas ready"),
        )
    }
}

fn stateful_set_status(name: &str, live: &[StatefulSet]) -> ComponentStatus {
    let rollout = live
        .iter()
        .find(|s| s.name_any() == name)
        .map(Rollout::of_stateful_set);
    workload_status("statefulset", name, Some("builtin"), rollout)
}

fn deployment_status(name: &str, live: &[Deployment]) -> ComponentStatus {
    let rollout = live
        .iter()
        .find(|d| d.name_any() == name)
        .map(Rollout::of_deployment);
    workload_status("deployment", name, None, rollout)
}

fn cluster_status(live: &[Cluster]) -> ComponentStatus {
    const PROVIDER: Option<&str> = Some("cloudnative-pg");
    let Some(cluster) = live.iter().find(|c| c.name_any() == POSTGRES) else {
        return status(
            PROVIDER,
            false,
            "NotCreated",
            format!("cluster {POSTGRES} does not exist yet"),
        );
    };
    let wanted = cluster.spec.instances;
    let observed = cluster.status.clone().unwrap_or_default();
    let ready = observed.ready_instances.unwrap_or(0);
    let phase = observed.phase.unwrap_or_else(|| "no phase reported".into());
    if ready >= wanted && phase == HEALTHY_PHASE {
        status(
            PROVIDER,
            true,
            "Healthy",
            format!("cluster {POSTGRES}: {ready} of {wanted} instances ready"),
        )
    } else {
        status(
            PROVIDER,
            false,
            "Starting",
            format!("cluster {POSTGRES}: {ready} of {wanted} instances ready ({phase})"),
        )
    }
}

/// A component that also needs its connection: not ready, with the connection's reason, until
/// the connection resolves.
fn with_connection(
    mut component: ComponentStatus,
    connection: &Resolution,
    problems: &mut Vec<String>,
) -> ComponentStatus {
    if let Err(unresolved) = connection {
        if unresolved.needs_action {
            problems.push(unresolved.message.clone());
        }
        component.ready = false;
        component.reason = unresolved.reason.into();
        component.message = unresolved.message.clone();
    }
    component
}

fn external_status(name: &str) -> ComponentStatus {
    status(
        Some("external"),
        true,
        "SecretComplete",
        format!("{name} is reached through the url of its secret"),
    )
}

/// The state of every component of `cell`.
pub fn components(cell: &Cell, connections: &Connections, live: LiveWorkloads) -> Components {
    let stores = &cell.spec.datastores;
    let mut problems = Vec::new();

    let postgres = match stores.postgres.provider {
        PostgresProvider::Builtin => stateful_set_status(POSTGRES, live.stateful_sets),
        PostgresProvider::CloudnativePg => cluster_status(live.clusters),
        PostgresProvider::External => external_status(POSTGRES),
    };
    let builtin_or_external = |provider: Provider, name: &str| match provider {
        Provider::Builtin => stateful_set_status(name, live.stateful_sets),
        Provider::External => external_status(name),
    };
    let redis = builtin_or_external(stores.redis.provider, REDIS);
    let clickhouse = builtin_or_external(stores.clickhouse.provider, CLICKHOUSE);

    let object_storage = connections
        .object_storage
        .as_ref()
        .map(|checked| match checked {
            Ok(_) => status(
                None,
                true,
                "CredentialsComplete",
                "recordings and uploads go to the bucket".into(),
            ),
            Err(unresolved) => {
                problems.push(unresolved.message.clone());
                status(None, false, unresolved.reason, unresolved.message.clone())
            }
        });

    let object_storage_problems = problems.len();
    let mut datastores = DatastoresStatus {
        postgres: with_connection(postgres, &connections.postgres, &mut problems),
        redis: with_connection(redis, &connections.redis, &mut problems),
        clickhouse: with_connection(clickhouse, &connections.clickhouse, &mut problems),
        object_storage,
    };
    let datastores_misconfigured = problems.len() > object_storage_problems;
    let mut media = MediaStatus {
        turn: media::enabled_turn(cell).map(|_| deployment_status(TURN, live.deployments)),
        rtmp: media::enabled_rtmp(cell).map(|_| deployment_status(RTMP, live.deployments)),
    };
    if cell.spec.operation.stopped {
        // Scaled to zero on purpose: not serving, and nothing is wrong.
        let stopped = |component: &mut ComponentStatus| {
            if component.provider.as_deref() != Some("external") {
                component.ready = false;
                component.reason = "Stopped".into();
                component.message = "the cell is stopped; its data is kept".into();
            }
        };
        [
            &mut datastores.postgres,
            &mut datastores.redis,
            &mut datastores.clickhouse,
        ]
        .into_iter()
        .for_each(stopped);
        media
            .turn
            .iter_mut()
            .chain(media.rtmp.iter_mut())
            .for_each(stopped);
    }
    Components {
        datastores,
        media,
        problems,
        datastores_misconfigured,
    }
}

/// The host of the cell's RTMP server (its public host, else its in-cluster name), when the
/// cell runs one.
fn rtmp_host(cell: &Cell) -> Option<String> {
    media::enabled_rtmp(cell).map(|rtmp| {
        rtmp.public_host
            .clone()
            .unwrap_or_else(|| format!("{RTMP}.{}.svc", cell.namespace_name()))
    })
}

/// The base URL of the cell's HLS playlists (`<base>/<stream id>.m3u8`), when it runs an RTMP
/// server: in the Cell's status, and livestream's `hlsBaseUrl` unless the cell sets one.
pub fn hls_base(cell: &Cell) -> Option<String> {
    rtmp_host(cell).map(|host| format!("http://{host}:{HLS_SERVICE_PORT}/{HLS_DIR}"))
}

/// The URIs of the cell's TURN server (UDP and TCP), when it runs one: in the Cell's status,
/// and videocall's `turn.uris` unless the cell sets its own.
pub fn turn_uris(cell: &Cell) -> Vec<String> {
    media::enabled_turn(cell)
        .map(|turn| {
            let host = turn
                .external_address
                .clone()
                .unwrap_or_else(|| format!("{TURN}.{}.svc", cell.namespace_name()));
            ["udp", "tcp"]
                .map(|transport| {
                    format!("turn:{host}:{}?transport={transport}", turn.listening_port)
                })
                .to_vec()
        })
        .unwrap_or_default()
}

/// Where the cell is reached: its media servers' URLs and each enabled service's gRPC address.
pub fn endpoints(cell: &Cell, services: &[String]) -> Endpoints {
    let namespace = cell.namespace_name();
    let in_cluster = |name: &str| format!("{name}.{namespace}.svc");
    let rtmp_host = rtmp_host(cell);
    let turn_uris = turn_uris(cell);
    Endpoints {
        rtmp_ingest: rtmp_host
            .as_ref()
            .map(|host| format!("rtmp://{host}:{RTMP_PORT}/live")),
        hls_base: hls_base(cell),
        turn_uris,
        grpc: services
            .iter()
            .map(|name| (name.clone(), format!("{}:{GRPC_PORT}", in_cluster(name))))
            .collect::<BTreeMap<_, _>>(),
    }
}
