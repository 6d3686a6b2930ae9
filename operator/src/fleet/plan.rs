//! Plan stage of the Fleet controller (pure, clock passed in): the fleet's spec, its previous
//! status and its member cells in; the version released to each wave, the conditions, the halt
//! and the Events to publish out.
//!
//! The wave rule: the lowest wave gets the target first; the next wave gets it only once every
//! cell of the waves before it has run the target Ready (for its current generation) for the
//! bake time without a break. A cell of a released wave that is not Ready within the readiness
//! deadline, or says Degraded, halts the rollout until a `resumed-at` annotation later than the
//! halt. A target the fleet already completed once (a roll back) is released to every wave at
//! once: it already baked.
//!
//! With `spec.analysis`, each cell running the target in a released wave also carries what the
//! fleet's Prometheus query answered for it (observed by `observe::analyse`): above `max` halts
//! like Degraded (reason `ErrorRate`); no data is healthy; an error neither halts nor lets the
//! wave's bake complete — the wave holds, `Progressing` says why (`AnalysisFailed`), and the
//! rollout goes on by itself once the query answers.

use std::time::Duration;

use k8s_openapi::{
    apimachinery::pkg::apis::meta::v1::{Condition, Time},
    jiff::Timestamp,
};
use kube::ResourceExt;
use titan_crds::{
    Fleet,
    common::condition::{PROGRESSING, READY},
    fleet::{FleetStatus, HALTED, Halt, InvalidDuration, InvalidMax, RESUMED_AT, WaveStatus},
};

use super::{observe::Member, prometheus::Answer};
use crate::conditions::{self, Observed};

/// How many completed versions a fleet remembers as roll-back targets.
pub const BAKED_KEPT: usize = 10;

/// The `Progressing` reason while `spec.analysis` cannot judge a cell and holds its wave.
pub const ANALYSIS_FAILED: &str = "AnalysisFailed";

/// What the planner decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The fleet's new status.
    pub status: FleetStatus,
    /// What changed, to announce.
    pub events: Vec<FleetEvent>,
    /// When the plan changes without any object changing (a bake ends, a readiness deadline
    /// passes): the controller looks again then.
    pub next_check: Option<Timestamp>,
}

/// A change of the rollout worth an Event.
#[derive(Debug, Clone, PartialEq)]
pub enum FleetEvent {
    /// A wave was released the target version.
    Released {
        /// The wave.
        wave: i32,
        /// The version.
        version: String,
        /// Its cells.
        cells: Vec<String>,
    },
    /// A failing cell halted the rollout (also announced on the cell).
    Halted(Halt),
    /// A `resumed-at` annotation later than the halt cleared it.
    Resumed {
        /// The cell that had halted the rollout.
        cell: String,
        /// The version it had failed with.
        version: String,
    },
    /// Every wave ran the target Ready for the bake time.
    Completed {
        /// The version.
        version: String,
    },
}

/// The fleet's settings, parsed.
struct Settings<'a> {
    name: String,
    target: &'a str,
    bake: Duration,
    ready_timeout: Duration,
    resumed_at: Option<Timestamp>,
    /// `spec.analysis`, while the target is being rolled out.
    analysis: Option<Limits<'a>>,
}

/// `spec.analysis` as the planner applies it.
struct Limits<'a> {
    /// `max`; one that bypassed the schema holds every wave like a failing query.
    max: Result<f64, InvalidMax>,
    /// `max` as written, for messages.
    max_text: &'a str,
    interval: Duration,
}

/// What `spec.analysis` says of one member.
#[derive(Debug)]
enum Verdict {
    /// Not watched: no analysis, or the member does not run the target.
    Unwatched,
    /// At most `max`, or no data.
    Healthy,
    /// Above `max`: halts.
    Above(f64),
    /// Watched but not asked yet (its wave was released this round): holds the wave.
    NotAsked,
    /// The query failed: holds the wave, and `Progressing` says why.
    Failed(String),
}

impl Settings<'_> {
    /// The verdict of `spec.analysis` on `member`, which is in a wave released the target.
    fn verdict(&self, member: &Member) -> Verdict {
        let Some(limits) = &self.analysis else {
            return Verdict::Unwatched;
        };
        if member.version.as_deref() != Some(self.target) {
            return Verdict::Unwatched;
        }
        let max = match &limits.max {
            Ok(max) => *max,
            Err(e) => return Verdict::Failed(e.to_string()),
        };
        match &member.analysis {
            None => Verdict::NotAsked,
            Some(Err(error)) => Verdict::Failed(error.clone()),
            Some(Ok(Answer::NoData)) => Verdict::Healthy,
            Some(Ok(Answer::Value(value))) if *value > max => Verdict::Above(*value),
            Some(Ok(Answer::Value(_))) => Verdict::Healthy,
        }
    }
}

