//! What the API server checks when a `Cell` or `Service` is created, done without one: strict
//! decoding (unknown fields, as `kubectl --validate=strict` and server-side field validation
//! refuse them), the CRD's OpenAPI schema (types, required fields, enums, bounds, lengths,
//! patterns), the object's name and namespace, and the CRD's CEL rules
//! (`x-kubernetes-validations`, evaluated with kube's CEL engine). Each refusal is worded as the
//! API server words it, so `titan-operator render` in a pipeline refuses what `kubectl apply`
//! would, with the same message. Compiled with the `admission` feature.

use std::fmt;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{
    CustomResourceExt,
    core::cel::{ValidationError, Validator, apply_defaults},
};
use serde_json::{Map, Value};

/// One reason the API server would refuse an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The field it is about (`spec.rollout.wave`); empty for the object as a whole.
    pub field: String,
    /// The API server's words, field included (`spec.version: Required value`).
    pub message: String,
    /// A wrong type, a value outside its enum, a missing required field, a string too long or a
    /// list too long: the API server then skips the CEL rules (its `hasBlockingErr`).
    blocking: bool,
}

impl Refusal {
    fn new(field: &str, message: String) -> Self {
        Self {
            field: field.to_string(),
            message,
            blocking: false,
        }
    }

    fn blocking(mut self) -> Self {
        self.blocking = true;
        self
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// The OpenAPI v3 schema of `K`'s CRD (its one version), as JSON.
pub fn schema<K: CustomResourceExt>() -> Value {
    schema_of(&K::crd())
}

fn schema_of(crd: &CustomResourceDefinition) -> Value {
    crd.spec
        .versions
        .first()
        .and_then(|v| v.schema.as_ref())
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .and_then(|s| serde_json::to_value(s).ok())
        // A derived CRD always has its schema; an empty one checks nothing rather than panic.
        .unwrap_or_default()
}

/// The CEL rules `object` breaks on creation, or with `old` on an update from `old`; the schema's
/// defaults are applied first, as the API server does.
pub fn broken_rules<K: CustomResourceExt>(
    object: &Value,
    old: Option<&Value>,
) -> Vec<ValidationError> {
    cel(&schema::<K>(), object, old)
}

fn cel(schema: &Value, object: &Value, old: Option<&Value>) -> Vec<ValidationError> {
    match Validator::new().validate(schema, object, old) {
        Ok(()) => Vec::new(),
        Err(errors) => errors.into_vec(),
    }
}

/// Every reason the API server would refuse to create `object` (a JSON `K`): unknown fields and
/// the schema's constraints field by field, the metadata, then the CEL rules (skipped, as there,
/// after a wrong type, a value outside its enum, a missing required field or a string or list too
/// long).
pub fn check<K: CustomResourceExt>(object: &Value) -> Vec<Refusal> {
    let crd = K::crd();
    let namespaced = crd.spec.scope == "Namespaced";
    let schema = schema_of(&crd);
    let object = apply_defaults(&schema, object);
    let mut refusals = Vec::new();
    let Some(fields) = object.as_object() else {
        refusals.push(type_refusal("", "object", &object));
        return refusals;
    };
    // apiVersion, kind and metadata are every object's, outside the CRD's schema.
    for (name, value) in fields {
        match name.as_str() {
            "apiVersion" | "kind" => {}
            "metadata" => metadata(value, namespaced, &mut refusals),
            _ => match schema["properties"].get(name) {
                Some(property) => walk(property, value, name, &mut refusals),
                None => refusals.push(unknown(name)),
            },
        }
    }
    required(&schema, fields, "", &mut refusals);
    if fields.get("metadata").is_none() {
        refusals.push(Refusal::new("metadata.name", NAME_REQUIRED.into()));
    }
    if refusals.iter().any(|r| r.blocking) {
        refusals.push(Refusal::new(
            "",
            "<nil>: Invalid value: null: some validation rules were not checked because the \
             object was invalid; correct the existing errors to complete validation"
                .into(),
        ));
        return refusals;
    }
    refusals.extend(cel(&schema, &object, None).into_iter().map(|e| {
        // A rule on the root has no field: the API server prints Go's nil path.
        let shown = if e.field_path.is_empty() {
            "<nil>"
        } else {
            &e.field_path
        };
        Refusal::new(
            &e.field_path,
            format!("{shown}: Invalid value: {}", e.message),
        )
    }));
    refusals
}

/// ObjectMeta's fields, the name (a DNS subdomain, as for every custom resource), for a
/// namespaced kind the namespace (a DNS label), label keys and values, annotation keys.
fn metadata(value: &Value, namespaced: bool, refusals: &mut Vec<Refusal>) {
    let Some(fields) = value.as_object() else {
        refusals.push(type_refusal("metadata", "object", value));
        return;
    };
    let known = schemars::schema_for!(k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta);
    for name in fields.keys() {
        if known.get("properties").and_then(|p| p.get(name)).is_none() {
            refusals.push(unknown(&format!("metadata.{name}")));
        }
    }
    match fields.get("name").and_then(Value::as_str) {
        None | Some("") => refusals.push(Refusal::new("metadata.name", NAME_REQUIRED.into())),
        Some(name) => {
            for problem in dns_subdomain(name) {
                refusals.push(invalid_name("metadata.name", name, problem));
            }
        }
    }
    if namespaced && let Some(namespace) = fields.get("namespace").and_then(Value::as_str) {
        for problem in dns_label(namespace) {
            refusals.push(invalid_name("metadata.namespace", namespace, problem));
        }
    }
    let entries = |field: &str| {
        fields
            .get(field)
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
    };
    for (key, value) in entries("labels") {
        for problem in qualified_name(key) {
            refusals.push(invalid_name("metadata.labels", key, problem));
        }
        match value.as_str() {
            Some(value) => {
                for problem in label_value(value) {
                    refusals.push(invalid_name("metadata.labels", value, problem));
                }
            }
            None => refusals.push(type_refusal(
                &format!("metadata.labels.{key}"),
                "string",
                value,
            )),
        }
    }
    // The API server checks annotation keys in lower case.
    for key in entries("annotations").map(|(key, _)| key) {
        for problem in qualified_name(&key.to_lowercase()) {
            refusals.push(invalid_name("metadata.annotations", key, problem));
        }
    }
}

const QUALIFIED_NAME: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must \
     start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', \
     regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const LABEL_VALUE: &str = "a valid label must be an empty string or consist of alphanumeric \
     characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. \
     'MyValue',  or 'my_value',  or '12345', regex used for validation is \
     '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`
fn is_qualified_name_part(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// apimachinery's `IsQualifiedName` (label and annotation keys): its messages, in its order.
fn qualified_name(s: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let name = match s.split('/').collect::<Vec<_>>()[..] {
        [name] => name,
        [prefix, name] => {
            if prefix.is_empty() {
                problems.push("prefix part must be non-empty".into());
            } else {
                problems.extend(
                    dns_subdomain(prefix)
                        .into_iter()
                        .map(|p| format!("prefix part {p}")),
                );
            }
            name
        }
        _ => {
            return vec![format!(
                "a qualified name {QUALIFIED_NAME} with an optional DNS subdomain prefix and '/' \
                 (e.g. 'example.com/MyName')"
            )];
        }
    };
    if name.is_empty() {
        problems.push("name part must be non-empty".into());
    } else if name.len() > 63 {
        problems.push("name part must be no more than 63 characters".into());
    }
    if !is_qualified_name_part(name) {
        problems.push(format!("name part {QUALIFIED_NAME}"));
    }
    problems
}

/// apimachinery's `IsValidLabelValue`: its messages, in its order.
fn label_value(s: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if s.len() > 63 {
        problems.push("must be no more than 63 characters".into());
    }
    if !(s.is_empty() || is_qualified_name_part(s)) {
        problems.push(LABEL_VALUE.into());
    }
    problems
}

const NAME_REQUIRED: &str = "metadata.name: Required value: name or generateName is required";

fn invalid_name(field: &str, value: &str, problem: String) -> Refusal {
    Refusal::new(
        field,
        format!("{field}: Invalid value: {value:?}: {problem}"),
    )
}

const DNS1123_LABEL: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric \
     characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  \
     or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1123_SUBDOMAIN: &str = "a lowercase RFC 1123 subdomain must consist of lower case \
     alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character \
     (e.g. 'example.com', regex used for validation is \
     '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`
fn is_label(s: &str) -> bool {
    let alphanumeric = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    s.starts_with(alphanumeric)
        && s.ends_with(alphanumeric)
        && s.chars().all(|c| alphanumeric(c) || c == '-')
}

/// apimachinery's `IsDNS1123Label`: its messages, in its order.
fn dns_label(s: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if s.len() > 63 {
        problems.push("must be no more than 63 characters".into());
    }
    if !is_label(s) {
        problems.push(DNS1123_LABEL.into());
    }
    problems
}

/// apimachinery's `IsDNS1123Subdomain`: its messages, in its order.
fn dns_subdomain(s: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if s.len() > 253 {
        problems.push("must be no more than 253 characters".into());
    }
    if !s.split('.').all(is_label) {
        problems.push(DNS1123_SUBDOMAIN.into());
    }
    problems
}

fn unknown(field: &str) -> Refusal {
    Refusal::new(field, format!("unknown field {field:?}"))
}

fn child(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

/// Checks `value` at `path` against its structural `schema`, recursively.
fn walk(schema: &Value, value: &Value, path: &str, refusals: &mut Vec<Refusal>) {
    if value.is_null() {
        // The API server prunes a null of a non-nullable field (then defaults it): a required
        // one is reported missing by its parent.
        return;
    }
    if !scalar(schema, value, path, refusals) {
        return;
    }
    match value {
        Value::Object(fields) => {
            let properties = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            let preserved = schema
                .get("x-kubernetes-preserve-unknown-fields")
                .and_then(Value::as_bool)
                == Some(true);
            for (name, child_value) in fields {
                if let Some(property) = properties.and_then(|p| p.get(name)) {
                    walk(property, child_value, &child(path, name), refusals);
                } else if let Some(additional) = additional {
                    walk(
                        additional,
                        child_value,
                        &format!("{path}[{name}]"),
                        refusals,
                    );
                } else if !preserved {
                    refusals.push(unknown(&child(path, name)));
                }
            }
            required(schema, fields, path, refusals);
        }
        Value::Array(items) => {
            let count = items.len() as u64;
            if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
                && count < min
            {
                refusals.push(Refusal::new(
                    path,
                    format!(
                        "{path}: Invalid value: {count}: {path} in body should have at least {min} items"
                    ),
                ));
            }
            if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
                && count > max
            {
                refusals.push(
                    Refusal::new(
                        path,
                        format!("{path}: Too many: {count}: must have at most {max} items"),
                    )
                    .blocking(),
                );
            }
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    if item.is_null() {
                        refusals.push(type_refusal(&format!("{path}[{i}]"), "object", item));
                    } else {
                        walk(item_schema, item, &format!("{path}[{i}]"), refusals);
                    }
                }
            }
        }
        _ => {}
    }
}

fn required(schema: &Value, fields: &Map<String, Value>, path: &str, refusals: &mut Vec<Refusal>) {
    for name in schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        if fields.get(name).is_none_or(Value::is_null) {
            let field = child(path, name);
            refusals.push(Refusal::new(&field, format!("{field}: Required value")).blocking());
        }
    }
}

