//! The Cell controller: a Cell → its namespace, isolation, credentials, datastores, media
//! servers and one `Service` per enabled Titan service, and the Cell's status aggregated from
//! all of them. A finalizer tears the cell down in order and keeps its data under Retain.

pub mod build;
pub mod connections;
pub mod coturn;
pub mod credentials;
pub mod datastores;
pub mod dereference;
pub mod isolation;
pub mod media;
pub mod nginx;
pub mod observe;
pub mod status;
pub mod teardown;
pub mod validate;
pub mod workload;

use std::{collections::BTreeSet, fmt::Debug, sync::Arc};

use k8s_openapi::{
    NamespaceResourceScope,
    api::{
        apps::v1::{Deployment, StatefulSet},
        core::v1::Namespace,
    },
    jiff::Timestamp,
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{Patch, PatchParams},
    runtime::controller::Action,
};
use serde::{Serialize, de::DeserializeOwned};
use titan_crds::{Cell, CellStatus, Service, common::condition};

use self::{
    build::CellObjects, credentials::Credentials, dereference::Live, observe::LiveWorkloads,
};
use crate::{Context, Error, apply, cnpg::Cluster, conditions, service::build::CellView};

/// Name of this controller in metrics and logs.
pub const CONTROLLER: &str = "cell";
/// The finalizer that lets the Cell controller tear a cell down in order and honour
/// `deletionPolicy` (garbage collection alone would take the data too, or in no order).
pub const FINALIZER: &str = "commerce.titan.dev/teardown";

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
    tracing::warn!(cell = %key, %error, reason = error.reason(), "reconcile failed");
    Action::requeue(ctx.backoff(&key))
}

/// Sets the Cell's finalizers to `finalizers`, failing on a concurrent change (the resource
/// version is part of the patch) rather than dropping someone else's finalizer; returns the Cell
/// as patched.
pub(crate) async fn set_finalizers(
    client: &Client,
    cell: &Cell,
    finalizers: Vec<String>,
) -> Result<Cell, Error> {
    let name = cell.name_any();
    let patch = serde_json::json!({
        "metadata": {
            "finalizers": finalizers,
            "resourceVersion": cell.resource_version(),
        }
    });
    Api::<Cell>::all(client.clone())
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(Error::api("patch finalizers", "Cell", name))
}

/// Applies each of `desired` unless its live counterpart already matches it.
async fn apply_each<K>(api: &Api<K>, desired: Vec<K>, live: &[K]) -> Result<Vec<K>, Error>
where
    K: Resource<DynamicType = ()> + Clone + Serialize + DeserializeOwned + Debug,
{
    let mut applied = Vec::with_capacity(desired.len());
    for object in desired {
        let current = live.iter().find(|l| l.name_any() == object.name_any());
        applied.push(apply::apply(api, object, current).await?);
    }
    Ok(applied)
}

/// Applies `desired` and prunes what the cell built before and no longer wants, except the
/// names in `spare`.
async fn sync<K>(
    client: &Client,
    namespace: &str,
    desired: Vec<K>,
    live: &[K],
    spare: &[String],
) -> Result<Vec<K>, Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Serialize
        + DeserializeOwned
        + Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let keep: BTreeSet<String> = spare
        .iter()
        .cloned()
        .chain(desired.iter().map(ResourceExt::name_any))
        .collect();
    let applied = apply_each(&api, desired, live).await?;
    apply::prune(&api, live, &keep).await?;
    Ok(applied)
}

/// The cell's Services and workloads after the apply stage (as found, when paused), for the
/// status stage.
struct Applied {
    services: Vec<Service>,
    stateful_sets: Vec<StatefulSet>,
    deployments: Vec<Deployment>,
    clusters: Vec<Cluster>,
}

