//! Test objects: a dev cell as the real API server returned it (`cell-ready.json`, the
//! Services, Deployments and Warning Events beside it), and the same cell rolling out 0.2.0 with
//! fraud crash-looping and pricing half rolled out (`cell-degraded.json`, edited by hand).

use k8s_openapi::{
    api::{apps::v1::Deployment, core::v1::Event},
    jiff::Timestamp,
};
use serde::de::DeserializeOwned;
use titan_crds::{Cell, Service};

fn read<T: DeserializeOwned>(text: &str, what: &str) -> T {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("fixture {what}: {e}"))
}

/// The cell rolling out 0.2.0, degraded.
pub fn cell() -> Cell {
    read(
        include_str!("../tests/fixtures/cell-degraded.json"),
        "cell-degraded",
    )
}

/// The cell Ready at 0.1.0.
pub fn ready_cell() -> Cell {
    read(
        include_str!("../tests/fixtures/cell-ready.json"),
        "cell-ready",
    )
}

/// Its Services.
pub fn services() -> Vec<Service> {
    read(include_str!("../tests/fixtures/services.json"), "services")
}

/// One of its Services.
pub fn service(name: &str) -> Service {
    services()
        .into_iter()
        .find(|s| s.metadata.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no fixture service {name}"))
}

/// Its Deployments.
pub fn deployments() -> Vec<Deployment> {
    read(
        include_str!("../tests/fixtures/deployments.json"),
        "deployments",
    )
}

/// Events about it, Warning and Normal.
pub fn events() -> Vec<Event> {
    read(include_str!("../tests/fixtures/events.json"), "events")
}

/// The moment the reports are made at.
pub fn now() -> Timestamp {
    "2026-12-06T02:15:30Z"
        .parse()
        .unwrap_or_else(|e| panic!("{e}"))
}
