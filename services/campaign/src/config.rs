//! The campaign service's settings: the `campaign` config type of the `crds` crate, so the
//! operator validates exactly what this service parses (`services.campaign` in the file).

pub use titan_crds::config::CampaignConfig as Settings;
