//! `kubectl titan status`: what a cell is doing, on one screen, built (purely) from the Cell,
//! its Services and Deployments and the recent Warning Events, then shown as text for people
//! (coloured on a terminal) or serialized for scripts (`-o json|yaml`).

use std::fmt::Write as _;

use k8s_openapi::{
    api::{apps::v1::Deployment, core::v1::Event},
    apimachinery::pkg::apis::meta::v1::Condition,
    jiff::Timestamp,
};
use kube::ResourceExt;
use serde::Serialize;
use titan_crds::{
    Cell, Service,
    cell::{ComponentStatus, PostgresProvider, Provider},
    common::condition::{DEGRADED, MIGRATED, PROGRESSING, READY, RECONCILIATION_PAUSED, STOPPED},
};
use titan_operator::{
    cell::connections::{CLICKHOUSE, POSTGRES, REDIS},
    service::status::cannot_run,
};

use crate::style::{Paint, Style, painted, plain, table};

/// How many Warning Events a report shows, newest first.
pub const EVENTS_SHOWN: usize = 10;

/// Where a cell stands, in one word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Phase {
    /// Every enabled service ready on the latest spec.
    Ready,
    /// Moving towards its spec.
    Progressing,
    /// Something needs a person.
    Degraded,
    /// `spec.operation.reconciliationPaused`: the operator changes nothing.
    Paused,
    /// `spec.operation.stopped`: everything at zero, data kept.
    Stopped,
}

impl Phase {
    /// The phase of `cell` from its conditions: a switch a person set first (paused, since a
    /// paused operator carries out nothing else, then stopped), then trouble, then readiness
    /// of the latest generation.
    pub fn of(cell: &Cell) -> Self {
        let conditions = conditions_of(cell);
        let is_true = |type_: &str| {
            conditions
                .iter()
                .any(|c| c.type_ == type_ && c.status == "True")
        };
        let current =
            cell.status.as_ref().and_then(|s| s.observed_generation) == cell.metadata.generation;
        if is_true(RECONCILIATION_PAUSED) {
            Phase::Paused
        } else if is_true(STOPPED) {
            Phase::Stopped
        } else if is_true(DEGRADED) {
            Phase::Degraded
        } else if is_true(READY) && current {
            Phase::Ready
        } else {
            Phase::Progressing
        }
    }

    /// The condition whose reason explains the phase.
    fn condition(self) -> &'static str {
        match self {
            Phase::Ready | Phase::Progressing => READY,
            Phase::Degraded => DEGRADED,
            Phase::Paused => RECONCILIATION_PAUSED,
            Phase::Stopped => STOPPED,
        }
    }

    fn paint(self) -> Paint {
        match self {
            Phase::Ready => Paint::Good,
            Phase::Progressing | Phase::Paused => Paint::Busy,
            Phase::Degraded => Paint::Bad,
            Phase::Stopped => Paint::Off,
        }
    }

    /// The phase's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Ready => "Ready",
            Phase::Progressing => "Progressing",
            Phase::Degraded => "Degraded",
            Phase::Paused => "Paused",
            Phase::Stopped => "Stopped",
        }
    }
}

fn conditions_of(cell: &Cell) -> &[Condition] {
    cell.status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default()
}

/// One condition as shown.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConditionLine {
    /// `Ready`, `Degraded`, ...
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// CamelCase reason.
    pub reason: String,
    /// What a person should know.
    pub message: String,
}

impl From<&Condition> for ConditionLine {
    fn from(c: &Condition) -> Self {
        Self {
            type_: c.type_.clone(),
            status: c.status.clone(),
            reason: c.reason.clone(),
            message: c.message.clone(),
        }
    }
}

