//! Building `metav1.Condition`s so that an unchanged condition keeps its transition time, which
//! is what lets an unchanged status compare equal and cost no write; and announcing the ones
//! that changed as Events, the same way for Cells and Services.

use k8s_openapi::{
    api::core::v1::ObjectReference,
    apimachinery::pkg::apis::meta::v1::{Condition, Time},
    jiff::Timestamp,
};
use titan_crds::common::condition::READY;

use crate::Context;

/// One condition as computed by a status stage, before timestamps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// Condition type (`Ready`).
    pub type_: &'static str,
    /// True or False.
    pub status: bool,
    /// CamelCase reason.
    pub reason: &'static str,
    /// What a person should know or do.
    pub message: String,
}

impl Observed {
    /// A condition of `type_` with the given truth, reason and message.
    pub fn new(
        type_: &'static str,
        status: bool,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_,
            status,
            reason,
            message: message.into(),
        }
    }
}

/// Turns observed conditions into `metav1.Condition`s, keeping the transition time of any whose
/// status did not change.
pub fn merge(
    observed: Vec<Observed>,
    previous: &[Condition],
    generation: Option<i64>,
    now: Timestamp,
) -> Vec<Condition> {
    observed
        .into_iter()
        .map(|o| {
            let status = if o.status { "True" } else { "False" }.to_string();
            let last_transition_time = previous
                .iter()
                .find(|p| p.type_ == o.type_ && p.status == status)
                .map(|p| p.last_transition_time.clone())
                .unwrap_or(Time(now));
            Condition {
                type_: o.type_.to_string(),
                status,
                reason: o.reason.to_string(),
                message: o.message,
                observed_generation: generation,
                last_transition_time,
            }
        })
        .collect()
}

/// `previous` with the condition of `observed`'s type replaced by it (added when absent), in
/// place so the order stays: what a round that could not finish says, leaving the rest of
/// what the last round observed as it was.
pub fn replace(
    previous: &[Condition],
    observed: Observed,
    generation: Option<i64>,
    now: Timestamp,
) -> Vec<Condition> {
    let mut conditions = previous.to_vec();
    for condition in merge(vec![observed], previous, generation, now) {
        match conditions.iter_mut().find(|c| c.type_ == condition.type_) {
            Some(slot) => *slot = condition,
            None => conditions.push(condition),
        }
    }
    conditions
}

/// Whether the condition of `type_` is present and True.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == type_ && c.status == "True")
}

/// The condition of `type_`, if present.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// The condition `type_` if it was computed for `generation`, the object's current one
/// (Knative's rule: a condition that has not seen the latest spec says nothing about it).
pub fn current<'a>(
    conditions: &'a [Condition],
    type_: &str,
    generation: Option<i64>,
) -> Option<&'a Condition> {
    find(conditions, type_)
        .filter(|c| c.observed_generation.is_some() && c.observed_generation == generation)
}

/// Which truth of a condition a person should look at, announced as a Warning Event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attention {
    /// False is the problem (`Ready`, `ConfigValid`, `Migrated`).
    WhenFalse,
    /// True is the problem (`Degraded`).
    WhenTrue,
    /// Either truth is news, not a problem (`Stopped`, `ReconciliationPaused`).
    Never,
}

/// Reasons of a False condition that are expected states, not faults: a start-up, a rollout or a
/// migration passes through them, and a stop is asked for. They are Normal Events, so a healthy
/// cell starting lists no warnings in `kubectl describe` or `kubectl titan status`. What is
/// stuck or failing has its own reason (`MigrationFailed`, `SpecNotApplied`, a `Degraded`
/// condition from crash-looping pods), and the False condition stays in `status` either way.
const EXPECTED: &[&str] = &[
    "Stopped",
    "Migrating",
    "NotCreated",
    "ReplicasNotReady",
    "ServicesNotReady",
    "DatastoresNotReady",
    "MediaNotReady",
    "Reconciling",
    // A new cell's routes wait for its Services, which wait for its datastores.
    "RoutesNotApplied",
];

impl Attention {
    fn warning(self, status: &str, reason: &str) -> bool {
        match self {
            Attention::WhenFalse => status != "True" && !EXPECTED.contains(&reason),
            Attention::WhenTrue => status == "True",
            Attention::Never => false,
        }
    }
}

/// Publishes an Event about `object` for each condition of `types` whose status or reason
/// changed from `previous` to `now`, with the condition's reason as the stable reason. A
/// condition that first appears as False is not announced unless it is `Ready`: a first
/// "everything is fine" needs no announcement.
pub async fn announce(
    ctx: &Context,
    object: &ObjectReference,
    previous: &[Condition],
    now: &[Condition],
    types: &[(&str, Attention)],
) {
    for &(type_, attention) in types {
        let Some(now) = find(now, type_) else {
            continue;
        };
        let before = find(previous, type_);
        if before.map(|b| (&b.status, &b.reason)) == Some((&now.status, &now.reason)) {
            continue;
        }
        if before.is_none() && now.status == "False" && type_ != READY {
            continue;
        }
        ctx.event(
            object,
            attention.warning(&now.status, &now.reason),
            &now.reason,
            type_,
            now.message.clone(),
        )
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_is_news_and_failure_is_a_warning() {
        let w = Attention::WhenFalse;
        assert!(!w.warning("False", "Migrating"));
        assert!(!w.warning("False", "ReplicasNotReady"));
        assert!(!w.warning("False", "Stopped"));
        assert!(!w.warning("False", "RoutesNotApplied"));
        assert!(w.warning("False", "GatewayAPINotInstalled"));
        assert!(w.warning("False", "MigrationFailed"));
        assert!(w.warning("False", "SpecNotApplied"));
        assert!(w.warning("Unknown", "ConfigInvalid"));
        assert!(!w.warning("True", "RolledOut"));
        assert!(Attention::WhenTrue.warning("True", "CrashLoopBackOff"));
        assert!(!Attention::WhenTrue.warning("False", "Migrating"));
        assert!(!Attention::Never.warning("True", "Stopped"));
    }
}
