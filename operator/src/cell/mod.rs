//! The Cell controller: a Cell → its namespace and one `Service` per enabled Titan service, and
//! the Cell's status aggregated from those Services.

pub mod build;
pub mod status;
pub mod validate;

use std::{collections::BTreeSet, sync::Arc};

use k8s_openapi::{api::core::v1::Namespace, jiff::Timestamp};
use kube::{Api, Resource, ResourceExt, runtime::controller::Action};
use titan_crds::{Cell, CellStatus, Service, common::condition};

use self::build::CellObjects;
use crate::{Context, Error, apply, conditions, labels};

/// Name of this controller in metrics and logs.
pub const CONTROLLER: &str = "cell";

/// One reconcile round of a Cell, with metrics, an Event on failure and backoff bookkeeping.
pub async fn reconcile(cell: Arc<Cell>, ctx: Arc<Context>) -> Result<Action, Error> {
    let key = format!("cell/{}", cell.name_any());
    ctx.round(
        CONTROLLER,
        &key,
        &cell.object_ref(&()),
        reconcile_inner(&cell, &ctx),
    )
    .await
}

/// Retry after a failed round, backing off per object.
pub fn error_policy(cell: Arc<Cell>, error: &Error, ctx: Arc<Context>) -> Action {
    let key = format!("cell/{}", cell.name_any());
    tracing::warn!(cell = %key, %error, reason = error.reason(), "reconcile failed");
    Action::requeue(ctx.backoff(&key))
}

async fn reconcile_inner(cell: &Cell, ctx: &Context) -> Result<Action, Error> {
    let name = cell.meta().name.clone().ok_or(Error::Unnamed {
        kind: "Cell".into(),
    })?;
    let namespace = cell.namespace_name();
    let client = &ctx.client;

    // Dereference: the namespace and the Services that say they belong to this cell.
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let services: Api<Service> = Api::namespaced(client.clone(), &namespace);
    let live_namespace = namespaces.get_opt(&namespace).await.map_err(Error::api(
        "get",
        "Namespace",
        namespace.clone(),
    ))?;
    let live_services = match live_namespace {
        Some(_) => apply::list(&services, &format!("{}={name}", labels::CELL), &namespace).await?,
        None => Vec::new(),
    };

    let invalid = validate::invalid_configs(cell);

    let CellObjects {
        namespace: desired_namespace,
        services: desired_services,
    } = build::build(cell);
    let desired: Vec<String> = desired_services.iter().map(ResourceExt::name_any).collect();

    let mut children = live_services.clone();
    if !cell.spec.operation.reconciliation_paused {
        // Apply in order: the namespace before what lives in it.
        apply::apply(&namespaces, desired_namespace, live_namespace.as_ref()).await?;
        children.clear();
        for service in desired_services {
            let live = live_services
                .iter()
                .find(|l| l.name_any() == service.name_any());
            children.push(apply::apply(&services, service, live).await?);
        }
        let keep: BTreeSet<String> = desired.iter().cloned().collect();
        let pruned = apply::prune(&services, &live_services, &keep).await?;
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
    }

    let status = status::compute(cell, &desired, &children, &invalid, Timestamp::now());
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
            condition::READY => now.status != "True",
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
