//! The cluster suite: the real `titan-operator` against a real Kubernetes API server — the local
//! control plane of `cargo xtask kube up` (etcd, kube-apiserver, kube-controller-manager,
//! kube-scheduler and kwok's fake nodes at one pinned release), which `cargo xtask test` starts
//! on every run, CI included.
//!
//! The operator runs as a process outside the cluster with a TokenRequest token of the chart's
//! ServiceAccount, so a verb missing from the chart's RBAC fails the suite; the chart's own
//! Deployment becomes Running through kwok and stands for its pod. The checks, in order (one
//! test: the phases share one operator and one cluster, as a user's would):
//!
//! 1. `helm install` of charts/titan-operator; the real server accepts the CRDs;
//!    `manifests/examples/invalid-cell.yaml` is refused with the CEL messages the README shows;
//!    `kubectl explain cell.spec.datastores` shows the field descriptions.
//! 2. Leader election: two operator processes, exactly one holds the Lease.
//! 3. The dev cell: namespace, Services and children; kwok runs the pods; Deployments become
//!    available; every `Service` Ready; `kubectl wait --for=condition=Ready cell/dev`; the
//!    printer columns of `kubectl get cells` and `kubectl get titan -A`; the `kubectl titan`
//!    plugin (module `kubectl_titan`) inspects and operates the cell and leaves it Ready.
//! 4. `kubectl scale tsvc/…` moves the Deployment through the scale subresource; the fraud
//!    HPA reads its target's scale.
//! 5. Drift: a hand-edited Deployment image, a changed ConfigMap key, a deleted NetworkPolicy
//!    and a deleted Service are put back (every child kind is watched).
//! 6. An unchanged cell makes zero writes: the apiserver's `apiserver_request_total` for the
//!    operator's kinds before and after 60 s of idling.
//! 7. Pause and resume; stop and start; a disabled service is pruned. Migrations: every
//!    service of the Ready cell ran its `titan migrate` Job (kwok completes the pods of Jobs)
//!    and says `Migrated`, as the Cell does; a version bump runs each service's new Job, and
//!    prunes the old one, before its Deployment moves to the new image.
//!    Edge (module `edge`, the Gateway API CRDs installed before the operators start): the dev
//!    cell's `spec.edge` gets its GRPCRoute and HTTPRoute attached to the named Gateway, and
//!    removing it prunes them.
//!    TLS (module `tls`, cert-manager's Certificate CRD installed before the operators start):
//!    `spec.tls` gives the dev cell its CA and certificate Secrets, mounted by its services and
//!    datastores, and it is Ready again; `certManager` swaps them for a `Certificate`, whose
//!    Secret the cell waits for; removing `spec.tls` takes everything away.
//!    Fleet waves (module `fleet`): three cells in waves 0/1/2; a canary that cannot be
//!    scheduled halts the rollout and wave 1 keeps its version; after the fix and a
//!    `resumed-at` annotation every wave runs the new version Ready; datastores never move.
//! 8. The leader is SIGKILLed: the other replica takes over within the lease duration and a
//!    change converges; a replica SIGKILLed mid-reconcile and restarted converges with no
//!    duplicate objects; the apiserver restarted under a running operator: its watches resume
//!    and a change made afterwards is reconciled.
//! 9. A Cell carrying the finalizer whose spec no longer deserializes can still be deleted;
//!    Retain keeps PVCs and credentials through `kubectl delete cell`, and a re-created Cell
//!    adopts them; Delete lets the garbage collector remove everything.
//!    The leader SIGTERMed exits within the termination grace and releases the Lease.
//! 10. `helm uninstall` keeps the CRDs; `kubectl apply --server-side -f manifests/install.yaml`
//!     installs the same operator, whose ServiceAccount then runs a cell to Ready.
//!
//! Without a control plane (`TITAN_TEST_KUBE_DIR` unset: no Go on this machine) the test prints
//! one line saying why it was skipped.

mod edge;
mod fleet;
mod harness;
mod kubectl_titan;
mod tls;

use std::time::Duration;

use harness::{Kube, Operator, eventually, repo};
use serde_json::{Value, json};

const OPERATOR_NAMESPACE: &str = "titan-system";
const CELL: &str = "dev";
const NAMESPACE: &str = "titan-dev";
/// The operator's lease lasts 15 s (operator/src/leader.rs); a takeover may take that long
/// plus a renewal period.
const LEASE_TAKEOVER: Duration = Duration::from_secs(90);
/// Cells converge in seconds on kwok; generous for a loaded 2-core CI machine.
const CONVERGE: Duration = Duration::from_secs(180);

fn main_suite_skip() -> Option<String> {
    Kube::from_env().err()
}

