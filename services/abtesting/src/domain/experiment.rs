//! Experiments: a validated spec (variants, weights, coverage, hashing settings, namespace,
//! metrics), the lifecycle DRAFT → RUNNING ⇄ PAUSED → STOPPED, the refusal to move users of a
//! running experiment unless forced, and assignment — GrowthBook's `run` without the client-only
//! parts (query-string and forced variations, sticky buckets, URL targeting).

use serde::{Deserialize, Serialize};

use super::{Attributes, attribute, hash_input, hashing};

/// At most this many variations (A..Z).
pub const MAX_VARIANTS: usize = 26;
/// GrowthBook's default hash attribute: the user id.
pub const DEFAULT_HASH_ATTRIBUTE: &str = "id";
/// Weights must add up to 1 within this, as the SDKs require (else they use equal weights).
const WEIGHT_TOLERANCE: f64 = 0.01;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Variant {
    pub key: String,
    pub weight: f64,
}

/// A slice `[start, end)` of a namespace: experiments in disjoint slices never share a user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Namespace {
    pub id: String,
    pub start: f64,
    pub end: f64,
}

/// A validated experiment definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentSpec {
    pub key: String,
    pub variants: Vec<Variant>,
    /// Index of the control variant in `variants`.
    pub control: usize,
    pub coverage: f64,
    pub hash_attribute: String,
    pub seed: String,
    pub hash_version: u32,
    pub namespace: Option<Namespace>,
    /// Event names (`analytics_events.name`) whose conversion the results report.
    pub metrics: Vec<String>,
}

/// A spec as a caller sends it; [`ExperimentSpec::parse`] fills defaults and refuses bad values.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RawSpec {
    pub key: String,
    /// `(key, weight, is_control)`; all weights 0 means equal weights.
    pub variants: Vec<(String, f64, bool)>,
    /// `None` means 1 (everyone eligible).
    pub coverage: Option<f64>,
    pub hash_attribute: String,
    pub seed: String,
    /// 0 means the configured default.
    pub hash_version: u32,
    pub namespace: Option<Namespace>,
    pub metrics: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpecError {
    #[error("experiment key {0:?} must be 1 to 100 characters: letters, digits, '-', '_' or '.'")]
    Key(String),
    #[error("an experiment needs at least 2 variants; {0} given")]
    TooFewVariants(usize),
    #[error("an experiment has at most {MAX_VARIANTS} variants; {0} given")]
    TooManyVariants(usize),
    #[error("variant key {0:?} must be 1 to 100 characters without spaces")]
    VariantKey(String),
    #[error("variant key {0:?} is used twice")]
    DuplicateVariant(String),
    #[error("weight {weight} of variant {key:?} must be between 0 and 1")]
    Weight { key: String, weight: f64 },
    #[error("weights add up to {0}; they must add up to 1 (or all be 0 for equal weights)")]
    WeightSum(f64),
    #[error("coverage {0} must be between 0 and 1")]
    Coverage(f64),
    #[error("hash_version {0} is unknown; use 1 or 2")]
    HashVersion(u32),
    #[error("only one variant can be the control; {0} are marked")]
    Controls(usize),
    #[error("namespace {0}")]
    Namespace(String),
    #[error("hash_attribute {0:?} must be 1 to 100 characters without spaces")]
    HashAttribute(String),
    #[error("metric {0:?} must be an event name of 1 to 200 characters")]
    Metric(String),
}

fn name_ok(s: &str, max: usize) -> bool {
    !s.is_empty() && s.chars().count() <= max && !s.chars().any(char::is_whitespace)
}

