//! Observe stage of the Fleet controller: what the planner needs of each member cell, read
//! from the status the Cell controller wrote (pure), and the answer of the fleet's
//! `spec.analysis` query for each cell it watches (the one I/O of the stage: Prometheus).

use futures::{StreamExt, stream};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use titan_crds::{
    Cell, Fleet,
    common::condition::{DEGRADED, READY},
};

use super::prometheus::{Answer, Prometheus};
use crate::conditions;

/// Queries in flight at once for one fleet: enough that a fleet of many cells is evaluated in
/// a few query times, few enough not to load Prometheus.
const CONCURRENT_QUERIES: usize = 8;

/// One member cell as the planner sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    /// The cell's name.
    pub name: String,
    /// The namespace its workloads run in (`{{namespace}}` of `spec.analysis.query`).
    pub namespace: String,
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
    /// What the fleet's `spec.analysis` query answered for the cell this round, or the error
    /// that kept it from answering; `None` when it was not asked (see [`watched`]).
    pub analysis: Option<Result<Answer, String>>,
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
        namespace: cell.namespace_name(),
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
        analysis: None,
    }
}

/// Whether `fleet`'s `spec.analysis` watches `member` this round: it is configured, the target
/// is being rolled out (not a version that completed before, which is released at once), the
/// member's wave was released the target, and the member runs it.
pub fn watched(fleet: &Fleet, member: &Member) -> bool {
    let target = &fleet.spec.version;
    let Some(status) = &fleet.status else {
        return false;
    };
    fleet.spec.analysis.is_some()
        && !status.baked_versions.contains(target)
        && status
            .waves
            .iter()
            .any(|w| w.wave == member.wave && w.version.as_ref() == Some(target))
        && member.version.as_ref() == Some(target)
}

/// Runs `fleet`'s `spec.analysis` query for each member it [`watched`], a few at a time, and
/// stores the answers in `members`.
pub async fn analyse(fleet: &Fleet, members: &mut [Member]) {
    let Some(analysis) = &fleet.spec.analysis else {
        return;
    };
    let asked: Vec<usize> = (0..members.len())
        .filter(|&i| watched(fleet, &members[i]))
        .collect();
    if asked.is_empty() {
        return;
    }
    let prometheus = match Prometheus::new(&analysis.prometheus) {
        Ok(p) => p,
        Err(e) => {
            for &i in &asked {
                members[i].analysis = Some(Err(e.to_string()));
            }
            return;
        }
    };
    let queries: Vec<(usize, String)> = asked
        .into_iter()
        .map(|i| {
            let m = &members[i];
            (i, analysis.query_for(&m.name, &m.namespace))
        })
        .collect();
    let answers: Vec<(usize, Result<Answer, String>)> = stream::iter(queries)
        .map(|(i, query)| {
            let prometheus = &prometheus;
            async move { (i, prometheus.query(&query).await.map_err(|e| e.to_string())) }
        })
        .buffer_unordered(CONCURRENT_QUERIES)
        .collect()
        .await;
    for (i, answer) in answers {
        if let Err(error) = &answer {
            tracing::warn!(fleet = %fleet.name_any(), cell = %members[i].name, %error, "spec.analysis query failed");
        }
        members[i].analysis = Some(answer);
    }
}
