//! The committed CRDs are what the code generates, and they are structural, described and
//! complete (short names, categories, printer columns, subresources).

use serde_json::Value;
use titan_operator::render::crd_files;

use crate::support::repo_path;

#[test]
fn committed_crds_match_the_generated_ones() {
    let bless = std::env::var_os("TITAN_BLESS").is_some();
    for (name, generated) in crd_files().expect("crds render") {
        let path = repo_path(&format!("manifests/crds/{name}"));
        if bless {
            std::fs::write(&path, &generated).expect("write crd");
            continue;
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "{} is stale: run `cargo run -p titan-operator -- crd --out manifests/crds` \
             (or this test with TITAN_BLESS=1) and commit the result",
            path.display()
        );
    }
}

fn schemas() -> Vec<(String, Value)> {
    titan_crds::definitions()
        .into_iter()
        .map(|crd| {
            let name = crd.spec.names.kind.clone();
            let schema = crd.spec.versions[0]
                .schema
                .clone()
                .and_then(|s| s.open_api_v3_schema)
                .expect("schema");
            (name, serde_json::to_value(schema).expect("json"))
        })
        .collect()
}

/// Walks every property schema, calling `check(path, schema)`.
fn walk(path: &str, schema: &Value, check: &mut dyn FnMut(&str, &Value)) {
    check(path, schema);
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        for (name, property) in properties {
            walk(&format!("{path}.{name}"), property, check);
        }
    }
    if let Some(items) = schema.get("items") {
        walk(&format!("{path}[]"), items, check);
    }
    if let Some(additional) = schema.get("additionalProperties").filter(|a| a.is_object()) {
        walk(&format!("{path}{{}}"), additional, check);
    }
}

#[test]
fn schemas_are_structural() {
    for (kind, schema) in schemas() {
        walk(&kind, &schema, &mut |path, s| {
            for keyword in ["anyOf", "oneOf", "allOf", "not", "$ref"] {
                assert!(s.get(keyword).is_none(), "{path} uses {keyword}");
            }
            let typed = s.get("type").is_some()
                || s.get("x-kubernetes-int-or-string").is_some()
                || s.get("x-kubernetes-preserve-unknown-fields").is_some();
            assert!(typed, "{path} has no type");
            assert!(
                !(s.get("properties").is_some() && s.get("additionalProperties").is_some()),
                "{path} has both properties and additionalProperties"
            );
        });
    }
}

/// A default the schema's own bounds refuse makes the API server reject the whole CRD at
/// install (it validates defaults): every numeric default lies within its minimum and maximum.
#[test]
fn every_default_satisfies_its_own_bounds() {
    for (kind, schema) in schemas() {
        walk(&kind, &schema, &mut |path, s| {
            let Some(default) = s.get("default").and_then(Value::as_f64) else {
                return;
            };
            if let Some(min) = s.get("minimum").and_then(Value::as_f64) {
                assert!(default >= min, "{path}: default {default} < minimum {min}");
            }
            if let Some(max) = s.get("maximum").and_then(Value::as_f64) {
                assert!(default <= max, "{path}: default {default} > maximum {max}");
            }
        });
    }
}

#[test]
fn every_spec_and_status_field_is_described_for_kubectl_explain() {
    for (kind, schema) in schemas() {
        for part in ["spec", "status"] {
            walk(
                &format!("{kind}.{part}"),
                &schema["properties"][part],
                &mut |path, s| {
                    // Items of a list and values of a map are described by their field.
                    if path.ends_with("[]") || path.ends_with("{}") {
                        return;
                    }
                    let described = s
                        .get("description")
                        .and_then(Value::as_str)
                        .is_some_and(|d| !d.is_empty());
                    assert!(described, "{path} has no description");
                },
            );
        }
    }
}

#[test]
fn crds_have_names_columns_and_subresources() {
    let [cell, service, fleet] = titan_crds::definitions();
    assert_eq!(cell.spec.scope, "Cluster");
    assert_eq!(service.spec.scope, "Namespaced");
    assert_eq!(fleet.spec.scope, "Cluster");
    assert_eq!(cell.spec.names.short_names, Some(vec!["cell".to_string()]));
    assert_eq!(
        service.spec.names.short_names,
        Some(vec!["tsvc".to_string()])
    );
    assert_eq!(
        fleet.spec.names.short_names,
        Some(vec!["fleet".to_string()])
    );
    for crd in [&cell, &service, &fleet] {
        assert_eq!(crd.spec.group, "commerce.titan.dev");
        assert_eq!(crd.spec.names.categories, Some(vec!["titan".to_string()]));
        assert_eq!(crd.spec.versions[0].name, "v1alpha1");
        assert!(
            crd.spec.versions[0]
                .subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some()
        );
    }
    let columns = |crd: &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition| {
        crd.spec.versions[0]
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        columns(&cell),
        ["Ready", "Services", "Version", "Wave", "Age"]
    );
    assert_eq!(
        columns(&service),
        ["Service", "Ready", "Replicas", "Image", "Age"]
    );
    assert_eq!(
        columns(&fleet),
        ["Version", "Wave reached", "Halted", "Age"]
    );
    let scale = service.spec.versions[0]
        .subresources
        .as_ref()
        .and_then(|s| s.scale.as_ref())
        .expect("scale subresource");
    assert_eq!(scale.spec_replicas_path, ".spec.replicas");
    assert_eq!(scale.status_replicas_path, ".status.replicas");
    assert_eq!(
        scale.label_selector_path.as_deref(),
        Some(".status.selector")
    );
}

