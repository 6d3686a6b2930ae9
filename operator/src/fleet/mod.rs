//! The Fleet controller: a `Fleet` and the cells that name it → the version released to each
//! wave, in the Fleet's status, which the Cell controller reads to know what its cell runs.
//! Stages: `observe` (member cells, pure; and `spec.analysis`'s Prometheus query per watched
//! cell, through `prometheus`) → `plan` (pure, clock passed in) → publish (status, Events on
//! the Fleet and on a failing cell, metrics). Only this controller writes a Fleet's status; it
//! never writes a Cell.

pub mod observe;
pub mod plan;
pub mod prometheus;

use std::{sync::Arc, time::Duration};

use k8s_openapi::jiff::Timestamp;
use kube::{
    Api, Resource, ResourceExt,
    api::ListParams,
    core::DeserializeGuard,
    runtime::{controller::Action, reflector::ObjectRef},
};
use titan_crds::{Cell, Fleet};

use self::plan::FleetEvent;
use crate::{Context, Error, apply};

/// Name of this controller in metrics and logs.
pub const CONTROLLER: &str = "fleet";

/// One reconcile round of a Fleet, with metrics, an Event on failure and backoff bookkeeping.
pub async fn reconcile(fleet: Arc<Fleet>, ctx: Arc<Context>) -> Result<Action, Error> {
    let key = format!("fleet/{}", fleet.name_any());
    ctx.round(
        CONTROLLER,
        &key,
        &fleet.object_ref(&()),
        round(&fleet, &ctx),
    )
    .await
}

/// Retry after a failed round, backing off per object.
pub fn error_policy(fleet: Arc<Fleet>, error: &Error, ctx: Arc<Context>) -> Action {
    let key = format!("fleet/{}", fleet.name_any());
    tracing::warn!(fleet = %key, %error, reason = error.reason(), "reconcile failed");
    Action::requeue(ctx.backoff(&key))
}

/// The Fleet a Cell's change concerns: the one it names (none for a malformed Cell).
pub fn of_cell(cell: DeserializeGuard<Cell>) -> Option<ObjectRef<DeserializeGuard<Fleet>>> {
    cell.0
        .ok()?
        .spec
        .rollout
        .fleet
        .as_deref()
        .map(ObjectRef::new)
}

async fn round(fleet: &Fleet, ctx: &Context) -> Result<Action, Error> {
    let name = fleet.name_any();
    // Listed, not read from a watch cache: a cache not yet filled would look like a fleet
    // without members, and the plan would forget the versions its waves were released.
    let cells: Api<Cell> = Api::all(ctx.client.clone());
    let listed = cells
        .list(&ListParams::default())
        .await
        .map_err(Error::api("list", "Cell", ""))?;
    let mut members = observe::members(&name, &listed.items);
    observe::analyse(fleet, &mut members).await;
    let now = Timestamp::now();
    let planned = plan::plan(fleet, &members, now).map_err(|source| Error::InvalidFleet {
        name: name.clone(),
        source,
    })?;

    if fleet.status.as_ref() != Some(&planned.status) {
        let fleets: Api<Fleet> = Api::all(ctx.client.clone());
        apply::write_status(&fleets, &name, &planned.status).await?;
    }
    ctx.metrics
        .set_fleet_halted(&name, planned.status.halt.is_some());
    for event in planned.events {
        announce(ctx, fleet, &listed.items, event).await;
    }
    let wait = planned
        .next_check
        .map(|at| Duration::try_from(at.duration_since(now)).unwrap_or_default())
        .map_or(ctx.resync, |d| d.min(ctx.resync));
    // A deadline just passed would requeue at once in a loop if the clock skews: at least 1 s.
    Ok(Action::requeue(wait.max(Duration::from_secs(1))))
}

async fn announce(ctx: &Context, fleet: &Fleet, cells: &[Cell], event: FleetEvent) {
    let reference = fleet.object_ref(&());
    match event {
        FleetEvent::Released {
            wave,
            version,
            cells,
        } => {
            ctx.event(
                &reference,
                false,
                "WaveReleased",
                "Rollout",
                format!("wave {wave} released {version} to {}", cells.join(", ")),
            )
            .await
        }
        FleetEvent::Halted(halt) => {
            ctx.metrics.fleet_halt(&fleet.name_any());
            ctx.event(
                &reference,
                true,
                "RolloutHalted",
                "Rollout",
                halt.message.clone(),
            )
            .await;
            if let Some(cell) = cells.iter().find(|c| c.name_any() == halt.cell) {
                ctx.event(
                    &cell.object_ref(&()),
                    true,
                    "RolloutHalted",
                    "Rollout",
                    format!(
                        "this cell halted the rollout of fleet {}: {}",
                        fleet.name_any(),
                        halt.message
                    ),
                )
                .await;
            }
        }
        FleetEvent::Resumed { cell, version } => {
            ctx.event(
                &reference,
                false,
                "RolloutResumed",
                "Rollout",
                format!("resumed the rollout of {version} halted by cell {cell}"),
            )
            .await
        }
        FleetEvent::Completed { version } => {
            ctx.event(
                &reference,
                false,
                "RolloutComplete",
                "Rollout",
                format!("every wave ran {version} Ready for the bake time"),
            )
            .await
        }
    }
}
