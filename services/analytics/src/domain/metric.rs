//! Arbitrary numeric metrics (`RecordMetric`): a named value with labels at an instant. Labels
//! are stored as two parallel arrays sorted by key, since ClickHouse 18.16 has no `Map`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::event::is_dotted_words;

const MAX_LABELS: usize = 16;
const MAX_KEY_CHARS: usize = 64;
const MAX_VALUE_CHARS: usize = 256;
const MAX_NAME_CHARS: usize = 128;
const MAX_REQUEST_ID_CHARS: usize = 128;

#[derive(Debug, Clone, PartialEq, Default)]
pub struct RawMetricPoint {
    pub request_id: String,
    pub name: String,
    pub value: f64,
    pub labels: BTreeMap<String, String>,
    pub at: Option<DateTime<Utc>>,
}

/// A checked metric point.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricPoint {
    /// The caller's request id: a retried `RecordMetric` stores one point.
    pub id: String,
    pub name: String,
    pub value: f64,
    /// Sorted by key (a `BTreeMap`), so equal label sets are stored alike.
    pub labels: BTreeMap<String, String>,
    pub at: DateTime<Utc>,
    pub cell: String,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MetricError {
    #[error("request_id is required, so that a retried metric is recorded once")]
    MissingRequestId,
    #[error("request_id is longer than 128 characters")]
    LongRequestId,
    #[error("metric name {0:?} must be lower-case dotted words such as checkout.latency_ms")]
    BadName(String),
    #[error("metric value must be a finite number, got {0}")]
    NotFinite(f64),
    #[error("at most 16 labels are accepted, got {0}")]
    TooManyLabels(usize),
    #[error(
        "label key {0:?} must be 1 to 64 characters of lower-case letters, digits and '_', starting with a letter"
    )]
    BadLabelKey(String),
    #[error("label {0:?} has a value longer than 256 characters")]
    LongLabelValue(String),
}

/// Whether `name` is a metric name (also checked for queries).
pub fn is_metric_name(name: &str) -> bool {
    name.len() <= MAX_NAME_CHARS && is_dotted_words(name, 1)
}

/// Whether `key` is a label key (also checked for query filters and grouping).
pub fn is_label_key(key: &str) -> bool {
    key.len() <= MAX_KEY_CHARS && is_dotted_words(key, 1) && !key.contains('.')
}

impl RawMetricPoint {
    pub fn check(self, cell: &str, now: DateTime<Utc>) -> Result<MetricPoint, MetricError> {
        if self.request_id.is_empty() {
            return Err(MetricError::MissingRequestId);
        }
        if self.request_id.chars().count() > MAX_REQUEST_ID_CHARS {
            return Err(MetricError::LongRequestId);
        }
        if !is_metric_name(&self.name) {
            return Err(MetricError::BadName(self.name));
        }
        if !self.value.is_finite() {
            return Err(MetricError::NotFinite(self.value));
        }
        if self.labels.len() > MAX_LABELS {
            return Err(MetricError::TooManyLabels(self.labels.len()));
        }
        for (key, value) in &self.labels {
            if !is_label_key(key) {
                return Err(MetricError::BadLabelKey(key.clone()));
            }
            if value.chars().count() > MAX_VALUE_CHARS {
                return Err(MetricError::LongLabelValue(key.clone()));
            }
        }
        Ok(MetricPoint {
            id: self.request_id,
            name: self.name,
            value: self.value,
            labels: self.labels,
            at: self.at.unwrap_or(now),
            cell: cell.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw() -> RawMetricPoint {
        RawMetricPoint {
            request_id: "r1".into(),
            name: "checkout.latency_ms".into(),
            value: 12.5,
            labels: [("region".to_owned(), "sg".to_owned())]
                .into_iter()
                .collect(),
            at: None,
        }
    }

    #[test]
    fn points_are_checked() {
        let now = DateTime::from_timestamp(1_764_000_000, 0).expect("valid");
        let p = raw().check("c", now).expect("valid");
        assert_eq!((p.at, p.id.as_str()), (now, "r1"));
        let mut r = raw();
        r.request_id.clear();
        assert_eq!(r.check("c", now), Err(MetricError::MissingRequestId));
        let mut r = raw();
        r.name = "Latency".into();
        assert_eq!(
            r.check("c", now),
            Err(MetricError::BadName("Latency".into()))
        );
        let mut r = raw();
        r.value = f64::NAN;
        assert!(matches!(r.check("c", now), Err(MetricError::NotFinite(_))));
        let mut r = raw();
        r.labels.insert("Bad-Key".into(), "x".into());
        assert_eq!(
            r.check("c", now),
            Err(MetricError::BadLabelKey("Bad-Key".into()))
        );
        let mut r = raw();
        r.labels = (0..17).map(|i| (format!("k{i}"), String::new())).collect();
        assert_eq!(r.check("c", now), Err(MetricError::TooManyLabels(17)));
    }
}
