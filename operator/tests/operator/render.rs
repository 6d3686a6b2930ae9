//! `titan-operator render` as a pipeline gate: it refuses what the API server would refuse, with
//! the API server's messages, one line per problem naming file, document and field, and exits
//! non-zero; and what it prints reads as the same objects in a real YAML 1.1 reader (PyYAML).

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use serde_json::Value;
use titan_operator::render::{Inputs, objects, render};

use crate::support::repo_path;

/// Writes `files` (name, text) into a scratch directory and runs `titan-operator render` on them.
fn run_render(files: &[(&str, &str)]) -> std::process::Output {
    let dir = tempfile::tempdir().expect("scratch dir");
    let mut command = Command::new(env!("CARGO_BIN_EXE_titan-operator"));
    command.arg("render").current_dir(dir.path());
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).expect("write input");
        command.args(["-f", name]);
    }
    command.output().expect("titan-operator runs")
}

const BAD_CELLS: &str = "\
apiVersion: commerce.titan.dev/v1alpha1
kind: Cell
metadata:
  name: edge.prod
spec:
  version: \"0.1.0\"
---
apiVersion: commerce.titan.dev/v1alpha1
kind: Cell
metadata:
  name: sg-2
  lables: {team: a}
spec:
  version: \"0.1.0\"
  replicas: 3
  rollout: {wave: 101}
  datastores:
    redis: {provider: external}
    postgres: {provider: builtin, sizee: 10Gi}
";

const BAD_SERVICE: &str = "\
apiVersion: commerce.titan.dev/v1alpha1
kind: Service
metadata:
  name: coupon
  namespace: titan-sg-2
spec:
  cell: sg-2
  service: coupons
  image: t:1
";

#[test]
fn render_refuses_every_problem_of_every_file_with_the_api_servers_messages() {
    let output = run_render(&[("cells.yaml", BAD_CELLS), ("service.yaml", BAD_SERVICE)]);
    assert!(!output.status.success(), "render must fail");
    assert!(
        output.stdout.is_empty(),
        "nothing is printed for a refused input"
    );
    let stderr = String::from_utf8(output.stderr).expect("utf-8");
    let expected = [
        "titan-operator: the API server would refuse the inputs (8 problems):",
        "cells.yaml: document 1 (Cell edge.prod): <nil>: Invalid value: a Cell without spec.namespace lives in the namespace titan-<name>, a DNS label: its name needs at most 57 characters and no '.' (or set spec.namespace)",
        "cells.yaml: document 2 (Cell sg-2): unknown field \"metadata.lables\"",
        "cells.yaml: document 2 (Cell sg-2): unknown field \"spec.datastores.postgres.sizee\"",
        "cells.yaml: document 2 (Cell sg-2): unknown field \"spec.replicas\"",
        "cells.yaml: document 2 (Cell sg-2): spec.rollout.wave: Invalid value: 101: spec.rollout.wave in body should be less than or equal to 100",
        "cells.yaml: document 2 (Cell sg-2): spec.datastores.redis: Invalid value: an external datastore needs secretName: the Secret that holds its connection URL",
        "service.yaml: document 1 (Service titan-sg-2/coupon): spec.service: Unsupported value: \"coupons\": supported values: \"flashsale\", \"coupon\", \"gamification\", \"campaign\", \"abtesting\", \"fraud\", \"pricing\", \"analytics\", \"chat\", \"livestream\", \"videocall\", \"driver\", \"tracking\", \"warehouse\", \"shipping\", \"privacy\", \"custom\"",
        "service.yaml: document 1 (Service titan-sg-2/coupon): <nil>: Invalid value: null: some validation rules were not checked because the object was invalid; correct the existing errors to complete validation",
    ];
    assert_eq!(stderr.lines().collect::<Vec<_>>(), expected);
}

#[test]
fn a_cell_the_api_server_accepts_renders() {
    let cell = BAD_CELLS.split("---\n").next().expect("first document");
    let cell = cell.replace(
        "version: \"0.1.0\"",
        "version: \"0.1.0\"\n  namespace: edge-prod",
    );
    let output = run_render(&[("cell.yaml", &cell)]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).expect("utf-8");
    assert!(
        text.contains("  name: edge-prod\n"),
        "its namespace is rendered"
    );
}