fn key_ok(s: &str) -> bool {
    name_ok(s, 100)
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn unit(x: f64) -> bool {
    (0.0..=1.0).contains(&x)
}

impl ExperimentSpec {
    pub fn parse(raw: RawSpec, default_hash_version: u32) -> Result<Self, SpecError> {
        if !key_ok(&raw.key) {
            return Err(SpecError::Key(raw.key));
        }
        let n = raw.variants.len();
        if n < 2 {
            return Err(SpecError::TooFewVariants(n));
        }
        if n > MAX_VARIANTS {
            return Err(SpecError::TooManyVariants(n));
        }
        for (i, (key, weight, _)) in raw.variants.iter().enumerate() {
            if !name_ok(key, 100) {
                return Err(SpecError::VariantKey(key.clone()));
            }
            if raw.variants[..i].iter().any(|(k, _, _)| k == key) {
                return Err(SpecError::DuplicateVariant(key.clone()));
            }
            if !unit(*weight) {
                return Err(SpecError::Weight {
                    key: key.clone(),
                    weight: *weight,
                });
            }
        }
        let total: f64 = raw.variants.iter().fold(0.0, |sum, v| sum + v.1);
        let weights = if total == 0.0 {
            hashing::equal_weights(n)
        } else if (total - 1.0).abs() <= WEIGHT_TOLERANCE {
            raw.variants.iter().map(|v| v.1).collect()
        } else {
            return Err(SpecError::WeightSum(total));
        };
        let controls: Vec<usize> = raw
            .variants
            .iter()
            .enumerate()
            .filter(|(_, v)| v.2)
            .map(|(i, _)| i)
            .collect();
        let control = match controls.as_slice() {
            [] => 0,
            [one] => *one,
            many => return Err(SpecError::Controls(many.len())),
        };
        let coverage = raw.coverage.unwrap_or(1.0);
        if !unit(coverage) {
            return Err(SpecError::Coverage(coverage));
        }
        let hash_version = if raw.hash_version == 0 {
            default_hash_version
        } else {
            raw.hash_version
        };
        if !matches!(hash_version, 1 | 2) {
            return Err(SpecError::HashVersion(hash_version));
        }
        if let Some(ns) = &raw.namespace {
            if !name_ok(&ns.id, 100) {
                return Err(SpecError::Namespace(format!(
                    "id {:?} must be 1 to 100 characters without spaces",
                    ns.id
                )));
            }
            if !(unit(ns.start) && unit(ns.end) && ns.start < ns.end) {
                return Err(SpecError::Namespace(format!(
                    "range [{}, {}) must satisfy 0 <= start < end <= 1",
                    ns.start, ns.end
                )));
            }
        }
        let hash_attribute = if raw.hash_attribute.is_empty() {
            DEFAULT_HASH_ATTRIBUTE.to_owned()
        } else if name_ok(&raw.hash_attribute, 100) {
            raw.hash_attribute
        } else {
            return Err(SpecError::HashAttribute(raw.hash_attribute));
        };
        if let Some(bad) = raw.metrics.iter().find(|m| !name_ok(m, 200)) {
            return Err(SpecError::Metric(bad.clone()));
        }
        let seed = if raw.seed.is_empty() {
            raw.key.clone()
        } else {
            raw.seed
        };
        Ok(Self {
            variants: raw
                .variants
                .into_iter()
                .zip(weights)
                .map(|((key, _, _), weight)| Variant { key, weight })
                .collect(),
            key: raw.key,
            control,
            coverage,
            hash_attribute,
            seed,
            hash_version,
            namespace: raw.namespace,
            metrics: raw.metrics,
        })
    }

    pub fn weights(&self) -> Vec<f64> {
        self.variants.iter().map(|v| v.weight).collect()
    }

    /// What differs between two specs in a way that moves already assigned users to another
    /// variant (or out of the experiment by namespace). Coverage is not among them: raising it
    /// only adds users, and lowering it only removes some, never moving anyone across variants.
    pub fn moves_users(&self, new: &Self) -> Vec<&'static str> {
        let mut what = Vec::new();
        let keys = |s: &Self| s.variants.iter().map(|v| v.key.clone()).collect::<Vec<_>>();
        if keys(self) != keys(new) {
            what.push("variants");
        }
        if self.weights() != new.weights() {
            what.push("weights");
        }
        if self.seed != new.seed {
            what.push("seed");
        }
        if self.hash_attribute != new.hash_attribute {
            what.push("hash_attribute");
        }
        if self.hash_version != new.hash_version {
            what.push("hash_version");
        }
        if self.namespace != new.namespace {
            what.push("namespace");
        }
        what
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    Draft,
    Running,
    Paused,
    Stopped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Draft => "draft",
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Stopped => "stopped",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "draft" => Self::Draft,
            "running" => Self::Running,
            "paused" => Self::Paused,
            "stopped" => Self::Stopped,
            _ => return None,
        })
    }
}