/// One service of the cell.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceLine {
    /// The Service's name.
    pub name: String,
    /// Ready pods.
    pub ready_replicas: i32,
    /// Pods its Deployment asks for.
    pub desired_replicas: i32,
    /// Whether its `Ready` condition is true for its latest spec.
    pub ready: bool,
    /// Whether its pods cannot run at all (crash-looping, no image, failed migrations).
    pub cannot_run: bool,
    /// The image its Deployment runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Its gRPC address in the cluster.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The last thing wrong with it: `Reason: message` of `Degraded`, else of an unready `Ready`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// One datastore or media server.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ComponentLine {
    /// `postgres`, `redis`, `clickhouse`, `objectStorage`, `turn`, `rtmp`.
    pub name: String,
    /// Who runs it (datastores only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// Whether it serves; absent before the operator first reported it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ready: Option<bool>,
    /// Where it is reached.
    pub endpoint: String,
    /// `Reason: message` from the cell's status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// One Warning Event about the cell or something in its namespace.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventLine {
    /// When it last happened.
    pub last_seen: Option<String>,
    /// `Kind/name` of the object.
    pub object: String,
    /// CamelCase reason.
    pub reason: String,
    /// The message.
    pub message: String,
    /// How often it happened.
    pub count: i32,
}

/// Everything `kubectl titan status CELL` shows.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CellReport {
    /// The cell.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// Where it stands.
    pub phase: Phase,
    /// The reason of the condition that explains the phase.
    pub phase_reason: String,
    /// The version every ready service runs (absent while they differ).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The version the spec asks for.
    pub wanted_version: String,
    /// The rollout wave.
    pub wave: i32,
    /// The spec's generation and the one the status describes.
    pub generation: Option<i64>,
    /// See `generation`.
    pub observed_generation: Option<i64>,
    /// Every condition of the cell.
    pub conditions: Vec<ConditionLine>,
    /// The services, those that cannot run first, then unready ones, then by name.
    pub services: Vec<ServiceLine>,
    /// The datastores.
    pub datastores: Vec<ComponentLine>,
    /// The enabled media servers.
    pub media: Vec<ComponentLine>,
    /// The cell's `Migrated` condition.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub migrations: Option<ConditionLine>,
    /// Recent Warning Events, newest first.
    pub warnings: Vec<EventLine>,
}

