//! Fleet rollouts with an injected clock: the planner's wave rule (bake time, readiness
//! deadline, Degraded, resume, roll back, pause, stale Ready), `spec.analysis` (an error rate
//! above max halts, a failing query holds the wave), what a member cell builds and reports for
//! the version released to its wave, and that datastores never move with a wave.

use std::time::Duration;

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
use titan_crds::{
    Cell, Fleet,
    cell::RolloutStatus,
    fleet::{FleetStatus, HALTED, Halt, RESUMED_AT, WaveStatus},
};
use titan_operator::{
    cell::rollout::{self, Resolved},
    conditions,
    fleet::{
        observe::{self, Member},
        plan::{FleetEvent, Plan, plan},
        prometheus::Answer,
    },
};

use crate::support::built;

/// The planner's clock: `t(0)` is the moment the rollout starts.
pub(crate) fn t(seconds: u64) -> Timestamp {
    let start: Timestamp = "2026-01-01T00:00:00Z".parse().expect("time");
    start
        .checked_add(Duration::from_secs(seconds))
        .expect("in range")
}

/// A fleet rolling out `1.1` with a 60 s bake and a 120 s readiness deadline.
pub(crate) fn fleet(yaml_extra: &str) -> Fleet {
    serde_yaml::from_str(&format!(
        "apiVersion: commerce.titan.dev/v1alpha1
kind: Fleet
metadata:
  name: prod
  generation: 1
spec:
  version: \"1.1\"
  bakeTime: 60s
  readyTimeout: 2m
{yaml_extra}"
    ))
    .expect("a Fleet")
}

pub(crate) fn member(name: &str, wave: i32, version: &str, ready: bool) -> Member {
    Member {
        name: name.into(),
        namespace: format!("titan-{name}"),
        wave,
        created: None,
        version: Some(version.into()),
        ready,
        ready_message: if ready {
            "all 15 services are ready".into()
        } else {
            "1 of 15 services are not ready: coupon".into()
        },
        degraded: None,
        analysis: None,
    }
}

/// Three cells in waves 0, 1 and 2, running 1.0 Ready.
fn three_waves() -> Vec<Member> {
    vec![
        member("canary", 0, "1.0", true),
        member("eu-1", 1, "1.0", true),
        member("us-1", 2, "1.0", true),
    ]
}

/// One round at `now`, with the status it computes kept on the fleet for the next one.
pub(crate) fn round(fleet: &mut Fleet, members: &[Member], now: Timestamp) -> Plan {
    let planned = plan(fleet, members, now).expect("valid durations");
    fleet.status = Some(planned.status.clone());
    planned
}

/// `(wave, released version)` of every wave.
pub(crate) fn released(fleet: &Fleet) -> Vec<(i32, Option<String>)> {
    fleet
        .status
        .iter()
        .flat_map(|s| &s.waves)
        .map(|w| (w.wave, w.version.clone()))
        .collect()
}

pub(crate) fn v(version: &str) -> Option<String> {
    Some(version.into())
}

/// The member takes 1.1 and is not Ready with it.
fn fail(member: &mut Member) {
    member.version = Some("1.1".into());
    member.ready = false;
    member.ready_message = "1 of 15 services are not ready: coupon".into();
}

/// The members of `wave` take `version` and are Ready with it, as their Cell controller would
/// report once their services rolled out.
pub(crate) fn take(members: &mut [Member], wave: i32, version: &str) {
    for m in members.iter_mut().filter(|m| m.wave == wave) {
        m.version = Some(version.into());
        m.ready = true;
    }
}

/// The halt the last round recorded; `what` names it when there is none.
pub(crate) fn halt_of(fleet: &Fleet, what: &str) -> Halt {
    fleet
        .status
        .as_ref()
        .and_then(|s| s.halt.clone())
        .expect(what)
}

pub(crate) fn condition(fleet: &Fleet, type_: &str) -> (String, String) {
    let status = fleet.status.as_ref().expect("status");
    let c = conditions::find(&status.conditions, type_).expect("condition");
    (c.status.clone(), c.reason.clone())
}