#[test]
fn the_operator_runs_cells_on_a_real_api_server() {
    if let Some(reason) = main_suite_skip() {
        eprintln!("cluster suite skipped: {reason}");
        return;
    }
    let kube = Kube::from_env().expect("checked above");
    let sa = install_with_helm(&kube);
    crds_are_served_and_validated(&kube);
    // Before the operators start: they look once whether the Gateway API and cert-manager's
    // Certificate are served.
    edge::install_gateway_api(&kube);
    tls::install_cert_manager_crd(&kube);

    let mut a = Operator::start(&kube, &sa, "operator-a");
    let mut b = Operator::start(&kube, &sa, "operator-b");
    let leader = one_leader(&kube, &mut [&mut a, &mut b]);

    create_dev_cell(&kube, &[&a, &b]);
    printer_columns(&kube);
    kubectl_titan::the_plugin_inspects_and_operates_the_cell(&kube);
    scale_through_the_subresource(&kube);
    drift_is_repaired(&kube);
    an_unchanged_cell_makes_no_writes(&kube);
    a_round_reads_its_children_from_the_watch_caches(&kube);
    pause_and_resume(&kube);
    stop_and_start(&kube);
    a_disabled_service_is_pruned(&kube);
    migrations_run_before_the_pods(&kube);
    edge::routes_follow_spec_edge(&kube);
    tls::certificates_follow_spec_tls(&kube);
    let first = the_router_table_lists(&kube, 1);
    fleet::waves_halt_on_a_failing_canary_and_resume_after_the_fix(&kube);
    // The phase's three cells joined the table once Ready and left it when deleted.
    the_router_table_lists(&kube, first + 2);

    let (mut leader, mut standby) = if leader == a.name { (a, b) } else { (b, a) };
    leader_loss_and_restarts(&kube, &sa, &mut leader, &mut standby);
    let running = standby;
    drop(leader);
    a_malformed_cell_can_be_deleted(&kube);
    retain_keeps_data_and_delete_removes_it(&kube);
    sigterm_releases_the_lease(&kube, running);

    install_from_manifests(&kube);
}

/// `helm install` of the chart; returns a kubeconfig for its ServiceAccount.
fn install_with_helm(kube: &Kube) -> std::path::PathBuf {
    let chart = repo("charts/titan-operator");
    kube.helm(&[
        "install",
        "titan-operator",
        &chart.display().to_string(),
        "--namespace",
        OPERATOR_NAMESPACE,
        "--create-namespace",
        "--wait",
        "--timeout=5m",
    ]);
    for crd in [
        "cells.commerce.titan.dev",
        "services.commerce.titan.dev",
        "fleets.commerce.titan.dev",
    ] {
        kube.k(&[
            "wait",
            "--for=condition=Established",
            &format!("crd/{crd}"),
            "--timeout=60s",
        ]);
    }
    // kwok runs the chart's pods: the Deployment is as available as on a real node.
    kube.k(&[
        "rollout",
        "status",
        "deployment/titan-operator",
        "-n",
        OPERATOR_NAMESPACE,
        "--timeout=3m",
    ]);
    kube.service_account_kubeconfig(OPERATOR_NAMESPACE, "titan-operator")
}

fn crds_are_served_and_validated(kube: &Kube) {
    let invalid = repo("manifests/examples/invalid-cell.yaml");
    let refused = kube
        .kubectl(&["apply", "-f", &invalid.display().to_string()])
        .expect_err("the API server refuses the invalid example");
    for message in [
        "spec.datastores.redis: Invalid value: an external datastore needs \
         secretName: the Secret that holds its connection URL",
        "spec.services.flashsale: Invalid value: set replicas or autoscaling, not \
         both: with autoscaling the autoscaler owns replicas",
    ] {
        assert!(
            refused.contains(message),
            "the refusal must carry {message:?}; it was: {refused}"
        );
    }
    // A Cell name must make a namespace (`titan-<name>`, a DNS label) unless spec.namespace
    // names one; the API server checks it with the same CEL rule `render` evaluates.
    let named = |name: &str, namespace: Option<&str>| {
        let file = kube.dir.join(format!("cell-{name}.yaml"));
        let spec = match namespace {
            Some(namespace) => json!({"version": "0.1.0", "namespace": namespace}),
            None => json!({"version": "0.1.0"}),
        };
        let cell = json!({"apiVersion": "commerce.titan.dev/v1alpha1", "kind": "Cell",
            "metadata": {"name": name}, "spec": spec});
        std::fs::write(&file, cell.to_string()).expect("write the cell");
        kube.kubectl(&[
            "apply",
            "--dry-run=server",
            "-f",
            &file.display().to_string(),
        ])
    };
    let refused = named("edge.prod", None).expect_err("a name with a dot makes no namespace");
    let rule = "a Cell without spec.namespace lives in the namespace titan-<name>, a DNS label: \
                its name needs at most 57 characters and no '.' (or set spec.namespace)";
    assert!(
        refused.contains(rule),
        "the refusal must carry {rule:?}; it was: {refused}"
    );
    named("edge.prod", Some("edge-prod")).expect("with its own namespace the name is a label");
    let explain = kube.k(&["explain", "cell.spec.datastores"]);
    for text in [
        "The cell's datastores.",
        "The cell's PostgreSQL.",
        "S3-compatible object storage",
    ] {
        assert!(explain.contains(text), "explain lacks {text:?}:\n{explain}");
    }
}

