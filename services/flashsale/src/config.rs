//! The flash-sale service's settings: the `flashsale` config type of the `crds` crate, so the
//! operator validates exactly what this service parses (`services.flashsale` in the file).

pub use titan_crds::config::FlashsaleConfig as Settings;
