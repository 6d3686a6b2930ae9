//! The chat service's settings: the `chat` config type of the `crds` crate, so the operator
//! validates exactly what this service parses (`services.chat` in the file).

pub use titan_crds::config::ChatConfig as Settings;
