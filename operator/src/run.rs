//! `titan-operator run`: the Cell, Service and Fleet controllers behind leader election, the admin server, and a
//! graceful shutdown on SIGTERM or when leadership is lost.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::Context as _;
use futures::StreamExt;
use k8s_openapi::api::{
    apps::v1::Deployment,
    autoscaling::v2::HorizontalPodAutoscaler,
    batch::v1::Job,
    core::v1::{ConfigMap, Namespace, Pod, Secret, Service as CoreService},
    policy::v1::PodDisruptionBudget,
};
use kube::{
    Api, Client, ResourceExt,
    core::{DeserializeGuard, PartialObjectMeta},
    runtime::{Controller, controller, reflector::ObjectRef, utils::Backoff, watcher},
};
use titan_crds::{Cell, Fleet, Service};
use tokio::sync::watch;

use crate::{
    Context, admin,
    cache::Caches,
    cell::{
        certificates::Certificate,
        dereference::referenced_secrets,
        gateway::{BackendTlsPolicy, GrpcRoute, HttpRoute},
        isolation::NetworkSettings,
    },
    cnpg, fleet, guard, labels, leader,
    metrics::Metrics,
    router_table::{self, RouterTableOptions},
};

/// Settings of `titan-operator run`.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Address of the admin server.
    pub admin_addr: SocketAddr,
    /// Namespace of the leader Lease.
    pub lease_namespace: String,
    /// This replica's identity in the election.
    pub identity: String,
    /// Objects each controller reconciles at once.
    pub concurrency: u16,
    /// Who outside a cell its NetworkPolicies admit.
    pub network: NetworkSettings,
    /// The cell router's table to keep, if any.
    pub router_table: Option<RouterTableOptions>,
}