#[test]
fn three_waves_each_wait_for_the_bake_time_of_the_waves_before() {
    let mut fleet = fleet("");
    let mut members = three_waves();

    let first = round(&mut fleet, &members, t(0));
    assert_eq!(released(&fleet), [(0, v("1.1")), (1, None), (2, None)]);
    assert_eq!(
        first.events,
        [FleetEvent::Released {
            wave: 0,
            version: "1.1".into(),
            cells: vec!["canary".into()]
        }]
    );
    // The canary's readiness deadline is the next moment the plan can change by itself.
    assert_eq!(first.next_check, Some(t(120)));

    take(&mut members, 0, "1.1");
    let baking = round(&mut fleet, &members, t(10));
    assert_eq!(baking.next_check, Some(t(70)));
    assert_eq!(
        fleet.status.as_ref().expect("status").waves[0].baked_since,
        Some(Time(t(10)))
    );
    // One second before the bake time wave 1 has nothing; at the bake time it gets 1.1.
    round(&mut fleet, &members, t(69));
    assert_eq!(released(&fleet), [(0, v("1.1")), (1, None), (2, None)]);
    round(&mut fleet, &members, t(70));
    assert_eq!(released(&fleet), [(0, v("1.1")), (1, v("1.1")), (2, None)]);
    assert_eq!(fleet.status.as_ref().expect("status").wave_reached, Some(1));

    // Wave 2 waits for waves 0 and 1 to have baked: wave 1 became Ready at 80.
    take(&mut members, 1, "1.1");
    round(&mut fleet, &members, t(80));
    round(&mut fleet, &members, t(139));
    assert_eq!(released(&fleet), [(0, v("1.1")), (1, v("1.1")), (2, None)]);
    round(&mut fleet, &members, t(140));
    assert_eq!(
        released(&fleet),
        [(0, v("1.1")), (1, v("1.1")), (2, v("1.1"))]
    );
    assert_eq!(
        condition(&fleet, "Ready"),
        ("False".into(), "RollingOut".into())
    );

    take(&mut members, 2, "1.1");
    round(&mut fleet, &members, t(150));
    assert_eq!(
        condition(&fleet, "Ready"),
        ("True".into(), "AllCellsReady".into())
    );
    let done = round(&mut fleet, &members, t(210));
    assert_eq!(
        done.events,
        [FleetEvent::Completed {
            version: "1.1".into()
        }]
    );
    let status = fleet.status.as_ref().expect("status");
    assert_eq!(status.baked_versions, ["1.1"]);
    assert_eq!(
        condition(&fleet, "Progressing"),
        ("False".into(), "Complete".into())
    );
    assert_eq!(done.next_check, None);
}

