//! The error boundary in front of every controller: an object that does not deserialize (a
//! Cell written against an older schema, a hand-edited Service) becomes a Warning Event and an
//! error count, and the watch and every other object carry on (kube's `DeserializeGuard`).

use std::{sync::Arc, time::Instant};

use kube::{Resource, core::DeserializeGuard, runtime::controller::Action};
use titan_crds::{Cell, Fleet, Service};

use crate::{Context, Error, cell, fleet, service};

/// Stable reason of the Event and metric for an object that does not deserialize.
pub const INVALID_OBJECT: &str = "InvalidObject";

/// Reconciles a Cell, or reports it when it is malformed.
pub async fn reconcile_cell(
    guard: Arc<DeserializeGuard<Cell>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    match &guard.0 {
        Ok(object) => cell::reconcile(Arc::new(object.clone()), ctx).await,
        // A malformed Cell can still be deleted: its finalizer must not hold it for ever.
        Err(invalid) if invalid.metadata.deletion_timestamp.is_some() => {
            let name = invalid.metadata.name.clone().unwrap_or_default();
            cell::teardown::teardown_malformed(&name, &ctx).await
        }
        Err(invalid) => Ok(report(&*guard, cell::CONTROLLER, &invalid.error, &ctx).await),
    }
}

/// Reconciles a Service, or reports it when it is malformed.
pub async fn reconcile_service(
    guard: Arc<DeserializeGuard<Service>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    match &guard.0 {
        Ok(object) => service::reconcile(Arc::new(object.clone()), ctx).await,
        Err(invalid) => Ok(report(&*guard, service::CONTROLLER, &invalid.error, &ctx).await),
    }
}

/// Reconciles a Fleet, or reports it when it is malformed.
pub async fn reconcile_fleet(
    guard: Arc<DeserializeGuard<Fleet>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    match &guard.0 {
        Ok(object) => fleet::reconcile(Arc::new(object.clone()), ctx).await,
        Err(invalid) => Ok(report(&*guard, fleet::CONTROLLER, &invalid.error, &ctx).await),
    }
}

/// Backoff for a failed Fleet round.
pub fn fleet_error_policy(
    guard: Arc<DeserializeGuard<Fleet>>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    match &guard.0 {
        Ok(object) => fleet::error_policy(Arc::new(object.clone()), error, ctx),
        Err(_) => Action::await_change(),
    }
}

/// Backoff for a failed Cell round.
pub fn cell_error_policy(
    guard: Arc<DeserializeGuard<Cell>>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    match &guard.0 {
        Ok(object) => cell::error_policy(Arc::new(object.clone()), error, ctx),
        Err(_) => Action::await_change(),
    }
}

/// Backoff for a failed Service round.
pub fn service_error_policy(
    guard: Arc<DeserializeGuard<Service>>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    match &guard.0 {
        Ok(object) => service::error_policy(Arc::new(object.clone()), error, ctx),
        Err(_) => Action::await_change(),
    }
}

async fn report<K>(object: &K, controller: &str, error: &str, ctx: &Context) -> Action
where
    K: Resource<DynamicType = ()>,
{
    let start = Instant::now();
    tracing::warn!(controller, name = ?object.meta().name, error, "skipping an object that does not deserialize");
    ctx.event(
        &object.object_ref(&()),
        true,
        INVALID_OBJECT,
        "Reconcile",
        format!("the object does not match its schema and is skipped until it changes: {error}"),
    )
    .await;
    ctx.metrics.observe(controller, start, Some(INVALID_OBJECT));
    // Retrying cannot fix a malformed spec; the next edit of the object triggers a new round.
    Action::await_change()
}