/// Runs until SIGTERM/SIGINT, or until leadership is lost (then exits so the pod restarts clean).
pub async fn run(options: RunOptions) -> anyhow::Result<()> {
    let RunOptions {
        admin_addr,
        lease_namespace,
        identity,
        concurrency,
        network,
        router_table,
    } = options;
    let client = Client::try_default()
        .await
        .context("cannot build a Kubernetes client")?;
    let metrics = Metrics::new().context("cannot register metrics")?;
    let ready = Arc::new(AtomicBool::new(false));
    let is_leader = Arc::new(AtomicBool::new(false));

    let listener = tokio::net::TcpListener::bind(admin_addr)
        .await
        .with_context(|| format!("cannot listen on {admin_addr}"))?;
    let router = admin::router(admin::AdminState {
        metrics: metrics.clone(),
        ready: ready.clone(),
        leader: is_leader.clone(),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut admin_stop = stop_rx.clone();
    let admin = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = admin_stop.wait_for(|stop| *stop).await;
            })
            .await
    });

    let signal_tx = stop_tx.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        let _ = signal_tx.send(true);
    });

    ready.store(true, Ordering::Relaxed);
    tracing::info!(%identity, namespace = %lease_namespace, "waiting for leadership");
    // A standby whose election ends (the lease manager gave up on an API error, as a loaded API
    // server can make it) competes again instead of exiting: outside a pod nothing restarts
    // it, and inside one a restart loop would only delay the takeover.
    let mut stop_wait = stop_rx.clone();
    let election = loop {
        let mut election = match leader::elect(client.clone(), &lease_namespace, &identity).await {
            Ok(election) => election,
            Err(error) => {
                tracing::warn!(%error, "cannot start leader election; trying again");
                tokio::select! {
                    () = tokio::time::sleep(ELECTION_RETRY) => continue,
                    _ = stop_wait.wait_for(|stop| *stop) => return finish(admin, stop_tx).await,
                }
            }
        };
        let won = tokio::select! {
            won = election.leader.wait_for(|leader| *leader) => won.is_ok(),
            _ = stop_wait.wait_for(|stop| *stop) => return finish(admin, stop_tx).await,
        };
        if won {
            break election;
        }
        match election.task.await {
            Ok(Err(error)) => tracing::warn!(%error, "leader election ended; competing again"),
            _ => tracing::warn!("leader election ended; competing again"),
        }
        tokio::time::sleep(ELECTION_RETRY).await;
    };
    is_leader.store(true, Ordering::Relaxed);
    tracing::info!("leading: starting controllers");

    let lost_tx = stop_tx.clone();
    let mut leader_rx = election.leader.clone();
    // Leadership ends when the lease says so or when the lease task itself ends (an error):
    // either way nobody renews the lease any more, so this replica must stop reconciling.
    let lost = tokio::spawn(async move {
        let _ = leader_rx.wait_for(|leader| !*leader).await;
        tracing::error!("lost leadership: stopping controllers");
        let _ = lost_tx.send(true);
    });

    let config = controller::Config::default().concurrency(concurrency);
    let fleet_config = config.clone();
    let managed =
        watcher::Config::default().labels(&format!("{}={}", labels::MANAGED_BY, crate::MANAGER));
    // A watch on a kind the API server does not serve fails for ever: the cells' routes are
    // watched (and read, applied, pruned) only where the Gateway API is installed; elsewhere a
    // Cell asking for routes says so in its status.
    let gateway_api = served::<GrpcRoute>(&client).await && served::<HttpRoute>(&client).await;
    if !gateway_api {
        tracing::info!("the Gateway API is not installed: cells get no edge routes");
    }
    let backend_tls = served::<BackendTlsPolicy>(&client).await;
    let cert_manager = served::<Certificate>(&client).await;
    if !cert_manager {
        tracing::info!("cert-manager is not installed: cells asking for it say so in their status");
    }
    // The children's watches fill the caches rounds read from (see `crate::cache`) and trigger
    // the Cell that owns the changed object.
    let (caches, feeds) = Caches::new(&client, &managed, gateway_api);
    let ctx = Arc::new(
        Context::new(client.clone(), metrics, Some(identity))
            .with_network(network)
            .with_caches(caches)
            .with_gateway_api(gateway_api)
            .with_cert_manager(cert_manager)
            .with_backend_tls(backend_tls),
    );
    let fleet_ctx = ctx.clone();
    let stopped = |rx: watch::Receiver<bool>| async move {
        let mut rx = rx;
        let _ = rx.wait_for(|stop| *stop).await;
    };

    let mut cells = Controller::new(
        Api::<DeserializeGuard<Cell>>::all(client.clone()),
        watcher::Config::default(),
    )
    .owns_stream(feeds.services)
    .owns_stream(feeds.stateful_sets)
    .owns_stream(feeds.deployments)
    .owns_stream(feeds.config_maps)
    .owns_stream(feeds.core_services)
    .owns_stream(feeds.network_policies)
    .owns_stream(feeds.resource_quotas)
    .owns_stream(feeds.limit_ranges)
    // What holds a cell's data has no owner under `deletionPolicy: Retain` (the namespace, the
    // credentials Secret; the CloudNativePG Cluster never has one), so an owner reference
    // cannot lead back to the Cell: the cell label does, and a deleted credentials Secret is
    // seen at once rather than at the next resync.
    .watches(
        Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
        managed.clone(),
        by_cell_label,
    )
    .watches(
        Api::<PartialObjectMeta<Secret>>::all(client.clone()),
        managed.clone(),
        by_cell_label,
    );
    if let Some(feed) = feeds.grpc_routes {
        cells = cells.owns_stream(feed);
    }
    if let Some(feed) = feeds.http_routes {
        cells = cells.owns_stream(feed);
    }
    // Likewise, CloudNativePG Clusters are watched only where CloudNativePG is installed (cells
    // elsewhere cannot use it anyway).
    if served::<cnpg::Cluster>(&client).await {
        cells = cells.watches(
            Api::<PartialObjectMeta<cnpg::Cluster>>::all(client.clone()),
            managed.clone(),
            by_cell_label,
        );
    } else {
        tracing::info!(
            "CloudNativePG is not installed: cells cannot use the cloudnative-pg provider"
        );
    }
    // A Secret the cell reads but does not own (an external datastore's, the object storage
    // credentials, CloudNativePG's) carries no owner reference nor the cell label: the round
    // that first reads it labels it `commerce.titan.dev/referenced`, and this watch — of those
    // Secrets only, metadata only, never their data — maps it to the cells that name it, so a
    // fixed Secret rolls the cell out now. Until it exists, the round looks again often.
    let cell_store = cells.store();
    // A Fleet's status says which version each wave runs: a change maps to its member cells.
    let members_store = cell_store.clone();
    let cells = cells
        .watches(
            Api::<PartialObjectMeta<Fleet>>::all(client.clone()),
            watcher::Config::default(),
            move |fleet: PartialObjectMeta<Fleet>| {
                let name = fleet.name_any();
                members_store
                    .state()
                    .into_iter()
                    .filter(|c| {
                        c.0.as_ref()
                            .is_ok_and(|cell| cell.spec.rollout.fleet.as_deref() == Some(&name))
                    })
                    .map(|c| ObjectRef::from_obj(&*c))
                    .collect::<Vec<_>>()
            },
        )
        .watches(
            Api::<PartialObjectMeta<Secret>>::all(client.clone()),
            watcher::Config::default().labels(labels::REFERENCED),
            move |secret: PartialObjectMeta<Secret>| {
                let (namespace, name) = (secret.namespace(), secret.name_any());
                cell_store
                    .state()
                    .into_iter()
                    .filter(|c| {
                        c.0.as_ref().is_ok_and(|cell| {
                            Some(cell.namespace_name()) == namespace
                                && referenced_secrets(cell).contains(&name)
                        })
                    })
                    .map(|c| ObjectRef::from_obj(&*c))
                    .collect::<Vec<_>>()
            },
        )
        .with_config(config.clone())
        .trigger_backoff(WatchRetry)
        .graceful_shutdown_on(stopped(stop_rx.clone()))
        .run(guard::reconcile_cell, guard::cell_error_policy, ctx.clone())
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "cell controller");
            }
        });

    let services = Controller::new(
        Api::<DeserializeGuard<Service>>::all(client.clone()),
        watcher::Config::default(),
    );
    let store = services.store();
    let services = services
        .owns(Api::<Deployment>::all(client.clone()), managed.clone())
        .owns(Api::<ConfigMap>::all(client.clone()), managed.clone())
        .owns(Api::<CoreService>::all(client.clone()), managed.clone())
        .owns(
            Api::<PodDisruptionBudget>::all(client.clone()),
            managed.clone(),
        )
        .owns(
            Api::<HorizontalPodAutoscaler>::all(client.clone()),
            managed.clone(),
        )
        .owns(Api::<Job>::all(client.clone()), managed.clone())
        // A pod that crash-loops or cannot pull its image changes nothing the Deployment
        // reports: its own changes trigger its Service. Metadata is all the mapping needs (the
        // round lists the pods it reads), and only the pods of Titan services are watched.
        .watches(
            Api::<PartialObjectMeta<Pod>>::all(client.clone()),
            watcher::Config::default().labels(&format!(
                "{}={},{}",
                labels::MANAGED_BY,
                crate::MANAGER,
                labels::SERVICE
            )),
            |pod: PartialObjectMeta<Pod>| {
                let namespace = pod.namespace();
                pod.labels()
                    .get(labels::SERVICE)
                    .zip(namespace)
                    .map(|(service, namespace)| ObjectRef::new(service).within(&namespace))
            },
        )
        // A Cell's pause, stop or version changes what its Services do. Its name is all the
        // mapping needs (the round reads the Cell itself): metadata only, so the Cells are not
        // decoded a second time beside the cell controller's store.
        .watches(
            Api::<PartialObjectMeta<Cell>>::all(client.clone()),
            watcher::Config::default(),
            move |cell: PartialObjectMeta<Cell>| {
                let name = cell.name_any();
                store
                    .state()
                    .into_iter()
                    .filter(|s| s.0.as_ref().is_ok_and(|s| s.spec.cell == name))
                    .map(|s| ObjectRef::from_obj(&*s))
                    .collect::<Vec<_>>()
            },
        )
        .with_config(config)
        .trigger_backoff(WatchRetry)
        .graceful_shutdown_on(stopped(stop_rx.clone()))
        .run(guard::reconcile_service, guard::service_error_policy, ctx)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "service controller");
            }
        });

    // The Fleet controller plans from its member cells' status: any change of a member (its
    // Ready, its version, its wave) may release or halt a wave.
    let fleets = Controller::new(
        Api::<DeserializeGuard<Fleet>>::all(client.clone()),
        watcher::Config::default(),
    )
    .watches(
        Api::<DeserializeGuard<Cell>>::all(client.clone()),
        watcher::Config::default(),
        fleet::of_cell,
    )
    .with_config(fleet_config)
    .trigger_backoff(WatchRetry)
    .graceful_shutdown_on(stopped(stop_rx.clone()))
    .run(guard::reconcile_fleet, guard::fleet_error_policy, fleet_ctx)
    .for_each(|result| async move {
        if let Err(error) = result {
            tracing::debug!(%error, "fleet controller");
        }
    });

    // A graceful shutdown lets the rounds under way finish, but kube's controllers also wait
    // for every requeue they have scheduled (each Cell's is minutes away): a SIGTERMed leader
    // went on holding the lease until it was killed. Rounds are idempotent, so after a short
    // grace the rest are dropped and the lease is released for the next leader.
    let table = async {
        if let Some(options) = router_table {
            router_table::run(client.clone(), options, stop_rx.clone()).await;
        }
    };

    let mut stop_grace = stop_rx.clone();
    tokio::select! {
        _ = async { tokio::join!(cells, services, fleets, table) } => {}
        _ = async {
            let _ = stop_grace.wait_for(|stop| *stop).await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => {
            tracing::info!(grace = ?SHUTDOWN_GRACE, "rounds still pending after the grace: dropping them");
        }
    }
    // Dropping the last receiver ends the lease task, which releases the lease for the next
    // leader: the watcher of a lost lease holds a clone, so it goes first (it kept a SIGTERMed
    // leader renewing the lease until it was killed).
    lost.abort();
    let _ = lost.await;
    drop(election.leader);
    if let Ok(Err(error)) = election.task.await {
        tracing::warn!(%error, "cannot release the lease");
    }
    finish(admin, stop_tx).await
}

