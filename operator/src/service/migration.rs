//! Migrations of a Titan service (pure): the Job that runs `titan migrate <service>` with the
//! Deployment's image, environment and config, and what its status says.
//!
//! One Job per service and migration inputs: its name ends in a hash of its spec (image, config
//! hash, environment, command), so a new image or config makes a new Job and an unchanged one
//! keeps the Job that already ran. The Deployment is created, or moved to the new pod template,
//! only once that Job succeeded; until then the old pods keep serving. The latest Job is kept as
//! the record that the migrations of its inputs ran (older ones are pruned when it is applied),
//! so a Job that succeeded is never run again for nothing.

use std::collections::BTreeMap;

use k8s_openapi::api::{
    apps::v1::Deployment,
    batch::v1::{Job, JobSpec},
    core::v1::Pod,
};
use kube::{Resource, ResourceExt};
use sha2::{Digest, Sha256};
use titan_crds::Service;

use super::{pods, validate::CONFIG_PATH};
use crate::labels;

/// Name of the container that runs `titan` in the pods the operator builds.
pub const CONTAINER: &str = "titan";
/// Pod retries of a failed migration before the Job gives up: with the kubelet's backoff
/// (10 s doubling) that is about ten minutes, enough for a datastore still starting.
pub const BACKOFF_LIMIT: i32 = 6;
/// The longest service-name part of a Job name: a Job's name becomes a label value (≤ 63).
const NAME_PART: usize = 42;

/// The migration Job of `service`, running `titan migrate` in the pod template of `deployment`
/// (same image, environment, config mount, security and scheduling settings).
pub fn job(
    service: &Service,
    deployment: &Deployment,
    labels_of_job: &BTreeMap<String, String>,
) -> Job {
    let name = service.name_any();
    let mut template = deployment
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    // Not the service label: the Deployment, core Service and disruption budget select by it.
    let mut pod_labels: BTreeMap<String, String> = labels_of_job
        .iter()
        .filter(|(k, _)| k.as_str() != labels::SERVICE)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    pod_labels.insert(labels::MIGRATION.into(), name.clone());
    template
        .metadata
        .get_or_insert_with(Default::default)
        .labels = Some(pod_labels);
    if let Some(pod) = template.spec.as_mut() {
        // Each failed attempt is a pod of its own, whose termination message stays readable.
        pod.restart_policy = Some("Never".into());
        for container in pod.containers.iter_mut().filter(|c| c.name == CONTAINER) {
            container.command = Some(vec![
                "titan".into(),
                "migrate".into(),
                service.spec.service.as_str().into(),
                "--config".into(),
                CONFIG_PATH.into(),
            ]);
            container.args = None;
            container.ports = None;
            container.liveness_probe = None;
            container.readiness_probe = None;
            container.startup_probe = None;
        }
    }
    let spec = JobSpec {
        backoff_limit: Some(BACKOFF_LIMIT),
        template,
        ..Default::default()
    };
    let hash =
        hex::encode(&Sha256::digest(serde_json::to_vec(&spec).unwrap_or_default().as_slice())[..5]);
    let prefix: String = name.chars().take(NAME_PART).collect();
    Job {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some(format!("{prefix}-migrate-{hash}")),
            namespace: deployment.metadata.namespace.clone(),
            labels: Some(labels_of_job.clone()),
            owner_references: service.controller_owner_ref(&()).map(|o| vec![o]),
            ..Default::default()
        },
        spec: Some(spec),
        ..Default::default()
    }
}

/// The migration Job a service should have.
#[derive(Debug, Clone, PartialEq)]
pub enum MigrationJob {
    /// A custom worker has no migrations.
    NotNeeded,
    /// The cell is stopped: no Job runs, the ones there are kept.
    Stopped,
    /// This Job, before the Deployment.
    Run(Box<Job>),
}

