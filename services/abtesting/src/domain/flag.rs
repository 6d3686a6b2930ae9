//! Feature flags: a default value and rules tried in order — force (a value for users matching
//! conditions), rollout (a value for a hashed share of them, hashed as GrowthBook's rollouts
//! are) and experiment (the value of the variant a running experiment assigns). The first rule
//! that applies decides; none applying gives the default.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    Attributes, attribute,
    experiment::{Assignment, DEFAULT_HASH_ATTRIBUTE, Experiment},
    hash_input, hashing,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    Eq,
    Ne,
    In,
    NotIn,
    Gt,
    Gte,
    Lt,
    Lte,
    VersionEq,
    VersionNe,
    VersionGt,
    VersionGte,
    VersionLt,
    VersionLte,
}

/// `attribute op operand`; every condition of a rule must hold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Condition {
    pub attribute: String,
    pub op: Op,
    pub operand: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Rule {
    Force {
        conditions: Vec<Condition>,
        value: Value,
    },
    Rollout {
        conditions: Vec<Condition>,
        value: Value,
        /// Share of matching users who get `value`: those whose bucket is `<= coverage`.
        coverage: f64,
        hash_attribute: String,
        /// Defaults to the flag key, as in GrowthBook.
        seed: String,
        hash_version: u32,
    },
    Experiment {
        conditions: Vec<Condition>,
        experiment_key: String,
        /// One value per variant of the experiment, in its order.
        values: Vec<Value>,
    },
}

