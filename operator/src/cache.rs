//! Watch caches of what the Cell controller builds, so that a round reads its children from
//! memory instead of a LIST per kind (eleven requests a round, forty-odd rounds a cell while it
//! rolls out). Each cache is a reflector over a watch the controller also triggers on: one
//! watch a kind, not two.
//!
//! Only kinds whose stale read costs at most a repeated, idempotent apply are cached. Secrets
//! are not: a round that read a credentials Secret it had just created as absent would mint
//! new passwords and overwrite the ones the databases were initialised with. The namespace,
//! the CloudNativePG Cluster and the volumes are single reads and stay direct too. The Gateway
//! API routes are cached only where the API server serves them (see [`Caches::new`]).

use std::fmt::Debug;

use futures::{
    FutureExt, StreamExt,
    future::{BoxFuture, Shared},
    stream::BoxStream,
};
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

use crate::cell::gateway::{GrpcRoute, HttpRoute};

/// The caches, shared by every round.
#[derive(Clone)]
pub struct Caches {
    /// Resolves once every cache below holds its first complete list (see [`Caches::synced`]).
    synced: Shared<BoxFuture<'static, Result<(), CachesGone>>>,
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
    /// GRPCRoutes the operator built, where the Gateway API is served.
    pub grpc_routes: Option<Store<GrpcRoute>>,
    /// HTTPRoutes the operator built, where the Gateway API is served.
    pub http_routes: Option<Store<HttpRoute>>,
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
    /// Fills [`Caches::grpc_routes`].
    pub grpc_routes: Option<BoxStream<'static, Result<GrpcRoute, watcher::Error>>>,
    /// Fills [`Caches::http_routes`].
    pub http_routes: Option<BoxStream<'static, Result<HttpRoute, watcher::Error>>>,
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

/// A watch stream ended for good (its writer was dropped): the operator is shutting down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CachesGone;

/// A future, awaitable by any number of rounds at once, that resolves when every store in
/// `stores` is ready.
///
/// `Store::wait_until_ready` cannot be awaited by several tasks at once: it polls one oneshot
/// receiver, which keeps only the last waker, so every earlier waiter sleeps for ever. A new
/// leader starts the rounds of all its cells and services together, and its Cell rounds hung
/// before their first read (found by the cluster suite's leader takeover). Here one shared
/// future awaits each store once and wakes every round that waits on it.
fn all_ready<F>(stores: Vec<F>) -> Shared<BoxFuture<'static, Result<(), CachesGone>>>
where
    F: Future<Output = Result<(), reflector::store::WriterDropped>> + Send + 'static,
{
    async move {
        for store in stores {
            store.await.map_err(|_| CachesGone)?;
        }
        Ok(())
    }
    .boxed()
    .shared()
}

/// `store`'s first complete list, as an owned future for [`all_ready`].
fn ready<K>(store: &Store<K>) -> BoxFuture<'static, Result<(), reflector::store::WriterDropped>>
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    let store = store.clone();
    async move { store.wait_until_ready().await }.boxed()
}

impl Caches {
    /// Caches of the objects `config` selects (the operator's own, by label), and their feeds;
    /// the routes' only with `gateway_api` (the server serves them): a watch of a kind the
    /// server does not serve fails for ever, and its cache would never be ready.
    pub fn new(client: &Client, config: &watcher::Config, gateway_api: bool) -> (Caches, Feeds) {
        let (services, services_feed) = cache(client, config);
        let (resource_quotas, resource_quotas_feed) = cache(client, config);
        let (limit_ranges, limit_ranges_feed) = cache(client, config);
        let (network_policies, network_policies_feed) = cache(client, config);
        let (config_maps, config_maps_feed) = cache(client, config);
        let (core_services, core_services_feed) = cache(client, config);
        let (stateful_sets, stateful_sets_feed) = cache(client, config);
        let (deployments, deployments_feed) = cache(client, config);
        let (grpc_routes, grpc_routes_feed) = gateway_api.then(|| cache(client, config)).unzip();
        let (http_routes, http_routes_feed) = gateway_api.then(|| cache(client, config)).unzip();
        let mut stores = vec![
            ready(&services),
            ready(&resource_quotas),
            ready(&limit_ranges),
            ready(&network_policies),
            ready(&config_maps),
            ready(&core_services),
            ready(&stateful_sets),
            ready(&deployments),
        ];
        stores.extend(grpc_routes.as_ref().map(ready));
        stores.extend(http_routes.as_ref().map(ready));
        let synced = all_ready(stores);
        (
            Caches {
                synced,
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
                grpc_routes: grpc_routes_feed,
                http_routes: http_routes_feed,
            },
        )
    }

    /// Waits until every cache holds its first complete list: before that, an empty cache
    /// would read as "nothing exists" and a round would apply everything again. Any number of
    /// rounds may wait at once.
    pub async fn synced(&self) -> Result<(), CachesGone> {
        self.synced.clone().await
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures::{poll, stream::FuturesUnordered};
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::runtime::watcher::Event;

    use super::*;

    /// Rounds waiting together, as a new leader's do.
    const WAITERS: usize = 16;

    #[tokio::test]
    async fn every_round_waiting_for_the_caches_is_woken() {
        let (first, mut first_writer) = reflector::store::<ConfigMap>();
        let (second, mut second_writer) = reflector::store::<ConfigMap>();
        let gate = all_ready(vec![ready(&first), ready(&second)]);
        // Each waiter polled once, with a waker of its own, as the controller's runner polls
        // its rounds: all of them are waiting before the stores fill.
        let mut rounds: FuturesUnordered<_> = (0..WAITERS).map(|_| gate.clone()).collect();
        assert!(poll!(rounds.next()).is_pending());
        for writer in [&mut first_writer, &mut second_writer] {
            writer.apply_watcher_event(&Event::Init);
            writer.apply_watcher_event(&Event::InitDone);
        }
        // A deadline, not a pace: a woken waiter finishes at once, a forgotten one never.
        let finished = tokio::time::timeout(Duration::from_secs(10), rounds.collect::<Vec<_>>())
            .await
            .expect("every waiting round is woken");
        assert_eq!(finished, vec![Ok(()); WAITERS]);
    }

    #[tokio::test]
    async fn a_dropped_feed_ends_the_wait_with_an_error() {
        let (store, writer) = reflector::store::<ConfigMap>();
        let gate = all_ready(vec![ready(&store)]);
        drop(writer);
        assert_eq!(gate.await, Err(CachesGone));
    }
}
