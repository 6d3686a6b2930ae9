//! The example manifests (manifests/examples/) against the CRDs' CEL rules, evaluated as the
//! API server would at admission: every example passes, except invalid-cell.yaml, which must
//! fail with exactly the errors its comment shows a user.

use serde_json::Value;
use titan_crds::{Cell, Service, admission};

fn examples_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests/examples")
}

/// `(field path, message)` of every rule the documents of `file` break; also checks each
/// document parses as its typed resource (types, enums, required fields).
fn broken_rules(file: &str) -> Vec<(String, String)> {
    let path = examples_dir().join(file);
    let text = std::fs::read_to_string(&path).expect("example");
    let mut broken = Vec::new();
    for document in serde_yaml::Deserializer::from_str(&text) {
        let object: Value = serde::Deserialize::deserialize(document).expect("yaml");
        let errors = match object["kind"].as_str() {
            Some("Cell") => {
                serde_json::from_value::<Cell>(object.clone())
                    .unwrap_or_else(|e| panic!("{file}: not a Cell: {e}"));
                admission::broken_rules::<Cell>(&object, None)
            }
            Some("Service") => {
                serde_json::from_value::<Service>(object.clone())
                    .unwrap_or_else(|e| panic!("{file}: not a Service: {e}"));
                admission::broken_rules::<Service>(&object, None)
            }
            other => panic!("{file}: unexpected kind {other:?}"),
        };
        broken.extend(errors.into_iter().map(|e| (e.field_path, e.message)));
    }
    broken.sort();
    broken
}

#[test]
fn every_example_passes_the_crd_rules() {
    let mut checked = 0;
    for entry in std::fs::read_dir(examples_dir()).expect("examples") {
        let name = entry
            .expect("entry")
            .file_name()
            .into_string()
            .expect("utf-8");
        if !name.ends_with(".yaml") || name == "invalid-cell.yaml" {
            continue;
        }
        assert_eq!(broken_rules(&name), Vec::new(), "{name}");
        checked += 1;
    }
    assert!(
        checked >= 3,
        "the dev cell, the production cell and the custom service"
    );
}

#[test]
fn the_invalid_example_fails_with_the_errors_it_documents() {
    let broken = broken_rules("invalid-cell.yaml");
    let expected = [
        (
            "spec.datastores.redis",
            "an external datastore needs secretName: the Secret that holds its connection URL",
        ),
        (
            "spec.services.flashsale",
            "set replicas or autoscaling, not both: with autoscaling the autoscaler owns replicas",
        ),
    ];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(p, m)| (p.to_string(), m.to_string()))
        .collect();
    assert_eq!(broken, expected);
    // The example's comment shows these messages as kubectl prints them.
    let text = std::fs::read_to_string(examples_dir().join("invalid-cell.yaml")).expect("file");
    for (path, message) in &expected {
        assert!(
            text.contains(&format!("{path}: Invalid value: {message}")),
            "invalid-cell.yaml does not show the error at {path}"
        );
    }
}
