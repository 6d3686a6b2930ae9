//! The `Fleet` resource (cluster-scoped): one Titan release rolled through the cells that name
//! it (`Cell.spec.rollout.fleet`) wave by wave, each wave after the ones before it ran the
//! release Ready for a bake time. A resource rather than a chart value because a rollout has
//! progress to keep (bake clocks, a halt) and to show and steer with `kubectl`.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::conditions_schema;

/// Annotation that resumes a halted rollout: an RFC 3339 time later than the halt clears it and
/// restarts the failing cell's readiness deadline (`kubectl annotate fleet/<name>
/// commerce.titan.dev/resumed-at=$(date -u +%FT%TZ) --overwrite`).
pub const RESUMED_AT: &str = "commerce.titan.dev/resumed-at";

/// The condition a Fleet reports while a failing cell holds its rollout.
pub const HALTED: &str = "Halted";

/// A duration such as `30m`, `1h` or `1h30m`: digits and a unit (`s`, `m`, `h`), repeated.
const DURATION_PATTERN: &str = r"^([0-9]+[smh])+$";

/// A decimal such as `0.05`, `1` or `-2.5`: what `spec.analysis.max` holds.
const DECIMAL_PATTERN: &str = r"^-?[0-9]+(\.[0-9]+)?$";

/// The placeholder of `spec.analysis.query` replaced by the cell's name.
pub const CELL_PLACEHOLDER: &str = "{{cell}}";

/// The placeholder of `spec.analysis.query` replaced by the namespace the cell's workloads run in.
pub const NAMESPACE_PLACEHOLDER: &str = "{{namespace}}";

/// The default `spec.analysis.query`: the share of a cell's gRPC calls over the last 5 minutes
/// that failed on the server's side, from kit's `titan_grpc_requests_total` (scraped with a
/// `namespace` label, as the chart's PodMonitor does). Codes a correct server returns because
/// of the request are not failures: `Canceled` (the client gave up), `InvalidArgument`,
/// `OutOfRange`, `NotFound`, `AlreadyExists`, `FailedPrecondition` (business refusals such as
/// sold out), `PermissionDenied`, `Unauthenticated`, and `Aborted` (chat's slow consumer).
/// Counted: `Internal`, `Unknown`, `DataLoss`, `Unavailable`, `DeadlineExceeded`,
/// `ResourceExhausted` (load shedding: a slower release sheds more) and `Unimplemented` (a
/// release that lost a method clients still call). No failing code at all is 0 (`or
/// vector(0)`); no traffic is no series, or NaN (0/0) once the traffic stopped: no data.
pub const KIT_ERROR_RATIO: &str = r#"(sum(rate(titan_grpc_requests_total{namespace="{{namespace}}", grpc_code!~"OK|Canceled|InvalidArgument|OutOfRange|NotFound|AlreadyExists|FailedPrecondition|PermissionDenied|Unauthenticated|Aborted"}[5m])) or vector(0)) / sum(rate(titan_grpc_requests_total{namespace="{{namespace}}"}[5m]))"#;

/// Bounds of `spec.analysis.interval`: a query every few seconds would load Prometheus for
/// nothing (its data moves once per scrape), and one every hour would let a bad wave bake
/// unseen. The schema refuses values outside; the planner holds such values within them too.
pub const ANALYSIS_INTERVAL_MIN: Duration = Duration::from_secs(10);
/// See [`ANALYSIS_INTERVAL_MIN`].
pub const ANALYSIS_INTERVAL_MAX: Duration = Duration::from_secs(30 * 60);

