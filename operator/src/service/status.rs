//! Status stage of the Service controller (pure): conditions and counts from what validation
//! said, where the migrations stand, what the Deployment reports and what its pods say.

use k8s_openapi::{api::apps::v1::Deployment, jiff::Timestamp};
use kube::ResourceExt;
use titan_crds::{
    Service, ServiceKind, ServiceStatus,
    common::condition::{CONFIG_VALID, DEGRADED, MIGRATED, PROGRESSING, READY},
};

use super::{
    migration::Migration,
    pods::{self, PodTrouble},
    validate::InvalidSpec,
};
use crate::{
    conditions::{self, Observed},
    labels,
    shared::GRPC_PORT,
};

/// Whether a Service `Degraded` for `reason` has pods that cannot run at all (crash-looping,
/// without an image, unable to start, or held back by failed migrations): the Cell names those
/// first.
pub fn cannot_run(reason: &str) -> bool {
    reason == "MigrationFailed" || pods::STUCK.contains(&reason)
}

/// What the earlier stages concluded about a service.
#[derive(Debug, Clone, Copy)]
pub struct Findings<'a> {
    /// Why the service cannot run at all (its cell is missing or elsewhere): reason, message.
    pub blocked: Option<(&'static str, &'a str)>,
    /// The spec's config or pod overrides were refused.
    pub invalid: Option<&'a InvalidSpec>,
    /// The cell is stopped.
    pub stopped: bool,
    /// The cell does not match the schema this operator knows: the error.
    pub cell_malformed: Option<&'a str>,
    /// Where the migrations stand.
    pub migration: &'a Migration,
    /// A pod that cannot run.
    pub pods: Option<&'a PodTrouble>,
}

