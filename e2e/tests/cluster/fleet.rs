//! Fleet waves through the real API server: three one-service cells in waves 0, 1 and 2 of a
//! Fleet with a 5 s bake time. The canary's pods ask for a node no kwok node matches, so it
//! never becomes Ready with the new version: the rollout halts and wave 1 keeps the old one.
//! Fixing the canary and annotating the Fleet with `resumed-at` lets waves 1 and 2 follow.

use std::time::Duration;

use serde_json::{Value, json};

use super::{cell_json, condition, is_true, patch_cell};
use crate::harness::{Kube, eventually};

const FLEET: &str = "e2e-waves";
const CELLS: [&str; 3] = ["wave-0", "wave-1", "wave-2"];
const OLD: &str = "0.1.0";
const NEW: &str = "0.2.0";
/// The one service each cell runs: the fewer pods, the faster three cells converge.
const SERVICE: &str = "pricing";
/// Long enough for a healthy cell on a loaded CI machine to roll a version out on kwok (one
/// took under 10 s), short because the canary's halt waits for all of it.
const READY_TIMEOUT: &str = "30s";
/// Each wave converges in seconds on kwok; three of them, a halt and a resume.
const CONVERGE: Duration = Duration::from_secs(240);

/// The Services every cell of this phase disables: all but [`SERVICE`].
const DISABLED: [&str; 15] = [
    "flashsale",
    "coupon",
    "gamification",
    "campaign",
    "abtesting",
    "fraud",
    "analytics",
    "chat",
    "livestream",
    "videocall",
    "driver",
    "tracking",
    "warehouse",
    "shipping",
    "privacy",
];

fn cell(name: &str, wave: i32, unschedulable: bool) -> Value {
    let mut services: serde_json::Map<String, Value> = DISABLED
        .iter()
        .map(|s| (s.to_string(), json!({ "enabled": false })))
        .collect();
    let mut pricing = json!({ "replicas": 1 });
    if unschedulable {
        pricing["podOverrides"] =
            json!({ "spec": { "nodeSelector": { "titan.dev/no-such-node": "true" } } });
    }
    services.insert(SERVICE.into(), pricing);
    json!({
        "apiVersion": "commerce.titan.dev/v1alpha1",
        "kind": "Cell",
        "metadata": { "name": name },
        "spec": {
            "version": OLD,
            "image": "ghcr.io/titan/titan",
            "deletionPolicy": "Delete",
            "rollout": { "wave": wave, "fleet": FLEET },
            "services": services,
        }
    })
}

fn apply(kube: &Kube, object: &Value) {
    let file = tempfile::Builder::new()
        .suffix(".json")
        .tempfile()
        .expect("temp file");
    std::fs::write(file.path(), object.to_string()).expect("write manifest");
    kube.k(&["apply", "-f", &file.path().display().to_string()]);
}

fn fleet_json(kube: &Kube) -> Value {
    kube.json(&["get", "fleet", FLEET])
}

/// The image of the cell's one Service, as the Cell controller built it.
fn service_image(kube: &Kube, cell: &str) -> Option<String> {
    let service = kube.get(&["tsvc", SERVICE, "-n", &format!("titan-{cell}")])?;
    service["spec"]["image"].as_str().map(str::to_string)
}

fn runs_ready(kube: &Kube, cell: &str, version: &str) -> bool {
    let cell = cell_json(kube, cell);
    is_true(&cell, "Ready")
        && cell["status"]["observedGeneration"] == cell["metadata"]["generation"]
        && cell["status"]["version"] == version
}

