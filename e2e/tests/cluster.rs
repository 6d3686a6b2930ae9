//! The cluster end-to-end suite: installs the operator from `manifests/install.yaml` on a real
//! Kubernetes cluster and drives the dev cell (`manifests/examples/dev-cell.yaml`) through its
//! life with `kubectl`: Ready, status, services and Events, scaling a service, pause and
//! resume, stop and start, and deletion under `deletionPolicy: Retain` keeping the PVCs.
//!
//! It only ever touches a cluster it may break: it runs when kubectl reaches a cluster whose
//! current context is a throwaway local one (`k3d-*`, `kind-*`, `minikube`), or any cluster when
//! `TITAN_E2E_CLUSTER=1` says so. Otherwise it prints one line saying why it was skipped and
//! passes, so `cargo test --workspace` stays green on machines without a cluster (like CI's).
//!
//! Images: the cluster must be able to pull the operator and `titan` images. For a local build
//! (see docs/cluster-e2e.md) name them with `TITAN_E2E_OPERATOR_IMAGE` and
//! `TITAN_E2E_TITAN_IMAGE` (`repository:tag`), and `TITAN_E2E_RTMP_IMAGE`; the suite points the
//! Deployment and the Cell at them.
//!
//!   k3d cluster create titan-e2e --agents 2 --wait
//!   cargo test -p titan-e2e --test cluster -- --nocapture

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const CELL: &str = "dev";
const NAMESPACE: &str = "titan-dev";
const OPERATOR_NAMESPACE: &str = "titan-system";
/// A dev cell pulls every image and initialises three databases on first start.
const READY_TIMEOUT: &str = "15m";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// Runs kubectl with `args`; the error carries kubectl's stderr.
fn kubectl(args: &[&str]) -> Result<String, String> {
    let output = Command::new("kubectl")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run kubectl: {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "kubectl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// kubectl that must succeed (a failed step fails the suite with kubectl's message).
fn k(args: &[&str]) -> String {
    eprintln!("$ kubectl {}", args.join(" "));
    kubectl(args).unwrap_or_else(|e| panic!("{e}"))
}

fn json_of(args: &[&str]) -> Value {
    let mut with_output = args.to_vec();
    with_output.extend(["-o", "json"]);
    serde_json::from_str(&k(&with_output)).expect("kubectl printed JSON")
}

/// Why the suite must not run here, or `None` to run it.
fn skip_reason() -> Option<String> {
    let config = std::env::var_os("KUBECONFIG")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".kube/config")));
    match &config {
        Some(path) if std::env::var_os("KUBECONFIG").is_some() || path.exists() => {}
        _ => return Some("no KUBECONFIG and no ~/.kube/config".into()),
    }
    let context = match kubectl(&["config", "current-context"]) {
        Ok(context) => context.trim().to_owned(),
        Err(_) if Command::new("kubectl").arg("version").output().is_err() => {
            return Some("kubectl is not installed".into());
        }
        Err(e) => return Some(format!("no current kubectl context ({e})")),
    };
    if let Err(e) = kubectl(&["get", "--raw", "/readyz", "--request-timeout=5s"]) {
        return Some(format!("context {context} is not reachable ({e})"));
    }
    let throwaway = ["k3d-", "kind-", "minikube"]
        .iter()
        .any(|p| context.starts_with(p));
    let forced = std::env::var("TITAN_E2E_CLUSTER").is_ok_and(|v| v == "1");
    if !throwaway && !forced {
        return Some(format!(
            "context {context} is not a local k3d/kind/minikube cluster; set TITAN_E2E_CLUSTER=1 \
             to run against it anyway (it installs the operator and creates and deletes cell {CELL})"
        ));
    }
    None
}