impl CellReport {
    /// The report of `cell` from its Services, Deployments and Events (any order, any type).
    pub fn build(
        cell: &Cell,
        services: &[Service],
        deployments: &[Deployment],
        events: &[Event],
    ) -> Self {
        let status = cell.status.clone().unwrap_or_default();
        let namespace = cell.namespace_name();
        let phase = Phase::of(cell);
        let conditions: Vec<ConditionLine> =
            status.conditions.iter().map(ConditionLine::from).collect();
        let phase_reason = conditions
            .iter()
            .find(|c| c.type_ == phase.condition())
            .map(|c| c.reason.clone())
            .unwrap_or_else(|| "NotObserved".to_string());
        let migrations = conditions.iter().find(|c| c.type_ == MIGRATED).cloned();

        let mut service_lines: Vec<ServiceLine> = services
            .iter()
            .map(|s| service_line(s, deployments))
            .collect();
        service_lines.sort_by(|a, b| {
            (!a.cannot_run, a.ready, &a.name).cmp(&(!b.cannot_run, b.ready, &b.name))
        });

        let endpoints = status.endpoints.clone().unwrap_or_default();
        let stores = &cell.spec.datastores;
        let seen = status.datastores.as_ref();
        let host = |name: &str, port: u16| format!("{name}.{namespace}.svc:{port}");
        let secret = |name: &Option<String>| {
            format!("from secret {}", name.as_deref().unwrap_or("(unnamed)"))
        };
        let mut datastores = vec![
            component(
                "postgres",
                seen.map(|d| &d.postgres),
                match stores.postgres.provider {
                    PostgresProvider::Builtin => host(POSTGRES, 5432),
                    // CloudNativePG's read-write Service of the cluster.
                    PostgresProvider::CloudnativePg => host(&format!("{POSTGRES}-rw"), 5432),
                    PostgresProvider::External => secret(&stores.postgres.secret_name),
                },
            ),
            component(
                "redis",
                seen.map(|d| &d.redis),
                match stores.redis.provider {
                    Provider::Builtin => host(REDIS, 6379),
                    Provider::External => secret(&stores.redis.secret_name),
                },
            ),
            component(
                "clickhouse",
                seen.map(|d| &d.clickhouse),
                match stores.clickhouse.provider {
                    Provider::Builtin => host(CLICKHOUSE, 8123),
                    Provider::External => secret(&stores.clickhouse.secret_name),
                },
            ),
        ];
        if let Some(storage) = &stores.object_storage {
            datastores.push(component(
                "objectStorage",
                seen.and_then(|d| d.object_storage.as_ref()),
                format!(
                    "{}/{}",
                    storage.endpoint.trim_end_matches('/'),
                    storage.bucket
                ),
            ));
        }
        // Provider names as the CRD spells them, whatever status said.
        for (line, provider) in datastores.iter_mut().zip([
            provider_name(stores.postgres.provider),
            lower(stores.redis.provider),
            lower(stores.clickhouse.provider),
        ]) {
            line.provider = Some(provider.to_string());
        }

        let media_seen = status.media.as_ref();
        let mut media = Vec::new();
        if cell.spec.media.turn.as_ref().is_some_and(|t| t.enabled) {
            media.push(component(
                "turn",
                media_seen.and_then(|m| m.turn.as_ref()),
                or_pending(endpoints.turn_uris.join(" ")),
            ));
        }
        if cell.spec.media.rtmp.as_ref().is_some_and(|r| r.enabled) {
            let urls: Vec<&str> = [&endpoints.rtmp_ingest, &endpoints.hls_base]
                .into_iter()
                .flatten()
                .map(String::as_str)
                .collect();
            media.push(component(
                "rtmp",
                media_seen.and_then(|m| m.rtmp.as_ref()),
                or_pending(urls.join(" ")),
            ));
        }

        // The same warning recorded as several Events (a series, or one per restart of the
        // recorder) is one line with the counts added up.
        let mut warnings: Vec<(Option<Timestamp>, EventLine)> = Vec::new();
        for event in events
            .iter()
            .filter(|e| e.type_.as_deref() == Some("Warning"))
        {
            let at = last_seen(event);
            let line = EventLine {
                last_seen: at.map(|t| t.to_string()),
                object: event_object(event),
                reason: event.reason.clone().unwrap_or_default(),
                message: event.message.clone().unwrap_or_default(),
                count: event.count.unwrap_or(1),
            };
            let same = |(_, seen): &&mut (Option<Timestamp>, EventLine)| {
                (&seen.object, &seen.reason, &seen.message)
                    == (&line.object, &line.reason, &line.message)
            };
            match warnings.iter_mut().find(same) {
                Some((seen_at, seen)) => {
                    seen.count += line.count;
                    if at > *seen_at {
                        *seen_at = at;
                        seen.last_seen = line.last_seen;
                    }
                }
                None => warnings.push((at, line)),
            }
        }
        warnings.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.object.cmp(&b.1.object)));
        warnings.truncate(EVENTS_SHOWN);

        Self {
            name: cell.name_any(),
            namespace,
            phase,
            phase_reason,
            version: status.version.clone(),
            wanted_version: cell.spec.version.clone(),
            wave: cell.spec.rollout.wave,
            generation: cell.metadata.generation,
            observed_generation: status.observed_generation,
            conditions,
            services: service_lines,
            datastores,
            media,
            migrations,
            warnings: warnings.into_iter().map(|(_, line)| line).collect(),
        }
    }

    /// The report for people; `now` dates the events.
    pub fn text(&self, style: Style, now: Timestamp) -> String {
        let mut out = String::new();
        let bold = |text: &str| style.paint(Some(Paint::Bold), text);
        let phase = style.paint(Some(self.phase.paint()), self.phase.as_str());
        let _ = writeln!(
            out,
            "{} {}  {phase} ({})",
            bold("Cell"),
            bold(&self.name),
            self.phase_reason
        );
        let version = match &self.version {
            Some(v) if *v == self.wanted_version => v.clone(),
            Some(v) => format!(
                "{v}, {}",
                style.paint(
                    Some(Paint::Busy),
                    &format!("waiting for {}", self.wanted_version)
                )
            ),
            None => style.paint(
                Some(Paint::Busy),
                &format!("mixed, waiting for {}", self.wanted_version),
            ),
        };
        let generation = |g: Option<i64>| g.map_or("-".to_string(), |g| g.to_string());
        let observed = if self.generation == self.observed_generation {
            format!("{} (observed)", generation(self.generation))
        } else {
            style.paint(
                Some(Paint::Busy),
                &format!(
                    "{} (status is about {})",
                    generation(self.generation),
                    generation(self.observed_generation)
                ),
            )
        };
        for (key, value) in [
            ("namespace", self.namespace.clone()),
            ("version", version),
            ("wave", self.wave.to_string()),
            ("generation", observed),
        ] {
            let _ = writeln!(
                out,
                "  {}  {value}",
                style.paint(Some(Paint::Dim), &format!("{key:<10}"))
            );
        }

        let _ = writeln!(out, "\n{}", bold("Conditions"));
        let rows: Vec<_> = self
            .conditions
            .iter()
            .map(|c| {
                vec![
                    plain(&c.type_),
                    painted(&c.status, condition_paint(c)),
                    plain(&c.reason),
                    plain(&c.message),
                ]
            })
            .collect();
        out.push_str(&table(
            style,
            "  ",
            &["TYPE", "STATUS", "REASON", "MESSAGE"],
            &rows,
        ));

        let ready = self.services.iter().filter(|s| s.ready).count();
        let _ = writeln!(
            out,
            "\n{} {ready}/{} ready",
            bold("Services"),
            self.services.len()
        );
        let rows: Vec<_> = self
            .services
            .iter()
            .map(|s| {
                let replicas = format!("{}/{}", s.ready_replicas, s.desired_replicas);
                let paint = if s.cannot_run {
                    Paint::Bad
                } else if s.ready && s.ready_replicas >= s.desired_replicas {
                    Paint::Good
                } else {
                    Paint::Busy
                };
                vec![
                    plain(&s.name),
                    painted(replicas, paint),
                    plain(s.endpoint.as_deref().unwrap_or("-")),
                    match &s.last_error {
                        Some(e) => painted(
                            e,
                            if s.cannot_run {
                                Paint::Bad
                            } else {
                                Paint::Busy
                            },
                        ),
                        None => plain(""),
                    },
                ]
            })
            .collect();
        out.push_str(&table(
            style,
            "  ",
            &["NAME", "READY", "ENDPOINT", "LAST ERROR"],
            &rows,
        ));

        let _ = writeln!(out, "\n{}", bold("Datastores"));
        out.push_str(&components(style, &self.datastores, true));
        if !self.media.is_empty() {
            let _ = writeln!(out, "\n{}", bold("Media"));
            out.push_str(&components(style, &self.media, false));
        }

        let _ = write!(out, "\n{} ", bold("Migrations"));
        match &self.migrations {
            Some(m) => {
                let _ = writeln!(
                    out,
                    "{}: {}",
                    style.paint(Some(condition_paint(m)), &m.reason),
                    m.message
                );
            }
            None => {
                let _ = writeln!(out, "not reported yet");
            }
        }

        let _ = writeln!(out, "\n{}", bold("Warning events"));
        if self.warnings.is_empty() {
            let _ = writeln!(out, "  none");
        } else {
            let rows: Vec<_> = self
                .warnings
                .iter()
                .map(|e| {
                    let age = e
                        .last_seen
                        .as_deref()
                        .and_then(|t| t.parse::<Timestamp>().ok())
                        .map_or("-".to_string(), |t| age(now, t));
                    let count = if e.count > 1 {
                        format!(" (x{})", e.count)
                    } else {
                        String::new()
                    };
                    vec![
                        plain(age),
                        plain(&e.object),
                        painted(&e.reason, Paint::Bad),
                        plain(format!("{}{count}", shorten(&e.message))),
                    ]
                })
                .collect();
            out.push_str(&table(
                style,
                "  ",
                &["AGE", "OBJECT", "REASON", "MESSAGE"],
                &rows,
            ));
        }
        out
    }
}