/// `t + d`, saturating (a duration of centuries is refused by nobody, and means "never").
pub fn after(t: Timestamp, d: Duration) -> Timestamp {
    t.checked_add(d).unwrap_or(Timestamp::MAX)
}

fn earliest(a: Option<Timestamp>, b: Timestamp) -> Option<Timestamp> {
    Some(a.map_or(b, |a| a.min(b)))
}

/// The time of the fleet's `commerce.titan.dev/resumed-at` annotation, when it is one.
pub fn resumed_at(fleet: &Fleet) -> Option<Timestamp> {
    fleet.annotations().get(RESUMED_AT)?.parse().ok()
}

/// Plans one round of `fleet` over its `members` at `now`.
pub fn plan(fleet: &Fleet, members: &[Member], now: Timestamp) -> Result<Plan, InvalidDuration> {
    let previous = fleet.status.clone().unwrap_or_default();
    // A completed version is not being rolled out: a cell failing later is the cell's
    // problem (its own Degraded says so), not a reason to hold a rollout that is over.
    let completed_before = previous.baked_versions.contains(&fleet.spec.version);
    let analysis = match fleet.spec.analysis.as_ref().filter(|_| !completed_before) {
        Some(a) => Some(Limits {
            max: a.max(),
            max_text: &a.max,
            interval: a.interval()?,
        }),
        None => None,
    };
    let settings = Settings {
        name: fleet.name_any(),
        target: &fleet.spec.version,
        bake: fleet.spec.bake_time()?,
        ready_timeout: fleet.spec.ready_timeout()?,
        resumed_at: resumed_at(fleet),
        analysis,
    };
    let target = settings.target;
    let mut events = Vec::new();
    let mut next_check = None;

    // A halt is about one version: a new target (a fix rolled forward, a roll back) clears it.
    let mut halt = previous.halt.clone().filter(|h| h.version == target);
    if let (Some(held), Some(resumed)) = (&halt, settings.resumed_at)
        && resumed > held.since.0
    {
        events.push(FleetEvent::Resumed {
            cell: held.cell.clone(),
            version: held.version.clone(),
        });
        halt = None;
    }

    let mut numbers: Vec<i32> = members.iter().map(|m| m.wave).collect();
    numbers.sort_unstable();
    numbers.dedup();
    let mut waves: Vec<WaveStatus> = numbers
        .iter()
        .map(|&wave| {
            let before = previous.waves.iter().find(|w| w.wave == wave);
            let version = before.and_then(|w| w.version.clone());
            let same_version = version.as_deref() == Some(target);
            WaveStatus {
                wave,
                version,
                released_at: before.and_then(|w| w.released_at.clone()),
                cells: members
                    .iter()
                    .filter(|m| m.wave == wave)
                    .map(|m| m.name.clone())
                    .collect(),
                ready_cells: 0,
                baked_since: before
                    .filter(|_| same_version)
                    .and_then(|w| w.baked_since.clone()),
            }
        })
        .collect();

    if halt.is_none() && !completed_before {
        halt = failure(&settings, &waves, members, &previous, now, &mut next_check);
        if let Some(held) = &halt {
            events.push(FleetEvent::Halted(held.clone()));
        }
    }

    // Release: each wave in order, while every wave before it has baked.
    let mut gate_open = true;
    for wave in &mut waves {
        let releasable = halt.is_none() && !fleet.spec.paused && (gate_open || completed_before);
        let release = releasable && wave.version.as_deref() != Some(target);
        if release {
            wave.version = Some(target.to_string());
            wave.released_at = Some(Time(now));
            wave.baked_since = None;
            events.push(FleetEvent::Released {
                wave: wave.wave,
                version: target.to_string(),
                cells: wave.cells.clone(),
            });
        }
        let in_wave: Vec<&Member> = members.iter().filter(|m| m.wave == wave.wave).collect();
        let ready = in_wave.iter().filter(|m| m.runs_ready(target)).count();
        wave.ready_cells = i32::try_from(ready).unwrap_or(i32::MAX);
        if release && ready < in_wave.len() {
            // Its cells' readiness deadline starts now.
            next_check = earliest(next_check, after(now, settings.ready_timeout));
        }
        let all_ready = wave.version.as_deref() == Some(target) && ready == in_wave.len();
        wave.baked_since = if all_ready {
            wave.baked_since.take().or(Some(Time(now)))
        } else {
            None
        };
        if gate_open {
            match &wave.baked_since {
                Some(since) if after(since.0, settings.bake) <= now => {}
                Some(since) => {
                    gate_open = false;
                    next_check = earliest(next_check, after(since.0, settings.bake));
                }
                None => gate_open = false,
            }
        }
        // A wave whose cells the analysis could not judge has not shown it is healthy: its
        // bake does not complete, however long it has run Ready.
        if gate_open
            && in_wave
                .iter()
                .any(|m| matches!(settings.verdict(m), Verdict::NotAsked | Verdict::Failed(_)))
        {
            gate_open = false;
        }
    }
    if let Some(limits) = &settings.analysis
        && halt.is_none()
        && waves.iter().any(|w| w.version.as_deref() == Some(target))
    {
        // The query's answer changes with no object changing.
        next_check = earliest(next_check, after(now, limits.interval));
    }

    let complete = !waves.is_empty() && gate_open;
    let mut baked_versions = previous.baked_versions.clone();
    if complete && !completed_before {
        baked_versions.push(target.to_string());
        let excess = baked_versions.len().saturating_sub(BAKED_KEPT);
        baked_versions.drain(..excess);
        events.push(FleetEvent::Completed {
            version: target.to_string(),
        });
    }

    let conditions = fleet_conditions(
        fleet,
        &settings,
        &waves,
        members,
        halt.as_ref(),
        complete,
        &previous.conditions,
        now,
    );
    let wave_reached = waves
        .iter()
        .filter(|w| w.version.as_deref() == Some(target))
        .map(|w| w.wave)
        .max();
    Ok(Plan {
        status: FleetStatus {
            observed_generation: fleet.metadata.generation,
            conditions,
            wave_reached,
            baked_versions,
            waves,
            halt,
        },
        events,
        next_check: if complete { None } else { next_check },
    })
}