/// The Service's status from the findings and the live Deployment.
pub fn compute(
    service: &Service,
    findings: Findings<'_>,
    deployment: Option<&Deployment>,
    now: Timestamp,
) -> ServiceStatus {
    let generation = service.metadata.generation;
    let name = service.name_any();
    let dstatus = deployment.and_then(|d| d.status.as_ref());
    let desired = deployment
        .and_then(|d| d.spec.as_ref())
        .map(|s| s.replicas.unwrap_or(1))
        .unwrap_or(0);
    let observed = match (deployment, dstatus) {
        (Some(d), Some(s)) => {
            s.observed_generation.is_some() && s.observed_generation >= d.metadata.generation
        }
        _ => false,
    };
    let ready_replicas = dstatus.and_then(|s| s.ready_replicas).unwrap_or(0);
    let updated = dstatus.and_then(|s| s.updated_replicas).unwrap_or(0);
    let rolled_out =
        deployment.is_some() && observed && updated >= desired && ready_replicas >= desired;
    let deadline_exceeded = dstatus
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                (c.type_ == "Progressing"
                    && c.status == "False"
                    && c.reason.as_deref() == Some("ProgressDeadlineExceeded"))
                    || (c.type_ == "ReplicaFailure" && c.status == "True")
            })
        });

    let config_valid = match findings.invalid {
        Some(invalid) => Observed::new(CONFIG_VALID, false, invalid.reason(), invalid.to_string()),
        None => Observed::new(
            CONFIG_VALID,
            true,
            "Valid",
            "the config parsed and validated",
        ),
    };
    let ready = if let Some((reason, message)) = findings.blocked {
        Observed::new(READY, false, reason, message)
    } else if findings.stopped {
        Observed::new(READY, false, "Stopped", "the cell is stopped")
    } else if let Migration::Running { .. } | Migration::Failed { .. } = findings.migration {
        // The spec is not realised until its migrations ran and the pods moved: Ready is about
        // the latest spec, not about the old pods that keep serving meanwhile.
        let reason = match findings.migration {
            Migration::Failed { .. } => "MigrationFailed",
            _ => "Migrating",
        };
        let message = match deployment {
            None => "the Deployment is created once the migrations succeed".to_string(),
            Some(_) => format!(
                "{ready_replicas} of {desired} replicas of the previous spec serve; the pods move to this one once the migrations succeed"
            ),
        };
        Observed::new(READY, false, reason, message)
    } else if deployment.is_none() {
        Observed::new(
            READY,
            false,
            "NotCreated",
            "the Deployment does not exist yet",
        )
    } else if rolled_out {
        Observed::new(
            READY,
            true,
            "RolledOut",
            format!("{ready_replicas} of {desired} replicas are ready"),
        )
    } else {
        Observed::new(
            READY,
            false,
            "ReplicasNotReady",
            format!("{ready_replicas} of {desired} replicas are ready, {updated} updated"),
        )
    };
    let progressing =
        if let (None, Migration::Running { job, .. }) = (findings.blocked, findings.migration) {
            Observed::new(
                PROGRESSING,
                true,
                "Migrating",
                format!("job {job} runs the migrations; the pods roll out once it succeeds"),
            )
        } else if findings.blocked.is_none()
            && deployment.is_some()
            && !rolled_out
            && !deadline_exceeded
        {
            Observed::new(
                PROGRESSING,
                true,
                "RollingOut",
                format!("rolling out {name}"),
            )
        } else {
            Observed::new(PROGRESSING, false, "Settled", "nothing is rolling out")
        };
    let degraded = if let Some((reason, message)) = findings.blocked {
        Observed::new(DEGRADED, true, reason, message)
    } else if let Some(invalid) = findings.invalid {
        Observed::new(
            DEGRADED,
            true,
            invalid.reason(),
            format!("{invalid}; the running pods are left as they are"),
        )
    } else if let Some(error) = findings.cell_malformed {
        Observed::new(
            DEGRADED,
            true,
            "CellMalformed",
            format!(
                "cell {cell} does not match the schema this operator knows, so nothing is changed and the running pods are left as they are: {error}",
                cell = service.spec.cell
            ),
        )
    } else if let Migration::Failed { job, message } = findings.migration {
        Observed::new(
            DEGRADED,
            true,
            "MigrationFailed",
            format!("job {job} failed, the pods stay on the previous version: {message}"),
        )
    } else if let Some(trouble) = findings.pods {
        Observed::new(
            DEGRADED,
            true,
            trouble.reason,
            format!("pod {}: {}", trouble.pod, trouble.message),
        )
    } else if deadline_exceeded {
        Observed::new(
            DEGRADED,
            true,
            "RolloutStuck",
            "the Deployment exceeded its progress deadline or cannot create pods",
        )
    } else {
        Observed::new(DEGRADED, false, "AsExpected", "no problem observed")
    };

    let migrated = match findings.migration {
        Migration::NotNeeded => Observed::new(
            MIGRATED,
            true,
            "NoMigrations",
            "a custom worker has no migrations",
        ),
        Migration::Succeeded { job } => Observed::new(
            MIGRATED,
            true,
            "Migrated",
            format!("job {job} applied the migrations"),
        ),
        Migration::NotStarted(why) => Observed::new(MIGRATED, false, "NotStarted", why.clone()),
        Migration::Running { job, last_error } => Observed::new(
            MIGRATED,
            false,
            "Migrating",
            match last_error {
                Some(error) => format!("job {job} runs the migrations; {error}"),
                None => format!("job {job} runs the migrations"),
            },
        ),
        Migration::Failed { job, message } => Observed::new(
            MIGRATED,
            false,
            "MigrationFailed",
            format!("job {job} failed: {message}"),
        ),
    };

    let previous = service
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let conditions = conditions::merge(
        vec![ready, progressing, degraded, config_valid, migrated],
        previous,
        generation,
        now,
    );
    let namespace = service.namespace().unwrap_or_default();
    let cell = &service.spec.cell;
    ServiceStatus {
        observed_generation: generation,
        conditions,
        replicas: dstatus.map(|s| s.replicas.unwrap_or(0)),
        ready_replicas: dstatus.map(|_| ready_replicas),
        image: deployment
            .and_then(|d| d.spec.as_ref())
            .and_then(|s| s.template.spec.as_ref())
            .and_then(|p| p.containers.first())
            .and_then(|c| c.image.clone()),
        endpoint: (service.spec.service != ServiceKind::Custom)
            .then(|| format!("{name}.{namespace}.svc:{GRPC_PORT}")),
        selector: Some(labels::selector_string(&labels::pod_selector(cell, &name))),
    }
}