/// A condition of `kind/name` (in `namespace` when given).
fn condition(kind: &str, name: &str, namespace: Option<&str>, type_: &str) -> Option<Value> {
    let mut args = vec!["get", kind, name];
    if let Some(ns) = namespace {
        args.extend(["-n", ns]);
    }
    let object = json_of(&args);
    object["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .cloned()
}

fn wait_condition(target: &str, namespace: Option<&str>, condition: &str, timeout: &str) {
    let mut args = vec![
        "wait".to_owned(),
        format!("--for=condition={condition}"),
        target.to_owned(),
        format!("--timeout={timeout}"),
    ];
    if let Some(ns) = namespace {
        args.extend(["-n".to_owned(), ns.to_owned()]);
    }
    k(&args.iter().map(String::as_str).collect::<Vec<_>>());
}

fn patch_cell(patch: Value) {
    k(&[
        "patch",
        "cell",
        CELL,
        "--type=merge",
        "-p",
        &patch.to_string(),
    ]);
}

/// Polls `check` every 2 s until it returns true or `timeout` passes.
fn eventually(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting until {what}"
        );
        std::thread::sleep(Duration::from_secs(2));
    }
}

fn deployment_replicas(name: &str) -> i64 {
    json_of(&["get", "deployment", name, "-n", NAMESPACE])["spec"]["replicas"]
        .as_i64()
        .unwrap_or(-1)
}

fn install_operator() {
    let install = repo("manifests/install.yaml");
    k(&[
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        &install.display().to_string(),
    ]);
    if let Ok(image) = std::env::var("TITAN_E2E_OPERATOR_IMAGE") {
        k(&[
            "-n",
            OPERATOR_NAMESPACE,
            "set",
            "image",
            "deployment/titan-operator",
            &format!("operator={image}"),
        ]);
    }
    for crd in ["cells.commerce.titan.dev", "services.commerce.titan.dev"] {
        wait_condition(&format!("crd/{crd}"), None, "Established", "60s");
    }
    k(&[
        "-n",
        OPERATOR_NAMESPACE,
        "rollout",
        "status",
        "deployment/titan-operator",
        "--timeout=5m",
    ]);
}

fn create_dev_cell() {
    let cell = repo("manifests/examples/dev-cell.yaml");
    k(&["apply", "-f", &cell.display().to_string()]);
    if let Ok(image) = std::env::var("TITAN_E2E_TITAN_IMAGE") {
        let (repository, tag) = image
            .rsplit_once(':')
            .expect("TITAN_E2E_TITAN_IMAGE is repository:tag");
        patch_cell(json!({"spec": {"image": repository, "version": tag}}));
    }
    if let Ok(image) = std::env::var("TITAN_E2E_RTMP_IMAGE") {
        patch_cell(json!({"spec": {"media": {"rtmp": {"image": image}}}}));
    }
    wait_condition(&format!("cell/{CELL}"), None, "Ready", READY_TIMEOUT);
}

