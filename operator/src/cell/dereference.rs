//! Dereference stage of the Cell controller: everything a round reads from the API server — the
//! namespace, the objects the cell built last time, and the Secrets it reads but does not own
//! (an external datastore's, the object storage credentials, CloudNativePG's application
//! Secret).

use std::collections::BTreeMap;

use k8s_openapi::api::{
    apps::v1::{Deployment, StatefulSet},
    core::v1::{
        ConfigMap, LimitRange, Namespace, PersistentVolumeClaim, ResourceQuota, Secret,
        Service as CoreService,
    },
    networking::v1::NetworkPolicy,
};
use kube::{
    Api, ResourceExt,
    api::{ListParams, Patch, PatchParams},
    core::{PartialObjectMeta, Selector},
};
use titan_crds::{
    Cell, Fleet, Service,
    cell::{PostgresProvider, Provider},
};

use super::{
    certificates::Certificate,
    connections::POSTGRES,
    gateway::{BackendTlsPolicy, GrpcRoute, HttpRoute},
};
use crate::{Context, Error, apply, cache, cnpg, labels};

/// What a Cell round found.
#[derive(Debug, Default)]
pub struct Live {
    /// The cell's namespace, once it exists.
    pub namespace: Option<Namespace>,
    /// The `Service`s of the cell.
    pub services: Vec<Service>,
    /// ResourceQuotas the cell built.
    pub resource_quotas: Vec<ResourceQuota>,
    /// LimitRanges the cell built.
    pub limit_ranges: Vec<LimitRange>,
    /// NetworkPolicies the cell built.
    pub network_policies: Vec<NetworkPolicy>,
    /// Secrets the cell built (the credentials Secret among them).
    pub secrets: Vec<Secret>,
    /// ConfigMaps the cell built.
    pub config_maps: Vec<ConfigMap>,
    /// Core Services the cell built.
    pub core_services: Vec<CoreService>,
    /// StatefulSets the cell built.
    pub stateful_sets: Vec<StatefulSet>,
    /// The CloudNativePG cluster, when the cell uses one.
    pub clusters: Vec<cnpg::Cluster>,
    /// Deployments the cell built.
    pub deployments: Vec<Deployment>,
    /// GRPCRoutes the cell built (none where the Gateway API is not served).
    pub grpc_routes: Vec<GrpcRoute>,
    /// HTTPRoutes the cell built (none where the Gateway API is not served).
    pub http_routes: Vec<HttpRoute>,
    /// BackendTLSPolicies the cell built (none where the server does not serve them).
    pub backend_tls_policies: Vec<BackendTlsPolicy>,
    /// cert-manager Certificates the cell built (none where cert-manager is not installed).
    pub certificates: Vec<Certificate>,
    /// Secrets the cell reads but does not own, by name.
    pub referenced: BTreeMap<String, Secret>,
    /// Names of the cell's PersistentVolumeClaims: the builtin datastores' data.
    pub data_volumes: Vec<String>,
}

/// The names of the Secrets `cell` reads but does not own.
pub fn referenced_secrets(cell: &Cell) -> Vec<String> {
    let stores = &cell.spec.datastores;
    let mut names = Vec::new();
    match stores.postgres.provider {
        PostgresProvider::External => names.extend(stores.postgres.secret_name.clone()),
        PostgresProvider::CloudnativePg => {
            names.push(format!("{POSTGRES}{}", cnpg::APP_SECRET_SUFFIX))
        }
        PostgresProvider::Builtin => {}
    }
    for store in [&stores.redis, &stores.clickhouse] {
        if store.provider == Provider::External {
            names.extend(store.secret_name.clone());
        }
    }
    names.extend(
        stores
            .object_storage
            .as_ref()
            .map(|s| s.credentials_secret.clone()),
    );
    names.sort();
    names.dedup();
    names
}

/// The children a round reads from the watch caches when there are some.
struct Children {
    services: Vec<Service>,
    resource_quotas: Vec<ResourceQuota>,
    limit_ranges: Vec<LimitRange>,
    network_policies: Vec<NetworkPolicy>,
    config_maps: Vec<ConfigMap>,
    core_services: Vec<CoreService>,
    stateful_sets: Vec<StatefulSet>,
    deployments: Vec<Deployment>,
    grpc_routes: Vec<GrpcRoute>,
    http_routes: Vec<HttpRoute>,
}