impl Applied {
    fn found(live: Live) -> Self {
        Self {
            services: live.services,
            stateful_sets: live.stateful_sets,
            deployments: live.deployments,
            clusters: live.clusters,
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
        deployments,
        services,
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
        referenced: _,
    } = live;

    let namespaces: Api<Namespace> = Api::all(client.clone());
    apply::apply(&namespaces, desired_namespace, live_namespace.as_ref()).await?;
    sync(client, &namespace, resource_quotas, &live_quotas, &[]).await?;
    sync(client, &namespace, limit_ranges, &live_limits, &[]).await?;
    sync(client, &namespace, network_policies, &live_policies, &[]).await?;
    // While a connection is unknown the datastores Secret is not built; the one the running
    // services use stays.
    let spare = if rollout_blocked {
        vec![CellView::of(cell).datastores_secret()]
    } else {
        Vec::new()
    };
    sync(client, &namespace, secrets, &live_secrets, &spare).await?;
    sync(client, &namespace, config_maps, &live_config_maps, &[]).await?;
    sync(client, &namespace, core_services, &live_core_services, &[]).await?;
    let stateful_sets = sync(client, &namespace, stateful_sets, &live_sets, &[]).await?;
    // A Cluster is never pruned: switching providers must not drop a database.
    let cluster_api: Api<Cluster> = Api::namespaced(client.clone(), &namespace);
    let clusters = apply_each(&cluster_api, clusters, &live_clusters).await?;
    let deployments = sync(client, &namespace, deployments, &live_deployments, &[]).await?;

    if rollout_blocked {
        return Ok(Applied {
            services: live_services,
            stateful_sets,
            deployments,
            clusters,
        });
    }
    let service_api: Api<Service> = Api::namespaced(client.clone(), &namespace);
    let keep: BTreeSet<String> = services.iter().map(ResourceExt::name_any).collect();
    let services = apply_each(&service_api, services, &live_services).await?;
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
    Ok(Applied {
        services,
        stateful_sets,
        deployments,
        clusters,
    })
}

async fn reconcile_inner(cell: &Cell, ctx: &Context) -> Result<Action, Error> {
    let name = cell.meta().name.clone().ok_or(Error::Unnamed {
        kind: "Cell".into(),
    })?;
    if cell.meta().deletion_timestamp.is_some() {
        return teardown::teardown(cell, ctx).await;
    }
    let paused = cell.spec.operation.reconciliation_paused;
    let client = &ctx.client;
    // The finalizer goes on before anything it would have to tear down exists.
    let patched;
    let cell = if !paused && !cell.finalizers().iter().any(|f| f == FINALIZER) {
        let mut finalizers = cell.finalizers().to_vec();
        finalizers.push(FINALIZER.into());
        patched = set_finalizers(client, cell, finalizers).await?;
        &patched
    } else {
        cell
    };

    let live = dereference::dereference(cell, client).await?;
    let credentials_secret = live
        .secrets
        .iter()
        .find(|s| s.name_any() == credentials::secret_name(&name));
    let credentials = Credentials::resolve(credentials_secret, credentials::generate);
    let connections = connections::resolve(cell, &credentials, &live.referenced);
    let invalid = validate::invalid_configs(cell);
    // Services start only once every connection is known, so no pod rolls out with a variable
    // missing; the ones already running keep the datastores Secret they have.
    let rollout_blocked = connections.datastore_values().is_none();

    let objects = build::build(cell, &credentials, &connections);
    let desired: Vec<String> = objects.services.iter().map(ResourceExt::name_any).collect();
    let applied = if paused {
        Applied::found(live)
    } else {
        apply_all(ctx, cell, objects, live, rollout_blocked).await?
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
    let status = status::compute(
        cell,
        &desired,
        &applied.services,
        &invalid,
        &components,
        Timestamp::now(),
    );
    if cell.status.as_ref() != Some(&status) {
        let cells: Api<Cell> = Api::all(client.clone());
        apply::write_status(&cells, &name, &status).await?;
        announce(ctx, cell, &status).await;
    }
    Ok(Action::requeue(ctx.resync))
}

/// Events for the conditions that changed, with the condition's reason as the stable reason.
async fn announce(ctx: &Context, cell: &Cell, status: &CellStatus) {
    let previous = cell
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    for type_ in [
        condition::READY,
        condition::DEGRADED,
        condition::RECONCILIATION_PAUSED,
        condition::STOPPED,
        condition::DATASTORES_READY,
        condition::RECORDINGS_ENABLED,
    ] {
        let Some(now) = conditions::find(&status.conditions, type_) else {
            continue;
        };
        let before = conditions::find(previous, type_);
        if before.map(|b| (&b.status, &b.reason)) == Some((&now.status, &now.reason)) {
            continue;
        }
        // A first "everything is fine" needs no announcement.
        if before.is_none() && now.status == "False" && type_ != condition::READY {
            continue;
        }
        // Not being ready and being degraded are what a person should look at.
        let warning = match type_ {
            condition::READY | condition::DATASTORES_READY => now.status != "True",
            condition::DEGRADED => now.status == "True",
            _ => false,
        };
        ctx.event(
            &cell.object_ref(&()),
            warning,
            &now.reason,
            type_,
            now.message.clone(),
        )
        .await;
    }
}