/// The desired state of a fleet rollout.
// kube's printcolumn(...) repeats `type_ = ...` per column, which clippy takes for duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[kube(
    group = "commerce.titan.dev",
    version = "v1alpha1",
    kind = "Fleet",
    plural = "fleets",
    shortname = "fleet",
    category = "titan",
    status = "FleetStatus",
    derive = "PartialEq",
    doc = "A fleet rollout: the Titan release its member cells (spec.rollout.fleet) run, released wave by wave (spec.rollout.wave, 0 = canary) once the waves before ran it Ready for the bake time.",
    printcolumn(
        name = "Version",
        type_ = "string",
        json_path = ".spec.version",
        description = "The release the fleet rolls out"
    ),
    printcolumn(
        name = "Wave reached",
        type_ = "integer",
        json_path = ".status.waveReached",
        description = "The highest wave the release has been released to"
    ),
    printcolumn(
        name = "Halted",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Halted\")].status",
        description = "Whether a failing cell holds the rollout"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct FleetSpec {
    /// Target Titan release of every member cell (the image tag, as a Cell's `spec.version`).
    /// Setting it back to the release the fleet ran before returns every cell that moved to it
    /// at once: that release already baked.
    #[schemars(
        length(max = 128),
        regex(pattern = r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
    )]
    pub version: String,
    /// How long every cell of the waves released so far must run the release Ready, without a
    /// break, before the next wave gets it (`30m`, `1h`, `1h30m`; default `1h`).
    #[serde(default = "default_bake_time")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub bake_time: String,
    /// How long a cell that took the release may take to be Ready with it before it halts the
    /// rollout (default `15m`).
    #[serde(default = "default_ready_timeout")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub ready_timeout: String,
    /// When true no wave is released a version it does not have yet; cells keep what they run.
    #[serde(default)]
    pub paused: bool,
    /// An error-rate check from Prometheus, evaluated for every cell that runs the release in
    /// a released wave while the rollout is in progress: a value above `max` halts the rollout
    /// (reason `ErrorRate`); a query that fails holds the wave until it answers. Absent: no
    /// check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<Analysis>,
}

/// `spec.analysis`: one PromQL query per cell, compared with a maximum (after Argo Rollouts'
/// and Flagger's Prometheus analysis, kept to one query).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Analysis {
    /// Base URL of a Prometheus HTTP API, http or https (`http://prometheus.monitoring:9090`);
    /// the operator sends instant queries to `<prometheus>/api/v1/query`.
    #[schemars(
        length(min = 1, max = 2048),
        regex(pattern = r"^https?://[^\s/?#]+(/[^\s?#]*)?$")
    )]
    pub prometheus: String,
    /// PromQL instant query answering one number per cell (a scalar, or a vector of at most one
    /// series; no series means no traffic, which counts as healthy). `{{cell}}` is replaced by
    /// the Cell's name and `{{namespace}}` by the namespace its workloads run in, escaped for a
    /// double-quoted PromQL string (`\` and `"` get a backslash), so write them inside double
    /// quotes: `namespace="{{namespace}}"`. Default: the share of the cell's gRPC calls over
    /// 5 minutes that failed on the server's side (kit's `titan_grpc_requests_total`; client
    /// codes such as `InvalidArgument` or `NotFound` are not failures).
    #[serde(default = "default_analysis_query")]
    #[schemars(length(min = 1, max = 8192))]
    pub query: String,
    /// The highest acceptable value, a decimal string (`"0.05"`: 5% errors for a ratio); a
    /// cell whose query answers more halts the rollout, exactly this much does not.
    #[schemars(length(min = 1, max = 32), regex(pattern = DECIMAL_PATTERN))]
    pub max: String,
    /// How often the query runs while the rollout is in progress (default `1m`, `10s` to
    /// `30m`).
    #[serde(default = "default_analysis_interval")]
    #[schemars(length(min = 2, max = 32), regex(pattern = DURATION_PATTERN))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "duration(self) >= duration('10s') && duration(self) <= duration('30m')",
        "message": "interval must be between 10s and 30m"
    }]))]
    pub interval: String,
}

fn default_bake_time() -> String {
    "1h".into()
}

fn default_ready_timeout() -> String {
    "15m".into()
}

fn default_analysis_query() -> String {
    KIT_ERROR_RATIO.into()
}

fn default_analysis_interval() -> String {
    "1m".into()
}