fn lease_holder(kube: &Kube) -> Option<String> {
    kube.get(&["lease", "titan-operator", "-n", OPERATOR_NAMESPACE])
        .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_owned))
        .filter(|h| !h.is_empty())
}

/// Waits until one of `operators` holds the Lease; returns its name.
fn one_leader(kube: &Kube, operators: &mut [&mut Operator]) -> String {
    let names: Vec<String> = operators.iter().map(|o| o.name.clone()).collect();
    eventually("one operator holds the lease", LEASE_TAKEOVER, || {
        lease_holder(kube).is_some_and(|h| names.contains(&h))
    });
    for operator in operators.iter_mut() {
        assert!(
            operator.running(),
            "operator {} died:\n{}",
            operator.name,
            operator.tail()
        );
    }
    lease_holder(kube).expect("a holder")
}

fn cell_json(kube: &Kube, name: &str) -> Value {
    kube.json(&["get", "cell", name])
}

fn condition(object: &Value, type_: &str) -> Option<Value> {
    object["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .cloned()
}

fn is_true(object: &Value, type_: &str) -> bool {
    condition(object, type_).is_some_and(|c| c["status"] == "True")
}

fn patch_cell(kube: &Kube, name: &str, patch: Value) {
    kube.k(&[
        "patch",
        "cell",
        name,
        "--type=merge",
        "-p",
        &patch.to_string(),
    ]);
}

/// Ready, and Ready about the latest spec.
fn ready_now(kube: &Kube, name: &str) -> bool {
    let cell = cell_json(kube, name);
    is_true(&cell, "Ready")
        && cell["status"]["observedGeneration"] == cell["metadata"]["generation"]
}

fn wait_ready(kube: &Kube, name: &str) {
    eventually(
        &format!("cell {name} is Ready for its latest spec"),
        CONVERGE,
        || ready_now(kube, name),
    );
}

fn names(list: &Value) -> Vec<String> {
    let mut names: Vec<String> = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_owned))
        .collect();
    names.sort();
    names
}

fn deployment(kube: &Kube, name: &str) -> Option<Value> {
    kube.get(&["deployment", name, "-n", NAMESPACE])
}

fn create_dev_cell(kube: &Kube, operators: &[&Operator]) {
    let cell = repo("manifests/examples/dev-cell.yaml");
    kube.k(&["apply", "-f", &cell.display().to_string()]);
    let waited = kube.kubectl(&[
        "wait",
        "--for=condition=Ready",
        &format!("cell/{CELL}"),
        "--timeout=5m",
    ]);
    if let Err(e) = waited {
        let tails: Vec<String> = operators.iter().map(|o| o.tail()).collect();
        panic!(
            "{e}\ncell status: {}\noperator logs:\n{}",
            cell_json(kube, CELL)["status"],
            tails.join("\n---\n")
        );
    }
    let cell = cell_json(kube, CELL);
    let status = &cell["status"];
    assert_eq!(
        status["observedGeneration"], cell["metadata"]["generation"],
        "Ready must be about the latest spec"
    );
    assert_eq!(status["namespace"], NAMESPACE);
    let (ready, total) = (&status["services"]["ready"], &status["services"]["total"]);
    assert_eq!(ready, total, "every service of a Ready cell is ready");
    // dev-cell.yaml disables chat: fifteen of the sixteen services.
    assert_eq!(total, 15, "{status}");

    let services = kube.json(&["get", "tsvc", "-n", NAMESPACE]);
    let items = services["items"].as_array().expect("items");
    assert_eq!(items.len(), 15, "one Service each");
    for service in items {
        let name = service["metadata"]["name"].as_str().unwrap_or_default();
        assert!(
            is_true(service, "Ready"),
            "service {name} is not Ready: {}",
            service["status"]
        );
        let deployment = deployment(kube, name).unwrap_or_else(|| panic!("deployment {name}"));
        assert_eq!(
            deployment["status"]["availableReplicas"], deployment["spec"]["replicas"],
            "deployment {name} is fully available through kwok"
        );
    }
    // The builtin datastores' volumes are bound (the control plane's default StorageClass).
    let claims = kube.json(&["get", "pvc", "-n", NAMESPACE]);
    let phases: Vec<&str> = claims["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["status"]["phase"].as_str())
        .collect();
    assert!(
        !phases.is_empty() && phases.iter().all(|p| *p == "Bound"),
        "PVCs: {phases:?}"
    );
    let pods = kube.json(&["get", "pods", "-n", NAMESPACE]);
    let running = pods["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["status"]["phase"] == "Running")
        .count();
    assert!(
        running >= 15,
        "kwok runs the cell's pods: {running} running"
    );

    let events = kube.json(&[
        "get",
        "events",
        "-A",
        "--field-selector",
        &format!("involvedObject.kind=Cell,involvedObject.name={CELL}"),
    ]);
    assert!(
        events["items"].as_array().is_some_and(|e| !e.is_empty()),
        "the operator records Events about the cell"
    );
}

fn printer_columns(kube: &Kube) {
    let cells = kube.k(&["get", "cells"]);
    let header: Vec<&str> = cells
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["NAME", "READY", "SERVICES", "VERSION", "WAVE", "AGE"],
        "{cells}"
    );
    let row: Vec<&str> = cells
        .lines()
        .find(|l| l.starts_with(&format!("{CELL} ")))
        .unwrap_or_else(|| panic!("no row for {CELL}:\n{cells}"))
        .split_whitespace()
        .collect();
    assert_eq!(&row[..5], [CELL, "True", "15/15", "0.1.0", "0"], "{cells}");

    let all = kube.k(&["get", "titan", "-A"]);
    assert!(
        all.contains(&format!("cell.commerce.titan.dev/{CELL}")),
        "{all}"
    );
    assert!(
        all.contains("service.commerce.titan.dev/flashsale"),
        "{all}"
    );
    let header = all
        .lines()
        .find(|l| l.contains("SERVICE") && l.contains("REPLICAS"))
        .unwrap_or_else(|| panic!("no Service columns:\n{all}"));
    assert_eq!(
        header.split_whitespace().collect::<Vec<_>>(),
        [
            "NAMESPACE",
            "NAME",
            "SERVICE",
            "READY",
            "REPLICAS",
            "IMAGE",
            "AGE"
        ],
        "{all}"
    );
}

fn replicas(kube: &Kube, name: &str) -> Option<i64> {
    deployment(kube, name).and_then(|d| d["spec"]["replicas"].as_i64())
}

fn scale_through_the_subresource(kube: &Kube) {
    kube.k(&["scale", "tsvc/coupon", "-n", NAMESPACE, "--replicas=3"]);
    eventually("the coupon Deployment has 3 replicas", CONVERGE, || {
        replicas(kube, "coupon") == Some(3)
    });
    kube.k(&[
        "wait",
        "--for=jsonpath={.status.readyReplicas}=3",
        "tsvc/coupon",
        "-n",
        NAMESPACE,
        "--timeout=3m",
    ]);
    // The fraud service autoscales: its HPA must be able to read and write its target's scale.
    let hpa = kube.json(&["get", "hpa", "fraud", "-n", NAMESPACE]);
    assert_eq!(
        hpa["spec"]["scaleTargetRef"],
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "fraud"})
    );
    eventually("the fraud HPA can scale its target", CONVERGE, || {
        kube.get(&["hpa", "fraud", "-n", NAMESPACE])
            .is_some_and(|h| is_true(&h, "AbleToScale"))
    });
    let min = hpa["spec"]["minReplicas"].as_i64().expect("minReplicas");
    eventually(
        "the fraud Deployment runs at least minReplicas",
        CONVERGE,
        || replicas(kube, "fraud").is_some_and(|r| r >= min),
    );
}