/// The phase; leaves nothing behind.
pub fn waves_halt_on_a_failing_canary_and_resume_after_the_fix(kube: &Kube) {
    let start = std::time::Instant::now();
    apply(
        kube,
        &json!({
            "apiVersion": "commerce.titan.dev/v1alpha1",
            "kind": "Fleet",
            "metadata": { "name": FLEET },
            "spec": { "version": NEW, "bakeTime": "5s", "readyTimeout": READY_TIMEOUT }
        }),
    );
    apply(kube, &cell(CELLS[0], 0, true));
    apply(kube, &cell(CELLS[1], 1, false));
    apply(kube, &cell(CELLS[2], 2, false));

    // Waves 1 and 2 run their own version Ready; the canary took the new one and cannot run.
    for name in &CELLS[1..] {
        eventually(&format!("{name} runs {OLD} Ready"), CONVERGE, || {
            runs_ready(kube, name, OLD)
        });
    }
    eventually("the failing canary halts the rollout", CONVERGE, || {
        is_true(&fleet_json(kube), "Halted")
    });
    let fleet = fleet_json(kube);
    let halt = &fleet["status"]["halt"];
    assert_eq!(
        (
            &halt["cell"],
            &halt["wave"],
            &halt["version"],
            &halt["reason"]
        ),
        (
            &json!(CELLS[0]),
            &json!(0),
            &json!(NEW),
            &json!("CellNotReady")
        ),
        "{}",
        fleet["status"]
    );
    assert_eq!(
        condition(&fleet, "Halted").map(|c| c["reason"].clone()),
        Some(json!("CellNotReady"))
    );
    assert_eq!(
        service_image(kube, CELLS[0]).as_deref(),
        Some("ghcr.io/titan/titan:0.2.0")
    );
    // The waiting cells learn of the halt in their next round, which the Fleet's change
    // triggers.
    let waiting = json!({
        "fleet": FLEET,
        "targetVersion": NEW,
        "waitingFor": NEW,
        "reason": format!("rollout halted by cell {} (CellNotReady): see fleet {FLEET}", CELLS[0]),
    });
    eventually(
        "wave 1 says which cell halted the rollout",
        CONVERGE,
        || cell_json(kube, CELLS[1])["status"]["rollout"] == waiting,
    );
    assert_eq!(
        service_image(kube, CELLS[1]).as_deref(),
        Some("ghcr.io/titan/titan:0.1.0")
    );
    eventually("a RolloutHalted Event on the Fleet", CONVERGE, || {
        kube.k(&[
            "get",
            "events",
            "-n",
            "default",
            "--field-selector",
            &format!("involvedObject.name={FLEET}"),
            "-o",
            "jsonpath={.items[*].reason}",
        ])
        .contains("RolloutHalted")
    });
    let redis_before = redis_image(kube, CELLS[1]);

    // The fix, then the resume: waves 1 and 2 follow, one bake time apart.
    patch_cell(
        kube,
        CELLS[0],
        json!({ "spec": { "services": { SERVICE: { "podOverrides": null } } } }),
    );
    eventually(
        &format!("the fixed canary runs {NEW} Ready"),
        CONVERGE,
        || runs_ready(kube, CELLS[0], NEW),
    );
    // As `$(date -u +%FT%TZ)` would: the halt happened seconds ago, so now is later.
    let resumed_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    kube.k(&[
        "annotate",
        &format!("fleet/{FLEET}"),
        &format!("commerce.titan.dev/resumed-at={resumed_at}"),
        "--overwrite",
    ]);
    eventually("every wave runs the new version Ready", CONVERGE, || {
        is_true(&fleet_json(kube), "Ready")
    });
    for name in CELLS {
        assert!(
            runs_ready(kube, name, NEW),
            "{name}: {}",
            cell_json(kube, name)["status"]
        );
    }
    let fleet = fleet_json(kube);
    assert!(!is_true(&fleet, "Halted"), "{}", fleet["status"]);
    assert_eq!(fleet["status"]["waveReached"], 2);
    // A wave moves the services, never the datastores.
    assert_eq!(redis_image(kube, CELLS[1]), redis_before);

    for name in CELLS {
        kube.k(&["delete", "cell", name, "--wait=false"]);
    }
    kube.k(&["delete", "fleet", FLEET]);
    for name in CELLS {
        eventually(&format!("cell {name} is gone"), CONVERGE, || {
            kube.get(&["cell", name]).is_none()
        });
    }
    eprintln!("fleet waves phase: {:.0?}", start.elapsed());
}

fn redis_image(kube: &Kube, cell: &str) -> Value {
    let set = kube
        .get(&["statefulset", "redis", "-n", &format!("titan-{cell}")])
        .unwrap_or_else(|| panic!("the redis StatefulSet of {cell}"));
    set["spec"]["template"]["spec"]["containers"][0]["image"].clone()
}
