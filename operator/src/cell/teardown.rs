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
    api::{ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams},
    core::PartialObjectMeta,
    runtime::controller::Action,
};
use serde::de::DeserializeOwned;
use titan_crds::{
    Cell, Service,
    cell::{DeletionPolicy, PostgresProvider},
};

use super::{FINALIZER, credentials};
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
    // Names are all a teardown needs: metadata only, so one object of a schema this operator
    // does not know (a Service written by a newer version) cannot stop the cell's deletion.
    let api: Api<PartialObjectMeta<K>> = Api::namespaced(client.clone(), namespace);
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
        if keep(&name) || object.metadata.deletion_timestamp.is_some() {
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

/// Tears down a Cell that is being deleted but whose spec no longer deserializes (a field
/// edited by hand, a schema the operator does not know): without this its finalizer would
/// hold it for ever. The raw object is read again and only what the teardown needs is kept
/// (see [`salvage`]). kube-runtime's `finalizer()` helper needs the typed object, so this path
/// releases the finalizer itself, guarded by the resource version.
pub async fn teardown_malformed(name: &str, ctx: &Context) -> Result<Action, Error> {
    let resource = ApiResource::erase::<Cell>(&());
    let api: Api<DynamicObject> = Api::all_with(ctx.client.clone(), &resource);
    let Some(raw) = api
        .get_opt(name)
        .await
        .map_err(Error::api("get", "Cell", name))?
    else {
        return Ok(Action::await_change());
    };
    let cell = salvage(raw)?;
    if !cell.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(Action::await_change());
    }
    clean_up(&cell, ctx).await?;
    let finalizers: Vec<String> = cell
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect();
    let patch = serde_json::json!({
        "metadata": {
            "finalizers": finalizers,
            "resourceVersion": cell.resource_version(),
        }
    });
    Api::<Cell>::all(ctx.client.clone())
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(Error::api("remove finalizer", "Cell", name))?;
    Ok(Action::await_change())
}

/// The parts of a malformed Cell the teardown reads — name, finalizers, namespace, deletion
/// policy, PostgreSQL provider — each kept only when it is itself valid. An unreadable
/// deletion policy counts as Retain: the data of a cell whose wishes cannot be read is kept,
/// never destroyed on a guess.
pub fn salvage(raw: DynamicObject) -> Result<Cell, Error> {
    let name = raw.metadata.name.clone().unwrap_or_default();
    let spec = raw.data.get("spec").cloned().unwrap_or_default();
    let valid = |path: &[&str], check: fn(serde_json::Value) -> bool| {
        path.iter()
            .try_fold(&spec, |value, key| value.get(key))
            .filter(|v| check((*v).clone()))
            .cloned()
    };
    let mut kept = serde_json::json!({"version": "0", "deletionPolicy": "Retain"});
    if let Some(namespace) = valid(&["namespace"], |v| {
        serde_json::from_value::<String>(v).is_ok()
    }) {
        kept["namespace"] = namespace;
    }
    if let Some(policy) = valid(&["deletionPolicy"], |v| {
        serde_json::from_value::<DeletionPolicy>(v).is_ok()
    }) {
        kept["deletionPolicy"] = policy;
    }
    if let Some(provider) = valid(&["datastores", "postgres", "provider"], |v| {
        serde_json::from_value::<PostgresProvider>(v).is_ok()
    }) {
        kept["datastores"] = serde_json::json!({"postgres": {"provider": provider}});
    }
    let spec = serde_json::from_value(kept).map_err(|source| Error::Serialize {
        kind: "Cell".into(),
        name: name.clone(),
        source,
    })?;
    let mut cell = Cell::new(&name, spec);
    cell.metadata = raw.metadata;
    Ok(cell)
}

/// The finalizer's work for a Cell being deleted: removes what the cell built, in order, and
/// answers [`Error::Waiting`] while the services' pods are still going, so the finalizer is
/// released only once everything it guards is gone.
pub async fn clean_up(cell: &Cell, ctx: &Context) -> Result<Action, Error> {
    let client = &ctx.client;
    let name = cell.name_any();
    let namespace = cell.namespace_name();
    let keep_none = |_: &str| false;
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
        let remaining = delete_all::<Service>(client, &namespace, &services, keep_none).await?;
        if remaining > 0 {
            return Err(Error::Waiting {
                what: format!("{remaining} service(s) of cell {name} to go"),
                after: WAIT,
            });
        }

        let built = labels::cell_owned(&name);
        let credentials = credentials::secret_name(&name);
        let keep_data = |object: &str| policy == DeletionPolicy::Retain && object == credentials;
        delete_all::<Deployment>(client, &namespace, &built, keep_none).await?;
        delete_all::<StatefulSet>(client, &namespace, &built, keep_none).await?;
        delete_all::<CoreService>(client, &namespace, &built, keep_none).await?;
        delete_all::<ConfigMap>(client, &namespace, &built, keep_none).await?;
        delete_all::<Secret>(client, &namespace, &built, keep_data).await?;
        delete_all::<NetworkPolicy>(client, &namespace, &built, keep_none).await?;
        delete_all::<LimitRange>(client, &namespace, &built, keep_none).await?;
        delete_all::<ResourceQuota>(client, &namespace, &built, keep_none).await?;
        if policy == DeletionPolicy::Delete {
            // Only a cell on CloudNativePG may list Clusters: elsewhere the CRD may not exist.
            if cell.spec.datastores.postgres.provider == PostgresProvider::CloudnativePg {
                delete_all::<cnpg::Cluster>(client, &namespace, &built, keep_none).await?;
            }
            delete_all::<PersistentVolumeClaim>(client, &namespace, &built, keep_none).await?;
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
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(spec: serde_json::Value) -> DynamicObject {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "commerce.titan.dev/v1alpha1",
            "kind": "Cell",
            "metadata": {"name": "broken", "finalizers": [FINALIZER]},
            "spec": spec,
        }))
        .expect("a dynamic object")
    }

    #[test]
    fn salvage_keeps_what_the_teardown_reads_when_it_is_valid() {
        let cell = salvage(raw(serde_json::json!({
            "version": "0.1.0",
            "namespace": "shop-eu",
            "deletionPolicy": "Delete",
            "datastores": {"postgres": {"provider": "cloudnative-pg"}, "futureStore": {}},
        })))
        .expect("salvaged");
        assert_eq!(cell.name_any(), "broken");
        assert_eq!(cell.finalizers(), [FINALIZER]);
        assert_eq!(cell.namespace_name(), "shop-eu");
        assert_eq!(cell.spec.deletion_policy, DeletionPolicy::Delete);
        assert_eq!(
            cell.spec.datastores.postgres.provider,
            PostgresProvider::CloudnativePg
        );
    }

    #[test]
    fn an_unreadable_deletion_policy_keeps_the_data() {
        let cell = salvage(raw(serde_json::json!({
            "deletionPolicy": "Shred",
            "namespace": 7,
            "datastores": {"postgres": {"provider": "elsewhere"}},
        })))
        .expect("salvaged");
        assert_eq!(cell.spec.deletion_policy, DeletionPolicy::Retain);
        assert_eq!(cell.namespace_name(), "titan-broken");
        assert_eq!(
            cell.spec.datastores.postgres.provider,
            PostgresProvider::default()
        );
    }
}
