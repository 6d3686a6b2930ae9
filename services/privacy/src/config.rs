//! The privacy service's settings: the `privacy` config type of the `crds` crate, so the
//! operator validates exactly what this service parses (`services.privacy` in the file).

pub use titan_crds::config::PrivacyConfig as Settings;