fn drift_is_repaired(kube: &Kube) {
    let image = |kube: &Kube| {
        deployment(kube, "coupon")
            .map(|d| d["spec"]["template"]["spec"]["containers"][0]["image"].clone())
    };
    let original = image(kube).expect("coupon image");
    let container = deployment(kube, "coupon").expect("coupon")["spec"]["template"]["spec"]
        ["containers"][0]["name"]
        .as_str()
        .expect("container name")
        .to_owned();
    kube.k(&[
        "set",
        "image",
        "deployment/coupon",
        "-n",
        NAMESPACE,
        &format!("{container}=example.invalid/drifted:1"),
    ]);
    eventually("the hand-edited image is put back", CONVERGE, || {
        image(kube).as_ref() == Some(&original)
    });

    let config = kube.json(&["get", "configmap", "coupon-config", "-n", NAMESPACE]);
    let (key, value) = config["data"]
        .as_object()
        .and_then(|d| d.iter().next())
        .map(|(k, v)| (k.clone(), v.clone()))
        .expect("coupon-config has a key");
    kube.k(&[
        "patch",
        "configmap",
        "coupon-config",
        "-n",
        NAMESPACE,
        "--type=merge",
        "-p",
        &json!({"data": {&key: "hand-edited"}}).to_string(),
    ]);
    eventually(
        "the hand-edited ConfigMap key is put back",
        CONVERGE,
        || {
            kube.get(&["configmap", "coupon-config", "-n", NAMESPACE])
                .is_some_and(|c| c["data"][&key] == value)
        },
    );

    let policies = names(&kube.json(&["get", "networkpolicy", "-n", NAMESPACE]));
    let policy = policies
        .first()
        .expect("the cell has NetworkPolicies")
        .clone();
    kube.k(&["delete", "networkpolicy", &policy, "-n", NAMESPACE]);
    eventually("the deleted NetworkPolicy is re-created", CONVERGE, || {
        kube.get(&["networkpolicy", &policy, "-n", NAMESPACE])
            .is_some()
    });

    let before = kube.json(&["get", "service", "coupon", "-n", NAMESPACE]);
    kube.k(&["delete", "service", "coupon", "-n", NAMESPACE]);
    eventually("the deleted Service is re-created", CONVERGE, || {
        kube.get(&["service", "coupon", "-n", NAMESPACE])
            .is_some_and(|s| s["metadata"]["uid"] != before["metadata"]["uid"])
    });
    wait_ready(kube, CELL);
}