#[test]
fn a_canary_not_ready_in_time_halts_and_a_resume_after_the_fix_continues() {
    let mut fleet = fleet("");
    let mut members = three_waves();
    round(&mut fleet, &members, t(0));
    fail(&mut members[0]);

    let waiting = round(&mut fleet, &members, t(119));
    assert_eq!(waiting.events, []);
    assert_eq!(
        condition(&fleet, HALTED),
        ("False".into(), "NotHalted".into())
    );

    let halted = round(&mut fleet, &members, t(120));
    let status = fleet.status.clone().expect("status");
    let halt = status.halt.clone().expect("halted");
    assert_eq!(
        (
            halt.cell.as_str(),
            halt.wave,
            halt.version.as_str(),
            halt.reason.as_str()
        ),
        ("canary", 0, "1.1", "CellNotReady")
    );
    assert_eq!(halt.since, Time(t(120)));
    assert_eq!(
        halt.message,
        "cell canary (wave 0) took 1.1 at 2026-01-01T00:00:00Z and is not running it Ready \
         after 120s: 1 of 15 services are not ready: coupon; fix the cell, then resume with \
         `kubectl annotate fleet/prod commerce.titan.dev/resumed-at=$(date -u +%FT%TZ) --overwrite`"
    );
    assert_eq!(halted.events, [FleetEvent::Halted(halt.clone())]);
    assert_eq!(
        condition(&fleet, HALTED),
        ("True".into(), "CellNotReady".into())
    );
    assert_eq!(
        condition(&fleet, "Progressing"),
        ("False".into(), "Halted".into())
    );

    // Not fixed and not resumed: the halt holds, whatever the time, and wave 1 gets nothing.
    round(&mut fleet, &members, t(1_000));
    assert_eq!(released(&fleet), [(0, v("1.1")), (1, None), (2, None)]);
    assert!(fleet.status.as_ref().expect("status").halt.is_some());

    // Fixed at 1190, and a resume from before the halt changes nothing.
    take(&mut members, 0, "1.1");
    fleet
        .metadata
        .annotations
        .get_or_insert_default()
        .insert(RESUMED_AT.into(), "2026-01-01T00:01:00Z".into());
    round(&mut fleet, &members, t(1_190));
    assert!(fleet.status.as_ref().expect("status").halt.is_some());
    // One after the halt clears it.
    fleet
        .metadata
        .annotations
        .get_or_insert_default()
        .insert(RESUMED_AT.into(), "2026-01-01T00:20:00Z".into());
    let resumed = round(&mut fleet, &members, t(1_201));
    assert_eq!(
        resumed.events,
        [FleetEvent::Resumed {
            cell: "canary".into(),
            version: "1.1".into()
        }]
    );
    assert_eq!(
        condition(&fleet, HALTED),
        ("False".into(), "NotHalted".into())
    );
    // The canary has run 1.1 Ready since 1190: wave 1 follows one bake time later.
    round(&mut fleet, &members, t(1_249));
    assert_eq!(released(&fleet), [(0, v("1.1")), (1, None), (2, None)]);
    round(&mut fleet, &members, t(1_250));
    assert_eq!(released(&fleet), [(0, v("1.1")), (1, v("1.1")), (2, None)]);
}

#[test]
fn a_resume_restarts_the_readiness_deadline_of_a_cell_still_failing() {
    let mut fleet = fleet("");
    let mut members = three_waves();
    round(&mut fleet, &members, t(0));
    fail(&mut members[0]);
    round(&mut fleet, &members, t(120));
    fleet
        .metadata
        .annotations
        .get_or_insert_default()
        .insert(RESUMED_AT.into(), "2026-01-01T00:05:00Z".into());
    let resumed = round(&mut fleet, &members, t(301));
    assert!(fleet.status.as_ref().expect("status").halt.is_none());
    assert_eq!(resumed.next_check, Some(t(420)));
    round(&mut fleet, &members, t(419));
    assert!(fleet.status.as_ref().expect("status").halt.is_none());
    round(&mut fleet, &members, t(420));
    assert_eq!(
        fleet
            .status
            .as_ref()
            .expect("status")
            .halt
            .as_ref()
            .map(|h| h.since.clone()),
        Some(Time(t(420)))
    );
}

#[test]
fn a_degraded_canary_halts_at_once_and_wave_one_is_not_released() {
    let mut fleet = fleet("");
    let mut members = three_waves();
    round(&mut fleet, &members, t(0));
    take(&mut members, 0, "1.1");
    members[0].degraded = Some("coupon: CrashLoopBackOff".into());
    let halted = round(&mut fleet, &members, t(5));
    let halt = halt_of(&fleet, "halt");
    assert_eq!(halt.reason, "CellDegraded");
    assert!(
        halt.message
            .starts_with("cell canary (wave 0) is Degraded with 1.1: coupon: CrashLoopBackOff;"),
        "{}",
        halt.message
    );
    assert_eq!(halted.events, [FleetEvent::Halted(halt)]);
    round(&mut fleet, &members, t(10_000));
    assert_eq!(released(&fleet), [(0, v("1.1")), (1, None), (2, None)]);
    assert_eq!(
        condition(&fleet, HALTED),
        ("True".into(), "CellDegraded".into())
    );
}

