//! The Cell controller: a Cell → its namespace, isolation, credentials, datastores, media
//! servers and one `Service` per enabled Titan service, and the Cell's status aggregated from
//! all of them. A finalizer tears the cell down in order and keeps its data under Retain.

pub mod build;
pub mod certificates;
pub mod connections;
pub mod coturn;
pub mod credentials;
pub mod datastores;
pub mod dereference;
pub mod gateway;
pub mod isolation;
pub mod media;
pub mod nginx;
pub mod observe;
pub mod rollout;
pub mod status;
pub mod teardown;
pub mod validate;
pub mod workload;

use std::{collections::BTreeSet, sync::Arc};

use k8s_openapi::{
    api::{
        apps::v1::{Deployment, StatefulSet},
        core::v1::Namespace,
    },
    jiff::Timestamp,
};
use kube::{
    Api, Resource, ResourceExt,
    runtime::{
        controller::Action,
        finalizer::{Event as FinalizerEvent, finalizer},
    },
};
use titan_crds::{Cell, CellStatus, Service, common::condition};

use self::{
    build::CellObjects, credentials::Credentials, dereference::Live, observe::LiveWorkloads,
};
use crate::{
    Context, Error, apply,
    cnpg::Cluster,
    conditions::{self, Attention},
    shared::CellView,
};

/// Name of this controller in metrics and logs.
pub const CONTROLLER: &str = "cell";
/// The finalizer that lets the Cell controller tear a cell down in order and honour
/// `deletionPolicy` (garbage collection alone would take the data too, or in no order).
pub const FINALIZER: &str = "commerce.titan.dev/teardown";

/// The conditions of a Cell announced as Events when they change.
const ANNOUNCED: [(&str, Attention); 9] = [
    (condition::READY, Attention::WhenFalse),
    (condition::DEGRADED, Attention::WhenTrue),
    (condition::MIGRATED, Attention::WhenFalse),
    (condition::RECONCILIATION_PAUSED, Attention::Never),
    (condition::STOPPED, Attention::Never),
    (condition::DATASTORES_READY, Attention::WhenFalse),
    (condition::RECORDINGS_ENABLED, Attention::Never),
    (condition::EDGE_ROUTES_APPLIED, Attention::WhenFalse),
    (condition::CERTIFICATES_READY, Attention::WhenFalse),
];

/// One reconcile round of a Cell, with metrics, an Event on failure and backoff bookkeeping.
pub async fn reconcile(cell: Arc<Cell>, ctx: Arc<Context>) -> Result<Action, Error> {
    let key = format!("cell/{}", cell.name_any());
    ctx.round(
        CONTROLLER,
        &key,
        &cell.object_ref(&()),
        // On the heap: a round awaits a dozen kinds of writes, and the future is too large for
        // a small thread stack in debug builds.
        Box::pin(reconcile_inner(&cell, &ctx)),
    )
    .await
}

/// Retry after a failed round, backing off per object.
pub fn error_policy(cell: Arc<Cell>, error: &Error, ctx: Arc<Context>) -> Action {
    let key = format!("cell/{}", cell.name_any());
    if let Some(after) = error.waiting() {
        tracing::debug!(cell = %key, %error, "waiting");
        return Action::requeue(after);
    }
    tracing::warn!(cell = %key, %error, reason = error.reason(), "reconcile failed");
    Action::requeue(ctx.backoff(&key))
}

/// The cell's Services and workloads after the apply stage (as found, when paused), for the
/// status stage.
struct Applied {
    services: Vec<Service>,
    stateful_sets: Vec<StatefulSet>,
    deployments: Vec<Deployment>,
    clusters: Vec<Cluster>,
    /// The cell's routes on the server.
    routes: gateway::Routes,
}

impl Applied {
    fn found(live: Live) -> Self {
        Self {
            services: live.services,
            stateful_sets: live.stateful_sets,
            deployments: live.deployments,
            clusters: live.clusters,
            routes: gateway::Routes {
                grpc_routes: live.grpc_routes,
                http_routes: live.http_routes,
                backend_tls_policies: live.backend_tls_policies,
                ca_bundles: Vec::new(),
            },
        }
    }
}