/// Longest event message the text shows; `-o json` has the whole of it.
const EVENT_MESSAGE_CHARS: usize = 120;

fn shorten(message: &str) -> String {
    if message.chars().count() <= EVENT_MESSAGE_CHARS {
        return message.to_string();
    }
    let kept: String = message.chars().take(EVENT_MESSAGE_CHARS - 1).collect();
    format!("{kept}…")
}

fn provider_name(p: PostgresProvider) -> &'static str {
    match p {
        PostgresProvider::Builtin => "builtin",
        PostgresProvider::CloudnativePg => "cloudnative-pg",
        PostgresProvider::External => "external",
    }
}

fn lower(p: Provider) -> &'static str {
    match p {
        Provider::Builtin => "builtin",
        Provider::External => "external",
    }
}

fn or_pending(endpoint: String) -> String {
    if endpoint.is_empty() {
        "(not reported yet)".to_string()
    } else {
        endpoint
    }
}

fn component(name: &str, seen: Option<&ComponentStatus>, endpoint: String) -> ComponentLine {
    ComponentLine {
        name: name.to_string(),
        provider: seen.and_then(|s| s.provider.clone()),
        ready: seen.map(|s| s.ready),
        endpoint,
        detail: seen.map(|s| format!("{}: {}", s.reason, s.message)),
    }
}

