//! What happens when a Cell is deleted (the finalizer's work), in order: the Titan services
//! first, so nothing writes while its datastores go; then the media servers, the builtin
//! datastores and the rest the cell built; then, only under `deletionPolicy: Delete`, the data
//! (credentials, volumes, the CloudNativePG cluster) and the namespace. Under Retain the data
//! stays without an owner, and a Cell created again with the same name adopts it.

use std::fmt::Debug;

use k8s_openapi::{
    NamespaceResourceScope,
    api::{
        apps::v1::{Deployment, StatefulSet},
        core::v1::{
            ConfigMap, LimitRange, Namespace, PersistentVolumeClaim, ResourceQuota, Secret,
            Service as CoreService,
        },
        networking::v1::NetworkPolicy,
    },
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{DeleteParams, ListParams},
    runtime::controller::Action,
};
use serde::de::DeserializeOwned;
use titan_crds::{
    Cell, Service,
    cell::{DeletionPolicy, PostgresProvider},
};

use super::{FINALIZER, credentials, set_finalizers};
use crate::{Context, Error, apply::kind_of, cnpg, labels};

/// How long to wait for the services' pods to go before looking again.
const WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Deletes every object of kind `K` in `namespace` matching `selector` whose name `keep` does
/// not accept; returns how many are still there (being deleted) afterwards.
async fn delete_all<K>(
    client: &Client,
    namespace: &str,
    selector: &str,
    keep: impl Fn(&str) -> bool,
) -> Result<usize, Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let params = ListParams::default().labels(selector);
    let list = |verb| {
        let (api, params) = (api.clone(), params.clone());
        async move {
            api.list(&params)
                .await
                .map_err(Error::api(verb, kind_of::<K>(), namespace))
        }
    };
    for object in list("list").await?.items {
        let name = object.name_any();
        if keep(&name) || object.meta().deletion_timestamp.is_some() {
            continue;
        }
        match api.delete(&name, &DeleteParams::foreground()).await {
            Ok(_) => {}
            // Gone already: that is what was wanted.
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(e) => return Err(Error::api("delete", kind_of::<K>(), name)(e)),
        }
    }
    Ok(list("list")
        .await?
        .items
        .iter()
        .filter(|o| !keep(&o.name_any()))
        .count())
}

/// Tears down a Cell that is being deleted, then releases its finalizer.
pub async fn teardown(cell: &Cell, ctx: &Context) -> Result<Action, Error> {
    if !cell.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(Action::await_change());
    }
    let client = &ctx.client;
    let name = cell.name_any();
    let namespace = cell.namespace_name();
    let everything = |_: &str| false;
    let policy = cell.spec.deletion_policy;

    let namespaces: Api<Namespace> = Api::all(client.clone());
    let exists = namespaces
        .get_opt(&namespace)
        .await
        .map_err(Error::api("get", "Namespace", namespace.clone()))?
        .is_some();
    if exists {
        // First the services, and wait until they are gone.
        let services = format!("{}={name}", labels::CELL);
        if delete_all::<Service>(client, &namespace, &services, everything).await? > 0 {
            return Ok(Action::requeue(WAIT));
        }

        let built = labels::cell_owned(&name);
        let credentials = credentials::secret_name(&name);
        let keep_data = |object: &str| policy == DeletionPolicy::Retain && object == credentials;
        delete_all::<Deployment>(client, &namespace, &built, everything).await?;
        delete_all::<StatefulSet>(client, &namespace, &built, everything).await?;
        delete_all::<CoreService>(client, &namespace, &built, everything).await?;
        delete_all::<ConfigMap>(client, &namespace, &built, everything).await?;
        delete_all::<Secret>(client, &namespace, &built, keep_data).await?;
        delete_all::<NetworkPolicy>(client, &namespace, &built, everything).await?;
        delete_all::<LimitRange>(client, &namespace, &built, everything).await?;
        delete_all::<ResourceQuota>(client, &namespace, &built, everything).await?;
        if policy == DeletionPolicy::Delete {
            // Only a cell on CloudNativePG may list Clusters: elsewhere the CRD may not exist.
            if cell.spec.datastores.postgres.provider == PostgresProvider::CloudnativePg {
                delete_all::<cnpg::Cluster>(client, &namespace, &built, everything).await?;
            }
            delete_all::<PersistentVolumeClaim>(client, &namespace, &built, everything).await?;
            match namespaces
                .delete(&namespace, &DeleteParams::background())
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(e) => return Err(Error::api("delete", "Namespace", namespace.clone())(e)),
            }
        }
    }

    let message = match policy {
        DeletionPolicy::Retain => format!(
            "removed the workloads of cell {name}; kept its volumes, the credentials secret and namespace {namespace}"
        ),
        DeletionPolicy::Delete => format!("removed cell {name} and namespace {namespace}"),
    };
    ctx.event(&cell.object_ref(&()), false, "TornDown", "Delete", message)
        .await;
    let finalizers = cell
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect();
    set_finalizers(client, cell, finalizers).await?;
    Ok(Action::await_change())
}