/// A duration field that does not match `([0-9]+[smh])+` (the schema refuses it; this is for
/// objects that bypassed it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} is {value:?}: expected a duration such as 30m, 1h or 1h30m")]
pub struct InvalidDuration {
    /// The field (`spec.bakeTime`).
    pub field: &'static str,
    /// What it holds.
    pub value: String,
}

/// Parses `30m`, `1h`, `1h30m`, `45s`.
pub fn parse_duration(field: &'static str, value: &str) -> Result<Duration, InvalidDuration> {
    let invalid = || InvalidDuration {
        field,
        value: value.to_string(),
    };
    if value.is_empty() {
        return Err(invalid());
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in value.chars() {
        match c {
            '0'..='9' => digits.push(c),
            's' | 'm' | 'h' => {
                let n: u64 = digits.parse().map_err(|_| invalid())?;
                let unit = match c {
                    's' => 1,
                    'm' => 60,
                    _ => 3600,
                };
                total = n
                    .checked_mul(unit)
                    .and_then(|s| total.checked_add(s))
                    .ok_or_else(invalid)?;
                digits.clear();
            }
            _ => return Err(invalid()),
        }
    }
    if !digits.is_empty() {
        return Err(invalid());
    }
    Ok(Duration::from_secs(total))
}

impl FleetSpec {
    /// `spec.bakeTime` as a duration.
    pub fn bake_time(&self) -> Result<Duration, InvalidDuration> {
        parse_duration("spec.bakeTime", &self.bake_time)
    }

    /// `spec.readyTimeout` as a duration.
    pub fn ready_timeout(&self) -> Result<Duration, InvalidDuration> {
        parse_duration("spec.readyTimeout", &self.ready_timeout)
    }
}

/// `spec.analysis.max` that is not a decimal (the schema refuses it; this is for objects that
/// bypassed it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("spec.analysis.max is {0:?}: expected a decimal such as 0.05")]
pub struct InvalidMax(pub String);

impl Analysis {
    /// `max` as a number.
    pub fn max(&self) -> Result<f64, InvalidMax> {
        // Checked as the schema's pattern: Rust's float syntax also takes `inf`, `NaN`, `1e3`.
        let digits = self.max.strip_prefix('-').unwrap_or(&self.max);
        let (whole, fraction) = digits.split_once('.').unwrap_or((digits, "0"));
        let decimal = [whole, fraction]
            .iter()
            .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()));
        match self.max.parse() {
            Ok(value) if decimal => Ok(value),
            _ => Err(InvalidMax(self.max.clone())),
        }
    }

    /// `interval` as a duration, held within [`ANALYSIS_INTERVAL_MIN`] and
    /// [`ANALYSIS_INTERVAL_MAX`].
    pub fn interval(&self) -> Result<Duration, InvalidDuration> {
        parse_duration("spec.analysis.interval", &self.interval)
            .map(|d| d.clamp(ANALYSIS_INTERVAL_MIN, ANALYSIS_INTERVAL_MAX))
    }

    /// The query for one cell: the placeholders replaced by `cell` and `namespace`, escaped
    /// for a double-quoted PromQL string so that no value can end the string it sits in.
    pub fn query_for(&self, cell: &str, namespace: &str) -> String {
        self.query
            .replace(CELL_PLACEHOLDER, &promql_escape(cell))
            .replace(NAMESPACE_PLACEHOLDER, &promql_escape(namespace))
    }
}

/// `value` as the inside of a double-quoted PromQL string, whose escapes are Go's. Cell and
/// namespace names are DNS labels (`a-z`, `0-9`, `-`): they need no escape, and are literal in
/// a `=~` matcher too. The escape keeps any other value from ending the string it sits in.
pub fn promql_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// What the fleet controller observed of a rollout.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct FleetStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` (every member runs the target Ready), `Progressing` and `Halted`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// The highest wave released the target version, for `kubectl get fleets`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wave_reached: Option<i32>,
    /// The versions whose rollout completed (every wave ran them Ready for the bake time),
    /// oldest first, at most ten: setting `spec.version` back to one of them releases it to
    /// every wave at once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub baked_versions: Vec<String>,
    /// Each wave that has member cells, lowest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waves: Vec<WaveStatus>,
    /// Why the rollout is halted, while it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub halt: Option<Halt>,
}