/// Reads everything a round of `cell` needs; an absent namespace means nothing exists yet.
pub async fn dereference(cell: &Cell, ctx: &Context) -> Result<Live, Error> {
    let client = &ctx.client;
    let name = cell.name_any();
    let namespace = cell.namespace_name();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let mut referenced = BTreeMap::new();
    for secret in referenced_secrets(cell) {
        if let Some(found) =
            secrets
                .get_opt(&secret)
                .await
                .map_err(Error::api("get", "Secret", secret.clone()))?
        {
            let found = mark_referenced(&secrets, found).await?;
            referenced.insert(secret, found);
        }
    }
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let Some(live_namespace) = namespaces.get_opt(&namespace).await.map_err(Error::api(
        "get",
        "Namespace",
        namespace.clone(),
    ))?
    else {
        return Ok(Live {
            referenced,
            ..Live::default()
        });
    };

    let selector = labels::cell_owned(&name);
    // Only a cell on CloudNativePG looks for its Cluster: elsewhere the CRD may not exist.
    let clusters = match cell.spec.datastores.postgres.provider {
        PostgresProvider::CloudnativePg => {
            Api::<cnpg::Cluster>::namespaced(client.clone(), &namespace)
                .get_opt(POSTGRES)
                .await
                .map_err(Error::api("get", "Cluster", POSTGRES))?
                .into_iter()
                .collect()
        }
        _ => Vec::new(),
    };
    let services_selector = format!("{}={name}", labels::CELL);
    let children = match &ctx.caches {
        Some(caches) => {
            // The first rounds after a start wait for the first complete lists: an empty cache
            // would read as "nothing exists".
            caches.synced().await.map_err(|_| Error::CacheGone)?;
            let built = labels::cell_owned_selector(&name);
            let services = Selector::from_iter([(labels::CELL.to_string(), name.clone())]);
            Children {
                services: cache::select_services(&caches.services, &namespace, &services),
                resource_quotas: cache::select(&caches.resource_quotas, &namespace, &built),
                limit_ranges: cache::select(&caches.limit_ranges, &namespace, &built),
                network_policies: cache::select(&caches.network_policies, &namespace, &built),
                config_maps: cache::select(&caches.config_maps, &namespace, &built),
                core_services: cache::select(&caches.core_services, &namespace, &built),
                stateful_sets: cache::select(&caches.stateful_sets, &namespace, &built),
                deployments: cache::select(&caches.deployments, &namespace, &built),
                grpc_routes: caches
                    .grpc_routes
                    .as_ref()
                    .map(|store| cache::select(store, &namespace, &built))
                    .unwrap_or_default(),
                http_routes: caches
                    .http_routes
                    .as_ref()
                    .map(|store| cache::select(store, &namespace, &built))
                    .unwrap_or_default(),
            }
        }
        None => Children {
            services: apply::list(client, &namespace, &services_selector).await?,
            resource_quotas: apply::list(client, &namespace, &selector).await?,
            limit_ranges: apply::list(client, &namespace, &selector).await?,
            network_policies: apply::list(client, &namespace, &selector).await?,
            config_maps: apply::list(client, &namespace, &selector).await?,
            core_services: apply::list(client, &namespace, &selector).await?,
            stateful_sets: apply::list(client, &namespace, &selector).await?,
            deployments: apply::list(client, &namespace, &selector).await?,
            grpc_routes: list_if(ctx.gateway_api, client, &namespace, &selector).await?,
            http_routes: list_if(ctx.gateway_api, client, &namespace, &selector).await?,
        },
    };
    let Children {
        services,
        resource_quotas,
        limit_ranges,
        network_policies,
        config_maps,
        core_services,
        stateful_sets,
        deployments,
        grpc_routes,
        http_routes,
    } = children;
    Ok(Live {
        namespace: Some(live_namespace),
        services,
        resource_quotas,
        limit_ranges,
        network_policies,
        // Never from a cache: see `crate::cache`.
        secrets: apply::list(client, &namespace, &selector).await?,
        config_maps,
        core_services,
        stateful_sets,
        clusters,
        deployments,
        grpc_routes,
        http_routes,
        // Never from a cache: only cells with both spec.edge and spec.tls have them.
        backend_tls_policies: list_if(ctx.backend_tls, client, &namespace, &selector).await?,
        // Never from a cache: few cells ask for cert-manager, and only a changed spec changes
        // their Certificate.
        certificates: list_if(ctx.cert_manager, client, &namespace, &selector).await?,
        referenced,
        data_volumes: Api::<PartialObjectMeta<PersistentVolumeClaim>>::namespaced(
            client.clone(),
            &namespace,
        )
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(Error::api(
            "list",
            "PersistentVolumeClaim",
            namespace.clone(),
        ))?
        .items
        .into_iter()
        .map(|claim| claim.name_any())
        .collect(),
    })
}

/// [`apply::list`] of a kind the API server may not serve: nothing when `served` is false.
async fn list_if<K>(
    served: bool,
    client: &kube::Client,
    namespace: &str,
    selector: &str,
) -> Result<Vec<K>, Error>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    if served {
        apply::list(client, namespace, selector).await
    } else {
        Ok(Vec::new())
    }
}

/// Labels a Secret the cell reads [`labels::REFERENCED`] unless it is already, so the
/// operator's watch of such Secrets (and only those) sees its changes. A merge patch of that
/// one label: the Secret stays its owner's, and its data is never rewritten.
async fn mark_referenced(secrets: &Api<Secret>, secret: Secret) -> Result<Secret, Error> {
    if secret.labels().contains_key(labels::REFERENCED) {
        return Ok(secret);
    }
    let name = secret.name_any();
    let patch = serde_json::json!({"metadata": {"labels": {labels::REFERENCED: "true"}}});
    secrets
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(Error::api("label", "Secret", name))
}

/// The Fleet the cell names in `spec.rollout.fleet`, when it names one and it exists.
pub async fn fleet(cell: &Cell, ctx: &Context) -> Result<Option<Fleet>, Error> {
    let Some(name) = cell.spec.rollout.fleet.as_deref() else {
        return Ok(None);
    };
    let fleets: Api<Fleet> = Api::all(ctx.client.clone());
    fleets
        .get_opt(name)
        .await
        .map_err(Error::api("get", "Fleet", name))
}
