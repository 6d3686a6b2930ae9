//! The Service controller: one Titan service of a cell → ConfigMap, Deployment, core Service,
//! PodDisruptionBudget and HorizontalPodAutoscaler, and the Service's status from its Deployment.

pub mod build;
pub mod status;
pub mod validate;

use std::{collections::BTreeSet, sync::Arc};

use k8s_openapi::{
    api::{
        apps::v1::Deployment,
        autoscaling::v2::HorizontalPodAutoscaler,
        core::v1::{ConfigMap, Service as CoreService},
        policy::v1::PodDisruptionBudget,
    },
    jiff::Timestamp,
};
use kube::{Api, Resource, ResourceExt, runtime::controller::Action};
use titan_crds::{Cell, Service};

use self::{
    build::{CellView, ServiceObjects},
    status::Findings,
};
use crate::{Context, Error, apply, conditions, labels};

/// Name of this controller in metrics and logs.
pub const CONTROLLER: &str = "service";

/// One reconcile round of a Service, with metrics, an Event on failure and backoff bookkeeping.
pub async fn reconcile(service: Arc<Service>, ctx: Arc<Context>) -> Result<Action, Error> {
    let key = key(&service);
    ctx.round(
        CONTROLLER,
        &key,
        &service.object_ref(&()),
        reconcile_inner(&service, &ctx),
    )
    .await
}

/// Retry after a failed round, backing off per object.
pub fn error_policy(service: Arc<Service>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(service = %key(&service), %error, reason = error.reason(), "reconcile failed");
    Action::requeue(ctx.backoff(&key(&service)))
}

fn key(service: &Service) -> String {
    format!(
        "service/{}/{}",
        service.namespace().unwrap_or_default(),
        service.name_any()
    )
}

/// The objects the Service controller finds in the API server for one service.
#[derive(Debug, Default)]
struct Live {
    cell: Option<Cell>,
    config_maps: Vec<ConfigMap>,
    core_services: Vec<CoreService>,
    deployments: Vec<Deployment>,
    pdbs: Vec<PodDisruptionBudget>,
    hpas: Vec<HorizontalPodAutoscaler>,
}

fn named<'a, K: Resource>(objects: &'a [K], name: &str) -> Option<&'a K> {
    objects
        .iter()
        .find(|o| o.meta().name.as_deref() == Some(name))
}

/// Dereference stage: the cell and the objects this service owns.
async fn dereference(service: &Service, ctx: &Context) -> Result<Live, Error> {
    let client = &ctx.client;
    let namespace = service.namespace().unwrap_or_default();
    let cells: Api<Cell> = Api::all(client.clone());
    let cell_name = &service.spec.cell;
    let cell =
        cells
            .get_opt(cell_name)
            .await
            .map_err(Error::api("get", "Cell", cell_name.clone()))?;
    let selector = labels::selector_string(&labels::pod_selector(cell_name, &service.name_any()));
    Ok(Live {
        cell,
        config_maps: apply::list(
            &Api::namespaced(client.clone(), &namespace),
            &selector,
            &namespace,
        )
        .await?,
        core_services: apply::list(
            &Api::namespaced(client.clone(), &namespace),
            &selector,
            &namespace,
        )
        .await?,
        deployments: apply::list(
            &Api::namespaced(client.clone(), &namespace),
            &selector,
            &namespace,
        )
        .await?,
        pdbs: apply::list(
            &Api::namespaced(client.clone(), &namespace),
            &selector,
            &namespace,
        )
        .await?,
        hpas: apply::list(
            &Api::namespaced(client.clone(), &namespace),
            &selector,
            &namespace,
        )
        .await?,
    })
}