fn components(style: Style, lines: &[ComponentLine], with_provider: bool) -> String {
    let rows: Vec<_> = lines
        .iter()
        .map(|c| {
            let ready = match c.ready {
                Some(true) => painted("yes", Paint::Good),
                Some(false) => painted("no", Paint::Bad),
                None => painted("?", Paint::Busy),
            };
            let mut row = vec![plain(&c.name)];
            if with_provider {
                row.push(plain(c.provider.as_deref().unwrap_or("-")));
            }
            row.extend([
                ready,
                plain(&c.endpoint),
                plain(c.detail.as_deref().unwrap_or("")),
            ]);
            row
        })
        .collect();
    let header: &[&str] = if with_provider {
        &["NAME", "PROVIDER", "READY", "ENDPOINT", "DETAIL"]
    } else {
        &["NAME", "READY", "ENDPOINT", "DETAIL"]
    };
    table(style, "  ", header, &rows)
}

fn condition_paint(c: &ConditionLine) -> Paint {
    // Degraded, Progressing, Stopped and ReconciliationPaused are good news when false.
    let good_when_false =
        [DEGRADED, PROGRESSING, STOPPED, RECONCILIATION_PAUSED].contains(&c.type_.as_str());
    match (c.status.as_str(), good_when_false) {
        ("True", false) | ("False", true) => Paint::Good,
        ("True", true) if c.type_ == DEGRADED => Paint::Bad,
        ("True", true) if c.type_ == PROGRESSING => Paint::Busy,
        ("True", true) => Paint::Off,
        ("False", false) => Paint::Busy,
        _ => Paint::Dim,
    }
}