/// Where the migrations of a service stand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Migration {
    /// A custom worker has none: nothing waits for them.
    NotNeeded,
    /// The Job is not running, and why (the cell is stopped, the spec is refused).
    NotStarted(String),
    /// The Job runs (or waits for its pod); an earlier attempt's error, if one failed.
    Running {
        /// Name of the Job.
        job: String,
        /// How the last failed attempt ended, while the Job retries.
        last_error: Option<String>,
    },
    /// The Job succeeded: the Deployment may run the new pods.
    Succeeded {
        /// Name of the Job.
        job: String,
    },
    /// The Job gave up.
    Failed {
        /// Name of the Job.
        job: String,
        /// The last pod's termination message, or the Job's own reason.
        message: String,
    },
}

impl Migration {
    /// Whether the pods may run the spec the Job migrated for.
    pub fn done(&self) -> bool {
        matches!(self, Migration::NotNeeded | Migration::Succeeded { .. })
    }
}

/// The state of the Job named `name` (`job` as found or applied; `None` when it does not exist
/// yet) from its status and its pods (`pods`: the service's migration pods, any Job's).
pub fn observe(name: &str, job: Option<&Job>, pods: &[Pod]) -> Migration {
    let running = |last_error| Migration::Running {
        job: name.to_string(),
        last_error,
    };
    let Some(job) = job else {
        return running(None);
    };
    let status = job.status.as_ref();
    let condition = |type_: &str| {
        status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == type_ && c.status == "True"))
    };
    let own_pods: Vec<&Pod> = pods
        .iter()
        .filter(|p| {
            p.labels()
                .get("batch.kubernetes.io/job-name")
                .map(String::as_str)
                == Some(name)
                || p.labels().get("job-name").map(String::as_str) == Some(name)
        })
        .collect();
    if condition("Complete").is_some() || status.and_then(|s| s.succeeded).unwrap_or(0) > 0 {
        return Migration::Succeeded {
            job: name.to_string(),
        };
    }
    if let Some(failed) = condition("Failed") {
        let message = pods::last_failure(&own_pods)
            .or_else(|| failed.message.clone().filter(|m| !m.is_empty()))
            .unwrap_or_else(|| failed.reason.clone().unwrap_or_else(|| "failed".into()));
        return Migration::Failed {
            job: name.to_string(),
            message,
        };
    }
    let failures = status.and_then(|s| s.failed).unwrap_or(0);
    running((failures > 0).then(|| {
        pods::last_failure(&own_pods)
            .map(|m| format!("attempt {failures} failed: {m}"))
            .unwrap_or_else(|| format!("{failures} attempt(s) failed"))
    }))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::batch::v1::Job;

    use super::{Migration, observe};

    fn job(status: &str) -> Job {
        serde_yaml::from_str(&format!(
            "metadata: {{name: coupon-migrate-0a1b2c3d4e}}\n{status}"
        ))
        .expect("job yaml")
    }

    #[test]
    fn the_jobs_status_says_where_the_migrations_stand() {
        let name = "coupon-migrate-0a1b2c3d4e";
        assert_eq!(
            observe(name, None, &[]),
            Migration::Running {
                job: name.into(),
                last_error: None
            }
        );
        let done = job("status: {succeeded: 1, conditions: [{type: Complete, status: 'True'}]}");
        assert!(observe(name, Some(&done), &[]).done());
        let retrying = job("status: {failed: 2, active: 1}");
        assert_eq!(
            observe(name, Some(&retrying), &[]),
            Migration::Running {
                job: name.into(),
                last_error: Some("2 attempt(s) failed".into())
            }
        );
        let failed = job(
            "status: {failed: 7, conditions: [{type: Failed, status: 'True', reason: BackoffLimitExceeded, message: Job has reached the specified backoff limit}]}",
        );
        assert_eq!(
            observe(name, Some(&failed), &[]),
            Migration::Failed {
                job: name.into(),
                message: "Job has reached the specified backoff limit".into()
            }
        );
    }
}
