//! The Service controller: one Titan service of a cell → ConfigMap, migration Job, Deployment,
//! core Service, PodDisruptionBudget and HorizontalPodAutoscaler, and the Service's status from
//! its Job, its Deployment and its pods.
//!
//! A round is the Cell controller's pipeline: [`dereference`] → [`validate`] → [`build`] (pure)
//! → [`apply`] → [`status`] (pure), then the status write and its Events.

pub mod apply;
pub mod build;
pub mod dereference;
pub mod migration;
pub mod pods;
pub mod status;
pub mod validate;

use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;
use kube::{Api, Resource, ResourceExt, runtime::controller::Action};
use titan_crds::{Service, ServiceStatus, common::condition};

use self::{
    apply::Applied,
    dereference::CellFound,
    migration::{Migration, MigrationJob},
    status::Findings,
};
use crate::{
    Context, Error,
    conditions::{self, Attention, Observed},
    shared::CellView,
};

/// Name of this controller in metrics and logs.
pub const CONTROLLER: &str = "service";

/// The conditions of a Service announced as Events when they change.
const ANNOUNCED: [(&str, Attention); 4] = [
    (condition::READY, Attention::WhenFalse),
    (condition::DEGRADED, Attention::WhenTrue),
    (condition::CONFIG_VALID, Attention::WhenFalse),
    (condition::MIGRATED, Attention::WhenFalse),
];

/// One reconcile round of a Service, with metrics, an Event on failure and backoff bookkeeping.
pub async fn reconcile(service: Arc<Service>, ctx: Arc<Context>) -> Result<Action, Error> {
    let key = key(&service);
    ctx.round(
        CONTROLLER,
        &key,
        &service.object_ref(&()),
        // On the heap, as the Cell's: a round awaits a write of each kind it owns, and the
        // future is too large for a small thread stack in debug builds.
        Box::pin(reconcile_inner(&service, &ctx)),
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

async fn reconcile_inner(service: &Service, ctx: &Context) -> Result<Action, Error> {
    let name = service.meta().name.clone().ok_or(Error::Unnamed {
        kind: "Service".into(),
    })?;
    let namespace = service.namespace().unwrap_or_default();
    let live = dereference::dereference(service, ctx).await?;

    let blocked = match &live.cell {
        CellFound::Malformed(_) => None,
        found => validate::blocked(service, found.cell()),
    };
    let cell = live.cell.cell().map(CellView::of);
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

    let Applied {
        deployment,
        migration,
    } = match (objects, &blocked, paused) {
        (Some(objects), None, false) => {
            match apply::apply_all(ctx, &namespace, objects, &live).await {
                Ok(applied) => applied,
                Err(error) => return Err(report_failure(ctx, service, error).await),
            }
        }
        // Nothing is applied: the live objects as they are.
        (objects, _, _) => Applied {
            deployment: live
                .deployments
                .iter()
                .find(|d| d.name_any() == name)
                .cloned(),
            migration: match objects.map(|o| o.migration) {
                Some(MigrationJob::Run(job)) => {
                    let job_name = job.name_any();
                    let found = live.jobs.iter().find(|j| j.name_any() == job_name);
                    match found {
                        Some(found) => {
                            migration::observe(&job_name, Some(found), &live.migration_pods)
                        }
                        None => Migration::NotStarted("the cell's reconciliation is paused".into()),
                    }
                }
                Some(MigrationJob::NotNeeded) => Migration::NotNeeded,
                Some(MigrationJob::Stopped) => Migration::NotStarted("the cell is stopped".into()),
                None => Migration::NotStarted("nothing is applied".into()),
            },
        },
    };
    let trouble = pods::trouble(&live.pods);

    let findings = Findings {
        blocked: blocked.as_ref().map(|b| (b.reason, b.message.as_str())),
        invalid: invalid.as_ref(),
        stopped,
        cell_malformed: match &live.cell {
            CellFound::Malformed(error) => Some(error.as_str()),
            _ => None,
        },
        migration: &migration,
        pods: trouble.as_ref(),
    };
    let status = status::compute(service, findings, deployment.as_ref(), Timestamp::now());
    if service.status.as_ref() != Some(&status) {
        let services: Api<Service> = Api::namespaced(ctx.client.clone(), &namespace);
        crate::apply::write_status(&services, &name, &status).await?;
        let previous = service.status.as_ref().map(|s| s.conditions.as_slice());
        conditions::announce(
            ctx,
            &service.object_ref(&()),
            previous.unwrap_or_default(),
            &status.conditions,
            &ANNOUNCED,
        )
        .await;
    }
    Ok(Action::requeue(ctx.resync))
}

/// Shows a failed apply or prune on the Service (`Degraded=True`, `ApplyFailed`, the API
/// server's answer; `observedGeneration` unchanged, since the spec is not applied) and hands the
/// error back for the retry with backoff.
async fn report_failure(ctx: &Context, service: &Service, error: Error) -> Error {
    let previous = service.status.clone().unwrap_or_default();
    let degraded = Observed::new(
        condition::DEGRADED,
        true,
        "ApplyFailed",
        format!("the spec could not be applied: {error}; the operator retries with backoff"),
    );
    let status = ServiceStatus {
        conditions: conditions::replace(
            &previous.conditions,
            degraded,
            previous.observed_generation,
            Timestamp::now(),
        ),
        ..previous
    };
    let namespace = service.namespace().unwrap_or_default();
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), &namespace);
    if let Err(status_error) =
        crate::apply::write_status(&services, &service.name_any(), &status).await
    {
        tracing::warn!(service = %service.name_any(), %status_error, "cannot report the failed apply in status");
    }
    error
}
