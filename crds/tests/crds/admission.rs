//! `titan_crds::admission::check`: everything the API server refuses when a Cell or Service is
//! created, worded as the API server words it (unknown fields as strict field validation reports
//! them, the schema's types, required fields, enums, bounds, lengths and patterns, the name, the
//! CEL rules).

use serde_json::{Value, json};
use titan_crds::{Cell, Service, admission};

fn cell(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "commerce.titan.dev/v1alpha1", "kind": "Cell", "metadata": {"name": name}, "spec": spec})
}

/// The API server's note when a wrong type, an enum, a required field or a length stopped the CEL
/// rules.
const NOT_CHECKED: &str = "<nil>: Invalid value: null: some validation rules were not checked because the object was invalid; correct the existing errors to complete validation";

fn refused_cell(object: Value) -> Vec<String> {
    admission::check::<Cell>(&object)
        .into_iter()
        .map(|r| r.message)
        .collect()
}

#[test]
fn a_plain_cell_and_service_pass() {
    assert_eq!(
        refused_cell(cell("sg-1", json!({"version": "0.1.0"}))),
        Vec::<String>::new()
    );
    let service = json!({"apiVersion": "commerce.titan.dev/v1alpha1", "kind": "Service",
        "metadata": {"name": "coupon", "namespace": "titan-sg-1", "labels": {"a": "b"}},
        "spec": {"cell": "sg-1", "service": "coupon", "image": "t:1", "podOverrides": {"anything": {"goes": 1}}}});
    assert!(admission::check::<Service>(&service).is_empty());
}

#[test]
fn unknown_fields_are_refused_at_any_depth_as_strict_field_validation_says() {
    let mut object = cell(
        "sg-1",
        json!({
            "version": "0.1.0",
            "foo": 1,
            "datastores": {"redis": {"provider": "builtin", "sizee": "1Gi"}},
            "services": {"shipping": {"config": {"carriers": [
                {"name": "ups", "baseUrl": "https://ups.example", "credentialsSecret": "ups", "token": "x"}
            ]}}},
            // Free-form: a JSON merge patch of the pod template.
            "services2": null,
        }),
    );
    object["spec"]["services"]["flashsale"] = json!({"podOverrides": {"spec": {"whatever": true}}});
    object["metadata"]["lables"] = json!({"a": "b"});
    object["extra"] = json!(true);
    let mut refused = refused_cell(object);
    refused.sort();
    assert_eq!(
        refused,
        [
            r#"unknown field "extra""#,
            r#"unknown field "metadata.lables""#,
            r#"unknown field "spec.datastores.redis.sizee""#,
            r#"unknown field "spec.foo""#,
            r#"unknown field "spec.services.shipping.config.carriers[0].token""#,
            r#"unknown field "spec.services2""#,
        ]
    );
}

#[test]
fn the_schema_is_checked_with_the_api_servers_messages() {
    let refused = refused_cell(cell(
        "sg-1",
        json!({
            "version": "0.1 beta",
            "image": "",
            "namespace": "n".repeat(64),
            "rollout": {"wave": 200},
            "datastores": {"objectStorage": {"endpoint": "https://s3", "bucket": "b", "credentialsSecret": "s"}},
        }),
    ));
    assert_eq!(
        refused,
        [
            "spec.datastores.objectStorage.bucket: Invalid value: \"b\": spec.datastores.objectStorage.bucket in body should be at least 3 chars long",
            "spec.image: Invalid value: \"\": spec.image in body should be at least 1 chars long",
            "spec.namespace: Too long: may not be more than 63 bytes",
            "spec.rollout.wave: Invalid value: 200: spec.rollout.wave in body should be less than or equal to 100",
            "spec.version: Invalid value: \"0.1 beta\": spec.version in body should match '^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$'",
            // Too long blocks the CEL rules on the API server; bounds and patterns do not.
            NOT_CHECKED,
        ]
    );
    let refused = refused_cell(cell(
        "sg-1",
        json!({"version": "0.1.0", "rollout": {"wave": 200}, "datastores": {"redis": {"provider": "external"}}}),
    ));
    assert_eq!(
        refused,
        [
            "spec.rollout.wave: Invalid value: 200: spec.rollout.wave in body should be less than or equal to 100",
            "spec.datastores.redis: Invalid value: an external datastore needs secretName: the Secret that holds its connection URL",
        ]
    );
}

#[test]
fn the_identity_provider_is_a_url_and_its_claims_are_not_empty() {
    let refused = refused_cell(cell(
        "sg-1",
        json!({"version": "0.1.0", "auth": {"jwksUrl": "id.example/jwks", "issuer": "", "audience": "titan"}}),
    ));
    assert_eq!(
        refused,
        [
            "spec.auth.issuer: Invalid value: \"\": spec.auth.issuer in body should be at least 1 chars long",
            "spec.auth.jwksUrl: Invalid value: \"id.example/jwks\": spec.auth.jwksUrl in body should match '^https?://[^\\s]+$'",
        ]
    );
    assert_eq!(
        refused_cell(cell(
            "sg-1",
            json!({"version": "0.1.0", "auth": {"jwksUrl": "http://keycloak.idp:8080/realms/shop/protocol/openid-connect/certs"}}),
        )),
        Vec::<String>::new()
    );
}