#[test]
fn cel_rules_cover_the_cross_field_constraints() {
    let text = crd_files()
        .expect("crds")
        .into_iter()
        .map(|(_, c)| c)
        .collect::<String>();
    for rule in [
        "self.provider != 'external' || has(self.secretName)",
        "self.minReplicas <= self.maxReplicas",
        "has(self.namespace) == has(oldSelf.namespace)",
        "!(has(self.replicas) && has(self.autoscaling))",
        "self.service == 'custom' || (!has(self.command) && !has(self.args))",
    ] {
        assert!(text.contains(rule), "missing rule {rule}");
    }
    assert!(text.contains("message: namespace is immutable"));
    assert!(text.contains("x-kubernetes-preserve-unknown-fields: true"));
}

/// Every Cell and Service in manifests/examples/ passes its CRD's OpenAPI schema (types, enums,
/// required fields), as admission would check it; the CEL rules are checked in the crds crate
/// (crds/tests/crds/examples.rs), which also covers the deliberately invalid example.
#[test]
fn the_examples_pass_the_crd_schemas() {
    let validator = crate::support::validator();
    let mut checked = 0;
    for file in [
        "manifests/examples/dev-cell.yaml",
        "manifests/examples/production-cell.yaml",
        "manifests/examples/custom-service.yaml",
        // Valid against the schema: only its CEL rules are broken.
        "manifests/examples/invalid-cell.yaml",
    ] {
        let text = std::fs::read_to_string(repo_path(file)).expect("example");
        for document in serde_yaml::Deserializer::from_str(&text) {
            let object: Value = serde::Deserialize::deserialize(document).expect("yaml");
            crate::support::validate(&validator, &object).unwrap_or_else(|e| panic!("{file}: {e}"));
            checked += 1;
        }
    }
    assert_eq!(checked, 4);
}

/// Whether every namespace and label value in `object` (any JSON) is one the API server takes:
/// namespaces are DNS labels, label values at most 63 of `[A-Za-z0-9._-]`, alphanumeric at the
/// ends.
fn names_and_labels_are_valid(object: &Value) -> bool {
    static PATTERNS: std::sync::OnceLock<(regex::Regex, regex::Regex)> = std::sync::OnceLock::new();
    let (dns_label, label_value) = PATTERNS.get_or_init(|| {
        (
            regex::Regex::new("^[a-z0-9]([-a-z0-9]*[a-z0-9])?$").expect("regex"),
            regex::Regex::new("^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$").expect("regex"),
        )
    });
    match object {
        Value::Object(fields) => fields
            .iter()
            .all(|(key, value)| match (key.as_str(), value) {
                ("namespace", Value::String(ns)) => ns.len() <= 63 && dns_label.is_match(ns),
                ("labels" | "matchLabels", Value::Object(labels)) => labels.values().all(|v| {
                    v.as_str()
                        .is_some_and(|v| v.len() <= 63 && label_value.is_match(v))
                }),
                _ => names_and_labels_are_valid(value),
            }),
        Value::Array(items) => items.iter().all(names_and_labels_are_valid),
        _ => true,
    }
}

/// The CRD's rules on a Cell's name (crds/src/cell.rs) admit exactly the names the operator can
/// build a cell with: every namespace it creates or puts objects in is a DNS label, and every
/// label value it sets is valid.
#[test]
fn the_cell_name_rules_admit_exactly_the_names_the_operator_can_build_with() {
    let long = |n: usize| "a".repeat(n);
    for (name, namespace) in [
        ("sg-1".to_string(), None),
        (long(57), None),
        (long(58), None),
        ("edge.prod".into(), None),
        ("edge.prod".into(), Some("edge")),
        (long(63), Some("edge")),
        (long(64), Some("edge")),
    ] {
        let mut object = serde_json::json!({
            "apiVersion": "commerce.titan.dev/v1alpha1", "kind": "Cell",
            "metadata": {"name": name}, "spec": {"version": "0.1.0"}
        });
        if let Some(namespace) = namespace {
            object["spec"]["namespace"] = namespace.into();
        }
        let admitted = titan_crds::admission::check::<titan_crds::Cell>(&object).is_empty();
        let inputs = titan_operator::render::Inputs {
            cells: vec![serde_json::from_value(object).expect("a Cell")],
            services: Vec::new(),
        };
        let objects = titan_operator::render::objects(&inputs).expect("renders");
        let namespace_object = serde_json::to_value(&objects[0]).expect("json");
        assert_eq!(namespace_object["kind"], "Namespace");
        let namespace_name = namespace_object["metadata"]["name"].as_str().expect("name");
        let buildable = serde_json::to_value(&objects)
            .is_ok_and(|all| names_and_labels_are_valid(&all))
            && namespace_name.len() <= 63
            && !namespace_name.contains('.');
        assert_eq!(admitted, buildable, "{name} (namespace {namespace:?})");
    }
}