/// Write counts on what the operator writes: its own kinds (with status) and every child kind.
/// Other writers of these kinds (controllers updating status subresources of built-in kinds)
/// are left out by counting only the main resource of built-in kinds.
fn operator_writes(kube: &Kube) -> std::collections::BTreeMap<String, f64> {
    const CHILD_KINDS: [&str; 12] = [
        "namespaces",
        "secrets",
        "configmaps",
        "services",
        "deployments",
        "statefulsets",
        "networkpolicies",
        "resourcequotas",
        "limitranges",
        "poddisruptionbudgets",
        "horizontalpodautoscalers",
        "cells",
    ];
    kube.write_counts()
        .into_iter()
        .filter(|(key, _)| {
            let resource = key.split_once(' ').map(|(_, r)| r).unwrap_or_default();
            CHILD_KINDS.contains(&resource)
                || resource == "cells/status"
                || resource == "services/status"
        })
        .collect()
}

fn an_unchanged_cell_makes_no_writes(kube: &Kube) {
    // Let the rounds the last changes triggered finish first.
    let mut before = operator_writes(kube);
    eventually("the operator has gone quiet", CONVERGE, || {
        std::thread::sleep(Duration::from_secs(5));
        let now = operator_writes(kube);
        let quiet = now == before;
        before = now;
        quiet
    });
    std::thread::sleep(Duration::from_secs(60));
    let after = operator_writes(kube);
    let changed: Vec<String> = after
        .iter()
        .filter(|(k, v)| before.get(*k) != Some(v))
        .map(|(k, v)| format!("{k}: {} -> {v}", before.get(k).copied().unwrap_or(0.0)))
        .collect();
    assert!(
        changed.is_empty(),
        "an idle cell made writes in 60 s: {changed:?}"
    );
}

fn a_round_reads_its_children_from_the_watch_caches(kube: &Kube) {
    // What a round reads from the caches (`operator/src/cache.rs`); Secrets and volumes it
    // always LISTs, and the volumes last, so their LIST marks the end of the round's reads.
    const CACHED: [&str; 6] = [
        "LIST statefulsets",
        "LIST deployments",
        "LIST configmaps",
        "LIST networkpolicies",
        "LIST resourcequotas",
        "LIST limitranges",
    ];
    let count = |lists: &std::collections::BTreeMap<String, f64>, key: &str| {
        lists.get(key).copied().unwrap_or(0.0)
    };
    let before = kube.list_counts();
    // Any change to the Cell runs a round; an annotation changes nothing it builds.
    kube.k(&[
        "annotate",
        "cell",
        CELL,
        "--overwrite",
        "e2e.titan.dev/poke=1",
    ]);
    let mut after = before.clone();
    eventually(
        "the poked cell's round has read its volumes",
        CONVERGE,
        || {
            after = kube.list_counts();
            count(&after, "LIST persistentvolumeclaims")
                > count(&before, "LIST persistentvolumeclaims")
        },
    );
    let listed: Vec<String> = CACHED
        .iter()
        .filter(|key| count(&after, key) != count(&before, key))
        .map(|key| format!("{key}: {} -> {}", count(&before, key), count(&after, key)))
        .collect();
    assert!(
        listed.is_empty(),
        "a round listed what its watch caches hold: {listed:?}"
    );
}

fn pause_and_resume(kube: &Kube) {
    patch_cell(
        kube,
        CELL,
        json!({"spec": {"operation": {"reconciliationPaused": true}}}),
    );
    eventually("the cell says it is paused", CONVERGE, || {
        is_true(&cell_json(kube, CELL), "ReconciliationPaused")
    });
    let before = replicas(kube, "flashsale");
    patch_cell(
        kube,
        CELL,
        json!({"spec": {"services": {"flashsale": {"replicas": 3}}}}),
    );
    // A paused cell never claims Ready for a spec it did not apply, nor advances
    // observedGeneration past what it applied: it says which generation waits.
    eventually(
        "the paused cell says its new generation is not applied",
        CONVERGE,
        || {
            let cell = cell_json(kube, CELL);
            let generation = cell["metadata"]["generation"].as_i64();
            let ready = condition(&cell, "Ready").unwrap_or_default();
            ready["reason"] == "SpecNotApplied"
                && generation.is_some_and(|g| {
                    ready["message"].as_str().is_some_and(|m| {
                        m.starts_with(&format!(
                            "reconciliation is paused: generation {g} of the spec is not applied"
                        ))
                    }) && cell["status"]["observedGeneration"].as_i64() < Some(g)
                })
        },
    );
    assert_eq!(
        replicas(kube, "flashsale"),
        before,
        "a paused cell must not touch its workloads"
    );
    patch_cell(
        kube,
        CELL,
        json!({"spec": {"operation": {"reconciliationPaused": false}}}),
    );
    eventually("the resumed cell applies the change", CONVERGE, || {
        replicas(kube, "flashsale") == Some(3)
    });
    wait_ready(kube, CELL);
}

