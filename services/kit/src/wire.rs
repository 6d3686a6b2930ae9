//! Conversions between protobuf well-known types and the Rust types services use, shared by
//! every gRPC edge so that each field's error message reads the same everywhere.

use chrono::{DateTime, Utc};

/// A UTC instant as a protobuf `Timestamp`.
pub fn timestamp(at: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

/// A protobuf `Timestamp` as a UTC instant; `None` when it is out of range.
pub fn instant(t: &prost_types::Timestamp) -> Option<DateTime<Utc>> {
    u32::try_from(t.nanos)
        .ok()
        .and_then(|nanos| DateTime::from_timestamp(t.seconds, nanos))
}

/// The message of a required timestamp field that is absent or malformed.
pub fn required_time(
    field: &str,
    t: Option<&prost_types::Timestamp>,
) -> Result<DateTime<Utc>, String> {
    let t = t.ok_or_else(|| format!("{field} is required"))?;
    instant(t).ok_or_else(|| format!("{field} is not a valid timestamp"))
}

/// A protobuf `Struct` as a JSON object.
pub fn json_object(s: prost_types::Struct) -> serde_json::Map<String, serde_json::Value> {
    s.fields
        .into_iter()
        .map(|(k, v)| (k, json_value(v)))
        .collect()
}

/// A protobuf `Value` as JSON. Whole numbers stay integers, so an amount in minor units sent
/// as `1234` reads back as `1234`, not `1234.0`.
pub fn json_value(v: prost_types::Value) -> serde_json::Value {
    use prost_types::value::Kind;
    match v.kind {
        None | Some(Kind::NullValue(_)) => serde_json::Value::Null,
        Some(Kind::BoolValue(b)) => serde_json::Value::Bool(b),
        Some(Kind::NumberValue(n)) => {
            if n.fract() == 0.0 && n.abs() < 9_007_199_254_740_992.0 {
                // Exact: |n| < 2^53, so the cast neither rounds nor saturates.
                #[allow(clippy::cast_possible_truncation)]
                serde_json::Value::from(n as i64)
            } else {
                serde_json::Number::from_f64(n).map_or(serde_json::Value::Null, Into::into)
            }
        }
        Some(Kind::StringValue(s)) => serde_json::Value::String(s),
        Some(Kind::ListValue(l)) => {
            serde_json::Value::Array(l.values.into_iter().map(json_value).collect())
        }
        Some(Kind::StructValue(s)) => serde_json::Value::Object(json_object(s)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost_types::{Value, value::Kind};

    #[test]
    fn timestamps_round_trip() {
        let at = DateTime::from_timestamp(1_700_000_000, 123_000_000).expect("valid");
        assert_eq!(instant(&timestamp(at)), Some(at));
        let bad = prost_types::Timestamp {
            seconds: 0,
            nanos: -1,
        };
        assert_eq!(instant(&bad), None);
        assert_eq!(
            required_time("period.from", None),
            Err("period.from is required".into())
        );
    }

    #[test]
    fn structs_become_json() {
        let s = prost_types::Struct {
            fields: [
                (
                    "n".to_owned(),
                    Value {
                        kind: Some(Kind::NumberValue(1234.0)),
                    },
                ),
                (
                    "x".to_owned(),
                    Value {
                        kind: Some(Kind::NumberValue(1.5)),
                    },
                ),
                (
                    "s".to_owned(),
                    Value {
                        kind: Some(Kind::StringValue("a".into())),
                    },
                ),
            ]
            .into_iter()
            .collect(),
        };
        assert_eq!(
            serde_json::Value::Object(json_object(s)),
            serde_json::json!({"n": 1234, "x": 1.5, "s": "a"})
        );
    }
}
