//! `kubectl titan` against the real API server and operator, on the Ready dev cell: kubectl
//! finds the plugin on PATH; `status` (table and JSON, plain when piped); `scale` of a service
//! the Cell leaves alone, and the refusals where the Cell or the autoscaler owns replicas;
//! `pause`/`stop`/`start`/`resume` as server-side applies that keep each other's fields, a
//! real stop and start waited for with `wait`; a switch a manifest sets is refused; absent
//! cells refused; `credentials` shows values only with `--reveal`; `render` prints what
//! `titan-operator render` prints, refusals included. The cell is left Ready and resumed.

use std::{path::PathBuf, process::Command};

use serde_json::{Value, json};

use crate::{
    CELL, CONVERGE, NAMESPACE, cell_json,
    harness::{Kube, eventually},
    is_true, ready_now, repo,
};

/// What a run of `kubectl titan ...` printed.
#[derive(Debug)]
struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// Runs `kubectl titan <args>` as a user would: kubectl finds `kubectl-titan` on PATH, with
/// the admin kubeconfig in KUBECONFIG (kubectl hands no flags of its own to a plugin).
fn titan(kube: &Kube, args: &[&str]) -> Run {
    eprintln!("$ kubectl titan {}", args.join(" "));
    let output = Command::new(kube.bin("kubectl"))
        .arg("titan")
        .args(args)
        .env("KUBECONFIG", &kube.kubeconfig)
        .env("PATH", plugin_path())
        .output()
        .unwrap_or_else(|e| panic!("run kubectl titan: {e}"));
    Run {
        ok: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// `kubectl titan <args>` that must succeed: its stdout.
fn ok(kube: &Kube, args: &[&str]) -> String {
    let run = titan(kube, args);
    assert!(
        run.ok,
        "kubectl titan {} failed: {}",
        args.join(" "),
        run.stderr
    );
    run.stdout
}

/// `kubectl titan <args>` that must fail: its stderr.
fn refused(kube: &Kube, args: &[&str]) -> String {
    let run = titan(kube, args);
    assert!(
        !run.ok,
        "kubectl titan {} succeeded: {}",
        args.join(" "),
        run.stdout
    );
    run.stderr
}

/// PATH with the freshly built plugin first.
fn plugin_path() -> String {
    let binary = titan_e2e::process::workspace_binary("kubectl-titan", "kubectl-titan", false);
    let dir = binary.parent().map(PathBuf::from).unwrap_or_default();
    format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

fn operation(kube: &Kube) -> Value {
    cell_json(kube, CELL)["spec"]["operation"].clone()
}

fn service_replicas(kube: &Kube, name: &str) -> Value {
    kube.json(&["get", "tsvc", name, "-n", NAMESPACE])["spec"]["replicas"].clone()
}

/// The phase `kubectl titan status CELL -o json` reports.
fn phase(kube: &Kube) -> String {
    let report: Value = serde_json::from_str(&ok(kube, &["status", CELL, "-o", "json"]))
        .unwrap_or_else(|e| panic!("status -o json is not JSON: {e}"));
    report["phase"].as_str().unwrap_or_default().to_owned()
}

pub fn the_plugin_inspects_and_operates_the_cell(kube: &Kube) {
    let plugins = Command::new(kube.bin("kubectl"))
        .args(["plugin", "list", "--name-only"])
        .env("PATH", plugin_path())
        .output()
        .expect("kubectl plugin list");
    assert!(
        String::from_utf8_lossy(&plugins.stdout)
            .lines()
            .any(|l| l == "kubectl-titan"),
        "kubectl does not find the plugin: {}",
        String::from_utf8_lossy(&plugins.stderr)
    );

    status_shows_the_ready_cell(kube);
    absent_cells_are_refused(kube);
    scale_sets_replicas_the_cell_leaves_alone(kube);
    switches_keep_each_other_and_stop_for_real(kube);
    a_switch_a_manifest_sets_is_refused(kube);
    credentials_need_reveal_for_values(kube);
    render_is_the_operators(kube);
    assert!(
        ready_now(kube, CELL),
        "the plugin's phase leaves the cell Ready"
    );
}

fn status_shows_the_ready_cell(kube: &Kube) {
    let table = ok(kube, &["status"]);
    assert!(
        !table.contains('\u{1b}'),
        "piped output has no colour: {table:?}"
    );
    let row: Vec<&str> = table
        .lines()
        .find(|l| l.starts_with(&format!("{CELL} ")))
        .unwrap_or_else(|| panic!("no row for {CELL}:\n{table}"))
        .split_whitespace()
        .collect();
    assert_eq!(
        row,
        [
            CELL,
            "Ready",
            "AllServicesReady",
            "15/15",
            "0.1.0",
            "0",
            NAMESPACE
        ],
        "{table}"
    );

    let report: Value =
        serde_json::from_str(&ok(kube, &["status", CELL, "-o", "json"])).expect("JSON");
    assert_eq!(report["phase"], "Ready");
    assert_eq!(report["version"], "0.1.0");
    assert_eq!(report["wantedVersion"], "0.1.0");
    let services = report["services"].as_array().expect("services");
    assert_eq!(services.len(), 15, "{report}");
    for service in services {
        assert_eq!(service["ready"], true, "{service}");
        assert_eq!(
            service["endpoint"],
            format!(
                "{}.{NAMESPACE}.svc:50051",
                service["name"].as_str().unwrap_or_default()
            )
        );
    }
    let flashsale = services
        .iter()
        .find(|s| s["name"] == "flashsale")
        .expect("flashsale");
    assert_eq!(
        (&flashsale["readyReplicas"], &flashsale["desiredReplicas"]),
        (&json!(2), &json!(2))
    );
    let stores: Vec<(&str, &Value)> = report["datastores"]
        .as_array()
        .expect("datastores")
        .iter()
        .map(|d| (d["name"].as_str().unwrap_or_default(), &d["ready"]))
        .collect();
    assert_eq!(
        stores,
        [
            ("postgres", &json!(true)),
            ("redis", &json!(true)),
            ("clickhouse", &json!(true))
        ]
    );
    let media: Vec<&str> = report["media"]
        .as_array()
        .expect("media")
        .iter()
        .filter(|m| m["ready"] == true)
        .filter_map(|m| m["name"].as_str())
        .collect();
    assert_eq!(media, ["turn", "rtmp"]);
    assert_eq!(report["migrations"]["reason"], "Migrated");

    let text = ok(kube, &["status", CELL]);
    assert!(
        text.starts_with("Cell dev  Ready (AllServicesReady)\n"),
        "{text}"
    );
    assert!(text.contains("\nServices 15/15 ready\n"), "{text}");
    let yaml = ok(kube, &["status", CELL, "-o", "yaml"]);
    assert!(yaml.contains("\nphase: Ready\n"), "{yaml}");
}

fn absent_cells_are_refused(kube: &Kube) {
    for args in [
        &["status", "nope"][..],
        &["pause", "nope"],
        &["scale", "nope", "coupon", "2"],
        &["credentials", "nope"],
        &["wait", "nope", "--for", "ready", "--timeout", "5s"],
    ] {
        let stderr = refused(kube, args);
        assert_eq!(
            stderr.trim(),
            "kubectl titan: cell nope does not exist (`kubectl titan status` lists the cells)",
            "{args:?}"
        );
    }
    assert!(kube.get(&["cell", "nope"]).is_none(), "nothing was created");
}

fn scale_sets_replicas_the_cell_leaves_alone(kube: &Kube) {
    assert_eq!(
        refused(kube, &["scale", CELL, "flashsale", "5"]).trim(),
        "kubectl titan: refused: cell dev sets spec.services.flashsale.replicas to 2: the Cell owns the field and the operator would put it back; change it in the Cell (kubectl edit cell dev) instead"
    );
    assert_eq!(service_replicas(kube, "flashsale"), json!(2));
    assert_eq!(
        refused(kube, &["scale", CELL, "fraud", "3"]).trim(),
        "kubectl titan: refused: service fraud of cell dev autoscales between 1 and 4 replicas (spec.services.fraud.autoscaling of the Cell): the autoscaler owns replicas; change minReplicas/maxReplicas there instead"
    );
    // dev-cell.yaml disables chat: the cell has no such Service.
    let stderr = refused(kube, &["scale", CELL, "chat", "1"]);
    assert!(
        stderr.starts_with(
            "kubectl titan: cell dev has no service chat (its services: abtesting, analytics,"
        ),
        "{stderr}"
    );

    let done = ok(kube, &["scale", CELL, "coupon", "2"]);
    assert_eq!(
        done,
        "service coupon of cell dev scaled to 2 (spec.replicas, field manager kubectl-titan)\n"
    );
    let coupon = kube.json(&[
        "get",
        "tsvc",
        "coupon",
        "-n",
        NAMESPACE,
        "--show-managed-fields",
    ]);
    assert_eq!(coupon["spec"]["replicas"], 2);
    let ours: Vec<&Value> = coupon["metadata"]["managedFields"]
        .as_array()
        .expect("managedFields")
        .iter()
        .filter(|m| m["manager"] == "kubectl-titan")
        .collect();
    assert_eq!(ours.len(), 1, "{coupon}");
    assert_eq!(ours[0]["operation"], "Apply");
    assert_eq!(ours[0]["fieldsV1"], json!({"f:spec": {"f:replicas": {}}}));
    eventually(
        "the coupon Deployment runs 2 ready replicas",
        CONVERGE,
        || {
            kube.get(&["deployment", "coupon", "-n", NAMESPACE])
                .is_some_and(|d| d["spec"]["replicas"] == 2 && d["status"]["readyReplicas"] == 2)
        },
    );
    ok(kube, &["wait", CELL, "--for", "ready", "--timeout", "3m"]);
}

fn switches_keep_each_other_and_stop_for_real(kube: &Kube) {
    let paused = ok(kube, &["pause", CELL]);
    assert!(paused.starts_with("cell dev paused: "), "{paused}");
    eventually("the cell says it is paused", CONVERGE, || {
        is_true(&cell_json(kube, CELL), "ReconciliationPaused")
    });
    assert_eq!(phase(kube), "Paused");
    // Stopping a paused cell is recorded and said to wait; the pause stays (the plugin
    // re-applies the switch it owns).
    let stopped = ok(kube, &["stop", CELL]);
    assert!(
        stopped.ends_with(
            "note: cell dev is paused, so nothing happens until `kubectl titan resume dev`\n"
        ),
        "{stopped}"
    );
    assert_eq!(
        operation(kube),
        json!({"reconciliationPaused": true, "stopped": true})
    );
    ok(kube, &["start", CELL]);
    assert_eq!(
        operation(kube),
        json!({"reconciliationPaused": true, "stopped": false})
    );
    ok(kube, &["resume", CELL]);
    assert_eq!(
        operation(kube),
        json!({"reconciliationPaused": false, "stopped": false})
    );
    ok(kube, &["wait", CELL, "--for", "ready", "--timeout", "3m"]);

    // A real stop: every Deployment at zero, the phase Stopped; then start and wait.
    ok(kube, &["stop", CELL]);
    eventually(
        "every Deployment of the stopped cell is at zero",
        CONVERGE,
        || {
            kube.json(&["get", "deployments", "-n", NAMESPACE])["items"]
                .as_array()
                .is_some_and(|items| {
                    !items.is_empty() && items.iter().all(|d| d["spec"]["replicas"] == 0)
                })
        },
    );
    assert_eq!(phase(kube), "Stopped");
    let timed_out = refused(kube, &["wait", CELL, "--for", "ready", "--timeout", "3s"]);
    assert!(
        timed_out.contains("kubectl titan: cell dev is not Ready after 3s: Stopped (Stopped): "),
        "{timed_out}"
    );
    ok(kube, &["start", CELL]);
    let waited = titan(
        kube,
        &["wait", CELL, "--for", "version=0.1.0", "--timeout", "3m"],
    );
    assert!(waited.ok, "{}", waited.stderr);
    assert!(
        waited
            .stdout
            .starts_with("cell dev is Ready at version 0.1.0: 15/15 services ready (after "),
        "{}",
        waited.stdout
    );
    // Progress went to stderr, one line per change when not on a terminal.
    assert!(waited.stderr.contains("] waiting: "), "{}", waited.stderr);
    assert!(!waited.stderr.contains('\u{1b}'), "{:?}", waited.stderr);
}

fn a_switch_a_manifest_sets_is_refused(kube: &Kube) {
    // A GitOps tool takes the cell's manifest over (server-side, its own field manager) and
    // keeps the cell running through it.
    let example = std::fs::read_to_string(repo("manifests/examples/dev-cell.yaml"))
        .expect("read dev-cell.yaml");
    let apply = |manifest: &str| {
        let file = kube.dir.join("gitops-cell.yaml");
        std::fs::write(&file, manifest).expect("write the manifest");
        kube.k(&[
            "apply",
            "--server-side",
            "--field-manager=gitops",
            "-f",
            &file.display().to_string(),
        ]);
    };
    let running = example.replacen("\nspec:\n", "\nspec:\n  operation: { stopped: false }\n", 1);
    assert_ne!(running, example, "dev-cell.yaml has a spec");
    apply(&running);
    assert_eq!(
        refused(kube, &["stop", CELL]).trim(),
        "kubectl titan: refused: spec.operation.stopped of cell dev is false in the manifest server-side applied by field manager \"gitops\": change it in that manifest (its next apply would undo this), or take the field over with --force-conflicts"
    );
    assert_eq!(operation(kube)["stopped"], false);
    // The other switch is not the manifest's.
    ok(kube, &["pause", CELL]);
    ok(kube, &["resume", CELL]);
    // The manifest stops saying anything about the cell's operation.
    apply(&example);
    assert_eq!(
        operation(kube),
        json!({"reconciliationPaused": false, "stopped": false})
    );
    ok(kube, &["wait", CELL, "--for", "ready", "--timeout", "3m"]);
}

fn credentials_need_reveal_for_values(kube: &Kube) {
    // The generated values, decoded by kubectl itself.
    let decoded = kube.k(&[
        "get",
        "secret",
        "dev-credentials",
        "-n",
        NAMESPACE,
        "-o",
        "go-template={{range .data}}{{base64decode .}}{{\"\\n\"}}{{end}}",
    ]);
    let values: Vec<&str> = decoded.lines().collect();
    assert_eq!(values.len(), 5, "{decoded}");

    let hidden = ok(kube, &["credentials", CELL]);
    let hidden_json = ok(kube, &["credentials", CELL, "-o", "json"]);
    for value in &values {
        assert!(
            !hidden.contains(value),
            "a value without --reveal:\n{hidden}"
        );
        assert!(!hidden_json.contains(value), "{hidden_json}");
    }
    for name in ["dev-credentials", "dev-datastores", "dev-auth", "dev-turn"] {
        assert!(
            hidden.contains(&format!("\n{name}  made by titan-operator")),
            "{hidden}"
        );
    }
    assert!(
        hidden.lines().any(|l| l
            .split_whitespace()
            .eq(["auth-hs256-secret", "(32", "bytes)"])),
        "{hidden}"
    );

    let revealed = ok(kube, &["credentials", CELL, "--reveal"]);
    for value in &values {
        assert!(
            revealed.contains(value),
            "--reveal shows every value:\n{revealed}"
        );
    }
}

fn render_is_the_operators(kube: &Kube) {
    let operator = titan_e2e::process::workspace_binary("titan-operator", "titan-operator", false);
    for example in [
        "manifests/examples/dev-cell.yaml",
        "manifests/examples/invalid-cell.yaml",
    ] {
        let file = repo(example).display().to_string();
        let ours = titan(kube, &["render", "-f", &file]);
        let theirs = Command::new(&operator)
            .args(["render", "-f", &file])
            .output()
            .expect("titan-operator render");
        assert_eq!(ours.ok, theirs.status.success(), "{example}");
        assert_eq!(
            ours.stdout,
            String::from_utf8_lossy(&theirs.stdout),
            "{example}"
        );
        assert_eq!(
            ours.stderr.strip_prefix("kubectl titan: "),
            String::from_utf8_lossy(&theirs.stderr).strip_prefix("titan-operator: "),
            "{example}"
        );
    }
}
