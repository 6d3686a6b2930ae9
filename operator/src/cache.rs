//! Watch caches of what the Cell controller builds, so that a round reads its children from
//! memory instead of a LIST per kind (eleven requests a round, forty-odd rounds a cell while it
//! rolls out). Each cache is a reflector over a watch the controller also triggers on: one
//! watch a kind, not two.
//!
//! Only kinds whose stale read costs at most a repeated, idempotent apply are cached. Secrets
//! are not: a round that read a credentials Secret it had just created as absent would mint
//! new passwords and overwrite the ones the databases were initialised with. The namespace,
//! the CloudNativePG Cluster and the volumes are single reads and stay direct too.

use std::fmt::Debug;

use futures::{StreamExt, stream::BoxStream};
use k8s_openapi::{
    NamespaceResourceScope,
    api::{
        apps::v1::{Deployment, StatefulSet},
        core::v1::{ConfigMap, LimitRange, ResourceQuota, Service as CoreService},
        networking::v1::NetworkPolicy,
    },
};
use kube::{
    Api, Client, Resource, ResourceExt,
    core::{DeserializeGuard, Selector, SelectorExt},
    runtime::{
        WatchStreamExt,
        reflector::{self, Store},
        watcher,
    },
};
use serde::de::DeserializeOwned;
use titan_crds::Service;

/// The caches, shared by every round.
#[derive(Clone)]
pub struct Caches {
    /// Titan `Service`s; a malformed one is cached as such and skipped when read.
    pub services: Store<DeserializeGuard<Service>>,
    /// ResourceQuotas the operator built.
    pub resource_quotas: Store<ResourceQuota>,
    /// LimitRanges the operator built.
    pub limit_ranges: Store<LimitRange>,
    /// NetworkPolicies the operator built.
    pub network_policies: Store<NetworkPolicy>,
    /// ConfigMaps the operator built.
    pub config_maps: Store<ConfigMap>,
    /// Core Services the operator built.
    pub core_services: Store<CoreService>,
    /// StatefulSets the operator built.
    pub stateful_sets: Store<StatefulSet>,
    /// Deployments the operator built.
    pub deployments: Store<Deployment>,
}

impl Debug for Caches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caches")
            .field("deployments", &self.deployments.state().len())
            .finish_non_exhaustive()
    }
}

/// The watch streams that fill [`Caches`]: hand each to the controller as a trigger
/// (`owns_stream`), which is what drives them.
pub struct Feeds {
    /// Fills [`Caches::services`].
    pub services: BoxStream<'static, Result<DeserializeGuard<Service>, watcher::Error>>,
    /// Fills [`Caches::resource_quotas`].
    pub resource_quotas: BoxStream<'static, Result<ResourceQuota, watcher::Error>>,
    /// Fills [`Caches::limit_ranges`].
    pub limit_ranges: BoxStream<'static, Result<LimitRange, watcher::Error>>,
    /// Fills [`Caches::network_policies`].
    pub network_policies: BoxStream<'static, Result<NetworkPolicy, watcher::Error>>,
    /// Fills [`Caches::config_maps`].
    pub config_maps: BoxStream<'static, Result<ConfigMap, watcher::Error>>,
    /// Fills [`Caches::core_services`].
    pub core_services: BoxStream<'static, Result<CoreService, watcher::Error>>,
    /// Fills [`Caches::stateful_sets`].
    pub stateful_sets: BoxStream<'static, Result<StatefulSet, watcher::Error>>,
    /// Fills [`Caches::deployments`].
    pub deployments: BoxStream<'static, Result<Deployment, watcher::Error>>,
}

impl Debug for Feeds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Feeds").finish_non_exhaustive()
    }
}

/// A cache of `K` (the objects `config` selects, cluster-wide) and the stream that fills it.
fn cache<K>(
    client: &Client,
    config: &watcher::Config,
) -> (Store<K>, BoxStream<'static, Result<K, watcher::Error>>)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let feed = watcher(Api::<K>::all(client.clone()), config.clone())
        // Field ownership is the API server's business; a round never reads it, and it is
        // often the larger half of an object.
        .modify(|object| object.managed_fields_mut().clear())
        .reflect(writer)
        .touched_objects()
        .boxed();
    (reader, feed)
}

impl Caches {
    /// Caches of the objects `config` selects (the operator's own, by label), and their feeds.
    pub fn new(client: &Client, config: &watcher::Config) -> (Caches, Feeds) {
        let (services, services_feed) = cache(client, config);
        let (resource_quotas, resource_quotas_feed) = cache(client, config);
        let (limit_ranges, limit_ranges_feed) = cache(client, config);
        let (network_policies, network_policies_feed) = cache(client, config);
        let (config_maps, config_maps_feed) = cache(client, config);
        let (core_services, core_services_feed) = cache(client, config);
        let (stateful_sets, stateful_sets_feed) = cache(client, config);
        let (deployments, deployments_feed) = cache(client, config);
        (
            Caches {
                services,
                resource_quotas,
                limit_ranges,
                network_policies,
                config_maps,
                core_services,
                stateful_sets,
                deployments,
            },
            Feeds {
                services: services_feed,
                resource_quotas: resource_quotas_feed,
                limit_ranges: limit_ranges_feed,
                network_policies: network_policies_feed,
                config_maps: config_maps_feed,
                core_services: core_services_feed,
                stateful_sets: stateful_sets_feed,
                deployments: deployments_feed,
            },
        )
    }

    /// Waits until every cache holds its first complete list: before that, an empty cache
    /// would read as "nothing exists" and a round would apply everything again.
    pub async fn synced(&self) -> Result<(), reflector::store::WriterDropped> {
        self.services.wait_until_ready().await?;
        self.resource_quotas.wait_until_ready().await?;
        self.limit_ranges.wait_until_ready().await?;
        self.network_policies.wait_until_ready().await?;
        self.config_maps.wait_until_ready().await?;
        self.core_services.wait_until_ready().await?;
        self.stateful_sets.wait_until_ready().await?;
        self.deployments.wait_until_ready().await
    }
}

/// The objects of `store` in `namespace` that `selector` selects.
pub fn select<K>(store: &Store<K>, namespace: &str, selector: &Selector) -> Vec<K>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()> + Clone,
{
    store
        .state()
        .iter()
        .filter(|object| {
            object.meta().namespace.as_deref() == Some(namespace)
                && selector.matches(object.meta().labels.as_ref().unwrap_or(&Default::default()))
        })
        .map(|object| (**object).clone())
        .collect()
}

/// The well-formed `Service`s of `store` in `namespace` that `selector` selects.
pub fn select_services(
    store: &Store<DeserializeGuard<Service>>,
    namespace: &str,
    selector: &Selector,
) -> Vec<Service> {
    select(store, namespace, selector)
        .into_iter()
        .filter_map(|guard| guard.0.ok())
        .collect()
}