/// The first failing cell of a released wave (lowest wave, then name), as a halt; otherwise
/// the earliest readiness deadline still ahead goes into `next_check`.
fn failure(
    settings: &Settings,
    waves: &[WaveStatus],
    members: &[Member],
    previous: &FleetStatus,
    now: Timestamp,
    next_check: &mut Option<Timestamp>,
) -> Option<Halt> {
    let target = settings.target;
    for wave in waves
        .iter()
        .filter(|w| w.version.as_deref() == Some(target))
    {
        for member in members.iter().filter(|m| m.wave == wave.wave) {
            let halt = |reason: &str, what: String| Halt {
                cell: member.name.clone(),
                wave: wave.wave,
                version: target.to_string(),
                reason: reason.to_string(),
                message: format!(
                    "cell {} (wave {}) {what}; fix the cell, then resume with `kubectl annotate fleet/{} {RESUMED_AT}=$(date -u +%FT%TZ) --overwrite`{}",
                    member.name,
                    wave.wave,
                    settings.name,
                    roll_back_hint(previous, target)
                ),
                since: Time(now),
            };
            if let Some(degraded) = &member.degraded {
                return Some(halt(
                    "CellDegraded",
                    format!("is Degraded with {target}: {degraded}"),
                ));
            }
            if let (Verdict::Above(value), Some(limits)) =
                (settings.verdict(member), &settings.analysis)
            {
                return Some(halt(
                    "ErrorRate",
                    format!(
                        "runs {target} with an error rate of {value} (spec.analysis.query), above spec.analysis.max {}",
                        limits.max_text
                    ),
                ));
            }
            if member.runs_ready(target) {
                continue;
            }
            // The deadline counts from the release, or from when the cell joined, or from a
            // resume: whichever is last.
            let start = [
                wave.released_at.as_ref().map(|t| t.0),
                member.created,
                settings.resumed_at,
            ]
            .into_iter()
            .flatten()
            .max()
            .unwrap_or(now);
            let deadline = after(start, settings.ready_timeout);
            if now >= deadline {
                return Some(halt(
                    "CellNotReady",
                    format!(
                        "took {target} at {start} and is not running it Ready after {}s: {}",
                        settings.ready_timeout.as_secs(),
                        member.ready_message
                    ),
                ));
            }
            *next_check = earliest(*next_check, deadline);
        }
    }
    None
}

fn roll_back_hint(previous: &FleetStatus, target: &str) -> String {
    match previous.baked_versions.iter().rev().find(|v| *v != target) {
        Some(stable) => format!(", or roll back by setting spec.version to {stable}"),
        None => String::new(),
    }
}

