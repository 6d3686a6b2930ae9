//! Observe stage of the Fleet controller (pure): what the planner needs of each member cell,
//! read from the status the Cell controller wrote.

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use titan_crds::{
    Cell,
    common::condition::{DEGRADED, READY},
};

use crate::conditions;

/// One member cell as the planner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The cell's name.
    pub name: String,
    /// Its `spec.rollout.wave`.
    pub wave: i32,
    /// When the cell was created: a cell that joins a wave after its release gets its own
    /// readiness deadline from here.
    pub created: Option<Timestamp>,
    /// The version every ready service runs (`status.version`).
    pub version: Option<String>,
    /// Ready is True for the cell's current generation: a Ready left over from an older spec
    /// says nothing about the current one.
    pub ready: bool,
    /// The Ready condition's message, for a halt a person can act on.
    pub ready_message: String,
    /// The Degraded condition's message while it is True for the current generation.
    pub degraded: Option<String>,
}

impl Member {
    /// Whether the cell runs `version` Ready.
    pub fn runs_ready(&self, version: &str) -> bool {
        self.ready && self.version.as_deref() == Some(version)
    }
}

/// The cells of `cells` that name `fleet` in `spec.rollout.fleet`, sorted by name.
pub fn members(fleet: &str, cells: &[Cell]) -> Vec<Member> {
    let mut members: Vec<Member> = cells
        .iter()
        .filter(|c| c.spec.rollout.fleet.as_deref() == Some(fleet))
        .filter(|c| c.metadata.deletion_timestamp.is_none())
        .map(member)
        .collect();
    members.sort_by(|a, b| a.name.cmp(&b.name));
    members
}

fn member(cell: &Cell) -> Member {
    let status = cell.status.clone().unwrap_or_default();
    let current =
        |type_: &str| conditions::current(&status.conditions, type_, cell.metadata.generation);
    let ready = current(READY);
    Member {
        name: cell.name_any(),
        wave: cell.spec.rollout.wave,
        created: cell.metadata.creation_timestamp.as_ref().map(|t| t.0),
        version: status.version.clone(),
        ready: ready.is_some_and(|c| c.status == "True"),
        ready_message: ready
            .map(|c| c.message.clone())
            .unwrap_or_else(|| "the cell has not reported Ready for its current spec".into()),
        degraded: current(DEGRADED)
            .filter(|c| c.status == "True")
            .map(|c| c.message.clone()),
    }
}
