//! The analytics service's settings: the typed config the operator validated
//! (`services.analytics` of the config file).

pub use titan_crds::config::AnalyticsConfig as Settings;