/// Why the waves below `below` hold wave `below`, at `now`, or `None` when they have all
/// baked: `wave 0 baking until …` or `wave 0: 1 of 2 cells run 1.4.0 Ready`.
pub fn blocker(
    waves: &[WaveStatus],
    target: &str,
    bake: Duration,
    below: i32,
    now: Timestamp,
) -> Option<String> {
    waves.iter().filter(|w| w.wave < below).find_map(|w| {
        if w.version.as_deref() != Some(target) {
            return Some(format!("wave {} has not been released {target}", w.wave));
        }
        match &w.baked_since {
            Some(since) if after(since.0, bake) <= now => None,
            Some(since) => Some(format!(
                "wave {} baking until {}",
                w.wave,
                after(since.0, bake)
            )),
            None => Some(format!(
                "wave {}: {} of {} cells run {target} Ready",
                w.wave,
                w.ready_cells,
                w.cells.len()
            )),
        }
    })
}

#[allow(clippy::too_many_arguments)]
fn fleet_conditions(
    fleet: &Fleet,
    settings: &Settings,
    waves: &[WaveStatus],
    members: &[Member],
    halt: Option<&Halt>,
    complete: bool,
    previous: &[Condition],
    now: Timestamp,
) -> Vec<Condition> {
    let target = settings.target;
    let ready_count = members.iter().filter(|m| m.runs_ready(target)).count();
    let all_released = waves.iter().all(|w| w.version.as_deref() == Some(target));
    let ready = if members.is_empty() {
        Observed::new(
            READY,
            false,
            "NoMembers",
            "no cell names this fleet in spec.rollout.fleet",
        )
    } else if all_released && ready_count == members.len() {
        Observed::new(
            READY,
            true,
            "AllCellsReady",
            format!("all {} cells run {target} Ready", members.len()),
        )
    } else {
        Observed::new(
            READY,
            false,
            "RollingOut",
            format!(
                "{ready_count} of {} cells run {target} Ready",
                members.len()
            ),
        )
    };
    let progressing = if let Some(held) = halt {
        Observed::new(
            PROGRESSING,
            false,
            "Halted",
            format!("halted by cell {}: see the Halted condition", held.cell),
        )
    } else if fleet.spec.paused {
        Observed::new(
            PROGRESSING,
            false,
            "Paused",
            "spec.paused is true: no wave is released a version it does not run yet",
        )
    } else if let Some(failed) = analysis_failed(settings, waves, members) {
        Observed::new(PROGRESSING, false, ANALYSIS_FAILED, failed)
    } else if complete || members.is_empty() {
        Observed::new(PROGRESSING, false, "Complete", "nothing is rolling out")
    } else {
        let waiting = blocker(waves, target, settings.bake, i32::MAX, now)
            .unwrap_or_else(|| format!("rolling out {target}"));
        Observed::new(PROGRESSING, true, "RollingOut", waiting)
    };
    let halted = match halt {
        Some(held) => Observed::new(
            HALTED,
            true,
            halt_reason(&held.reason),
            held.message.clone(),
        ),
        None => Observed::new(HALTED, false, "NotHalted", "no cell holds the rollout"),
    };
    conditions::merge(
        vec![ready, progressing, halted],
        previous,
        fleet.metadata.generation,
        now,
    )
}

/// Why `spec.analysis` holds the rollout, when its query failed for a cell running the target
/// in a released wave: the first such cell (lowest wave, then name), its error, and what the
/// fleet does meanwhile.
fn analysis_failed(
    settings: &Settings,
    waves: &[WaveStatus],
    members: &[Member],
) -> Option<String> {
    let target = settings.target;
    let failed: Vec<(&Member, String)> = waves
        .iter()
        .filter(|w| w.version.as_deref() == Some(target))
        .flat_map(|w| members.iter().filter(move |m| m.wave == w.wave))
        .filter_map(|m| match settings.verdict(m) {
            Verdict::Failed(error) => Some((m, error)),
            _ => None,
        })
        .collect();
    let (first, error) = failed.first()?;
    let others = match failed.len() - 1 {
        0 => String::new(),
        1 => " (and for 1 more cell)".into(),
        n => format!(" (and for {n} more cells)"),
    };
    Some(format!(
        "spec.analysis could not judge cell {} (wave {}) running {target}{others}: {error}; \
         wave {} holds (nothing halts, and its bake does not complete) until the query answers: \
         check spec.analysis.prometheus and spec.analysis.query",
        first.name, first.wave, first.wave
    ))
}

/// The static reason string of a halt (conditions take `&'static str`).
fn halt_reason(reason: &str) -> &'static str {
    match reason {
        "CellDegraded" => "CellDegraded",
        "ErrorRate" => "ErrorRate",
        _ => "CellNotReady",
    }
}