fn stop_and_start(kube: &Kube) {
    patch_cell(
        kube,
        CELL,
        json!({"spec": {"operation": {"stopped": true}}}),
    );
    eventually("the cell says it is stopped", CONVERGE, || {
        is_true(&cell_json(kube, CELL), "Stopped")
    });
    eventually(
        "every workload of the stopped cell is scaled to zero",
        CONVERGE,
        || {
            let all = kube.json(&["get", "deployments,statefulsets", "-n", NAMESPACE]);
            all["items"].as_array().is_some_and(|items| {
                !items.is_empty() && items.iter().all(|w| w["spec"]["replicas"] == 0)
            })
        },
    );
    patch_cell(
        kube,
        CELL,
        json!({"spec": {"operation": {"stopped": false}}}),
    );
    wait_ready(kube, CELL);
    assert!(
        !is_true(&cell_json(kube, CELL), "Stopped"),
        "a started cell is not Stopped"
    );
}

fn a_disabled_service_is_pruned(kube: &Kube) {
    patch_cell(
        kube,
        CELL,
        json!({"spec": {"services": {"coupon": {"enabled": false}}}}),
    );
    eventually(
        "the disabled service and its Deployment are pruned",
        CONVERGE,
        || {
            kube.get(&["tsvc", "coupon", "-n", NAMESPACE]).is_none()
                && deployment(kube, "coupon").is_none()
        },
    );
    wait_ready(kube, CELL);
    assert_eq!(cell_json(kube, CELL)["status"]["services"]["total"], 14);
}

/// The image of the first container of a pod template.
fn template_image(object: &Value) -> &Value {
    &object["spec"]["template"]["spec"]["containers"][0]["image"]
}

fn migrations_run_before_the_pods(kube: &Kube) {
    let cell = cell_json(kube, CELL);
    assert!(is_true(&cell, "Migrated"), "{}", cell["status"]);
    let services = names(&kube.json(&["get", "tsvc", "-n", NAMESPACE]));
    let jobs_of = |service: &str| -> Vec<Value> {
        let jobs = kube.json(&[
            "get",
            "jobs",
            "-n",
            NAMESPACE,
            "-l",
            &format!("commerce.titan.dev/service={service}"),
        ]);
        jobs["items"].as_array().cloned().unwrap_or_default()
    };
    for service in &services {
        let tsvc = kube.json(&["get", "tsvc", service, "-n", NAMESPACE]);
        assert!(is_true(&tsvc, "Migrated"), "{service}: {}", tsvc["status"]);
        let jobs = jobs_of(service);
        assert_eq!(jobs.len(), 1, "{service}: one migration Job");
        assert_eq!(jobs[0]["status"]["succeeded"], 1, "{service}: {}", jobs[0]);
        let deployment = deployment(kube, service).unwrap_or_else(|| panic!("{service}"));
        assert_eq!(template_image(&jobs[0]), template_image(&deployment));
    }

    patch_cell(kube, CELL, json!({"spec": {"version": "0.1.1"}}));
    let upgraded = "ghcr.io/titan/titan:0.1.1";
    eventually(
        "every service runs the new image after its new migration",
        CONVERGE,
        || {
            services.iter().all(|service| {
                deployment(kube, service).is_some_and(|d| template_image(&d) == upgraded)
                    && jobs_of(service).len() == 1
            })
        },
    );
    wait_ready(kube, CELL);
    for service in &services {
        let jobs = jobs_of(service);
        assert_eq!(
            template_image(&jobs[0]),
            upgraded,
            "{service}: the old Job is pruned"
        );
        let completed = jobs[0]["status"]["completionTime"]
            .as_str()
            .unwrap_or_else(|| panic!("{service}: the new Job completed: {}", jobs[0]))
            .to_owned();
        // The Deployment's ReplicaSet of the new image was made after the Job completed:
        // the new pods waited for the migrations.
        let sets = kube.json(&[
            "get",
            "replicasets",
            "-n",
            NAMESPACE,
            "-l",
            &format!("commerce.titan.dev/service={service}"),
        ]);
        let created = sets["items"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|rs| template_image(rs) == upgraded)
            .and_then(|rs| rs["metadata"]["creationTimestamp"].as_str())
            .unwrap_or_else(|| panic!("{service}: a ReplicaSet of the new image"))
            .to_owned();
        // RFC 3339 timestamps of one format and zone compare as strings.
        assert!(
            completed <= created,
            "{service}: migrated at {completed}, new pods from {created}"
        );
    }
    assert!(is_true(&cell_json(kube, CELL), "Migrated"));
}

/// Objects of the cell's namespace by kind and name, to prove no duplicates appear.
fn inventory(kube: &Kube) -> Vec<String> {
    let all = kube.json(&[
        "get",
        "deployments,statefulsets,services,configmaps,networkpolicies,services.commerce.titan.dev",
        "-n",
        NAMESPACE,
    ]);
    let mut items: Vec<String> = all["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|o| {
            format!(
                "{}/{}",
                o["kind"].as_str().unwrap_or(""),
                o["metadata"]["name"].as_str().unwrap_or("")
            )
        })
        .collect();
    items.sort();
    items
}