#[test]
fn the_collector_is_a_plain_http_endpoint_and_the_ratio_a_quoted_decimal_to_one() {
    let refused = refused_cell(cell(
        "sg-1",
        json!({"version": "0.1.0", "tracing": {"otlpEndpoint": "https://collector:4317", "sampleRatio": "1.5"}}),
    ));
    assert_eq!(
        refused,
        [
            "spec.tracing.otlpEndpoint: Invalid value: \"https://collector:4317\": spec.tracing.otlpEndpoint in body should match '^http://[^\\s/]+/?$'",
            "spec.tracing.sampleRatio: Invalid value: \"1.5\": spec.tracing.sampleRatio in body should match '^(0(\\.[0-9]{1,6})?|1(\\.0{1,6})?)$'",
        ]
    );
    for ratio in ["0", "0.05", "1", "1.0"] {
        assert_eq!(
            refused_cell(cell(
                "sg-1",
                json!({"version": "0.1.0", "tracing": {"otlpEndpoint": "http://otel-collector.observability:4317", "sampleRatio": ratio}}),
            )),
            Vec::<String>::new(),
            "{ratio}"
        );
    }
}

#[test]
fn a_wrong_type_or_value_outside_its_enum_stops_the_cel_rules_as_on_the_api_server() {
    let refused = refused_cell(cell(
        "sg-1",
        json!({
            "version": "0.1.0",
            "deletionPolicy": "Keep",
            "rollout": {"wave": "first"},
            // Breaks a CEL rule, which is not evaluated.
            "datastores": {"redis": {"provider": "external"}},
        }),
    ));
    assert_eq!(
        refused,
        [
            "spec.deletionPolicy: Unsupported value: \"Keep\": supported values: \"Retain\", \"Delete\"",
            "spec.rollout.wave: Invalid value: \"string\": spec.rollout.wave in body must be of type integer: \"string\"",
            NOT_CHECKED,
        ]
    );
}

#[test]
fn required_fields_are_reported_missing() {
    let service = json!({"apiVersion": "commerce.titan.dev/v1alpha1", "kind": "Service",
        "metadata": {"name": "coupon", "namespace": "titan-sg-1"},
        "spec": {"cell": "sg-1", "service": "coupon"}});
    let refused: Vec<String> = admission::check::<Service>(&service)
        .into_iter()
        .map(|r| r.message)
        .collect();
    assert_eq!(refused, ["spec.image: Required value", NOT_CHECKED]);
    let refused = refused_cell(
        json!({"apiVersion": "commerce.titan.dev/v1alpha1", "kind": "Cell", "metadata": {"name": "sg-1"}}),
    );
    assert_eq!(refused, ["spec: Required value", NOT_CHECKED]);
}

#[test]
fn names_are_dns_subdomains_and_cell_names_make_a_namespace() {
    assert_eq!(
        refused_cell(cell(
            "Edge_Prod",
            json!({"version": "0.1.0", "namespace": "edge"})
        )),
        [
            "metadata.name: Invalid value: \"Edge_Prod\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
        ]
    );
    // A valid name the cell cannot live under: the CRD's rule on the root, whose field the API
    // server prints as Go's nil path.
    assert_eq!(
        refused_cell(cell("edge.prod", json!({"version": "0.1.0"}))),
        [
            "<nil>: Invalid value: a Cell without spec.namespace lives in the namespace titan-<name>, a DNS label: its name needs at most 57 characters and no '.' (or set spec.namespace)"
        ]
    );
    let service = json!({"apiVersion": "commerce.titan.dev/v1alpha1", "kind": "Service",
        "metadata": {"name": "coupon", "namespace": "Titan"},
        "spec": {"cell": "sg-1", "service": "coupon", "image": "t:1"}});
    assert_eq!(
        admission::check::<Service>(&service)
            .into_iter()
            .map(|r| r.message)
            .collect::<Vec<_>>(),
        [
            "metadata.namespace: Invalid value: \"Titan\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
        ]
    );
}

/// The invalid example's comment shows what `kubectl apply` printed for it on the cluster suite's
/// API server: the same lines come out of `check`.
#[test]
fn the_invalid_example_is_refused_with_the_lines_kubectl_shows() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../manifests/examples/invalid-cell.yaml");
    let text = std::fs::read_to_string(path).expect("example");
    let object: Value = serde_yaml::from_str(&text).expect("yaml");
    let refused = refused_cell(object);
    assert_eq!(refused.len(), 2);
    for line in &refused {
        assert!(text.contains(&format!("#   * {line}\n")), "{line}");
    }
}

#[test]
fn list_lengths_are_checked() {
    let thresholds = |n: usize| {
        cell(
            "sg-1",
            json!({"version": "0.1.0", "services": {"gamification": {"config": {"levelThresholds": (0..n as u64).collect::<Vec<_>>()}}}}),
        )
    };
    let path = "spec.services.gamification.config.levelThresholds";
    assert_eq!(
        refused_cell(thresholds(0)),
        [format!(
            "{path}: Invalid value: 0: {path} in body should have at least 1 items"
        )]
    );
    assert_eq!(
        refused_cell(thresholds(101)),
        [
            format!("{path}: Too many: 101: must have at most 100 items"),
            NOT_CHECKED.to_string(),
        ]
    );
    assert!(refused_cell(thresholds(3)).is_empty());
}

#[test]
fn label_keys_and_values_and_annotation_keys_are_checked() {
    let mut object = cell("sg-1", json!({"version": "0.1.0"}));
    object["metadata"]["labels"] =
        json!({"team": "a b", "example.com/ok": "v", "-bad": "x", "a/b/c": "y"});
    object["metadata"]["annotations"] =
        json!({"Example.com/Fine": "anything at all", "bad key": ""});
    let mut refused = refused_cell(object);
    refused.sort();
    let qualified = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
    assert_eq!(
        refused,
        [
            format!("metadata.annotations: Invalid value: \"bad key\": name part {qualified}"),
            format!("metadata.labels: Invalid value: \"-bad\": name part {qualified}"),
            "metadata.labels: Invalid value: \"a b\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')".to_string(),
            format!("metadata.labels: Invalid value: \"a/b/c\": a qualified name {qualified} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"),
        ]
    );
}
