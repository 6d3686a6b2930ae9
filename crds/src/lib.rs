//! `titan-crds`: the `Cell`, `Service` and `Fleet` custom resources of Titan
//! (`commerce.titan.dev/v1alpha1`) and the typed configuration of every Titan service.
//!
//! The operator builds objects from these types and the services parse their own section of the
//! rendered config file with the same types, so what admission and the operator accept is
//! exactly what a service will run with.
#![forbid(unsafe_code)]

#[cfg(feature = "admission")]
pub mod admission;
pub mod cell;
pub mod common;
pub mod config;
pub mod fleet;
pub mod kind;
pub mod service;

pub use cell::{Cell, CellSpec, CellStatus};
pub use config::{ConfigError, ServiceConfig, TitanConfig};
pub use fleet::{Fleet, FleetSpec, FleetStatus};
pub use kind::{DatastoreKind, ServiceKind};
pub use service::{Service, ServiceSpec, ServiceStatus};

/// API group of every Titan resource.
pub const GROUP: &str = "commerce.titan.dev";
/// API version of the resources in this crate.
pub const VERSION: &str = "v1alpha1";

/// Every CustomResourceDefinition: `Cell`, `Service`, `Fleet`.
pub fn definitions()
-> [k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition; 3]
{
    use kube::CustomResourceExt;
    [Cell::crd(), Service::crd(), Fleet::crd()]
}