/// A Python that has PyYAML, a YAML 1.1 reader (what kubectl's go-yaml also reads): the chart
/// check's virtualenv (built by `cargo xtask test` before the tests run, or `cargo xtask chart`),
/// else a `python3` on PATH with PyYAML. Missing, the test fails: it must not pass by skipping.
fn pyyaml() -> PathBuf {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("../xtask-ci/chart-venv/bin/python");
    [venv, PathBuf::from("python3")]
        .into_iter()
        .find(|python| {
            Command::new(python)
                .args(["-c", "import yaml"])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .unwrap_or_else(|| {
            panic!(
                "no YAML 1.1 reader: build the chart tools' virtualenv with `cargo xtask chart` \
                 (target/xtask-ci/chart-venv has PyYAML) or install PyYAML for python3 \
                 (Debian: apt-get install python3-yaml)"
            )
        })
}

/// Every document of `text` as PyYAML reads it, as JSON; a value JSON has no type for (a date)
/// comes out as `{"misread": ...}`.
fn read_with_pyyaml(text: &str) -> Vec<Value> {
    use std::io::Write;
    let script = "import json, sys, yaml\n\
        docs = list(yaml.safe_load_all(sys.stdin))\n\
        json.dump(docs, sys.stdout, default=lambda o: {'misread': repr(o)})\n";
    let mut child = Command::new(pyyaml())
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write yaml");
    let output = child.wait_with_output().expect("python ends");
    assert!(
        output.status.success(),
        "PyYAML cannot read the output: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("json")
}

/// Renders `inputs` and asserts PyYAML reads exactly the objects, as JSON, that were rendered.
fn assert_yaml_1_1_reads_what_was_rendered(inputs: &Inputs) -> usize {
    let text = render(inputs).expect("renders");
    let expected: Vec<Value> = objects(inputs)
        .expect("renders")
        .iter()
        .map(|o| serde_json::to_value(o).expect("json"))
        .collect();
    let read = read_with_pyyaml(&text);
    assert_eq!(read.len(), expected.len());
    for (read, expected) in read.iter().zip(&expected) {
        if let Some(difference) = difference(read, expected, "") {
            panic!(
                "PyYAML reads {} {} otherwise: {difference}",
                expected["kind"], expected["metadata"]["name"]
            );
        }
    }
    expected.len()
}

/// Where `read` first differs from `expected`: `path: read … instead of …`.
fn difference(read: &Value, expected: &Value, path: &str) -> Option<String> {
    match (read, expected) {
        (Value::Object(r), Value::Object(e)) if r.len() == e.len() => {
            e.iter().find_map(|(k, v)| {
                let path = format!("{path}.{k}");
                match r.get(k) {
                    Some(read) => difference(read, v, &path),
                    None => Some(format!("{path} is missing")),
                }
            })
        }
        (Value::Array(r), Value::Array(e)) if r.len() == e.len() => r
            .iter()
            .zip(e)
            .enumerate()
            .find_map(|(i, (r, e))| difference(r, e, &format!("{path}[{i}]"))),
        _ => (read != expected).then(|| format!("{path}: read {read} instead of {expected}")),
    }
}

#[test]
fn the_example_cells_read_the_same_in_yaml_1_1() {
    let mut documents = 0;
    for files in [
        &[
            "manifests/examples/dev-cell.yaml",
            "manifests/examples/custom-service.yaml",
        ][..],
        &["manifests/examples/production-cell.yaml"],
    ] {
        let sources: Vec<(String, String)> = files
            .iter()
            .map(|f| {
                let text = std::fs::read_to_string(repo_path(f)).expect("example");
                (f.to_string(), text)
            })
            .collect();
        let inputs = Inputs::read(sources.iter().map(|(n, t)| (n.as_str(), t.as_str())))
            .expect("the examples pass admission");
        documents += assert_yaml_1_1_reads_what_was_rendered(&inputs);
    }
    assert!(documents > 100, "both example cells were rendered");
}

/// Strings every YAML 1.1 reader takes for something else, where a cell's author can put them:
/// a date as the version (a label value) and annotations through pod overrides.
const TRICKY_CELL: &str = r#"
apiVersion: commerce.titan.dev/v1alpha1
kind: Cell
metadata:
  name: tricky
spec:
  version: "2024-06-01"
  services:
    coupon:
      podOverrides:
        metadata:
          annotations:
            yes: "yes"
            "no": "No"
            "on": "ON"
            "off": "off"
            y: "y"
            n: "N"
            bool: "true"
            tilde: "~"
            nul: "null"
            octal: "0755"
            under: "1_000"
            exp: "1e3"
            half: ".5"
            sexagesimal: "1:20"
            float: "1_0.5"
            date: "2001-12-14"
            merge: "<<"
            value: "="
            inf: "-.inf"
"#;

#[test]
fn a_cell_full_of_yaml_1_1_traps_reads_the_same() {
    let inputs = Inputs::read([("tricky.yaml", TRICKY_CELL)]).expect("admitted");
    assert_yaml_1_1_reads_what_was_rendered(&inputs);
    let text = render(&inputs).expect("renders");
    // The Redis server's command of every builtin cell, the case the issue reported.
    assert!(
        text.contains("        - --appendonly\n        - 'yes'\n"),
        "{text}"
    );
}

/// The output is serde_yaml's, line for line, but for the quotes added around values a YAML 1.1
/// reader would misread: nothing else about the documents changed.
#[test]
fn only_quotes_differ_from_serde_yamls_output() {
    let text =
        std::fs::read_to_string(repo_path("manifests/examples/dev-cell.yaml")).expect("example");
    let inputs = Inputs::read([("dev-cell.yaml", text.as_str())]).expect("admitted");
    let ours = render(&inputs).expect("renders");
    let theirs: String = objects(&inputs)
        .expect("renders")
        .iter()
        .map(|o| format!("---\n{}", serde_yaml::to_string(o).expect("yaml")))
        .collect();
    assert_eq!(ours.lines().count(), theirs.lines().count());
    let mut quoted = 0;
    for (ours, theirs) in ours.lines().zip(theirs.lines()) {
        if ours != theirs {
            assert_eq!(ours.replace('\'', ""), theirs);
            quoted += 1;
        }
    }
    assert!(quoted > 0, "the Redis command's yes at least");
}

#[test]
fn documents_that_are_not_titan_objects_are_named_as_far_as_they_go() {
    let text = "foo: bar\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n---\n[1, 2\n";
    let error = Inputs::read([("mixed.yaml", text)]).expect_err("refused");
    let lines: Vec<String> = error.to_string().lines().map(str::to_owned).collect();
    assert_eq!(
        lines[0],
        "the API server would refuse the inputs (3 problems):"
    );
    assert_eq!(
        lines[1],
        "mixed.yaml: document 1 (no kind): apiVersion \"\" is not commerce.titan.dev/v1alpha1"
    );
    assert_eq!(
        lines[2],
        "mixed.yaml: document 2 (ConfigMap c): apiVersion \"v1\" is not commerce.titan.dev/v1alpha1"
    );
    assert!(
        lines[3].starts_with("mixed.yaml: document 3 (not YAML): "),
        "{}",
        lines[3]
    );
}
