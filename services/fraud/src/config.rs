//! The fraud service's settings: the `fraud` config type of the `crds` crate, so the operator
//! validates exactly what this service parses (`services.fraud` in the file).

pub use titan_crds::config::FraudConfig as Settings;