/// An admin's lifecycle command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Start,
    Pause,
    Stop,
}

impl Action {
    pub fn method(self) -> &'static str {
        match self {
            Self::Start => "StartExperiment",
            Self::Pause => "PauseExperiment",
            Self::Stop => "StopExperiment",
        }
    }
}

/// Why a change to an experiment is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("experiment {key} is {from}; it cannot be {action}")]
    Transition {
        key: String,
        from: &'static str,
        action: &'static str,
    },
    #[error(
        "experiment {key} is running and changing its {what} would move users to other variants; pause is not enough — set force to do it anyway"
    )]
    MovesUsers { key: String, what: String },
    #[error("experiment {0} is stopped; it can no longer be changed")]
    Stopped(String),
}

impl Refusal {
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Transition { .. } => "INVALID_TRANSITION",
            Self::MovesUsers { .. } => "WOULD_MOVE_USERS",
            Self::Stopped(_) => "EXPERIMENT_STOPPED",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Experiment {
    pub spec: ExperimentSpec,
    pub status: Status,
}

/// Why an assignment came out as it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Assigned,
    NotRunning,
    /// The hash attribute is missing or falsy.
    NoHashAttribute,
    NotInNamespace,
    /// The bucket fell outside every variation's range (coverage below 1).
    NotCovered,
}

/// GrowthBook's experiment result for one user.
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    pub experiment_key: String,
    pub in_experiment: bool,
    /// The assigned variation, or the control when not in the experiment.
    pub variation_index: usize,
    pub variation_key: String,
    /// The bucket in `[0, 1)`, when the user was hashed.
    pub bucket: Option<f64>,
    pub hash_attribute: String,
    pub hash_attribute_value: String,
    pub hash_used: bool,
    pub outcome: Outcome,
}

impl Experiment {
    pub fn new(spec: ExperimentSpec) -> Self {
        Self {
            spec,
            status: Status::Draft,
        }
    }

    pub fn key(&self) -> &str {
        &self.spec.key
    }

    /// Applies a lifecycle command; repeating the current state is accepted (retries are safe).
    pub fn apply(&mut self, action: Action) -> Result<(), Refusal> {
        use Status::{Draft, Paused, Running, Stopped};
        let to = match (self.status, action) {
            (Draft | Paused | Running, Action::Start) => Running,
            (Running | Paused, Action::Pause) => Paused,
            (_, Action::Stop) => Stopped,
            (from @ (Draft | Stopped), Action::Pause) | (from @ Stopped, Action::Start) => {
                return Err(Refusal::Transition {
                    key: self.spec.key.clone(),
                    from: from.as_str(),
                    action: match action {
                        Action::Start => "started",
                        Action::Pause => "paused",
                        Action::Stop => "stopped",
                    },
                });
            }
        };
        self.status = to;
        Ok(())
    }