fn leader_loss_and_restarts(
    kube: &Kube,
    sa: &std::path::Path,
    leader: &mut Operator,
    standby: &mut Operator,
) {
    assert_eq!(lease_holder(kube).as_deref(), Some(leader.name.as_str()));
    let objects = inventory(kube);
    leader.kill();
    eventually("the standby takes the lease over", LEASE_TAKEOVER, || {
        assert!(standby.running(), "the standby died:\n{}", standby.tail());
        lease_holder(kube).as_deref() == Some(standby.name.as_str())
    });
    patch_cell(
        kube,
        CELL,
        json!({"spec": {"services": {"flashsale": {"replicas": 1}}}}),
    );
    eventually("the new leader converges the change", CONVERGE, || {
        replicas(kube, "flashsale") == Some(1)
    });
    wait_ready(kube, CELL);

    // SIGKILL in the middle of a round (a change just made), then start again: the restarted
    // replica converges and creates nothing twice.
    patch_cell(
        kube,
        CELL,
        json!({"spec": {"services": {"flashsale": {"replicas": 2}}}}),
    );
    standby.kill();
    *leader = Operator::start(kube, sa, &format!("{}-restarted", leader.name));
    eventually("the restarted operator leads", LEASE_TAKEOVER * 2, || {
        lease_holder(kube).as_deref() == Some(leader.name.as_str())
    });
    eventually("the interrupted change converges", CONVERGE, || {
        replicas(kube, "flashsale") == Some(2)
    });
    wait_ready(kube, CELL);
    assert_eq!(inventory(kube), objects, "no object is duplicated or lost");

    // The apiserver goes away under the running operator and comes back.
    kube.restart_apiserver();
    patch_cell(
        kube,
        CELL,
        json!({"spec": {"services": {"flashsale": {"replicas": 3}}}}),
    );
    eventually(
        "a change after the apiserver restart is reconciled",
        CONVERGE,
        || replicas(kube, "flashsale") == Some(3),
    );
    wait_ready(kube, CELL);
    assert!(
        leader.running(),
        "the operator survives an apiserver restart:\n{}",
        leader.tail()
    );
    // The standby's slot: the leader keeps running; the killed one is not needed again.
    std::mem::swap(leader, standby);
}

/// Where the suite adds a field of a "newer" Cell schema.
const FUTURE_FIELD: &str = "/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties/datastores/properties/futureStore";

fn a_malformed_cell_can_be_deleted(kube: &Kube) {
    let name = "broken";
    let file = kube.dir.join("broken-cell.yaml");
    std::fs::write(
        &file,
        format!(
            "apiVersion: commerce.titan.dev/v1alpha1\nkind: Cell\nmetadata:\n  name: {name}\n\
             spec:\n  version: \"0.1.0\"\n  deletionPolicy: Delete\n"
        ),
    )
    .expect("write the cell");
    kube.k(&["apply", "-f", &file.display().to_string()]);
    eventually(
        "the operator has put its finalizer on the cell and finished a round",
        CONVERGE,
        || {
            let cell = cell_json(kube, name);
            cell["metadata"]["finalizers"]
                .as_array()
                .is_some_and(|f| f.iter().any(|f| f == "commerce.titan.dev/teardown"))
                && cell["status"]["observedGeneration"] == cell["metadata"]["generation"]
                && is_true(&cell, "DatastoresReady")
        },
    );
    // A newer CRD (an operator upgrade rolled back, say) lets the Cell carry a field this
    // operator's types refuse: the API server stores it, the operator cannot read the spec.
    let crd = "crd/cells.commerce.titan.dev";
    kube.k(&[
        "patch",
        crd,
        "--type=json",
        "-p",
        &json!([{
            "op": "add",
            "path": FUTURE_FIELD,
            "value": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
        }])
        .to_string(),
    ]);
    // Edited until the operator has seen the new field: while the API server swaps its
    // storage for the changed CRD, a watch may still get the object pruned to the old schema.
    let mut edit = 0;
    eventually("the operator reports the malformed cell", CONVERGE, || {
        edit += 1;
        let stored = kube
            .kubectl(&[
                "patch",
                "cell",
                name,
                "--type=merge",
                "-p",
                &json!({"spec": {"datastores": {"futureStore": {"edit": edit}}}}).to_string(),
            ])
            .is_ok()
            && cell_json(kube, name)["spec"]["datastores"]["futureStore"]["edit"] == edit;
        let events = kube.json(&[
            "get",
            "events",
            "-A",
            "--field-selector",
            &format!("involvedObject.kind=Cell,involvedObject.name={name},reason=InvalidObject"),
        ]);
        stored && events["items"].as_array().is_some_and(|e| !e.is_empty())
    });
    kube.k(&["delete", "cell", name, "--wait=true", "--timeout=3m"]);
    eventually("the malformed cell's namespace is gone", CONVERGE, || {
        kube.get(&["namespace", &format!("titan-{name}")]).is_none()
    });
    // The CRD as the chart installed it, for the rest of the suite.
    kube.k(&[
        "patch",
        crd,
        "--type=json",
        "-p",
        &json!([{"op": "remove", "path": FUTURE_FIELD}]).to_string(),
    ]);
}