fn service_line(service: &Service, deployments: &[Deployment]) -> ServiceLine {
    let name = service.name_any();
    let status = service.status.clone().unwrap_or_default();
    let find = |type_: &str| status.conditions.iter().find(|c| c.type_ == type_);
    let current = status.observed_generation == service.metadata.generation;
    let ready = find(READY).is_some_and(|c| c.status == "True") && current;
    let degraded = find(DEGRADED).filter(|c| c.status == "True");
    let unready = find(READY).filter(|c| c.status != "True");
    let problem = degraded.or(unready);
    let desired = deployments
        .iter()
        .find(|d| d.name_any() == name)
        .and_then(|d| d.spec.as_ref())
        .map(|s| s.replicas.unwrap_or(1))
        .or(service.spec.replicas)
        .unwrap_or(0);
    ServiceLine {
        ready_replicas: status.ready_replicas.unwrap_or(0),
        desired_replicas: desired,
        ready,
        cannot_run: degraded.is_some_and(|c| cannot_run(&c.reason)),
        image: status.image.clone(),
        endpoint: status.endpoint.clone(),
        last_error: problem.map(|c| format!("{}: {}", c.reason, c.message)),
        name,
    }
}

/// `Kind/name` of an Event's object; a Titan Service is `tsvc/name`, as kubectl spells it,
/// so it is not taken for the core Service of the same name.
fn event_object(event: &Event) -> String {
    let object = &event.involved_object;
    let titan = object
        .api_version
        .as_deref()
        .is_some_and(|v| v.starts_with(titan_crds::GROUP));
    let kind = match object.kind.as_deref().unwrap_or_default() {
        "Service" if titan => "tsvc",
        kind => kind,
    };
    format!("{kind}/{}", object.name.as_deref().unwrap_or_default())
}

fn last_seen(event: &Event) -> Option<Timestamp> {
    event
        .last_timestamp
        .as_ref()
        .map(|t| t.0)
        .or_else(|| event.event_time.as_ref().map(|t| t.0))
        .or_else(|| event.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// `45s`, `12m`, `3h`, `2d`, as kubectl shows ages.
pub fn age(now: Timestamp, then: Timestamp) -> String {
    let seconds = now.as_second().saturating_sub(then.as_second()).max(0);
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// One row of `kubectl titan status` without a name.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CellRow {
    /// The cell.
    pub name: String,
    /// Where it stands.
    pub phase: Phase,
    /// Why.
    pub reason: String,
    /// `ready/enabled` services.
    pub services: String,
    /// The version its ready services run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The version its spec asks for.
    pub wanted_version: String,
    /// Rollout wave.
    pub wave: i32,
    /// Its namespace.
    pub namespace: String,
}

impl CellRow {
    /// The row of `cell`.
    pub fn of(cell: &Cell) -> Self {
        let phase = Phase::of(cell);
        let status = cell.status.as_ref();
        Self {
            name: cell.name_any(),
            reason: conditions_of(cell)
                .iter()
                .find(|c| c.type_ == phase.condition())
                .map_or_else(|| "NotObserved".to_string(), |c| c.reason.clone()),
            phase,
            services: status
                .and_then(|s| s.services.as_ref())
                .map_or_else(|| "-".to_string(), |s| s.summary.clone()),
            version: status.and_then(|s| s.version.clone()),
            wanted_version: cell.spec.version.clone(),
            wave: cell.spec.rollout.wave,
            namespace: cell.namespace_name(),
        }
    }
}

/// The table of every cell.
pub fn cells_table(style: Style, rows: &[CellRow]) -> String {
    if rows.is_empty() {
        return "no cells\n".to_string();
    }
    let lines: Vec<_> = rows
        .iter()
        .map(|r| {
            let running = r.version.as_deref().unwrap_or("-");
            let version = if r.version.as_deref() == Some(r.wanted_version.as_str()) {
                plain(running)
            } else {
                painted(format!("{running} -> {}", r.wanted_version), Paint::Busy)
            };
            vec![
                plain(&r.name),
                painted(r.phase.as_str(), r.phase.paint()),
                plain(&r.reason),
                plain(&r.services),
                version,
                plain(r.wave.to_string()),
                plain(&r.namespace),
            ]
        })
        .collect();
    table(
        style,
        "",
        &[
            "NAME",
            "PHASE",
            "REASON",
            "SERVICES",
            "VERSION",
            "WAVE",
            "NAMESPACE",
        ],
        &lines,
    )
}
