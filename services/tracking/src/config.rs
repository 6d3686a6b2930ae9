//! The tracking service's settings: the `tracking` config type of the `crds` crate, so the
//! operator validates exactly what this service parses (`services.tracking` in the file).

pub use titan_crds::config::TrackingConfig as Settings;
