//! Structured logs: JSON when stderr is not a terminal (in pods), human-readable otherwise;
//! the filter comes from `TITAN_LOG` (default `info`).

use std::io::IsTerminal;

use tracing_subscriber::{EnvFilter, fmt};

/// Installs the global subscriber once; later calls are no-ops so tests may call it freely.
pub fn init() {
    let filter = EnvFilter::try_from_env("TITAN_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _already_set = if std::io::stderr().is_terminal() {
        builder.try_init()
    } else {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init()
    };
}
