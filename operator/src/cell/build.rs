//! Build stage of the Cell controller (pure: a Cell in, the objects it should own out).

use k8s_openapi::{api::core::v1::Namespace, apimachinery::pkg::apis::meta::v1::ObjectMeta};
use kube::{Resource, ResourceExt};
use titan_crds::{Cell, Service, ServiceKind, ServiceSpec, cell::DeletionPolicy};

use crate::labels;

/// Everything the Cell controller applies, in apply order: destructure it so that a new kind
/// of object cannot be built and then forgotten by `apply`.
#[derive(Debug, Clone, PartialEq)]
pub struct CellObjects {
    /// The cell's namespace.
    pub namespace: Namespace,
    /// One `Service` per enabled Titan service.
    pub services: Vec<Service>,
}

/// The objects a cell should own.
pub fn build(cell: &Cell) -> CellObjects {
    let name = cell.name_any();
    let namespace = cell.namespace_name();
    let version = &cell.spec.version;
    let owner = cell.controller_owner_ref(&());

    let mut ns_labels = labels::common(&name, "cell", version);
    // NetworkPolicies of the next issue select the cell's namespace by this label.
    ns_labels.insert("kubernetes.io/metadata.name".into(), namespace.clone());
    let namespace_object = Namespace {
        metadata: ObjectMeta {
            name: Some(namespace.clone()),
            labels: Some(ns_labels),
            // Retain keeps the namespace (volumes, Secrets) when the Cell goes: only Delete lets
            // garbage collection take it. This is why no finalizer is needed for the policy.
            owner_references: match cell.spec.deletion_policy {
                DeletionPolicy::Delete => owner.clone().map(|o| vec![o]),
                DeletionPolicy::Retain => None,
            },
            ..Default::default()
        },
        ..Default::default()
    };

    let services = ServiceKind::TITAN
        .into_iter()
        .filter_map(|kind| {
            let settings = cell.spec.services.get(kind)?;
            if !settings.enabled {
                return None;
            }
            let mut service_labels = labels::common(&name, kind.as_str(), version);
            service_labels.insert(labels::SERVICE.into(), kind.as_str().into());
            let mut service = Service::new(
                kind.as_str(),
                ServiceSpec {
                    cell: name.clone(),
                    service: kind,
                    image: settings
                        .image
                        .unwrap_or_else(|| format!("{}:{}", cell.spec.image, version)),
                    replicas: settings.replicas,
                    config: settings.config,
                    datastores: None,
                    command: None,
                    args: None,
                    autoscaling: settings.autoscaling,
                    resources: settings.resources,
                    pod_overrides: settings.pod_overrides,
                },
            );
            service.metadata.namespace = Some(namespace.clone());
            service.metadata.labels = Some(service_labels);
            service.metadata.owner_references = owner.clone().map(|o| vec![o]);
            Some(service)
        })
        .collect();

    CellObjects {
        namespace: namespace_object,
        services,
    }
}
