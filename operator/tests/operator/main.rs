//! Integration tests of `titan-operator`: one binary (faster to link) with a module per area.
//! Reconciles run against kube-fake-client, an in-memory API server; no cluster is needed.
#![allow(clippy::unwrap_used)]

mod admin;
mod build;
mod cell_build;
mod crds;
mod fleet;
mod fleet_analysis;
mod gateway;
mod lifecycle;
mod media;
mod reconcile;
mod render;
mod router_table;
mod support;
mod tls;
mod truth;