    /// Replaces the spec. A stopped experiment is final; a running one keeps its users where
    /// they are unless `force`.
    pub fn update(&mut self, spec: ExperimentSpec, force: bool) -> Result<(), Refusal> {
        if self.status == Status::Stopped {
            return Err(Refusal::Stopped(self.spec.key.clone()));
        }
        if self.status == Status::Running && !force {
            let moved = self.spec.moves_users(&spec);
            if !moved.is_empty() {
                return Err(Refusal::MovesUsers {
                    key: self.spec.key.clone(),
                    what: moved.join(", "),
                });
            }
        }
        self.spec = spec;
        Ok(())
    }

    /// Assigns a user the way GrowthBook's SDKs do: only a running experiment assigns; the
    /// hash attribute must be present and truthy; the namespace, then the bucket's range decide.
    pub fn assign(&self, attributes: &Attributes) -> Assignment {
        let s = &self.spec;
        let value = hash_input(attribute(attributes, &s.hash_attribute));
        let mut out = Assignment {
            experiment_key: s.key.clone(),
            in_experiment: false,
            variation_index: s.control,
            variation_key: s.variants[s.control].key.clone(),
            bucket: None,
            hash_attribute: s.hash_attribute.clone(),
            hash_attribute_value: value.clone().unwrap_or_default(),
            hash_used: false,
            outcome: Outcome::NotRunning,
        };
        if self.status != Status::Running {
            return out;
        }
        let Some(value) = value else {
            out.outcome = Outcome::NoHashAttribute;
            return out;
        };
        if let Some(ns) = &s.namespace
            && !hashing::in_namespace(&value, &ns.id, ns.start, ns.end)
        {
            out.outcome = Outcome::NotInNamespace;
            return out;
        }
        let Some(n) = hashing::hash(&s.seed, &value, s.hash_version) else {
            out.outcome = Outcome::NotCovered;
            return out;
        };
        out.bucket = Some(n);
        let ranges = hashing::bucket_ranges(s.variants.len(), s.coverage, Some(&s.weights()));
        match hashing::choose_variation(n, &ranges) {
            Some(i) => {
                out.in_experiment = true;
                out.hash_used = true;
                out.variation_index = i;
                out.variation_key = s.variants[i].key.clone();
                out.outcome = Outcome::Assigned;
            }
            None => out.outcome = Outcome::NotCovered,
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    pub fn raw(key: &str, variants: &[(&str, f64)]) -> RawSpec {
        RawSpec {
            key: key.into(),
            variants: variants
                .iter()
                .map(|(k, w)| ((*k).to_owned(), *w, false))
                .collect(),
            ..RawSpec::default()
        }
    }

    fn running(raw: RawSpec) -> Experiment {
        let mut e = Experiment::new(ExperimentSpec::parse(raw, 1).expect("valid"));
        e.apply(Action::Start).expect("start");
        e
    }

    fn attrs(v: serde_json::Value) -> Attributes {
        v.as_object().expect("object").clone()
    }

    #[test]
    fn defaults_seed_attribute_version_and_equal_weights() {
        let spec = ExperimentSpec::parse(raw("checkout-button", &[("a", 0.0), ("b", 0.0)]), 2)
            .expect("valid");
        assert_eq!(spec.seed, "checkout-button");
        assert_eq!(spec.hash_attribute, "id");
        assert_eq!(spec.hash_version, 2);
        assert_eq!(spec.weights(), vec![0.5, 0.5]);
        assert_eq!(spec.coverage, 1.0);
        assert_eq!(spec.control, 0);
    }

    #[test]
    fn refuses_bad_specs() {
        let p = |r: RawSpec| ExperimentSpec::parse(r, 2).expect_err("refused");
        assert_eq!(p(raw("x", &[("a", 1.0)])), SpecError::TooFewVariants(1));
        assert_eq!(
            p(raw("x y", &[("a", 0.5), ("b", 0.5)])),
            SpecError::Key("x y".into())
        );
        assert_eq!(
            p(raw("x", &[("a", 0.5), ("a", 0.5)])),
            SpecError::DuplicateVariant("a".into())
        );
        assert!(matches!(
            p(raw("x", &[("a", 0.7), ("b", 0.6)])),
            SpecError::WeightSum(w) if (w - 1.3).abs() < 1e-9
        ));
        assert!(matches!(
            p(raw("x", &[("a", -0.5), ("b", 1.5)])),
            SpecError::Weight { .. }
        ));
        let mut r = raw("x", &[("a", 0.5), ("b", 0.5)]);
        r.coverage = Some(1.2);
        assert_eq!(p(r.clone()), SpecError::Coverage(1.2));
        r.coverage = Some(-0.1);
        assert_eq!(p(r.clone()), SpecError::Coverage(-0.1));
        r.coverage = None;
        r.hash_version = 3;
        assert_eq!(p(r.clone()), SpecError::HashVersion(3));
        r.hash_version = 0;
        r.namespace = Some(Namespace {
            id: "ns".into(),
            start: 0.6,
            end: 0.4,
        });
        assert!(matches!(p(r.clone()), SpecError::Namespace(_)));
        r.namespace = None;
        r.variants[0].2 = true;
        r.variants[1].2 = true;
        assert_eq!(p(r), SpecError::Controls(2));
    }

    #[test]
    fn accepts_weights_within_the_sdk_tolerance() {
        let spec =
            ExperimentSpec::parse(raw("x", &[("a", 0.3334), ("b", 0.3333), ("c", 0.3333)]), 2)
                .expect("valid");
        assert_eq!(spec.weights(), vec![0.3334, 0.3333, 0.3333]);
    }

    #[test]
    fn lifecycle() {
        let mut e = Experiment::new(
            ExperimentSpec::parse(raw("x", &[("a", 0.5), ("b", 0.5)]), 2).expect("valid"),
        );
        assert!(matches!(
            e.apply(Action::Pause),
            Err(Refusal::Transition { .. })
        ));
        e.apply(Action::Start).expect("start");
        e.apply(Action::Start).expect("start again is a no-op");
        e.apply(Action::Pause).expect("pause");
        assert_eq!(e.status, Status::Paused);
        e.apply(Action::Start).expect("resume");
        e.apply(Action::Stop).expect("stop");
        assert!(matches!(
            e.apply(Action::Start),
            Err(Refusal::Transition { .. })
        ));
        let spec = e.spec.clone();
        assert!(matches!(e.update(spec, true), Err(Refusal::Stopped(_))));
    }

    #[test]
    fn a_running_experiment_keeps_its_users_unless_forced() {
        let mut e = running(raw("x", &[("a", 0.5), ("b", 0.5)]));
        let reweighted =
            ExperimentSpec::parse(raw("x", &[("a", 0.2), ("b", 0.8)]), 1).expect("valid");
        let err = e.update(reweighted.clone(), false).expect_err("refused");
        assert_eq!(err.reason(), "WOULD_MOVE_USERS");
        assert!(err.to_string().contains("weights"), "{err}");
        let mut more = raw("x", &[("a", 0.5), ("b", 0.5)]);
        more.coverage = Some(0.5);
        more.metrics = vec!["purchase".into()];
        e.update(ExperimentSpec::parse(more, 1).expect("valid"), false)
            .expect("coverage and metrics do not move users");
        e.update(reweighted, true).expect("forced");
        assert_eq!(e.spec.weights(), vec![0.2, 0.8]);
    }

    /// GrowthBook's "run" cases (cases.json): key "my-test", variations [0, 1], hash version 1,
    /// seed = key; and "Uses seed and hash version"/"Experiment coverage"/"Experiment namespace".
    #[test]
    fn assigns_like_the_sdk_test_suite() {
        let e = running(raw("my-test", &[("0", 0.5), ("1", 0.5)]));
        let a = e.assign(&attrs(json!({"id": "1"})));
        assert!(a.in_experiment && a.hash_used);
        assert_eq!(a.variation_index, 1);
        let a = e.assign(&attrs(json!({"id": null})));
        assert_eq!(
            (a.in_experiment, a.outcome),
            (false, Outcome::NoHashAttribute)
        );
        assert_eq!(a.variation_index, 0);
        let a = e.assign(&attrs(json!({})));
        assert_eq!(a.outcome, Outcome::NoHashAttribute);

        let mut custom = raw("my-test", &[("0", 0.5), ("1", 0.5)]);
        custom.hash_attribute = "companyId".into();
        let a = running(custom).assign(&attrs(json!({"id": "2", "companyId": "1"})));
        assert_eq!((a.in_experiment, a.variation_index), (true, 1));
        assert_eq!(a.hash_attribute_value, "1");

        let mut ns = raw("my-test", &[("0", 0.5), ("1", 0.5)]);
        ns.namespace = Some(Namespace {
            id: "namespace".into(),
            start: 0.1,
            end: 1.0,
        });
        let a = running(ns.clone()).assign(&attrs(json!({"id": "1"})));
        assert_eq!((a.in_experiment, a.variation_index), (true, 1));
        ns.namespace = Some(Namespace {
            id: "namespace".into(),
            start: 0.0,
            end: 0.1,
        });
        let a = running(ns).assign(&attrs(json!({"id": "1"})));
        assert_eq!(a.outcome, Outcome::NotInNamespace);

        let mut zero = raw("no-coverage", &[("0", 0.5), ("1", 0.5)]);
        zero.coverage = Some(0.0);
        let a = running(zero).assign(&attrs(json!({"id": "1"})));
        assert_eq!((a.in_experiment, a.outcome), (false, Outcome::NotCovered));

        let mut seeded = raw("key", &[("0", 0.5), ("1", 0.5)]);
        seeded.seed = "foo".into();
        seeded.hash_version = 2;
        let a = running(seeded.clone()).assign(&attrs(json!({"id": "1"})));
        assert_eq!((a.in_experiment, a.variation_index), (true, 1));
        seeded.coverage = Some(0.99);
        let a = running(seeded).assign(&attrs(json!({"id": "1"})));
        assert_eq!((a.in_experiment, a.variation_index), (true, 1));

        // "empty experiment rule": key "feature", three variations, ids 123/456/fds.
        let three = running(raw("feature", &[("a", 0.0), ("b", 0.0), ("c", 0.0)]));
        for (id, index, bucket) in [("123", 2, 0.863), ("456", 0, 0.178), ("fds", 1, 0.514)] {
            let a = three.assign(&attrs(json!({ "id": id })));
            assert_eq!((a.variation_index, a.bucket), (index, Some(bucket)), "{id}");
        }
        // "handles integer hashAttribute": 123 hashes as "123".
        let a = three.assign(&attrs(json!({"id": 123})));
        assert_eq!((a.variation_index, a.bucket), (2, Some(0.863)));
    }

    #[test]
    fn only_running_experiments_assign() {
        let mut e = running(raw("my-test", &[("0", 0.5), ("1", 0.5)]));
        e.apply(Action::Pause).expect("pause");
        let a = e.assign(&attrs(json!({"id": "1"})));
        assert_eq!((a.in_experiment, a.outcome), (false, Outcome::NotRunning));
    }

    #[test]
    fn unequal_weights_split_traffic_in_proportion() {
        let e = running(raw("split", &[("a", 0.1), ("b", 0.2), ("c", 0.7)]));
        let mut counts = [0u32; 3];
        for i in 0..20_000 {
            let a = e.assign(&attrs(json!({ "id": format!("user-{i}") })));
            counts[a.variation_index] += 1;
        }
        for (got, share) in counts.iter().zip([0.1, 0.2, 0.7]) {
            let expected = 20_000.0 * share;
            assert!(
                (f64::from(*got) - expected).abs() < expected * 0.1,
                "{counts:?}"
            );
        }
    }
}