/// One wave of a fleet.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct WaveStatus {
    /// The wave number (`spec.rollout.wave` of its cells).
    pub wave: i32,
    /// The version released to the wave's cells; absent until the fleet first releases one,
    /// while they run their own `spec.version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// When that version was released to the wave: its cells' readiness deadline counts from
    /// here (or from a later resume, or a later cell creation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub released_at: Option<Time>,
    /// Member cells in the wave, by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cells: Vec<String>,
    /// How many of them run the fleet's target version Ready.
    pub ready_cells: i32,
    /// Since when every cell of the wave has run the target version Ready without a break.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baked_since: Option<Time>,
}

/// The failure that halted a rollout.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Halt {
    /// The cell that failed.
    pub cell: String,
    /// Its wave.
    pub wave: i32,
    /// The version it failed with.
    pub version: String,
    /// `CellNotReady` (not Ready within `readyTimeout`), `CellDegraded` or `ErrorRate` (its
    /// `spec.analysis` query answered more than `max`).
    pub reason: String,
    /// What happened and what a person can do.
    pub message: String,
    /// When the rollout halted; a `commerce.titan.dev/resumed-at` later than this resumes it.
    pub since: Time,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_refuse_what_the_schema_refuses() {
        let parse = |v: &str| parse_duration("spec.bakeTime", v);
        assert_eq!(parse("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("5s"), Ok(Duration::from_secs(5)));
        for bad in ["", "5", "m", "1d", "1h 5m", "-5s"] {
            assert_eq!(
                parse(bad),
                Err(InvalidDuration {
                    field: "spec.bakeTime",
                    value: bad.into()
                }),
                "{bad}"
            );
        }
        let pattern = regex::Regex::new(DURATION_PATTERN).expect("pattern");
        for good in ["30m", "1h30m", "5s"] {
            assert!(pattern.is_match(good));
        }
        assert!(!pattern.is_match("1d"));
    }

    fn analysis(max: &str, interval: &str) -> Analysis {
        Analysis {
            prometheus: "http://prometheus:9090".into(),
            query: r#"sum(up{cell="{{cell}}", namespace=~"{{namespace}}"}) + {{cell}}"#.into(),
            max: max.into(),
            interval: interval.into(),
        }
    }

    #[test]
    fn analysis_max_is_a_decimal_as_the_schema_says() {
        assert_eq!(analysis("0.05", "1m").max(), Ok(0.05));
        assert_eq!(analysis("-2", "1m").max(), Ok(-2.0));
        assert_eq!(analysis("10.250", "1m").max(), Ok(10.25));
        let pattern = regex::Regex::new(DECIMAL_PATTERN).expect("pattern");
        for bad in [
            "", "-", ".5", "5.", "1e3", "inf", "NaN", "+1", "0.0.1", " 1",
        ] {
            assert_eq!(
                analysis(bad, "1m").max(),
                Err(InvalidMax(bad.into())),
                "{bad}"
            );
            assert!(!pattern.is_match(bad), "{bad}");
        }
        assert_eq!(
            InvalidMax("5%".into()).to_string(),
            r#"spec.analysis.max is "5%": expected a decimal such as 0.05"#
        );
    }

    #[test]
    fn analysis_interval_is_held_within_its_bounds() {
        assert_eq!(analysis("1", "1m").interval(), Ok(Duration::from_secs(60)));
        assert_eq!(analysis("1", "1s").interval(), Ok(ANALYSIS_INTERVAL_MIN));
        assert_eq!(analysis("1", "2h").interval(), Ok(ANALYSIS_INTERVAL_MAX));
        assert_eq!(
            analysis("1", "1d").interval(),
            Err(InvalidDuration {
                field: "spec.analysis.interval",
                value: "1d".into()
            })
        );
    }

    #[test]
    fn placeholders_are_replaced_everywhere_and_escaped_for_promql_strings() {
        assert_eq!(
            analysis("1", "1m").query_for("sg-1", "titan-sg-1"),
            r#"sum(up{cell="sg-1", namespace=~"titan-sg-1"}) + sg-1"#
        );
        // Names the API server would refuse still cannot end the string they sit in.
        assert_eq!(
            analysis("1", "1m").query_for("a\"b\\c", "n\nm"),
            r#"sum(up{cell="a\"b\\c", namespace=~"n\nm"}) + a\"b\\c"#
        );
    }

    fn fleet_with_interval(interval: &str) -> serde_json::Value {
        serde_json::json!({
            "apiVersion": "commerce.titan.dev/v1alpha1",
            "kind": "Fleet",
            "metadata": {"name": "prod"},
            "spec": {
                "version": "1.1",
                "analysis": {
                    "prometheus": "http://prometheus:9090",
                    "query": "up",
                    "max": "0.05",
                    "interval": interval
                }
            }
        })
    }

    #[test]
    fn an_analysis_names_a_prometheus_and_a_max_and_defaults_the_rest() {
        let spec: FleetSpec = serde_yaml::from_str(
            "version: \"1.1\"\nanalysis: {prometheus: \"http://p:9090\", max: \"0.05\"}\n",
        )
        .expect("a FleetSpec");
        let analysis = spec.analysis.expect("analysis");
        assert_eq!(analysis.query, KIT_ERROR_RATIO);
        assert_eq!(analysis.interval(), Ok(Duration::from_secs(60)));
        assert_eq!(
            analysis
                .query_for("sg-1", "titan-sg-1")
                .matches(r#"namespace="titan-sg-1""#)
                .count(),
            2
        );
        let without: FleetSpec = serde_yaml::from_str("version: \"1.1\"\n").expect("a FleetSpec");
        assert_eq!(without.analysis, None);
    }

    #[test]
    fn the_schema_bounds_the_analysis_interval() {
        let broken = |interval: &str| -> Vec<String> {
            crate::admission::broken_rules::<Fleet>(&fleet_with_interval(interval), None)
                .into_iter()
                .map(|e| e.to_string())
                .collect()
        };
        for good in ["10s", "1m", "30m", "2m30s"] {
            assert_eq!(broken(good), Vec::<String>::new(), "{good}");
        }
        for bad in ["9s", "31m", "1h"] {
            assert_eq!(
                broken(bad),
                ["spec.analysis.interval: interval must be between 10s and 30m"],
                "{bad}"
            );
        }
    }

    #[test]
    fn the_schema_refuses_a_bad_url_an_unquoted_max_and_an_empty_query() {
        let refused = |field: &str, value: serde_json::Value| -> Vec<String> {
            let mut fleet = fleet_with_interval("1m");
            fleet["spec"]["analysis"][field] = value;
            crate::admission::check::<Fleet>(&fleet)
                .into_iter()
                .map(|r| r.message)
                .collect()
        };
        assert_eq!(
            refused("max", serde_json::json!("0.05")),
            Vec::<String>::new()
        );
        // A number would be a float in a spec, which Kubernetes' API conventions avoid: the API
        // server refuses it, and the message says the type.
        assert_eq!(
            refused("max", serde_json::json!(0.05))[0],
            "spec.analysis.max: Invalid value: \"number\": spec.analysis.max in body must be of \
             type string: \"number\""
        );
        assert_eq!(
            refused("query", serde_json::json!(KIT_ERROR_RATIO)),
            Vec::<String>::new()
        );
        assert_eq!(
            refused("prometheus", serde_json::json!("https://p.example/prom")),
            Vec::<String>::new()
        );
        for (field, value) in [
            ("prometheus", "ftp://p"),
            ("prometheus", "http://"),
            ("query", ""),
            ("max", "5%"),
        ] {
            let refusals = refused(field, serde_json::json!(value));
            assert_eq!(refusals.len(), 1, "{field} {value:?}: {refusals:?}");
            assert!(
                refusals[0].starts_with(&format!("spec.analysis.{field}: Invalid value: ")),
                "{refusals:?}"
            );
        }
    }
}
