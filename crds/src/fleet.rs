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
}

fn default_bake_time() -> String {
    "1h".into()
}

fn default_ready_timeout() -> String {
    "15m".into()
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
    /// `CellNotReady` (not Ready within `readyTimeout`) or `CellDegraded`.
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
}
