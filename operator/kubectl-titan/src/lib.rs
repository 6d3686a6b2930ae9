//! `kubectl titan`: a kubectl plugin for Titan cells (`kubectl-titan` on PATH).
//!
//! `status` shows a cell on one screen (or every cell as a table); `pause`, `resume`, `stop`,
//! `start` and `scale` server-side apply exactly the fields they are about as field manager
//! `kubectl-titan`, and refuse where the Cell's spec or an autoscaler owns the field;
//! `credentials` lists the Secrets a cell uses (values only with `--reveal`); `render` is the
//! operator's own offline render; `wait` watches a cell until it is ready or at a version.
//!
//! The modules that decide (`status`, `ops`, `credentials`, `wait`) are pure and tested on
//! fixture objects; `cluster` only reads and writes.
#![forbid(unsafe_code)]

pub mod cluster;
pub mod credentials;
pub mod ops;
pub mod status;
pub mod style;
pub mod wait;

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod snapshots;

use std::time::Duration;

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No usable kubeconfig.
    #[error("cannot configure a client: {0}")]
    Config(String),
    /// The named cell does not exist.
    #[error("cell {0} does not exist (`kubectl titan status` lists the cells)")]
    NoCell(String),
    /// The cell has no Service of that name.
    #[error("cell {cell} has no service {service} (its services: {known})")]
    NoService {
        /// The cell.
        cell: String,
        /// The name asked for.
        service: String,
        /// The names it has.
        known: String,
    },
    /// The command would change a field something else owns.
    #[error("refused: {0}")]
    Refused(#[from] ops::Refusal),
    /// `wait` ran out of time.
    #[error("cell {cell} is not {target} after {}s: {last}", timeout.as_secs())]
    Timeout {
        /// The cell.
        cell: String,
        /// What was waited for.
        target: String,
        /// How long.
        timeout: Duration,
        /// Where it stood.
        last: String,
    },
    /// The watch of `wait` failed.
    #[error("watching the cell failed: {0}")]
    Watch(String),
    /// The API server refused or could not be reached.
    #[error("{}", api_message(.0))]
    Kube(#[from] kube::Error),
    /// `render` refused its inputs.
    #[error(transparent)]
    Render(#[from] titan_operator::render::RenderError),
    /// Output could not be written.
    #[error("cannot write the output: {0}")]
    Output(String),
}

/// The API server's own message when it gave one (it names fields and conflicts).
fn api_message(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => format!("the API server refused: {}", status.message),
        other => format!("cannot talk to the API server: {other}"),
    }
}

/// How a report is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// For people: aligned, coloured on a terminal.
    Text,
    /// JSON, for scripts.
    Json,
    /// YAML, for scripts.
    Yaml,
}

/// `value` in a machine format, or `None` for text (which each report writes itself).
pub fn serialize<T: serde::Serialize>(value: &T, format: Format) -> Result<Option<String>, Error> {
    let output = |e: &dyn std::fmt::Display| Error::Output(e.to_string());
    match format {
        Format::Text => Ok(None),
        Format::Json => serde_json::to_string_pretty(value)
            .map(|s| Some(s + "\n"))
            .map_err(|e| output(&e)),
        Format::Yaml => serde_yaml::to_string(value)
            .map(Some)
            .map_err(|e| output(&e)),
    }
}
