//! `titan-operator`: the Cell, Service and Fleet controllers of Titan.
//!
//! Each controller reconciles as a pipeline of small stages (zookeeper-operator's shape):
//! `dereference` (read what it depends on) → `validate` → `build` (pure: spec in, desired objects
//! out) → `apply` (server-side apply, skipped when nothing changed) → `prune` → `status`.
//! `build` and `status` compute values; [`apply`] is the thin layer that writes them.
#![forbid(unsafe_code)]

pub mod admin;
pub mod apply;
pub mod cache;
pub mod cell;
pub mod cnpg;
pub mod conditions;
pub mod context;
pub mod error;
pub mod fleet;
pub mod guard;
pub mod labels;
pub mod leader;
pub mod metrics;
pub mod render;
pub mod router_table;
pub mod run;
pub mod service;
pub mod shared;

pub use context::Context;
pub use error::Error;

/// Field manager of every write the operator makes.
pub const MANAGER: &str = "titan-operator";
