//! The livestream service's settings: the `livestream` config type of the `crds` crate, so
//! the operator validates exactly what this service parses (`services.livestream`).

pub use titan_crds::config::LivestreamConfig as Settings;
