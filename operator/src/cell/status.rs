//! Status stage of the Cell controller, second half (pure): aggregate the Services' status and
//! the components' state ([`super::observe`]) into the Cell's status and conditions.

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use titan_crds::{
    Cell, CellStatus, Service, ServiceKind,
    cell::{ComponentStatus, ServicesSummary},
    common::condition::{
        DATASTORES_READY, DEGRADED, MEDIA_READY, MIGRATED, PROGRESSING, READY,
        RECONCILIATION_PAUSED, RECORDINGS_ENABLED, STOPPED,
    },
};

use super::observe::{self, Components};
use crate::{
    conditions::{self, Observed},
    labels,
    service::status as service_status,
};

/// A child counts only once it has observed its own latest generation and says Ready: a Ready
/// left over from an older spec is not the truth about the current one.
pub fn child_ready(service: &Service) -> bool {
    let Some(status) = &service.status else {
        return false;
    };
    status.observed_generation.is_some()
        && status.observed_generation == service.metadata.generation
        && conditions::is_true(&status.conditions, READY)
}

/// `name: message` of a child that says it is degraded, and whether its pods cannot run at all
/// (crash-looping, no image, migrations failed): those are named first.
fn child_degraded(service: &Service) -> Option<(bool, String)> {
    let status = service.status.as_ref()?;
    if status.observed_generation != service.metadata.generation {
        return None;
    }
    let degraded = conditions::find(&status.conditions, titan_crds::common::condition::DEGRADED)?;
    (degraded.status == "True").then(|| {
        (
            service_status::cannot_run(&degraded.reason),
            format!("{}: {}", service.name_any(), degraded.message),
        )
    })
}

/// The Cell's `Migrated`: every wanted service's migrations succeeded, or which failed (with
/// their error) or still run.
fn migrated(desired: &[String], wanted: &[&Service]) -> Observed {
    let mut failed = Vec::new();
    let mut waiting = Vec::new();
    for name in desired {
        let condition = wanted
            .iter()
            .find(|s| &s.name_any() == name)
            .and_then(|s| s.status.as_ref())
            .and_then(|s| conditions::find(&s.conditions, MIGRATED));
        match condition {
            Some(c) if c.status == "True" => {}
            Some(c) if c.reason == "MigrationFailed" => {
                failed.push(format!("{name}: {}", c.message))
            }
            _ => waiting.push(name.clone()),
        }
    }
    if !failed.is_empty() {
        Observed::new(MIGRATED, false, "MigrationFailed", failed.join("; "))
    } else if !waiting.is_empty() {
        Observed::new(
            MIGRATED,
            false,
            "Migrating",
            format!("waiting for the migrations of {}", waiting.join(", ")),
        )
    } else {
        Observed::new(
            MIGRATED,
            true,
            "Migrated",
            format!("the migrations of all {} services succeeded", desired.len()),
        )
    }
}

/// The generation of a paused cell's spec that the operator has not applied (none when it is
/// not paused, or paused after its latest spec was applied).
fn pending_generation(cell: &Cell) -> Option<i64> {
    let generation = cell.metadata.generation?;
    let applied = cell.status.as_ref().and_then(|s| s.observed_generation);
    (cell.spec.operation.reconciliation_paused && applied != Some(generation)).then_some(generation)
}

/// The Cell's status after a round that could not apply the spec (`ApplyFailed`: an object
/// refused, a prune forbidden; `CredentialsLost`): what the last status said,
/// `observedGeneration` unchanged (the spec is not applied), and `Degraded` with `reason` and
/// `message`, so the failure shows in `kubectl get cell`, not only in an Event.
pub fn blocked(cell: &Cell, reason: &'static str, message: &str, now: Timestamp) -> CellStatus {
    let previous = cell.status.clone().unwrap_or_default();
    let degraded = Observed::new(DEGRADED, true, reason, message);
    CellStatus {
        conditions: conditions::replace(
            &previous.conditions,
            degraded,
            previous.observed_generation,
            now,
        ),
        ..previous
    }
}