/// Apply stage: everything in order (the namespace, its fences, Secrets and configs, the
/// workloads, the Titan Services last), pruning what the cell no longer wants.
async fn apply_all(
    ctx: &Context,
    cell: &Cell,
    objects: CellObjects,
    live: Live,
    rollout_blocked: bool,
    keep_datastores_secret: bool,
) -> Result<Applied, Error> {
    let client = &ctx.client;
    let namespace = cell.namespace_name();
    let CellObjects {
        namespace: desired_namespace,
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
        services,
        grpc_routes,
        http_routes,
        backend_tls_policies,
        certificates,
    } = objects;
    let Live {
        namespace: live_namespace,
        services: live_services,
        resource_quotas: live_quotas,
        limit_ranges: live_limits,
        network_policies: live_policies,
        secrets: live_secrets,
        config_maps: live_config_maps,
        core_services: live_core_services,
        stateful_sets: live_sets,
        clusters: live_clusters,
        deployments: live_deployments,
        grpc_routes: live_grpc_routes,
        http_routes: live_http_routes,
        backend_tls_policies: live_backend_tls_policies,
        certificates: live_certificates,
        referenced: _,
        data_volumes: _,
    } = live;

    let namespaces: Api<Namespace> = Api::all(client.clone());
    apply::apply(&namespaces, desired_namespace, live_namespace.as_ref()).await?;
    apply::sync(client, &namespace, resource_quotas, &live_quotas, &[]).await?;
    apply::sync(client, &namespace, limit_ranges, &live_limits, &[]).await?;
    apply::sync(client, &namespace, network_policies, &live_policies, &[]).await?;
    // While a connection is unknown the datastores Secret is not built; the one the running
    // services use stays.
    let view = CellView::of(cell);
    let mut also_keep = Vec::new();
    if keep_datastores_secret {
        also_keep.push(view.datastores_secret());
    }
    // cert-manager writes the certificate's Secret with the cell's labels; it is not the
    // operator's to prune.
    if cell
        .spec
        .tls
        .as_ref()
        .is_some_and(|t| t.cert_manager.is_some())
    {
        also_keep.push(view.tls_secret());
    }
    apply::sync(client, &namespace, secrets, &live_secrets, &also_keep).await?;
    // Where cert-manager is not installed there is no Certificate to apply, nor any to prune;
    // the cell's status says so.
    if ctx.cert_manager {
        apply::sync(client, &namespace, certificates, &live_certificates, &[]).await?;
    }
    apply::sync(client, &namespace, config_maps, &live_config_maps, &[]).await?;
    apply::sync(client, &namespace, core_services, &live_core_services, &[]).await?;
    let stateful_sets = apply::sync(client, &namespace, stateful_sets, &live_sets, &[]).await?;
    // A Cluster is never pruned: switching providers must not drop a database.
    let cluster_api: Api<Cluster> = Api::namespaced(client.clone(), &namespace);
    let clusters = apply::apply_each(&cluster_api, clusters, &live_clusters).await?;
    // Its backup schedule is read by name and removed only when backups are turned off.
    crate::cnpg::sync_scheduled_backup(
        client,
        &namespace,
        !clusters.is_empty(),
        scheduled_backups,
        connections::POSTGRES,
    )
    .await?;
    let deployments = apply::sync(client, &namespace, deployments, &live_deployments, &[]).await?;

    if rollout_blocked {
        return Ok(Applied {
            services: live_services,
            stateful_sets,
            deployments,
            clusters,
            routes: gateway::Routes {
                grpc_routes: live_grpc_routes,
                http_routes: live_http_routes,
                backend_tls_policies: live_backend_tls_policies,
                ca_bundles: Vec::new(),
            },
        });
    }
    let service_api: Api<Service> = Api::namespaced(client.clone(), &namespace);
    let keep: BTreeSet<String> = services.iter().map(ResourceExt::name_any).collect();
    let services = apply::apply_each(&service_api, services, &live_services).await?;
    let pruned = apply::prune(&service_api, &live_services, &keep).await?;
    if pruned > 0 {
        ctx.event(
            &cell.object_ref(&()),
            false,
            "ServicesRemoved",
            "Prune",
            format!("removed {pruned} disabled service(s)"),
        )
        .await;
    }
    // The routes go to the Services just applied. Where the Gateway API is not served there is
    // nothing to apply them to, nor any to prune; the cell's status says so.
    let routes = if ctx.gateway_api {
        gateway::Routes {
            grpc_routes: apply::sync(client, &namespace, grpc_routes, &live_grpc_routes, &[])
                .await?,
            http_routes: apply::sync(client, &namespace, http_routes, &live_http_routes, &[])
                .await?,
            // Where BackendTLSPolicy is not served the cell's status says so.
            backend_tls_policies: if ctx.backend_tls {
                apply::sync(
                    client,
                    &namespace,
                    backend_tls_policies,
                    &live_backend_tls_policies,
                    &[],
                )
                .await?
            } else {
                Vec::new()
            },
            ca_bundles: Vec::new(),
        }
    } else {
        gateway::Routes::default()
    };
    Ok(Applied {
        services,
        stateful_sets,
        deployments,
        clusters,
        routes,
    })
}