fn check_status_services_and_events() {
    let cell = json_of(&["get", "cell", CELL]);
    let status = &cell["status"];
    assert_eq!(
        status["observedGeneration"], cell["metadata"]["generation"],
        "Ready must be about the latest spec"
    );
    let (ready, total) = (&status["services"]["ready"], &status["services"]["total"]);
    assert_eq!(ready, total, "every service of a Ready cell is ready");

    let services = json_of(&["get", "tsvc", "-n", NAMESPACE]);
    let items = services["items"].as_array().expect("items");
    assert_eq!(Some(items.len() as i64), total.as_i64(), "one Service each");
    for service in items {
        let name = service["metadata"]["name"].as_str().unwrap_or_default();
        let ready = service["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        assert!(ready, "service {name} is not Ready in a Ready cell");
    }
    // The category and the plural both reach the custom resources.
    k(&["get", "titan", "-A"]);
    k(&["get", "services.commerce.titan.dev", "-n", NAMESPACE]);

    let events = json_of(&[
        "get",
        "events",
        "-A",
        "--field-selector",
        &format!("involvedObject.kind=Cell,involvedObject.name={CELL}"),
    ]);
    let reasons: Vec<&str> = events["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["reason"].as_str())
        .collect();
    assert!(
        !reasons.is_empty(),
        "the operator records Events about the cell"
    );
    eprintln!("cell events: {reasons:?}");
}

fn scale_a_service() {
    patch_cell(json!({"spec": {"services": {"flashsale": {"replicas": 3}}}}));
    k(&[
        "wait",
        "--for=jsonpath={.status.readyReplicas}=3",
        "tsvc/flashsale",
        "-n",
        NAMESPACE,
        "--timeout=5m",
    ]);
    assert_eq!(deployment_replicas("flashsale"), 3);
}

fn pause_and_resume() {
    patch_cell(json!({"spec": {"operation": {"reconciliationPaused": true}}}));
    wait_condition(&format!("cell/{CELL}"), None, "ReconciliationPaused", "2m");
    // A paused cell reads but never writes: the change waits for the resume.
    patch_cell(json!({"spec": {"services": {"flashsale": {"replicas": 2}}}}));
    // A paused cell still reports status for the generation it read: once that is the new one,
    // the operator has seen the change and chosen not to act.
    eventually(
        "the paused cell has observed its new generation",
        Duration::from_secs(120),
        || {
            let cell = json_of(&["get", "cell", CELL]);
            cell["status"]["observedGeneration"] == cell["metadata"]["generation"]
        },
    );
    assert_eq!(
        deployment_replicas("flashsale"),
        3,
        "a paused cell must not touch its workloads"
    );
    patch_cell(json!({"spec": {"operation": {"reconciliationPaused": false}}}));
    eventually(
        "the resumed cell applies the change",
        Duration::from_secs(300),
        || deployment_replicas("flashsale") == 2,
    );
    wait_condition(&format!("cell/{CELL}"), None, "Ready", "10m");
}

fn stop_and_start() {
    patch_cell(json!({"spec": {"operation": {"stopped": true}}}));
    wait_condition(&format!("cell/{CELL}"), None, "Stopped", "5m");
    eventually(
        "every workload of the stopped cell is scaled to zero",
        Duration::from_secs(300),
        || {
            let all = json_of(&["get", "deployments,statefulsets", "-n", NAMESPACE]);
            all["items"]
                .as_array()
                .is_some_and(|items| items.iter().all(|w| w["spec"]["replicas"] == 0))
        },
    );
    patch_cell(json!({"spec": {"operation": {"stopped": false}}}));
    wait_condition(&format!("cell/{CELL}"), None, "Ready", READY_TIMEOUT);
    let stopped = condition("cell", CELL, None, "Stopped");
    assert!(
        stopped.is_none_or(|c| c["status"] != "True"),
        "a started cell is not Stopped"
    );
}

fn delete_with_retain_keeps_volumes() {
    patch_cell(json!({"spec": {"deletionPolicy": "Retain"}}));
    let names = |list: Value| -> Vec<String> {
        let mut names: Vec<String> = list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_owned))
            .collect();
        names.sort();
        names
    };
    let before = names(json_of(&["get", "pvc", "-n", NAMESPACE]));
    assert!(
        !before.is_empty(),
        "the builtin datastores of the dev cell have volumes"
    );
    k(&["delete", "cell", CELL, "--wait=true", "--timeout=10m"]);
    let after = names(json_of(&["get", "pvc", "-n", NAMESPACE]));
    assert_eq!(after, before, "deletionPolicy Retain keeps every PVC");
    // The suite's own leftovers: the retained data and its namespace.
    k(&[
        "delete",
        "namespace",
        NAMESPACE,
        "--wait=false",
        "--ignore-not-found",
    ]);
}

#[test]
fn a_dev_cell_lives_through_its_whole_life_on_a_real_cluster() {
    if let Some(reason) = skip_reason() {
        eprintln!("cluster e2e skipped: {reason}");
        return;
    }
    install_operator();
    create_dev_cell();
    check_status_services_and_events();
    scale_a_service();
    pause_and_resume();
    stop_and_start();
    delete_with_retain_keeps_volumes();
}
