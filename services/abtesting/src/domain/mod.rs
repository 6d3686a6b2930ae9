//! A/B testing rules, pure: GrowthBook-compatible hashing ([`hashing`]), experiments, their
//! lifecycle and assignment ([`experiment`]), feature flags and their rules ([`flag`]), and the
//! statistics of results ([`stats`]). No I/O here.

pub mod experiment;
pub mod flag;
pub mod hashing;
pub mod stats;

pub use experiment::{Assignment, Experiment, ExperimentSpec, Outcome, RawSpec, Status};
pub use flag::{Evaluation, FeatureFlag, Source};

/// The service's name: its migrations and its config section.
pub const SERVICE: &str = "abtesting";

/// What a caller says about the user: GrowthBook's attributes, a JSON object.
pub type Attributes = serde_json::Map<String, serde_json::Value>;

/// The string GrowthBook hashes for an attribute value, or `None` when the SDK would skip the
/// user (a missing or falsy value: `""`, `0`, `false`, `null`). Numbers print as JavaScript
/// prints them for integers and ordinary decimals; arrays and objects are not hashed.
pub fn hash_input(value: Option<&serde_json::Value>) -> Option<String> {
    use serde_json::Value;
    match value? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Bool(true) => Some("true".to_owned()),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                (i != 0).then(|| i.to_string())
            } else if let Some(u) = n.as_u64() {
                Some(u.to_string())
            } else {
                let f = n.as_f64()?;
                // JavaScript prints integral doubles below 1e21 without a fraction.
                if f == 0.0 {
                    None
                } else if f.fract() == 0.0 && f.abs() < 1e21 {
                    Some(format!("{f:.0}"))
                } else {
                    Some(f.to_string())
                }
            }
        }
        _ => None,
    }
}

/// An attribute by name; a dotted name reaches into nested objects as GrowthBook's conditions
/// do (`address.country`).
pub fn attribute<'a>(attributes: &'a Attributes, name: &str) -> Option<&'a serde_json::Value> {
    if let Some(v) = attributes.get(name) {
        return Some(v);
    }
    let mut parts = name.split('.');
    let mut current = attributes.get(parts.next()?)?;
    for part in parts {
        current = current.as_object()?.get(part)?;
    }
    Some(current)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn hash_input_follows_javascript_truthiness_and_printing() {
        assert_eq!(hash_input(Some(&json!("u1"))), Some("u1".into()));
        assert_eq!(hash_input(Some(&json!(""))), None);
        assert_eq!(hash_input(Some(&json!(123))), Some("123".into()));
        assert_eq!(hash_input(Some(&json!(123.0))), Some("123".into()));
        assert_eq!(hash_input(Some(&json!(1.5))), Some("1.5".into()));
        assert_eq!(hash_input(Some(&json!(0))), None);
        assert_eq!(hash_input(Some(&json!(true))), Some("true".into()));
        assert_eq!(hash_input(Some(&json!(false))), None);
        assert_eq!(hash_input(Some(&json!(null))), None);
        assert_eq!(hash_input(Some(&json!({"a": 1}))), None);
        assert_eq!(hash_input(None), None);
    }

    #[test]
    fn dotted_attributes_reach_nested_objects() {
        let attrs = json!({"address": {"country": "SG"}, "a.b": 1});
        let attrs = attrs.as_object().expect("object");
        assert_eq!(attribute(attrs, "address.country"), Some(&json!("SG")));
        assert_eq!(attribute(attrs, "a.b"), Some(&json!(1)));
        assert_eq!(attribute(attrs, "address.city"), None);
    }
}