/// The JSON type name kube-openapi reports for a value.
fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if is_integer(n) => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn is_integer(n: &serde_json::Number) -> bool {
    n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0)
}

fn type_refusal(path: &str, expected: &str, value: &Value) -> Refusal {
    let actual = type_name(value);
    Refusal::new(
        path,
        format!(
            "{path}: Invalid value: {actual:?}: {path} in body must be of type {expected}: {actual:?}"
        ),
    )
    .blocking()
}

/// Go's `%v` of a JSON number or string as the API server prints a bad value.
fn shown(value: &Value) -> String {
    match value {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

/// A schema bound (stored as a float) as Go's `%v` prints it: `1`, not `1.0`.
fn bound(limit: &Value) -> String {
    match limit.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
        _ => limit.to_string(),
    }
}

/// Type, enum, bounds, lengths and pattern of one value; false when its type is wrong (nothing
/// below it is checked then).
fn scalar(schema: &Value, value: &Value, path: &str, refusals: &mut Vec<Refusal>) -> bool {
    let int_or_string = schema
        .get("x-kubernetes-int-or-string")
        .and_then(Value::as_bool)
        == Some(true);
    let actual = type_name(value);
    let expected = schema.get("type").and_then(Value::as_str);
    let fits = match expected {
        _ if int_or_string => matches!(actual, "integer" | "string"),
        Some("number") => matches!(actual, "integer" | "number"),
        Some(expected) => expected == actual,
        None => true,
    };
    if !fits {
        let expected = expected.unwrap_or("integer-or-string");
        refusals.push(type_refusal(path, expected, value));
        return false;
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        let supported: Vec<String> = allowed.iter().map(shown).collect();
        refusals.push(
            Refusal::new(
                path,
                format!(
                    "{path}: Unsupported value: {}: supported values: {}",
                    shown(value),
                    supported.join(", ")
                ),
            )
            .blocking(),
        );
    }
    let invalid = |detail: String| {
        Refusal::new(
            path,
            format!(
                "{path}: Invalid value: {}: {path} in body {detail}",
                shown(value)
            ),
        )
    };
    if let Some(number) = value.as_f64() {
        if let Some(min) = schema
            .get("minimum")
            .filter(|m| m.as_f64().is_some_and(|m| number < m))
        {
            refusals.push(invalid(format!(
                "should be greater than or equal to {}",
                bound(min)
            )));
        }
        if let Some(max) = schema
            .get("maximum")
            .filter(|m| m.as_f64().is_some_and(|m| number > m))
        {
            refusals.push(invalid(format!(
                "should be less than or equal to {}",
                bound(max)
            )));
        }
    }
    if let Some(text) = value.as_str() {
        let length = text.chars().count() as u64;
        if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
            && length < min
        {
            refusals.push(invalid(format!("should be at least {min} chars long")));
        }
        if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
            && length > max
        {
            refusals.push(
                Refusal::new(
                    path,
                    format!("{path}: Too long: may not be more than {max} bytes"),
                )
                .blocking(),
            );
        }
        if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
            // The CRD's patterns are RE2 and compile in `regex`; one that did not would be a
            // bug of this crate, which the tests of every pattern catch.
            if regex::Regex::new(pattern).is_ok_and(|re| !re.is_match(text)) {
                refusals.push(invalid(format!("should match '{pattern}'")));
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Cell, Service};

    fn patterns(schema: &Value, found: &mut Vec<String>) {
        match schema {
            Value::Object(fields) => {
                if let Some(pattern) = fields.get("pattern").and_then(Value::as_str) {
                    found.push(pattern.to_string());
                }
                fields.values().for_each(|v| patterns(v, found));
            }
            Value::Array(items) => items.iter().for_each(|v| patterns(v, found)),
            _ => {}
        }
    }

    #[test]
    fn every_pattern_of_the_crds_compiles_so_none_is_skipped() {
        let mut found = Vec::new();
        patterns(&schema::<Cell>(), &mut found);
        patterns(&schema::<Service>(), &mut found);
        assert!(!found.is_empty());
        for pattern in found {
            assert!(regex::Regex::new(&pattern).is_ok(), "{pattern}");
        }
    }

    #[test]
    fn dns_names_follow_apimachinery() {
        assert!(dns_label("titan-sg-1").is_empty());
        assert_eq!(dns_label(&"a".repeat(64)).len(), 1);
        assert_eq!(dns_label("-a").len(), 1);
        assert!(dns_subdomain("edge.prod").is_empty());
        assert_eq!(dns_subdomain("edge..prod").len(), 1);
        assert_eq!(dns_subdomain("Edge").len(), 1);
    }
}
