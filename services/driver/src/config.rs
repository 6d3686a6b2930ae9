//! The driver service's settings: the `driver` config type of the `crds` crate, so the
//! operator validates exactly what this service parses (`services.driver` in the file).

pub use titan_crds::config::{DistanceModel, DriverConfig as Settings};