#[test]
fn rolling_back_to_a_baked_version_returns_every_moved_cell_at_once() {
    let mut fleet = fleet("");
    let wave = |wave: i32, version: Option<&str>| WaveStatus {
        wave,
        version: version.map(Into::into),
        released_at: version.map(|_| Time(t(0))),
        cells: vec![],
        ready_cells: 0,
        baked_since: None,
    };
    // 1.0 completed earlier; 1.1 reached waves 0 and 1 and then halted.
    fleet.status = Some(FleetStatus {
        baked_versions: vec!["1.0".into()],
        waves: vec![
            wave(0, Some("1.1")),
            wave(1, Some("1.1")),
            wave(2, Some("1.0")),
        ],
        ..Default::default()
    });
    let members = vec![
        member("canary", 0, "1.1", false),
        member("eu-1", 1, "1.1", true),
        member("us-1", 2, "1.0", true),
    ];
    round(&mut fleet, &members, t(500));
    assert!(fleet.status.as_ref().expect("status").halt.is_some());

    fleet.spec.version = "1.0".into();
    let back = round(&mut fleet, &members, t(600));
    assert_eq!(
        released(&fleet),
        [(0, v("1.0")), (1, v("1.0")), (2, v("1.0"))]
    );
    assert_eq!(
        back.events,
        [
            FleetEvent::Released {
                wave: 0,
                version: "1.0".into(),
                cells: vec!["canary".into()]
            },
            FleetEvent::Released {
                wave: 1,
                version: "1.0".into(),
                cells: vec!["eu-1".into()]
            },
        ]
    );
    // The halt was about 1.1.
    assert!(fleet.status.as_ref().expect("status").halt.is_none());
}

#[test]
fn a_paused_fleet_releases_nothing_until_unpaused() {
    let mut fleet = fleet("  paused: true\n");
    let members = three_waves();
    let held = round(&mut fleet, &members, t(0));
    assert_eq!(released(&fleet), [(0, None), (1, None), (2, None)]);
    assert_eq!(held.events, []);
    assert_eq!(
        condition(&fleet, "Progressing"),
        ("False".into(), "Paused".into())
    );
    fleet.spec.paused = false;
    round(&mut fleet, &members, t(1));
    assert_eq!(released(&fleet), [(0, v("1.1")), (1, None), (2, None)]);
}

/// A member cell as the API server would hold it, with its Ready for `observed`.
fn member_cell(name: &str, wave: i32, generation: i64, observed: i64) -> Cell {
    serde_yaml::from_str(&format!(
        "apiVersion: commerce.titan.dev/v1alpha1
kind: Cell
metadata:
  name: {name}
  generation: {generation}
spec:
  version: \"1.0\"
  rollout:
    wave: {wave}
    fleet: prod
status:
  version: \"1.1\"
  conditions:
  - type: Ready
    status: \"True\"
    reason: AllServicesReady
    message: all 15 services are ready
    observedGeneration: {observed}
    lastTransitionTime: \"2026-01-01T00:00:00Z\"
"
    ))
    .expect("a Cell")
}

#[test]
fn a_ready_for_an_older_generation_does_not_count() {
    let stale = member_cell("canary", 0, 2, 1);
    let mut other = member_cell("eu-1", 1, 1, 1);
    other.spec.rollout.fleet = Some("staging".into());
    let members = observe::members("prod", &[other, stale]);
    assert_eq!(members.len(), 1);
    assert!(!members[0].ready);
    assert_eq!(members[0].version.as_deref(), Some("1.1"));

    let mut fleet = fleet("");
    let mut all = members.clone();
    all.push(member("eu-1", 1, "1.0", true));
    round(&mut fleet, &all, t(0));
    round(&mut fleet, &all, t(100));
    assert_eq!(released(&fleet), [(0, v("1.1")), (1, None)]);
    assert_eq!(
        fleet.status.as_ref().expect("status").waves[0].ready_cells,
        0
    );

    let current = observe::members("prod", &[member_cell("canary", 0, 2, 2)]);
    assert!(current[0].ready);
}

