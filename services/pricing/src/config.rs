//! The pricing service's settings: the `pricing` config type of the `crds` crate, so the
//! operator validates exactly what this service parses (`services.pricing` in the file).

pub use titan_crds::config::PricingConfig as Settings;