impl Rule {
    fn conditions(&self) -> &[Condition] {
        match self {
            Self::Force { conditions, .. }
            | Self::Rollout { conditions, .. }
            | Self::Experiment { conditions, .. } => conditions,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureFlag {
    pub key: String,
    pub environment: String,
    pub default_value: Value,
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FlagError {
    #[error("flag key {0:?} must be 1 to 100 characters: letters, digits, '-', '_' or '.'")]
    Key(String),
    #[error("environment {0:?} must be 1 to 50 characters: letters, digits, '-' or '_'")]
    Environment(String),
    #[error("rule {index}: {message}")]
    Rule { index: usize, message: String },
}

/// Which rule decided a flag's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Default,
    Force,
    Rollout,
    Experiment,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub key: String,
    pub value: Value,
    pub source: Source,
    /// Index of the deciding rule; `None` for the default.
    pub rule: Option<usize>,
    /// The assignment, when an experiment rule decided.
    pub assignment: Option<Assignment>,
}

fn flag_key_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 100
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

impl FeatureFlag {
    /// Checks a flag; `experiment` finds a referenced experiment so that its variant count can
    /// be checked against the rule's values.
    pub fn validate<'a>(
        &self,
        experiment: impl Fn(&str) -> Option<&'a Experiment>,
    ) -> Result<(), FlagError> {
        if !flag_key_ok(&self.key) {
            return Err(FlagError::Key(self.key.clone()));
        }
        if self.environment.is_empty()
            || self.environment.len() > 50
            || !self
                .environment
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        {
            return Err(FlagError::Environment(self.environment.clone()));
        }
        for (index, rule) in self.rules.iter().enumerate() {
            let bad = |message: String| FlagError::Rule { index, message };
            for c in rule.conditions() {
                if c.attribute.is_empty() {
                    return Err(bad("a condition needs an attribute".into()));
                }
                match c.op {
                    Op::In | Op::NotIn if !c.operand.is_array() => {
                        return Err(bad(format!(
                            "condition on {:?}: in / not in need a JSON array",
                            c.attribute
                        )));
                    }
                    Op::Gt | Op::Gte | Op::Lt | Op::Lte
                        if !(c.operand.is_number() || c.operand.is_string()) =>
                    {
                        return Err(bad(format!(
                            "condition on {:?}: comparisons need a number or a string",
                            c.attribute
                        )));
                    }
                    Op::VersionEq
                    | Op::VersionNe
                    | Op::VersionGt
                    | Op::VersionGte
                    | Op::VersionLt
                    | Op::VersionLte
                        if !c.operand.is_string() =>
                    {
                        return Err(bad(format!(
                            "condition on {:?}: version comparisons need a version string",
                            c.attribute
                        )));
                    }
                    _ => {}
                }
            }
            match rule {
                Rule::Force { .. } => {}
                Rule::Rollout {
                    coverage,
                    hash_version,
                    ..
                } => {
                    if !(0.0..=1.0).contains(coverage) {
                        return Err(bad(format!("coverage {coverage} must be between 0 and 1")));
                    }
                    if !matches!(hash_version, 1 | 2) {
                        return Err(bad(format!(
                            "hash_version {hash_version} is unknown; use 1 or 2"
                        )));
                    }
                }
                Rule::Experiment {
                    experiment_key,
                    values,
                    ..
                } => {
                    let e = experiment(experiment_key).ok_or_else(|| {
                        bad(format!("experiment {experiment_key} does not exist"))
                    })?;
                    if values.len() != e.spec.variants.len() {
                        return Err(bad(format!(
                            "experiment {experiment_key} has {} variants but the rule gives {} values",
                            e.spec.variants.len(),
                            values.len()
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    /// The flag's value for these attributes.
    pub fn evaluate<'a>(
        &self,
        attributes: &Attributes,
        experiment: impl Fn(&str) -> Option<&'a Experiment>,
    ) -> Evaluation {
        let decided = |value: &Value, source, rule, assignment| Evaluation {
            key: self.key.clone(),
            value: value.clone(),
            source,
            rule: Some(rule),
            assignment,
        };
        for (i, rule) in self.rules.iter().enumerate() {
            if !rule.conditions().iter().all(|c| c.holds(attributes)) {
                continue;
            }
            match rule {
                Rule::Force { value, .. } => return decided(value, Source::Force, i, None),
                Rule::Rollout {
                    value,
                    coverage,
                    hash_attribute,
                    seed,
                    hash_version,
                    ..
                } => {
                    let seed = if seed.is_empty() { &self.key } else { seed };
                    let attribute_name = if hash_attribute.is_empty() {
                        DEFAULT_HASH_ATTRIBUTE
                    } else {
                        hash_attribute
                    };
                    if in_rollout(attributes, attribute_name, seed, *hash_version, *coverage) {
                        return decided(value, Source::Rollout, i, None);
                    }
                }
                Rule::Experiment {
                    experiment_key,
                    values,
                    ..
                } => {
                    let Some(e) = experiment(experiment_key) else {
                        continue;
                    };
                    let a = e.assign(attributes);
                    if let (true, Some(value)) = (a.in_experiment, values.get(a.variation_index)) {
                        return decided(value, Source::Experiment, i, Some(a));
                    }
                }
            }
        }
        Evaluation {
            key: self.key.clone(),
            value: self.default_value.clone(),
            source: Source::Default,
            rule: None,
            assignment: None,
        }
    }
}

/// GrowthBook's `isIncludedInRollout` for a coverage: no one at 0, else a bucket `<= coverage`.
fn in_rollout(
    attributes: &Attributes,
    hash_attribute: &str,
    seed: &str,
    hash_version: u32,
    coverage: f64,
) -> bool {
    if coverage <= 0.0 {
        return false;
    }
    hash_input(attribute(attributes, hash_attribute))
        .and_then(|value| hashing::hash(seed, &value, hash_version))
        .is_some_and(|n| n <= coverage)
}

impl Condition {
    /// Whether the condition holds. A missing attribute satisfies only `ne` and `not in`.
    pub fn holds(&self, attributes: &Attributes) -> bool {
        let Some(actual) = attribute(attributes, &self.attribute) else {
            return matches!(self.op, Op::Ne | Op::NotIn);
        };
        let expected = &self.operand;
        match self.op {
            Op::Eq => json_eq(actual, expected),
            Op::Ne => !json_eq(actual, expected),
            Op::In => contains(expected, actual),
            Op::NotIn => !contains(expected, actual),
            Op::Gt => compare(actual, expected) == Some(Ordering::Greater),
            Op::Gte => matches!(
                compare(actual, expected),
                Some(Ordering::Greater | Ordering::Equal)
            ),
            Op::Lt => compare(actual, expected) == Some(Ordering::Less),
            Op::Lte => matches!(
                compare(actual, expected),
                Some(Ordering::Less | Ordering::Equal)
            ),
            Op::VersionEq => version_cmp(actual, expected) == Some(Ordering::Equal),
            Op::VersionNe => version_cmp(actual, expected).is_some_and(Ordering::is_ne),
            Op::VersionGt => version_cmp(actual, expected) == Some(Ordering::Greater),
            Op::VersionGte => matches!(
                version_cmp(actual, expected),
                Some(Ordering::Greater | Ordering::Equal)
            ),
            Op::VersionLt => version_cmp(actual, expected) == Some(Ordering::Less),
            Op::VersionLte => matches!(
                version_cmp(actual, expected),
                Some(Ordering::Less | Ordering::Equal)
            ),
        }
    }
}

/// JSON equality where 1 and 1.0 are the same number.
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// `actual` is in the array `list`; an array `actual` needs one element in common.
fn contains(list: &Value, actual: &Value) -> bool {
    let Some(list) = list.as_array() else {
        return false;
    };
    match actual {
        Value::Array(items) => items.iter().any(|i| list.iter().any(|l| json_eq(i, l))),
        _ => list.iter().any(|l| json_eq(actual, l)),
    }
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Numbers compare as numbers (a numeric string counts as its number, as JavaScript compares
/// `"8" > 5`); two strings compare as strings; anything else does not compare.
fn compare(actual: &Value, expected: &Value) -> Option<Ordering> {
    match (actual, expected) {
        (Value::String(a), Value::String(b)) => Some(a.as_str().cmp(b.as_str())),
        _ => number(actual)?.partial_cmp(&number(expected)?),
    }
}

fn version_cmp(actual: &Value, expected: &Value) -> Option<Ordering> {
    let text = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    Some(padded_version(&text(actual)?).cmp(&padded_version(&text(expected)?)))
}

/// A version turned into a string that orders as semantic versions do, as GrowthBook's SDKs
/// compare them: drop a leading `v` and any `+build`; split at `.` and `-`; a plain
/// `major.minor.patch` gets a `~` part so it sorts after its pre-releases; numeric parts are
/// left-padded to 5 places so `9` sorts before `10`.
pub fn padded_version(version: &str) -> String {
    let version = version.strip_prefix('v').unwrap_or(version);
    let version = version.split_once('+').map_or(version, |(v, _)| v);
    let mut parts: Vec<&str> = version.split(['.', '-']).collect();
    if parts.len() == 3 {
        parts.push("~");
    }
    parts
        .iter()
        .map(|p| {
            if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) {
                format!("{p:>5}")
            } else {
                (*p).to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// A condition of a flag's rule that names one user (an erasure's subject): for an export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mention {
    /// Index of the rule in the flag.
    pub rule: usize,
    pub attribute: String,
    pub op: Op,
}

impl Condition {
    /// Whether the condition names `user`: it is the operand, or in the operand's list.
    fn names(&self, user: &str) -> bool {
        match &self.operand {
            Value::String(s) => s == user,
            Value::Array(items) => items.iter().any(|v| v.as_str() == Some(user)),
            _ => false,
        }
    }
}

impl FeatureFlag {
    /// The conditions that name `user`, rule by rule.
    pub fn mentions(&self, user: &str) -> Vec<Mention> {
        self.rules
            .iter()
            .enumerate()
            .flat_map(|(rule, r)| {
                r.conditions()
                    .iter()
                    .filter(|c| c.names(user))
                    .map(move |c| Mention {
                        rule,
                        attribute: c.attribute.clone(),
                        op: c.op,
                    })
            })
            .collect()
    }

    /// Removes `user` from the flag's targeting, changing what no other user gets: a rule that
    /// only `user` matches (`eq` them, or `in` a list of them alone) goes, they leave any list
    /// (`in`, `not in`), and a condition that only excluded them (`ne` them, or `not in` a list
    /// of them alone) goes. Returns the conditions that named them.
    pub fn forget(&mut self, user: &str) -> u64 {
        let mut forgotten = 0;
        self.rules.retain_mut(|rule| {
            let conditions = match rule {
                Rule::Force { conditions, .. }
                | Rule::Rollout { conditions, .. }
                | Rule::Experiment { conditions, .. } => conditions,
            };
            let mut matches_nobody = false;
            conditions.retain_mut(|c| {
                if !c.names(user) {
                    return true;
                }
                forgotten += 1;
                if let Value::Array(items) = &mut c.operand {
                    items.retain(|v| v.as_str() != Some(user));
                }
                let left = match &c.operand {
                    Value::Array(items) => !items.is_empty(),
                    _ => false,
                };
                match c.op {
                    // Held for them alone: with them gone it holds for nobody.
                    Op::Eq | Op::In if !left => {
                        matches_nobody = true;
                        true
                    }
                    // Held for everyone but them: with them gone it always holds.
                    Op::Ne | Op::NotIn if !left => false,
                    _ => true,
                }
            });
            !matches_nobody
        });
        forgotten
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::domain::experiment::{Action, ExperimentSpec, RawSpec};

    fn attrs(v: Value) -> Attributes {
        v.as_object().expect("object").clone()
    }

    fn cond(attribute: &str, op: Op, operand: Value) -> Condition {
        Condition {
            attribute: attribute.into(),
            op,
            operand,
        }
    }

    fn flag(rules: Vec<Rule>) -> FeatureFlag {
        FeatureFlag {
            key: "feature".into(),
            environment: "production".into(),
            default_value: json!(0),
            rules,
        }
    }

    fn no_experiments(_: &str) -> Option<&'static Experiment> {
        None
    }

    #[test]
    fn conditions() {
        let a = attrs(json!({
            "country": "US", "age": 30, "n": "8", "tags": ["a", "b"], "v": "1.2.3",
            "address": {"state": "CA"}
        }));
        let cases = [
            (cond("country", Op::Eq, json!("US")), true),
            (cond("country", Op::Eq, json!("CA")), false),
            (cond("country", Op::Ne, json!("CA")), true),
            (cond("missing", Op::Ne, json!("CA")), true),
            (cond("missing", Op::Eq, json!("CA")), false),
            (cond("country", Op::In, json!(["US", "CA"])), true),
            (cond("country", Op::NotIn, json!(["US", "CA"])), false),
            (cond("missing", Op::NotIn, json!(["US"])), true),
            (cond("tags", Op::In, json!(["b", "z"])), true),
            (cond("tags", Op::NotIn, json!(["z"])), true),
            (cond("age", Op::Gt, json!(29)), true),
            (cond("age", Op::Gt, json!(30)), false),
            (cond("age", Op::Gte, json!(30)), true),
            (cond("age", Op::Lt, json!(30)), false),
            (cond("age", Op::Lte, json!(30.0)), true),
            (cond("age", Op::Eq, json!(30.0)), true),
            // GrowthBook's "comparing numbers and strings" cases.
            (cond("n", Op::Gt, json!(5)), true),
            (cond("n", Op::Lt, json!(10)), true),
            (cond("age", Op::Gt, json!("5")), true),
            (cond("country", Op::Gt, json!("AA")), true),
            (cond("country", Op::Gt, json!(5)), false),
            (cond("address.state", Op::Eq, json!("CA")), true),
            (cond("v", Op::VersionGt, json!("1.2.2")), true),
            (cond("v", Op::VersionLt, json!("1.10.0")), true),
            (cond("v", Op::VersionEq, json!("v1.2.3+build")), true),
            (cond("v", Op::VersionNe, json!("1.2.3-alpha")), true),
            (cond("v", Op::VersionGte, json!("1.2.3")), true),
            (cond("v", Op::VersionLte, json!("1.2.3-rc.1")), false),
        ];
        for (c, expected) in cases {
            assert_eq!(c.holds(&a), expected, "{c:?}");
        }
    }

    /// `versionCompare` cases of GrowthBook's SDK test suite (cases.json).
    #[test]
    fn versions_compare_like_the_sdk_test_suite() {
        let lt = [
            ("0.9.99", "1.0.0"),
            ("0.9.0", "0.10.0"),
            ("1.0.0-0.0", "1.0.0-0.0.0"),
            ("1.0.0-9999", "1.0.0--"),
            ("1.0.0-99", "1.0.0-100"),
            ("1.0.0-alpha", "1.0.0-alpha.1"),
            ("1.0.0-alpha.1", "1.0.0-alpha.beta"),
            ("1.0.0-alpha.beta", "1.0.0-beta"),
            ("1.0.0-beta", "1.0.0-beta.2"),
            ("1.0.0-beta.2", "1.0.0-beta.11"),
            ("1.0.0-beta.11", "1.0.0-rc.1"),
            ("1.0.0-rc.1", "1.0.0"),
            ("1.0.0-0", "1.0.0--1"),
            ("1.0.0-0", "1.0.0-1"),
            ("1.0.0-1.0", "1.0.0-1.-1"),
        ];
        for (a, b) in lt {
            assert!(padded_version(a) < padded_version(b), "{a} < {b}");
        }
        let gt = [
            ("0.0.0", "0.0.0-foo"),
            ("1.0.0", "0.9.9"),
            ("0.99.0", "0.10.0"),
            ("v2.0.0", "1.2.3"),
            ("0.0.0", "v0.0.0-foo"),
            ("1.2.3", "1.2.3-4-foo"),
            ("1.2.3-5-foo", "1.2.3-5-Foo"),
            ("3.0.0", "2.7.2+asdf"),
            ("1.2.3-a.10", "1.2.3-a.5"),
            ("1.2.3-a.b", "1.2.3-a.5"),
            ("1.2.3-r100", "1.2.3-R2"),
            ("a.b.c.d.e.f", "1.2.3"),
            ("10000.0.0", "9999.0.0"),
        ];
        for (a, b) in gt {
            assert!(padded_version(a) > padded_version(b), "{a} > {b}");
        }
        assert!(padded_version("1.2.3-a.b.c") <= padded_version("1.2.3-a.b.c.d"));
        let eq = [
            ("1.2.3", "v1.2.3"),
            ("1.2.3-beta+build", "v1.2.3-beta+otherbuild"),
            ("1-2-3", "1.2.3"),
            ("1-2-3", "1-2.3+build99"),
            ("1.2.3.4", "1.2.3-4"),
        ];
        for (a, b) in eq {
            assert_eq!(padded_version(a), padded_version(b), "{a} == {b}");
        }
    }

    /// GrowthBook's "feature" cases: force rules with conditions, in order, and rollouts
    /// ("force rules - coverage included/excluded": ids "3" in, "1" out at 0.5, hash v1).
    #[test]
    fn rules_in_order() {
        let f = flag(vec![
            Rule::Force {
                conditions: vec![cond("browser", Op::Eq, json!("chrome"))],
                value: json!(1),
            },
            Rule::Force {
                conditions: vec![cond("browser", Op::Eq, json!("firefox"))],
                value: json!(2),
            },
            Rule::Force {
                conditions: vec![cond("browser", Op::Eq, json!("safari"))],
                value: json!(3),
            },
        ]);
        let e = f.evaluate(&attrs(json!({"browser": "firefox"})), no_experiments);
        assert_eq!(
            (e.value, e.source, e.rule),
            (json!(2), Source::Force, Some(1))
        );
        let e = f.evaluate(&attrs(json!({"browser": "ie"})), no_experiments);
        assert_eq!(
            (e.value, e.source, e.rule),
            (json!(0), Source::Default, None)
        );

        let rollout = |coverage| {
            flag(vec![Rule::Rollout {
                conditions: vec![],
                value: json!(1),
                coverage,
                hash_attribute: String::new(),
                seed: String::new(),
                hash_version: 1,
            }])
        };
        let half = rollout(0.5);
        assert_eq!(
            half.evaluate(&attrs(json!({"id": "3"})), no_experiments)
                .source,
            Source::Rollout
        );
        assert_eq!(
            half.evaluate(&attrs(json!({"id": 3})), no_experiments)
                .source,
            Source::Rollout
        );
        assert_eq!(
            half.evaluate(&attrs(json!({"id": "1"})), no_experiments)
                .source,
            Source::Default
        );
        assert_eq!(
            half.evaluate(&attrs(json!({})), no_experiments).source,
            Source::Default
        );
        assert_eq!(
            rollout(0.0)
                .evaluate(&attrs(json!({"id": "3"})), no_experiments)
                .source,
            Source::Default
        );
        assert_eq!(
            rollout(1.0)
                .evaluate(&attrs(json!({"id": "1"})), no_experiments)
                .source,
            Source::Rollout
        );
    }

    fn lookup<'a>(e: &'a Experiment) -> impl Fn(&str) -> Option<&'a Experiment> + 'a {
        move |k| (k == "feature").then_some(e)
    }

    #[test]
    fn experiment_rules_use_the_assigned_variant() {
        let mut exp = Experiment::new(
            ExperimentSpec::parse(
                RawSpec {
                    key: "feature".into(),
                    variants: vec![
                        ("a".into(), 0.0, false),
                        ("b".into(), 0.0, false),
                        ("c".into(), 0.0, false),
                    ],
                    ..RawSpec::default()
                },
                1,
            )
            .expect("valid"),
        );
        let f = flag(vec![
            Rule::Experiment {
                conditions: vec![],
                experiment_key: "feature".into(),
                values: vec![json!("a"), json!("b"), json!("c")],
            },
            Rule::Force {
                conditions: vec![],
                value: json!("fallback"),
            },
        ]);
        // Not running: the experiment rule is skipped.
        let ev = f.evaluate(&attrs(json!({"id": "123"})), lookup(&exp));
        assert_eq!((ev.value, ev.source), (json!("fallback"), Source::Force));
        exp.apply(Action::Start).expect("start");
        let ev = f.evaluate(&attrs(json!({"id": "123"})), lookup(&exp));
        assert_eq!(
            (ev.value.clone(), ev.source, ev.rule),
            (json!("c"), Source::Experiment, Some(0))
        );
        assert_eq!(ev.assignment.expect("assignment").bucket, Some(0.863));

        assert!(f.validate(lookup(&exp)).is_ok());
        let short = flag(vec![Rule::Experiment {
            conditions: vec![],
            experiment_key: "feature".into(),
            values: vec![json!("a")],
        }]);
        assert!(matches!(
            short.validate(lookup(&exp)),
            Err(FlagError::Rule { index: 0, .. })
        ));
        assert!(matches!(
            short.validate(no_experiments),
            Err(FlagError::Rule { .. })
        ));
    }

    #[test]
    fn validation() {
        let mut f = flag(vec![Rule::Force {
            conditions: vec![cond("country", Op::In, json!("US"))],
            value: json!(1),
        }]);
        assert!(matches!(
            f.validate(no_experiments),
            Err(FlagError::Rule { .. })
        ));
        f.rules.clear();
        f.key = "bad key".into();
        assert!(matches!(f.validate(no_experiments), Err(FlagError::Key(_))));
    }

    #[test]
    fn forgetting_a_user_changes_what_nobody_else_gets() {
        let mut f = flag(vec![
            Rule::Force {
                conditions: vec![cond("id", Op::Eq, json!("ann"))],
                value: json!(1),
            },
            Rule::Force {
                conditions: vec![
                    cond("id", Op::In, json!(["bob", "ann"])),
                    cond("country", Op::Eq, json!("SG")),
                ],
                value: json!(2),
            },
            Rule::Force {
                conditions: vec![cond("id", Op::In, json!(["ann"]))],
                value: json!(3),
            },
            Rule::Force {
                conditions: vec![
                    cond("id", Op::Ne, json!("ann")),
                    cond("id", Op::NotIn, json!(["ann", "cat"])),
                    cond("id", Op::NotIn, json!(["ann"])),
                ],
                value: json!(4),
            },
        ]);
        assert_eq!(
            f.mentions("ann")
                .iter()
                .map(|m| (m.rule, m.op))
                .collect::<Vec<_>>(),
            vec![
                (0, Op::Eq),
                (1, Op::In),
                (2, Op::In),
                (3, Op::Ne),
                (3, Op::NotIn),
                (3, Op::NotIn)
            ]
        );
        let before = f.clone();
        assert_eq!(f.forget("ann"), 6);
        assert_eq!(
            f.rules,
            vec![
                Rule::Force {
                    conditions: vec![
                        cond("id", Op::In, json!(["bob"])),
                        cond("country", Op::Eq, json!("SG")),
                    ],
                    value: json!(2),
                },
                Rule::Force {
                    conditions: vec![cond("id", Op::NotIn, json!(["cat"]))],
                    value: json!(4),
                },
            ]
        );
        for user in ["bob", "cat", "dan"] {
            for country in ["SG", "US"] {
                let a = attrs(json!({"id": user, "country": country}));
                assert_eq!(
                    f.evaluate(&a, no_experiments).value,
                    before.evaluate(&a, no_experiments).value,
                    "{user} in {country}"
                );
            }
        }
        assert_eq!(f.forget("ann"), 0);
        assert!(f.mentions("ann").is_empty());
    }
}
