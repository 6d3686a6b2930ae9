//! Rollout stage of the Cell controller (pure, clock passed in): the version a fleet member
//! runs — the one its Fleet released to the cell's wave, else `spec.version` — and the
//! `status.rollout` that says what it waits for and why. A cell without a fleet runs
//! `spec.version` and reports no rollout.

use std::borrow::Cow;

use k8s_openapi::jiff::Timestamp;
use titan_crds::{
    Cell, Fleet,
    cell::RolloutStatus,
    common::condition::{PROGRESSING, READY},
    fleet::{FleetStatus, HALTED},
};

use crate::{conditions, fleet::plan, labels::ImageRef};

/// What a cell runs in a round.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    /// The Titan release its services run.
    pub version: String,
    /// Its place in its fleet's rollout, when it names a fleet.
    pub status: Option<RolloutStatus>,
}

/// The version `cell` runs given its Fleet (`None`: absent or not named), at `now`.
pub fn resolve(cell: &Cell, fleet: Option<&Fleet>, now: Timestamp) -> Resolved {
    let own = cell.spec.version.clone();
    let Some(name) = cell.spec.rollout.fleet.clone() else {
        return Resolved {
            version: own,
            status: None,
        };
    };
    let Some(fleet) = fleet else {
        return Resolved {
            status: Some(RolloutStatus {
                fleet: name.clone(),
                target_version: None,
                waiting_for: None,
                reason: format!("fleet {name} does not exist: the cell runs spec.version {own}"),
            }),
            version: own,
        };
    };
    let target = fleet.spec.version.clone();
    if ImageRef::parse(&cell.spec.image).digest.is_some() {
        return Resolved {
            status: Some(RolloutStatus {
                fleet: name,
                waiting_for: (own != target).then(|| target.clone()),
                target_version: Some(target),
                reason: "spec.image is pinned by digest: the cell runs that image whatever the fleet releases; drop the digest to follow the fleet".into(),
            }),
            version: own,
        };
    }
    let status = fleet.status.clone().unwrap_or_default();
    let wave = cell.spec.rollout.wave;
    let released = status
        .waves
        .iter()
        .find(|w| w.wave == wave)
        .and_then(|w| w.version.clone());
    let version = released.unwrap_or(own);
    let reason = if version == target {
        format!("wave {wave} was released {target}")
    } else {
        waiting_reason(fleet, &status, wave, now)
    };
    Resolved {
        status: Some(RolloutStatus {
            fleet: name,
            waiting_for: (version != target).then(|| target.clone()),
            target_version: Some(target),
            reason,
        }),
        version,
    }
}

/// Why wave `wave` has not been released the fleet's target yet.
fn waiting_reason(fleet: &Fleet, status: &FleetStatus, wave: i32, now: Timestamp) -> String {
    if let Some(halt) = &status.halt
        && conditions::is_true(&status.conditions, HALTED)
    {
        return format!(
            "rollout halted by cell {} ({}): see fleet {}",
            halt.cell,
            halt.reason,
            fleet.metadata.name.as_deref().unwrap_or_default()
        );
    }
    if fleet.spec.paused {
        return "paused: the fleet's spec.paused is true".into();
    }
    let target = &fleet.spec.version;
    let blocked = fleet
        .spec
        .bake_time()
        .ok()
        .and_then(|bake| plan::blocker(&status.waves, target, bake, wave, now));
    match blocked {
        Some(reason) => reason,
        None if status.observed_generation != fleet.metadata.generation
            || conditions::find(&status.conditions, READY).is_none() =>
        {
            "waiting for the fleet controller to plan the rollout".into()
        }
        // The waves before have baked, but the analysis has not judged them healthy.
        None if conditions::find(&status.conditions, PROGRESSING)
            .is_some_and(|c| c.reason == plan::ANALYSIS_FAILED) =>
        {
            format!(
                "spec.analysis of fleet {} cannot judge the released waves: see its Progressing condition",
                fleet.metadata.name.as_deref().unwrap_or_default()
            )
        }
        None => format!("waiting for the fleet controller to release wave {wave}"),
    }
}

/// `cell` as it runs `version`: the same spec with `version` as `spec.version` and as the tag of
/// a tagged `spec.image` (the CRD holds that tag to `spec.version`), so the build stage makes
/// the objects of that release. Borrowed when nothing changes.
pub fn running<'a>(cell: &'a Cell, version: &str) -> Cow<'a, Cell> {
    if cell.spec.version == version {
        return Cow::Borrowed(cell);
    }
    let mut moved = cell.clone();
    moved.spec.version = version.to_string();
    let image = ImageRef::parse(&cell.spec.image);
    if image.tag.is_some() && image.digest.is_none() {
        moved.spec.image = format!("{}:{version}", image.repository);
    }
    Cow::Owned(moved)
}
