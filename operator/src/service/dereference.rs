//! Dereference stage of the Service controller: everything a round reads — the service's cell,
//! the objects the service built last time (from the watch caches where the operator keeps
//! them), and the pods when they have something to say (a Deployment not fully ready, a
//! migration attempt that failed).

use k8s_openapi::api::{
    apps::v1::Deployment,
    autoscaling::v2::HorizontalPodAutoscaler,
    batch::v1::Job,
    core::v1::{ConfigMap, Pod, Service as CoreService},
    policy::v1::PodDisruptionBudget,
};
use kube::{
    Api, ResourceExt,
    core::{DeserializeGuard, Selector},
};
use titan_crds::{Cell, Service};

use crate::{Context, Error, apply, cache, labels};

/// The service's cell as the round found it.
#[derive(Debug, Default)]
pub enum CellFound {
    /// No Cell of that name.
    #[default]
    Missing,
    /// The Cell.
    Found(Box<Cell>),
    /// A Cell that does not match the schema this operator knows (a field of a newer version):
    /// the error. The service reports it and leaves its pods as they are, rather than failing
    /// every round of every service of the cell.
    Malformed(String),
}

/// What a Service round found.
#[derive(Debug, Default)]
pub struct Live {
    /// The cell the service joins.
    pub cell: CellFound,
    /// The rendered config the service built.
    pub config_maps: Vec<ConfigMap>,
    /// The core Service in front of the pods.
    pub core_services: Vec<CoreService>,
    /// The pods' Deployment.
    pub deployments: Vec<Deployment>,
    /// The disruption budget.
    pub pdbs: Vec<PodDisruptionBudget>,
    /// The autoscaler.
    pub hpas: Vec<HorizontalPodAutoscaler>,
    /// The migration Jobs.
    pub jobs: Vec<Job>,
    /// The service's pods, read only while its Deployment is not fully ready.
    pub pods: Vec<Pod>,
    /// The pods of its migration Jobs, read only once an attempt failed.
    pub migration_pods: Vec<Pod>,
}

impl CellFound {
    /// The Cell, when it was found and decoded.
    pub fn cell(&self) -> Option<&Cell> {
        match self {
            CellFound::Found(cell) => Some(cell),
            _ => None,
        }
    }
}

/// Whether some pod of `deployment` is not ready or not yet updated: then its pods may say why.
fn unsettled(deployment: &Deployment) -> bool {
    let wanted = deployment
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1);
    let Some(status) = &deployment.status else {
        return wanted > 0;
    };
    let ready = status.ready_replicas.unwrap_or(0);
    ready < status.replicas.unwrap_or(0)
        || ready < wanted
        || status.updated_replicas.unwrap_or(0) < wanted
}

/// Reads the cell and everything the service owns (found by the service's pod selector).
pub async fn dereference(service: &Service, ctx: &Context) -> Result<Live, Error> {
    let client = &ctx.client;
    let name = service.name_any();
    let namespace = service.namespace().unwrap_or_default();
    let cell_name = &service.spec.cell;
    let cell = match Api::<DeserializeGuard<Cell>>::all(client.clone())
        .get_opt(cell_name)
        .await
        .map_err(Error::api("get", "Cell", cell_name.clone()))?
    {
        None => CellFound::Missing,
        Some(DeserializeGuard(Ok(cell))) => CellFound::Found(Box::new(cell)),
        Some(DeserializeGuard(Err(invalid))) => CellFound::Malformed(invalid.error),
    };
    let labels_of_service = labels::pod_selector(cell_name, &name);
    let selector = labels::selector_string(&labels_of_service);
    // The kinds the watch caches hold are read from them (a stale read costs at most an
    // idempotent apply); the Jobs and pods are read fresh, since they decide what may roll out.
    let (config_maps, core_services, deployments) = match &ctx.caches {
        Some(caches) => {
            caches.synced().await.map_err(|_| Error::CacheGone)?;
            let selected = Selector::from_iter(labels_of_service);
            (
                cache::select(&caches.config_maps, &namespace, &selected),
                cache::select(&caches.core_services, &namespace, &selected),
                cache::select(&caches.deployments, &namespace, &selected),
            )
        }
        None => (
            apply::list(client, &namespace, &selector).await?,
            apply::list(client, &namespace, &selector).await?,
            apply::list(client, &namespace, &selector).await?,
        ),
    };
    let jobs: Vec<Job> = apply::list(client, &namespace, &selector).await?;
    let pods = if deployments.iter().any(unsettled) {
        apply::list(client, &namespace, &selector).await?
    } else {
        Vec::new()
    };
    let migration_pods = if jobs
        .iter()
        .any(|j| j.status.as_ref().and_then(|s| s.failed).unwrap_or(0) > 0)
    {
        let selector = format!("{}={cell_name},{}={name}", labels::CELL, labels::MIGRATION);
        apply::list(client, &namespace, &selector).await?
    } else {
        Vec::new()
    };
    Ok(Live {
        cell,
        config_maps,
        core_services,
        deployments,
        pdbs: apply::list(client, &namespace, &selector).await?,
        hpas: apply::list(client, &namespace, &selector).await?,
        jobs,
        pods,
        migration_pods,
    })
}