/// A round under kube-runtime's `finalizer()` helper: the finalizer goes on before anything it
/// would have to tear down exists, and comes off only once [`teardown::clean_up`] is done.
async fn reconcile_inner(cell: &Cell, ctx: &Context) -> Result<Action, Error> {
    let name = cell.meta().name.clone().ok_or(Error::Unnamed {
        kind: "Cell".into(),
    })?;
    let cells: Api<Cell> = Api::all(ctx.client.clone());
    finalizer(
        &cells,
        FINALIZER,
        Arc::new(cell.clone()),
        |event| async move {
            match event {
                // On the heap: a round awaits a dozen kinds of writes, and its future is too
                // large for a small thread stack in debug builds.
                FinalizerEvent::Apply(cell) => Box::pin(apply_round(&cell, ctx)).await,
                FinalizerEvent::Cleanup(cell) => Box::pin(teardown::clean_up(&cell, ctx)).await,
            }
        },
    )
    .await
    .map_err(Error::from_finalizer("Cell", &name))
}

/// How soon a cell waiting for a Secret it reads but that does not exist yet looks again: the
/// referenced-Secret watch sees only Secrets the operator has labelled, and a new one has no
/// label yet.
const MISSING_SECRET_POLL: std::time::Duration = std::time::Duration::from_secs(15);

/// Writes `status` if it differs from the Cell's, and announces the conditions that changed.
async fn publish(ctx: &Context, cell: &Cell, status: CellStatus) -> Result<(), Error> {
    if cell.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let cells: Api<Cell> = Api::all(ctx.client.clone());
    apply::write_status(&cells, &cell.name_any(), &status).await?;
    let previous = cell.status.as_ref().map(|s| s.conditions.as_slice());
    conditions::announce(
        ctx,
        &cell.object_ref(&()),
        previous.unwrap_or_default(),
        &status.conditions,
        &ANNOUNCED,
    )
    .await;
    Ok(())
}

