//! The A/B testing service's settings: the `abtesting` config type of the `crds` crate, so the
//! operator validates exactly what this service parses (`services.abtesting` in the file).

pub use titan_crds::config::AbtestingConfig as Settings;
