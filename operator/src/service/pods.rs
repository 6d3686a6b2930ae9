//! What a service's pods say about themselves (pure): a pod that cannot run — crash-looping,
//! failing to pull its image, or unable to start its container (a missing Secret key) — in the
//! kubelet's own words, and the last termination message of a container, for the Service's
//! status. The Deployment alone says only that replicas are not ready.

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use kube::ResourceExt;

/// The kubelet's reasons for a container that waits and will not get better by itself.
pub const STUCK: [&str; 7] = [
    "CrashLoopBackOff",
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

/// A pod of the service that cannot run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodTrouble {
    /// The kubelet's reason (`CrashLoopBackOff`), used as the condition's reason.
    pub reason: &'static str,
    /// The pod's name.
    pub pod: String,
    /// The waiting message and the last termination message, as far as they are known.
    pub message: String,
}

/// The first pod (by name, for a stable message) with a container stuck waiting, if any.
pub fn trouble(pods: &[Pod]) -> Option<PodTrouble> {
    let mut pods: Vec<&Pod> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    pods.sort_by_key(|p| p.name_any());
    pods.into_iter().find_map(|pod| {
        containers(pod).find_map(|container| {
            let waiting = container.state.as_ref()?.waiting.as_ref()?;
            let reason = STUCK
                .iter()
                .find(|r| waiting.reason.as_deref() == Some(**r))?;
            let mut message = waiting
                .message
                .clone()
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| format!("container {} is waiting", container.name));
            if let Some(last) = last_termination(container) {
                message = format!("{message}; last exit: {last}");
            }
            Some(PodTrouble {
                reason,
                pod: pod.name_any(),
                message,
            })
        })
    })
}

/// How the newest of `pods` that ended in failure ended (`exit code 1: <message>`), if any:
/// the migration Job's error.
pub fn last_failure(pods: &[&Pod]) -> Option<String> {
    let mut pods = pods.to_vec();
    pods.sort_by_key(|p| p.metadata.creation_timestamp.clone());
    pods.iter()
        .rev()
        .find_map(|pod| containers(pod).find_map(last_termination))
}

fn containers(pod: &Pod) -> impl Iterator<Item = &ContainerStatus> {
    pod.status
        .iter()
        .flat_map(|s| s.container_statuses.iter().flatten())
}

/// The container's current or last termination with a non-zero exit code, as
/// `exit code N (reason): message`.
fn last_termination(container: &ContainerStatus) -> Option<String> {
    let state = container.state.as_ref().and_then(|s| s.terminated.as_ref());
    let last = container
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref());
    let terminated = state.or(last).filter(|t| t.exit_code != 0)?;
    let mut text = format!("exit code {}", terminated.exit_code);
    if let Some(reason) = terminated.reason.as_deref().filter(|r| !r.is_empty()) {
        text.push_str(&format!(" ({reason})"));
    }
    if let Some(message) = terminated.message.as_deref().map(str::trim)
        && !message.is_empty()
    {
        text.push_str(&format!(": {message}"));
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Pod;

    use super::{PodTrouble, last_failure, trouble};

    fn pod(yaml: &str) -> Pod {
        serde_yaml::from_str(yaml).expect("pod yaml")
    }

    const IMAGE_PULL: &str = r#"
metadata: {name: coupon-5c9d-abcde}
status:
  phase: Pending
  containerStatuses:
  - name: titan
    image: registry.example/titan:0.2.0
    imageID: ""
    ready: false
    restartCount: 0
    state:
      waiting:
        reason: ImagePullBackOff
        message: 'Back-off pulling image "registry.example/titan:0.2.0"'
"#;

    const MISSING_KEY: &str = r#"
metadata: {name: coupon-5c9d-fghij}
status:
  phase: Pending
  containerStatuses:
  - name: titan
    image: titan:0.2.0
    imageID: ""
    ready: false
    restartCount: 0
    state:
      waiting:
        reason: CreateContainerConfigError
        message: couldn't find key TITAN_REDIS_URL in Secret titan-sg-1/sg-1-datastores
"#;

    const STARTING: &str = r#"
metadata: {name: coupon-5c9d-aaaaa}
status:
  phase: Pending
  containerStatuses:
  - name: titan
    image: titan:0.2.0
    imageID: ""
    ready: false
    restartCount: 0
    state:
      waiting: {reason: ContainerCreating}
"#;

    #[test]
    fn a_pod_that_cannot_pull_or_start_is_named_with_the_kubelets_words() {
        assert_eq!(
            trouble(&[pod(STARTING), pod(IMAGE_PULL)]),
            Some(PodTrouble {
                reason: "ImagePullBackOff",
                pod: "coupon-5c9d-abcde".into(),
                message: r#"Back-off pulling image "registry.example/titan:0.2.0""#.into(),
            })
        );
        assert_eq!(
            trouble(&[pod(MISSING_KEY)]).map(|t| (t.reason, t.message)),
            Some((
                "CreateContainerConfigError",
                "couldn't find key TITAN_REDIS_URL in Secret titan-sg-1/sg-1-datastores".into()
            ))
        );
        assert_eq!(trouble(&[pod(STARTING)]), None, "starting is not a problem");
    }

    #[test]
    fn the_newest_failed_attempt_gives_the_migrations_error() {
        let older = pod(r#"
metadata: {name: m-1, creationTimestamp: "2026-01-01T10:00:00Z"}
status:
  containerStatuses:
  - {name: titan, image: t, imageID: "", ready: false, restartCount: 0,
     state: {terminated: {exitCode: 1, reason: Error, message: "postgres: connection refused"}}}
"#);
        let newer = pod(r#"
metadata: {name: m-2, creationTimestamp: "2026-01-01T10:01:00Z"}
status:
  containerStatuses:
  - {name: titan, image: t, imageID: "", ready: false, restartCount: 0,
     state: {terminated: {exitCode: 2, reason: Error, message: "  migration 4 failed\n"}}}
"#);
        assert_eq!(
            last_failure(&[&newer, &older]).as_deref(),
            Some("exit code 2 (Error): migration 4 failed")
        );
        assert_eq!(last_failure(&[]), None);
    }
}