/// `name: message` of every component that is not ready.
fn unready<'a>(
    components: impl IntoIterator<Item = (&'a str, Option<&'a ComponentStatus>)>,
) -> Vec<String> {
    components
        .into_iter()
        .filter_map(|(name, status)| {
            let status = status?;
            (!status.ready).then(|| format!("{name}: {}", status.message))
        })
        .collect()
}

/// The Cell's status from the children it wants (`desired`, by name) and its components, as
/// they are now.
pub fn compute(
    cell: &Cell,
    desired: &[String],
    children: &[Service],
    invalid: &[(ServiceKind, String)],
    components: &Components,
    now: Timestamp,
) -> CellStatus {
    // The generation whose spec is applied: a paused cell applies nothing, so it keeps the one
    // it applied last, and its status must not claim the newer spec (kstatus and Argo CD read
    // `observedGeneration < generation` as "not there yet").
    let pending = pending_generation(cell);
    let generation = match pending {
        Some(_) => cell.status.as_ref().and_then(|s| s.observed_generation),
        None => cell.metadata.generation,
    };
    let wanted: Vec<&Service> = children
        .iter()
        .filter(|c| desired.contains(&c.name_any()))
        .collect();
    let ready: Vec<&&Service> = wanted.iter().filter(|c| child_ready(c)).collect();
    let total = desired.len();
    let mut not_ready: Vec<String> = desired
        .iter()
        .filter(|name| !ready.iter().any(|r| &r.name_any() == *name))
        .cloned()
        .collect();
    not_ready.sort();

    let mut degraded: Vec<String> = invalid
        .iter()
        .map(|(kind, error)| format!("{kind}: {error}"))
        .collect();
    let children: Vec<(bool, String)> = wanted
        .iter()
        .filter_map(|child| child_degraded(child))
        .filter(|(_, message)| {
            !degraded
                .iter()
                .any(|d| d.split(':').next() == message.split(':').next())
        })
        .collect();
    // A service whose pods cannot run is what a person should read first.
    let (first, rest): (Vec<_>, Vec<_>) = children.into_iter().partition(|(c, _)| *c);
    degraded = first
        .into_iter()
        .map(|(_, m)| m)
        .chain(degraded)
        .chain(rest.into_iter().map(|(_, m)| m))
        .collect();

    let service_problems = degraded.len();
    degraded.extend(components.problems.iter().cloned());

    let stores = &components.datastores;
    let stores_not_ready = unready([
        ("postgres", Some(&stores.postgres)),
        ("redis", Some(&stores.redis)),
        ("clickhouse", Some(&stores.clickhouse)),
    ]);
    let media_not_ready = unready([
        ("turn", components.media.turn.as_ref()),
        ("rtmp", components.media.rtmp.as_ref()),
    ]);

    let paused = cell.spec.operation.reconciliation_paused;
    let stopped = cell.spec.operation.stopped;
    let services_ready = ready.len() == total;
    let all_ready =
        services_ready && stores_not_ready.is_empty() && media_not_ready.is_empty() && !stopped;

    let ready_condition = if let Some(pending) = pending {
        Observed::new(
            READY,
            false,
            "SpecNotApplied",
            format!(
                "reconciliation is paused: generation {pending} of the spec is not applied; {}",
                match generation {
                    Some(applied) => format!("the cell runs generation {applied}"),
                    None => "nothing has been applied yet".to_string(),
                }
            ),
        )
    } else if stopped {
        Observed::new(
            READY,
            false,
            "Stopped",
            "the cell is stopped: set spec.operation.stopped to false to run it",
        )
    } else if all_ready {
        Observed::new(
            READY,
            true,
            "AllServicesReady",
            format!("all {total} services are ready"),
        )
    } else if !services_ready {
        Observed::new(
            READY,
            false,
            "ServicesNotReady",
            format!(
                "{} of {total} services are not ready: {}",
                not_ready.len(),
                not_ready.join(", ")
            ),
        )
    } else if !stores_not_ready.is_empty() {
        Observed::new(
            READY,
            false,
            "DatastoresNotReady",
            stores_not_ready.join("; "),
        )
    } else {
        Observed::new(READY, false, "MediaNotReady", media_not_ready.join("; "))
    };
    let waiting: Vec<String> = not_ready
        .iter()
        .cloned()
        .chain(stores_not_ready.iter().cloned())
        .chain(media_not_ready.iter().cloned())
        .collect();
    let progressing = if !all_ready && !stopped && degraded.is_empty() && !paused {
        Observed::new(
            PROGRESSING,
            true,
            "RollingOut",
            format!("waiting for {}", waiting.join(", ")),
        )
    } else {
        Observed::new(PROGRESSING, false, "Settled", "nothing is rolling out")
    };
    let degraded_condition = if degraded.is_empty() {
        Observed::new(DEGRADED, false, "AsExpected", "nothing reports a problem")
    } else if service_problems == 0 {
        Observed::new(DEGRADED, true, "CellMisconfigured", degraded.join("; "))
    } else {
        Observed::new(DEGRADED, true, "ServiceDegraded", degraded.join("; "))
    };
    let paused_condition = if paused {
        Observed::new(
            RECONCILIATION_PAUSED,
            true,
            "Paused",
            "spec.operation.reconciliationPaused is true: nothing is changed, status is still updated",
        )
    } else {
        Observed::new(
            RECONCILIATION_PAUSED,
            false,
            "Reconciling",
            "the operator applies the spec",
        )
    };
    let stopped_condition = if stopped {
        Observed::new(
            STOPPED,
            true,
            "Stopped",
            "every service is scaled to zero; data is kept",
        )
    } else {
        Observed::new(STOPPED, false, "Running", "services run at their replicas")
    };

    let datastores_condition = if stores_not_ready.is_empty() {
        Observed::new(
            DATASTORES_READY,
            true,
            "DatastoresReady",
            "every datastore serves and the datastores secret is complete",
        )
    } else {
        Observed::new(
            DATASTORES_READY,
            false,
            if stopped {
                "Stopped"
            } else if components.datastores_misconfigured {
                "DatastoreMisconfigured"
            } else {
                "DatastoresStarting"
            },
            stores_not_ready.join("; "),
        )
    };
    let media_condition = if media_not_ready.is_empty() {
        Observed::new(
            MEDIA_READY,
            true,
            "MediaReady",
            "every enabled media server serves",
        )
    } else {
        Observed::new(
            MEDIA_READY,
            false,
            if stopped { "Stopped" } else { "MediaStarting" },
            media_not_ready.join("; "),
        )
    };
    let recordings_condition = match &stores.object_storage {
        None => Observed::new(
            RECORDINGS_ENABLED,
            false,
            "NoObjectStorage",
            "spec.datastores.objectStorage is absent: recordings and uploads are off",
        ),
        Some(storage) if !storage.ready => Observed::new(
            RECORDINGS_ENABLED,
            false,
            "ObjectStorageCredentialsIncomplete",
            format!("{}: recordings and uploads are off", storage.message),
        ),
        Some(_) => Observed::new(
            RECORDINGS_ENABLED,
            true,
            "ObjectStorageConfigured",
            "recordings and uploads go to the cell's object storage",
        ),
    };

    let previous = cell
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let conditions = conditions::merge(
        vec![
            ready_condition,
            progressing,
            degraded_condition,
            paused_condition,
            stopped_condition,
            datastores_condition,
            media_condition,
            recordings_condition,
            migrated(desired, &wanted),
        ],
        previous,
        generation,
        now,
    );

    // The version is what the ready services really run, not what the spec asks for.
    let mut tags = ready
        .iter()
        .filter_map(|s| s.status.as_ref()?.image.as_deref())
        .map(labels::image_tag);
    let version = match tags.next() {
        Some(first) if tags.all(|t| t == first) => Some(first.to_string()),
        _ => None,
    };

    let ready_count = i32::try_from(ready.len()).unwrap_or(i32::MAX);
    let total_count = i32::try_from(total).unwrap_or(i32::MAX);
    CellStatus {
        observed_generation: generation,
        conditions,
        services: Some(ServicesSummary {
            ready: ready_count,
            total: total_count,
            summary: format!("{ready_count}/{total_count}"),
        }),
        version,
        namespace: Some(cell.namespace_name()),
        datastores: Some(components.datastores.clone()),
        media: Some(components.media.clone()),
        endpoints: Some(observe::endpoints(cell, desired)),
        rollout: None,
        tls: None,
    }
}