/// One round of a Cell that is not being deleted: dereference, build, apply, status.
async fn apply_round(cell: &Cell, ctx: &Context) -> Result<Action, Error> {
    let name = cell.name_any();
    let paused = cell.spec.operation.reconciliation_paused;

    let live = dereference::dereference(cell, ctx).await?;
    // A fleet member runs what its fleet released to its wave: everything below builds the
    // cell as it runs that version; status still describes the Cell as it is.
    let fleet = dereference::fleet(cell, ctx).await?;
    let resolved = rollout::resolve(cell, fleet.as_ref(), Timestamp::now());
    let running = rollout::running(cell, &resolved.version);
    let credentials_secret = live
        .secrets
        .iter()
        .find(|s| s.name_any() == credentials::secret_name(&name));
    // Passwords minted anew would be refused by databases initialised with the old ones: with
    // the data still there, the cell stops here and says what to do.
    if credentials_secret.is_none()
        && let Some(lost) = credentials::lost(cell, &live.data_volumes)
    {
        publish(
            ctx,
            cell,
            status::blocked(cell, "CredentialsLost", &lost, Timestamp::now()),
        )
        .await?;
        return Ok(Action::requeue(ctx.resync));
    }
    let credentials = Credentials::resolve(credentials_secret, credentials::generate);
    let tls = certificates::of(cell, &live.secrets, ctx.cert_manager, Timestamp::now())?;
    let connections = connections::resolve(cell, &credentials, &live.referenced);
    let invalid = validate::invalid_configs(cell);
    let before = observe::components(
        cell,
        &connections,
        LiveWorkloads {
            stateful_sets: &live.stateful_sets,
            deployments: &live.deployments,
            clusters: &live.clusters,
        },
    );
    // Services start only once every connection is known and every datastore serves, so no pod
    // rolls out with a variable missing or crash-loops through a database's initdb; the ones
    // already running keep what they have. A stopped cell's services stop regardless.
    let stores = &before.datastores;
    let stores_ready = stores.postgres.ready && stores.redis.ready && stores.clickhouse.ready;
    let connections_known = connections.datastore_values().is_some();
    // Under TLS they also wait for their certificate: its Secret is a volume of their pods.
    let rollout_blocked =
        !connections_known || ((!stores_ready || tls.pending()) && !cell.spec.operation.stopped);
    let missing_secret = live.referenced.len() < dereference::referenced_secrets(cell).len();

    let objects = build::build(&running, &credentials, &tls, &connections, &ctx.network);
    let desired: Vec<String> = objects.services.iter().map(ResourceExt::name_any).collect();
    // Policies the server cannot take are not waited for: the condition says so instead.
    let desired_routes = gateway::names(
        &objects.grpc_routes,
        &objects.http_routes,
        if ctx.backend_tls {
            &objects.backend_tls_policies
        } else {
            &[]
        },
    );
    let applied = if paused {
        Applied::found(live)
    } else {
        match apply_all(
            ctx,
            cell,
            objects,
            live,
            rollout_blocked,
            !connections_known,
        )
        .await
        {
            Ok(applied) => applied,
            Err(error) => {
                let message = format!(
                    "the spec could not be applied: {error}; the operator retries with backoff"
                );
                let failed = status::blocked(cell, "ApplyFailed", &message, Timestamp::now());
                if let Err(status_error) = publish(ctx, cell, failed).await {
                    tracing::warn!(cell = %name, %status_error, "cannot report the failed apply in status");
                }
                return Err(error);
            }
        }
    };

    let components = observe::components(
        cell,
        &connections,
        LiveWorkloads {
            stateful_sets: &applied.stateful_sets,
            deployments: &applied.deployments,
            clusters: &applied.clusters,
        },
    );
    let now = Timestamp::now();
    let mut status = CellStatus {
        rollout: resolved.status,
        tls: tls.status.clone(),
        ..status::compute(
            cell,
            &desired,
            &applied.services,
            &invalid,
            &components,
            now,
        )
    };
    // Reported only while the cell asks for routes or TLS.
    let extra: Vec<_> = gateway::condition(
        cell,
        ctx.gateway_api,
        ctx.backend_tls,
        &desired_routes,
        &gateway::names(
            &applied.routes.grpc_routes,
            &applied.routes.http_routes,
            &applied.routes.backend_tls_policies,
        ),
    )
    .into_iter()
    .chain(tls.condition.clone())
    .collect();
    if !extra.is_empty() {
        let previous = cell.status.as_ref().map(|s| s.conditions.as_slice());
        status.conditions.extend(conditions::merge(
            extra,
            previous.unwrap_or_default(),
            status.observed_generation,
            now,
        ));
    }
    publish(ctx, cell, status).await?;
    Ok(Action::requeue(if missing_secret {
        MISSING_SECRET_POLL
    } else {
        ctx.resync
    }))
}