/// The fleet as the planner left it after releasing wave 0 at t(0) and seeing the canary
/// Ready with 1.1 at t(10).
fn fleet_baking_wave_zero() -> Fleet {
    let mut fleet = fleet("");
    let mut members = three_waves();
    round(&mut fleet, &members, t(0));
    take(&mut members, 0, "1.1");
    round(&mut fleet, &members, t(10));
    fleet
}

fn cell_yaml(name: &str, wave: i32, image: &str) -> Cell {
    serde_yaml::from_str(&format!(
        "apiVersion: commerce.titan.dev/v1alpha1
kind: Cell
metadata:
  name: {name}
spec:
  version: \"1.0\"
  image: {image}
  rollout:
    wave: {wave}
    fleet: prod
"
    ))
    .expect("a Cell")
}

#[test]
fn a_member_runs_the_version_released_to_its_wave_and_says_what_it_waits_for() {
    let fleet = fleet_baking_wave_zero();
    let canary = cell_yaml("canary", 0, "ghcr.io/titan/titan");
    let eu = cell_yaml("eu-1", 1, "ghcr.io/titan/titan");
    let us = cell_yaml("us-1", 2, "ghcr.io/titan/titan:1.0");

    assert_eq!(
        rollout::resolve(&canary, Some(&fleet), t(20)),
        Resolved {
            version: "1.1".into(),
            status: Some(RolloutStatus {
                fleet: "prod".into(),
                target_version: Some("1.1".into()),
                waiting_for: None,
                reason: "wave 0 was released 1.1".into(),
            }),
        }
    );
    assert_eq!(
        rollout::resolve(&eu, Some(&fleet), t(20)),
        Resolved {
            version: "1.0".into(),
            status: Some(RolloutStatus {
                fleet: "prod".into(),
                target_version: Some("1.1".into()),
                waiting_for: Some("1.1".into()),
                reason: "wave 0 baking until 2026-01-01T00:01:10Z".into(),
            }),
        }
    );
    assert_eq!(
        rollout::resolve(&us, Some(&fleet), t(20))
            .status
            .map(|s| s.reason),
        Some("wave 0 baking until 2026-01-01T00:01:10Z".into())
    );

    // The canary's services are built with the released version; the tagged image of us-1
    // moves its tag with the version it runs.
    let canary_built = built(&rollout::running(&canary, "1.1"));
    assert!(
        canary_built
            .services
            .iter()
            .all(|s| s.spec.image == "ghcr.io/titan/titan:1.1")
    );
    assert_eq!(
        rollout::running(&us, "1.1").spec.image,
        "ghcr.io/titan/titan:1.1"
    );

    // Without its Fleet the cell runs its own version and says so.
    assert_eq!(
        rollout::resolve(&eu, None, t(20)).status.map(|s| s.reason),
        Some("fleet prod does not exist: the cell runs spec.version 1.0".into())
    );
    // Without a fleet there is no rollout status at all.
    let mut alone = eu.clone();
    alone.spec.rollout.fleet = None;
    assert_eq!(
        rollout::resolve(&alone, Some(&fleet), t(20)),
        Resolved {
            version: "1.0".into(),
            status: None
        }
    );
}

#[test]
fn a_waiting_member_names_the_cell_that_halted_the_rollout_or_the_pause() {
    let mut fleet = fleet("");
    let mut members = three_waves();
    round(&mut fleet, &members, t(0));
    fail(&mut members[0]);
    round(&mut fleet, &members, t(120));
    let eu = cell_yaml("eu-1", 1, "ghcr.io/titan/titan");
    assert_eq!(
        rollout::resolve(&eu, Some(&fleet), t(130))
            .status
            .map(|s| s.reason),
        Some("rollout halted by cell canary (CellNotReady): see fleet prod".into())
    );

    let paused = {
        let mut f = fleet_baking_wave_zero();
        f.spec.paused = true;
        f
    };
    assert_eq!(
        rollout::resolve(&eu, Some(&paused), t(130))
            .status
            .map(|s| s.reason),
        Some("paused: the fleet's spec.paused is true".into())
    );
}