/// The Cell an object of it belongs to, by its cell label (for objects without an owner).
fn by_cell_label<K>(object: PartialObjectMeta<K>) -> Option<ObjectRef<DeserializeGuard<Cell>>> {
    object
        .metadata
        .labels
        .as_ref()?
        .get(labels::CELL)
        .map(|cell| ObjectRef::new(cell))
}

/// The pause before a standby whose election ended competes again.
const ELECTION_RETRY: Duration = Duration::from_secs(1);

/// How long a stopping operator lets its rounds under way finish (well inside the chart's
/// 30 s termination grace period, so the lease is released rather than left to expire).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The pause after a failed watch: short and never growing. A controller merges every watch it
/// triggers on into one stream with one backoff, and an API server restart fails each of its
/// dozen watches in turn: with kube's default exponential backoff the pause grew with every one
/// of them, and the last watch came back minutes later, reconciling nothing meanwhile (found by
/// the cluster suite, which restarts the API server under a running operator).
#[derive(Debug, Clone, Copy)]
pub struct WatchRetry;

impl WatchRetry {
    pub const PAUSE: Duration = Duration::from_millis(500);
}

impl Iterator for WatchRetry {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        Some(Self::PAUSE)
    }
}

impl Backoff for WatchRetry {
    fn reset(&mut self) {}
}

