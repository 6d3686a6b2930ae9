//! Status stage of the Cell controller, second half (pure): aggregate the Services' status and
//! the components' state ([`super::observe`]) into the Cell's status and conditions.

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use titan_crds::{
    Cell, CellStatus, Service, ServiceKind,
    cell::{ComponentStatus, ServicesSummary},
    common::condition::{
        DATASTORES_READY, DEGRADED, MEDIA_READY, PROGRESSING, READY, RECONCILIATION_PAUSED,
        RECORDINGS_ENABLED, STOPPED,
    },
};

use super::observe::{self, Components};
use crate::{
    conditions::{self, Observed},
    labels,
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

fn child_degraded(service: &Service) -> Option<String> {
    let status = service.status.as_ref()?;
    if status.observed_generation != service.metadata.generation {
        return None;
    }
    let degraded = conditions::find(&status.conditions, titan_crds::common::condition::DEGRADED)?;
    (degraded.status == "True").then(|| format!("{}: {}", service.name_any(), degraded.message))
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
    let generation = cell.metadata.generation;
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
    for child in &wanted {
        if let Some(message) = child_degraded(child)
            && !degraded
                .iter()
                .any(|d| d.starts_with(&format!("{}:", child.name_any())))
        {
            degraded.push(message);
        }
    }

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

    let ready_condition = if stopped {
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
    }
}