#[test]
fn datastores_never_change_with_a_wave() {
    let cell = cell_yaml("canary", 0, "ghcr.io/titan/titan");
    let before = built(&cell);
    let after = built(&rollout::running(&cell, "1.1"));
    assert_eq!(before.stateful_sets, after.stateful_sets);
    assert_eq!(before.clusters, after.clusters);
    assert_eq!(before.secrets, after.secrets);
    // The services do move: this test would pass vacuously otherwise.
    assert_ne!(before.services, after.services);
}

/// A fleet as [`fleet`] with `spec.analysis` evaluated every 30 s.
fn analysed_fleet(max: &str) -> Fleet {
    fleet(&format!(
        "  analysis:
    prometheus: http://prometheus:9090
    query: sum(errors{{namespace=\"{{{{namespace}}}}\"}})
    max: \"{max}\"
    interval: 30s
"
    ))
}

/// The resume hint every halt message of `prod` ends with.
pub(crate) const RESUME: &str = "fix the cell, then resume with `kubectl annotate fleet/prod \
                      commerce.titan.dev/resumed-at=$(date -u +%FT%TZ) --overwrite`";

pub(crate) fn message(fleet: &Fleet, type_: &str) -> String {
    let status = fleet.status.as_ref().expect("status");
    conditions::find(&status.conditions, type_)
        .expect("condition")
        .message
        .clone()
}

#[test]
fn an_error_rate_above_max_halts_and_exactly_max_or_no_data_do_not() {
    let mut fleet = analysed_fleet("0.05");
    let mut members = three_waves();
    // A cell not running the target is not judged, whatever its answer.
    members[0].analysis = Some(Ok(Answer::Value(9.0)));
    let first = round(&mut fleet, &members, t(0));
    assert_eq!(fleet.status.as_ref().expect("status").halt, None);
    // The query is asked again every interval, before the readiness deadline at 120.
    assert_eq!(first.next_check, Some(t(30)));

    take(&mut members, 0, "1.1");
    members[0].analysis = Some(Ok(Answer::Value(0.05)));
    let at_max = round(&mut fleet, &members, t(10));
    assert_eq!(at_max.events, []);
    assert_eq!(at_max.next_check, Some(t(40)));
    members[0].analysis = Some(Ok(Answer::NoData));
    round(&mut fleet, &members, t(20));
    assert_eq!(
        condition(&fleet, HALTED),
        ("False".into(), "NotHalted".into())
    );
    assert_eq!(
        fleet.status.as_ref().expect("status").waves[0].baked_since,
        Some(Time(t(10)))
    );

    members[0].analysis = Some(Ok(Answer::Value(0.12)));
    let halted = round(&mut fleet, &members, t(30));
    let halt = halt_of(&fleet, "halted");
    assert_eq!(
        (
            halt.cell.as_str(),
            halt.wave,
            halt.version.as_str(),
            halt.reason.as_str()
        ),
        ("canary", 0, "1.1", "ErrorRate")
    );
    assert_eq!(
        halt.message,
        format!(
            "cell canary (wave 0) runs 1.1 with an error rate of 0.12 (spec.analysis.query), \
             above spec.analysis.max 0.05; {RESUME}"
        )
    );
    assert_eq!(halted.events, [FleetEvent::Halted(halt)]);
    assert_eq!(
        condition(&fleet, HALTED),
        ("True".into(), "ErrorRate".into())
    );
    assert_eq!(
        condition(&fleet, "Progressing"),
        ("False".into(), "Halted".into())
    );
    // A halted fleet waits for a person: no query round at 60 is scheduled (only the wave's
    // bake end, as for any halt), and the bake time passing releases nothing.
    assert_eq!(halted.next_check, Some(t(70)));
    members[0].analysis = Some(Ok(Answer::Value(0.0)));
    round(&mut fleet, &members, t(1_000));
    assert_eq!(released(&fleet), [(0, v("1.1")), (1, None), (2, None)]);
    let eu = cell_yaml("eu-1", 1, "ghcr.io/titan/titan");
    assert_eq!(
        rollout::resolve(&eu, Some(&fleet), t(1_000))
            .status
            .map(|s| s.reason),
        Some("rollout halted by cell canary (ErrorRate): see fleet prod".into())
    );

    // A resume while the rate is still above max halts again in the same round (observe
    // queries a halted fleet's cells too); one once it is back under max lets wave 1 follow
    // at once, the canary having run Ready since 10.
    let resume = |fleet: &mut Fleet, at: &str| {
        fleet
            .metadata
            .annotations
            .get_or_insert_default()
            .insert(RESUMED_AT.into(), at.into());
    };
    members[0].analysis = Some(Ok(Answer::Value(0.2)));
    resume(&mut fleet, "2026-01-01T00:18:20Z");
    let again = round(&mut fleet, &members, t(1_101));
    let halt = halt_of(&fleet, "halted again");
    assert_eq!(
        (halt.reason.as_str(), halt.since.clone()),
        ("ErrorRate", Time(t(1_101)))
    );
    assert_eq!(
        again.events,
        [
            FleetEvent::Resumed {
                cell: "canary".into(),
                version: "1.1".into()
            },
            FleetEvent::Halted(halt)
        ]
    );
    members[0].analysis = Some(Ok(Answer::Value(0.01)));
    resume(&mut fleet, "2026-01-01T00:20:00Z");
    round(&mut fleet, &members, t(1_201));
    assert_eq!(fleet.status.as_ref().expect("status").halt, None);
    assert_eq!(released(&fleet), [(0, v("1.1")), (1, v("1.1")), (2, None)]);
}

#[test]
fn a_failing_query_holds_the_wave_without_halting_until_it_answers() {
    let mut fleet = analysed_fleet("0.05");
    let mut members = three_waves();
    round(&mut fleet, &members, t(0));
    take(&mut members, 0, "1.1");
    members[0].analysis = Some(Ok(Answer::Value(0.01)));
    round(&mut fleet, &members, t(10));

    let refused = "prometheus at http://prometheus:9090/api/v1/query did not answer: \
                   error sending request: connection refused";
    members[0].analysis = Some(Err(refused.into()));
    round(&mut fleet, &members, t(20));
    let holding = format!(
        "spec.analysis could not judge cell canary (wave 0) running 1.1: {refused}; wave 0 \
         holds (nothing halts, and its bake does not complete) until the query answers: check \
         spec.analysis.prometheus and spec.analysis.query"
    );
    assert_eq!(
        condition(&fleet, "Progressing"),
        ("False".into(), "AnalysisFailed".into())
    );
    assert_eq!(message(&fleet, "Progressing"), holding);
    // The bake time passes: no halt, no release, and the query is tried again in 30 s.
    let held = round(&mut fleet, &members, t(70));
    assert_eq!(held.events, []);
    assert_eq!(held.next_check, Some(t(100)));
    assert_eq!(released(&fleet), [(0, v("1.1")), (1, None), (2, None)]);
    assert_eq!(
        condition(&fleet, HALTED),
        ("False".into(), "NotHalted".into())
    );
    assert_eq!(message(&fleet, "Progressing"), holding);
    // The canary kept running Ready: its bake clock was never reset.
    assert_eq!(
        fleet.status.as_ref().expect("status").waves[0].baked_since,
        Some(Time(t(10)))
    );
    // The waiting cell says what holds it.
    let eu = cell_yaml("eu-1", 1, "ghcr.io/titan/titan");
    assert_eq!(
        rollout::resolve(&eu, Some(&fleet), t(70))
            .status
            .map(|s| s.reason),
        Some(
            "spec.analysis of fleet prod cannot judge the released waves: see its Progressing \
             condition"
                .into()
        )
    );

    // The query answers again (no traffic: healthy), and wave 1 is released at once.
    members[0].analysis = Some(Ok(Answer::NoData));
    let resumed = round(&mut fleet, &members, t(75));
    assert_eq!(released(&fleet), [(0, v("1.1")), (1, v("1.1")), (2, None)]);
    assert_eq!(
        resumed.events,
        [FleetEvent::Released {
            wave: 1,
            version: "1.1".into(),
            cells: vec!["eu-1".into()]
        }]
    );
    assert_eq!(
        condition(&fleet, "Progressing"),
        ("True".into(), "RollingOut".into())
    );
}

#[test]
fn a_max_that_bypassed_the_schema_holds_the_rollout_and_says_so() {
    let mut fleet = analysed_fleet("5%");
    let mut members = three_waves();
    round(&mut fleet, &members, t(0));
    take(&mut members, 0, "1.1");
    members[0].analysis = Some(Ok(Answer::Value(0.0)));
    round(&mut fleet, &members, t(10));
    round(&mut fleet, &members, t(500));
    assert_eq!(released(&fleet), [(0, v("1.1")), (1, None), (2, None)]);
    assert!(
        message(&fleet, "Progressing").starts_with(
            "spec.analysis could not judge cell canary (wave 0) running 1.1: spec.analysis.max \
             is \"5%\": expected a decimal such as 0.05; wave 0 holds"
        ),
        "{}",
        message(&fleet, "Progressing")
    );
}

#[test]
fn analysis_answers_count_only_with_an_analysis_configured() {
    // Without spec.analysis an answer (which observe would not ask for) changes nothing: the
    // wave rule is the one of the tests above.
    let mut fleet = fleet("");
    let mut members = three_waves();
    let first = round(&mut fleet, &members, t(0));
    assert_eq!(first.next_check, Some(t(120)));
    take(&mut members, 0, "1.1");
    members[0].analysis = Some(Err("prometheus is down".into()));
    round(&mut fleet, &members, t(10));
    members[0].analysis = Some(Ok(Answer::Value(1e9)));
    round(&mut fleet, &members, t(70));
    assert_eq!(released(&fleet), [(0, v("1.1")), (1, v("1.1")), (2, None)]);
    assert_eq!(fleet.status.as_ref().expect("status").halt, None);
}

#[test]
fn observe_watches_the_cells_running_the_target_in_released_waves_while_it_rolls_out() {
    let mut fleet = analysed_fleet("0.05");
    let mut members = three_waves();
    round(&mut fleet, &members, t(0));
    take(&mut members, 0, "1.1");
    let watched = |fleet: &Fleet, members: &[Member]| -> Vec<String> {
        members
            .iter()
            .filter(|m| observe::watched(fleet, m))
            .map(|m| m.name.clone())
            .collect()
    };
    assert_eq!(watched(&fleet, &members), ["canary"]);
    // A cell of wave 1 that already runs 1.1 is not watched before its wave is released.
    members[1].version = Some("1.1".into());
    assert_eq!(watched(&fleet, &members), ["canary"]);
    // Nothing is watched without an analysis, or once the version completed.
    let mut plain = fleet.clone();
    plain.spec.analysis = None;
    assert_eq!(watched(&plain, &members), Vec::<String>::new());
    let mut completed = fleet.clone();
    if let Some(status) = completed.status.as_mut() {
        status.baked_versions.push("1.1".into());
    }
    assert_eq!(watched(&completed, &members), Vec::<String>::new());
    // The namespace a cell's query names is the one its workloads run in.
    let observed = observe::members("prod", &[member_cell("canary", 0, 1, 1)]);
    assert_eq!(observed[0].namespace, "titan-canary");
    assert_eq!(observed[0].analysis, None);
}