/// Whether the API server serves the kind `K` (its group, at its version).
async fn served<K: kube::Resource<DynamicType = ()>>(client: &Client) -> bool {
    let group = K::group(&());
    match kube::discovery::group(client, &group).await {
        Ok(found) => found
            .versioned_resources(&K::version(&()))
            .iter()
            .any(|(resource, _)| resource.kind == K::kind(&())),
        Err(error) => {
            tracing::debug!(%error, %group, "api group not served");
            false
        }
    }
}

async fn finish(
    admin: tokio::task::JoinHandle<std::io::Result<()>>,
    stop_tx: watch::Sender<bool>,
) -> anyhow::Result<()> {
    let _ = stop_tx.send(true);
    admin
        .await
        .context("admin server panicked")?
        .context("admin server failed")
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ownerless_object_maps_to_its_cell_by_label() {
        let mut secret = PartialObjectMeta::<Secret>::default();
        assert_eq!(by_cell_label(secret.clone()), None);
        secret.metadata.labels = Some(
            [(labels::CELL.to_string(), "eu-2".to_string())]
                .into_iter()
                .collect(),
        );
        assert_eq!(
            by_cell_label(secret),
            Some(ObjectRef::<DeserializeGuard<Cell>>::new("eu-2"))
        );
    }

    #[test]
    fn a_failed_watch_pauses_briefly_and_the_pause_never_grows() {
        let pauses: Vec<Duration> = WatchRetry.take(50).collect();
        assert_eq!(pauses, vec![WatchRetry::PAUSE; 50]);
        let mut retry = WatchRetry;
        retry.reset();
        assert_eq!(retry.next(), Some(Duration::from_millis(500)));
    }
}
