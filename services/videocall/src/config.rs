//! The videocall service's settings: the `videocall` config type of the `crds` crate, so the
//! operator validates exactly what this service parses (`services.videocall` in the file).
//! The TURN secret is not in the file: the operator passes it as [`TURN_SECRET_ENV`] from the
//! cell's Secret.

pub use titan_crds::config::VideocallConfig as Settings;

/// The environment variable holding the secret shared with the cell's TURN server.
pub const TURN_SECRET_ENV: &str = "TITAN_TURN_SECRET";
