//! Dereference stage of the Cell controller: everything a round reads from the API server — the
//! namespace, the objects the cell built last time, and the Secrets it reads but does not own
//! (an external datastore's, the object storage credentials, CloudNativePG's application
//! Secret).

use std::{collections::BTreeMap, fmt::Debug};

use k8s_openapi::{
    NamespaceResourceScope,
    api::{
        apps::v1::{Deployment, StatefulSet},
        core::v1::{
            ConfigMap, LimitRange, Namespace, ResourceQuota, Secret, Service as CoreService,
        },
        networking::v1::NetworkPolicy,
    },
};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use titan_crds::{
    Cell, Service,
    cell::{PostgresProvider, Provider},
};

use super::connections::POSTGRES;
use crate::{Error, apply, cnpg, labels};

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
    /// Secrets the cell reads but does not own, by name.
    pub referenced: BTreeMap<String, Secret>,
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

async fn owned<K>(client: &Client, namespace: &str, selector: &str) -> Result<Vec<K>, Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Debug,
{
    apply::list(
        &Api::namespaced(client.clone(), namespace),
        selector,
        namespace,
    )
    .await
}

/// Reads everything a round of `cell` needs; an absent namespace means nothing exists yet.
pub async fn dereference(cell: &Cell, client: &Client) -> Result<Live, Error> {
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
    Ok(Live {
        namespace: Some(live_namespace),
        services: owned(client, &namespace, &format!("{}={name}", labels::CELL)).await?,
        resource_quotas: owned(client, &namespace, &selector).await?,
        limit_ranges: owned(client, &namespace, &selector).await?,
        network_policies: owned(client, &namespace, &selector).await?,
        secrets: owned(client, &namespace, &selector).await?,
        config_maps: owned(client, &namespace, &selector).await?,
        core_services: owned(client, &namespace, &selector).await?,
        stateful_sets: owned(client, &namespace, &selector).await?,
        clusters,
        deployments: owned(client, &namespace, &selector).await?,
        referenced,
    })
}