async fn reconcile_inner(service: &Service, ctx: &Context) -> Result<Action, Error> {
    let name = service.meta().name.clone().ok_or(Error::Unnamed {
        kind: "Service".into(),
    })?;
    let namespace = service.namespace().unwrap_or_default();
    let live = dereference(service, ctx).await?;

    // A Service may only join the cell whose namespace it lives in, so it can never reach
    // another cell's datastores.
    let blocked_message;
    let blocked = match &live.cell {
        None => {
            blocked_message = format!("cell {} does not exist", service.spec.cell);
            Some(("CellNotFound", blocked_message.as_str()))
        }
        Some(cell) if cell.namespace_name() != namespace => {
            blocked_message = format!(
                "cell {} lives in namespace {}, not {namespace}: a service may only join the cell of its namespace",
                service.spec.cell,
                cell.namespace_name()
            );
            Some(("WrongNamespace", blocked_message.as_str()))
        }
        Some(_) => None,
    };
    let cell = live.cell.as_ref().map(CellView::of);
    let stopped = cell.as_ref().is_some_and(|c| c.stopped);
    let paused = cell.as_ref().is_some_and(|c| c.paused);

    let built = validate::validate(service, &service.spec.cell).and_then(|rendered| match &cell {
        Some(cell) => build::build(service, cell, &rendered).map(Some),
        None => Ok(None),
    });
    let (objects, invalid) = match built {
        Ok(objects) => (objects, None),
        Err(invalid) => (None, Some(invalid)),
    };

    let mut deployment = named(&live.deployments, &name).cloned();
    if let (Some(objects), None, false) = (objects, blocked, paused) {
        let ServiceObjects {
            config_map,
            core_service,
            deployment: desired_deployment,
            pdb,
            hpa,
        } = objects;
        let client = &ctx.client;
        let only = |name: Option<String>| name.into_iter().collect::<BTreeSet<String>>();

        let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
        let config_name = config_map.name_any();
        apply::apply(
            &config_maps,
            config_map,
            named(&live.config_maps, &config_name),
        )
        .await?;

        let core_services: Api<CoreService> = Api::namespaced(client.clone(), &namespace);
        let core_name = core_service.as_ref().map(ResourceExt::name_any);
        if let Some(core_service) = core_service {
            apply::apply(
                &core_services,
                core_service,
                named(&live.core_services, &name),
            )
            .await?;
        }

        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
        let applied = apply::apply(&deployments, desired_deployment, deployment.as_ref()).await?;
        deployment = Some(applied);

        let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), &namespace);
        apply::apply(&pdbs, pdb, named(&live.pdbs, &name)).await?;

        let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), &namespace);
        let hpa_name = hpa.as_ref().map(ResourceExt::name_any);
        if let Some(hpa) = hpa {
            apply::apply(&hpas, hpa, named(&live.hpas, &name)).await?;
        }

        // Prune: whatever carries this service's labels and was not applied this round (the
        // autoscaler once autoscaling is removed or the cell stops).
        apply::prune(&config_maps, &live.config_maps, &only(Some(config_name))).await?;
        apply::prune(&core_services, &live.core_services, &only(core_name)).await?;
        apply::prune(&deployments, &live.deployments, &only(Some(name.clone()))).await?;
        apply::prune(&pdbs, &live.pdbs, &only(Some(name.clone()))).await?;
        apply::prune(&hpas, &live.hpas, &only(hpa_name)).await?;
    }

    let findings = Findings {
        blocked,
        invalid: invalid.as_ref(),
        stopped,
    };
    let status = status::compute(service, findings, deployment.as_ref(), Timestamp::now());
    if service.status.as_ref() != Some(&status) {
        let services: Api<Service> = Api::namespaced(ctx.client.clone(), &namespace);
        apply::write_status(&services, &name, &status).await?;
        announce(ctx, service, &status).await;
    }
    Ok(Action::requeue(ctx.resync))
}

/// Events for the conditions that changed, with the condition's reason as the stable reason.
async fn announce(ctx: &Context, service: &Service, status: &titan_crds::ServiceStatus) {
    let previous = service
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    for type_ in [
        titan_crds::common::condition::READY,
        titan_crds::common::condition::CONFIG_VALID,
    ] {
        let Some(now) = conditions::find(&status.conditions, type_) else {
            continue;
        };
        let before = conditions::find(previous, type_);
        if before.map(|b| (&b.status, &b.reason)) == Some((&now.status, &now.reason)) {
            continue;
        }
        let warning = now.status != "True";
        ctx.event(
            &service.object_ref(&()),
            warning,
            &now.reason,
            type_,
            now.message.clone(),
        )
        .await;
    }
}