fn retain_keeps_data_and_delete_removes_it(kube: &Kube) {
    patch_cell(kube, CELL, json!({"spec": {"deletionPolicy": "Retain"}}));
    wait_ready(kube, CELL);
    let claims = names(&kube.json(&["get", "pvc", "-n", NAMESPACE]));
    assert!(!claims.is_empty(), "the builtin datastores have volumes");
    let secret = format!("{CELL}-credentials");
    let credentials = kube.json(&["get", "secret", &secret, "-n", NAMESPACE]);
    kube.k(&["delete", "cell", CELL, "--wait=true", "--timeout=5m"]);
    assert_eq!(
        names(&kube.json(&["get", "pvc", "-n", NAMESPACE])),
        claims,
        "Retain keeps every PVC"
    );
    let kept = kube.json(&["get", "secret", &secret, "-n", NAMESPACE]);
    assert_eq!(
        kept["data"], credentials["data"],
        "Retain keeps the credentials"
    );

    // A re-created Cell adopts the retained data: same claims, same passwords.
    kube.k(&[
        "apply",
        "-f",
        &repo("manifests/examples/dev-cell.yaml")
            .display()
            .to_string(),
    ]);
    wait_ready(kube, CELL);
    assert_eq!(names(&kube.json(&["get", "pvc", "-n", NAMESPACE])), claims);
    let adopted = kube.json(&["get", "secret", &secret, "-n", NAMESPACE]);
    assert_eq!(
        adopted["data"], credentials["data"],
        "the credentials are adopted, not minted"
    );

    // dev-cell.yaml says Delete: everything goes, through the garbage collector.
    kube.k(&["delete", "cell", CELL, "--wait=true", "--timeout=5m"]);
    eventually(
        "the cell's namespace and everything in it are gone",
        CONVERGE,
        || kube.get(&["namespace", NAMESPACE]).is_none(),
    );
}

/// Kubernetes stops a pod with SIGTERM: the leader exits cleanly within the chart's
/// termination grace and releases the Lease, so the next leader need not wait for it to expire.
fn sigterm_releases_the_lease(kube: &Kube, mut leader: Operator) {
    assert_eq!(lease_holder(kube).as_deref(), Some(leader.name.as_str()));
    let took = leader.terminate(Duration::from_secs(25));
    eprintln!("  ok: the leader exited {took:?} after SIGTERM");
    assert_eq!(
        lease_holder(kube),
        None,
        "a stopped leader releases the Lease"
    );
}

fn install_from_manifests(kube: &Kube) {
    kube.helm(&[
        "uninstall",
        "titan-operator",
        "--namespace",
        OPERATOR_NAMESPACE,
        "--wait",
    ]);
    assert!(
        kube.get(&["crd", "cells.commerce.titan.dev"]).is_some(),
        "helm uninstall keeps the CRDs (every Cell would go with them)"
    );
    kube.k(&[
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        &repo("manifests/install.yaml").display().to_string(),
    ]);
    kube.k(&[
        "rollout",
        "status",
        "deployment/titan-operator",
        "-n",
        OPERATOR_NAMESPACE,
        "--timeout=3m",
    ]);
    let sa = kube.service_account_kubeconfig(OPERATOR_NAMESPACE, "titan-operator");
    let operator = Operator::start(kube, &sa, "operator-manifests");
    let cell = "manifests";
    let yaml = format!(
        "apiVersion: commerce.titan.dev/v1alpha1\nkind: Cell\nmetadata:\n  name: {cell}\nspec:\n  \
         version: \"0.1.0\"\n  deletionPolicy: Delete\n  services:\n    chat: {{enabled: false}}\n"
    );
    let file = kube.dir.join("manifests-cell.yaml");
    std::fs::write(&file, yaml).expect("write the cell");
    kube.k(&["apply", "-f", &file.display().to_string()]);
    eventually(
        "the cell of the manifests-installed operator is Ready",
        CONVERGE,
        || ready_now(kube, cell),
    );
    kube.k(&["delete", "cell", cell, "--wait=true", "--timeout=5m"]);
    drop(operator);
}

/// Waits until the cell router's table, which the operator keeps under the chart's
/// ServiceAccount, lists exactly the dev cell at a version of at least `min_version`; returns
/// that version.
fn the_router_table_lists(kube: &Kube, min_version: u64) -> u64 {
    let table = || {
        let map = kube.get(&["-n", OPERATOR_NAMESPACE, "configmap", "titan-router-table"])?;
        serde_json::from_str::<Value>(map["data"]["table.json"].as_str()?).ok()
    };
    eventually(
        &format!("the router table to list only {CELL} at version {min_version} or later"),
        CONVERGE,
        || {
            table().is_some_and(|t| {
                t["cells"] == json!([CELL])
                    && t["buckets"] == json!(16_384)
                    && t["version"].as_u64().is_some_and(|v| v >= min_version)
            })
        },
    );
    table()
        .and_then(|t| t["version"].as_u64())
        .expect("the table just read")
}
