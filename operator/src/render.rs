//! Offline rendering: every object the operator would apply for some Cells and Services, with no
//! cluster (`titan-operator render`), and the CRD files (`titan-operator crd`).

use std::collections::BTreeMap;

use kube::ResourceExt;
use serde::Serialize;
use titan_crds::{Cell, Service};

use crate::{
    cell::{
        build::{self as cell_build, CellObjects},
        connections,
        credentials::Credentials,
    },
    service::{
        build::{self as service_build, ServiceObjects},
        migration::MigrationJob,
        validate,
    },
    shared::CellView,
};

/// Why a set of resources could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// A document is not YAML or not a Cell or Service.
    #[error("document {index} of {source_name}: {message}")]
    Document {
        /// File (or other source) the document came from.
        source_name: String,
        /// 1-based position of the document in it.
        index: usize,
        /// What is wrong with it.
        message: String,
    },
    /// A Service names a cell that is not among the inputs.
    #[error(
        "service {service} belongs to cell {cell}, which is not among the inputs: add its Cell with -f"
    )]
    MissingCell {
        /// Namespace/name of the Service.
        service: String,
        /// The cell it names.
        cell: String,
    },
    /// A Service's spec would be refused (`ConfigValid=False` on a cluster).
    #[error("service {service}: {message}")]
    Invalid {
        /// Namespace/name of the Service.
        service: String,
        /// The validation error.
        message: String,
    },
    /// An object could not be serialized.
    #[error("cannot serialize an object: {0}")]
    Serialize(#[from] serde_yaml::Error),
}

/// The Cells and Services found in some YAML sources.
#[derive(Debug, Default, Clone)]
pub struct Inputs {
    /// Cells, in input order.
    pub cells: Vec<Cell>,
    /// Services given explicitly, in input order.
    pub services: Vec<Service>,
}

impl Inputs {
    /// Reads every document of `text` (a multi-document YAML file named `source_name`).
    pub fn add(&mut self, source_name: &str, text: &str) -> Result<(), RenderError> {
        use serde::Deserialize;
        for (i, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
            let index = i + 1;
            let error = |message: String| RenderError::Document {
                source_name: source_name.to_string(),
                index,
                message,
            };
            let value =
                serde_yaml::Value::deserialize(document).map_err(|e| error(e.to_string()))?;
            if value.is_null() {
                continue;
            }
            let kind = value
                .get("kind")
                .and_then(|k| k.as_str())
                .unwrap_or_default()
                .to_string();
            let api_version = value
                .get("apiVersion")
                .and_then(|k| k.as_str())
                .unwrap_or_default();
            if api_version != "commerce.titan.dev/v1alpha1" {
                return Err(error(format!(
                    "apiVersion {api_version:?} is not commerce.titan.dev/v1alpha1"
                )));
            }
            match kind.as_str() {
                "Cell" => self
                    .cells
                    .push(serde_yaml::from_value(value).map_err(|e| error(e.to_string()))?),
                "Service" => self
                    .services
                    .push(serde_yaml::from_value(value).map_err(|e| error(e.to_string()))?),
                other => return Err(error(format!("kind {other:?} is neither Cell nor Service"))),
            }
        }
        Ok(())
    }
}

/// Every object the operator would apply, in apply order, as YAML documents.
pub fn render(inputs: &Inputs) -> Result<String, RenderError> {
    let mut out = String::new();
    let cells: BTreeMap<String, &Cell> = inputs.cells.iter().map(|c| (c.name_any(), c)).collect();
    let mut services = Vec::new();
    for cell in &inputs.cells {
        // No cluster to read generated passwords or other Secrets from: placeholders say where
        // each value will come from.
        let credentials = Credentials::placeholders();
        let connections = connections::resolve(cell, &credentials, &connections::Offline);
        let CellObjects {
            namespace,
            resource_quotas,
            limit_ranges,
            network_policies,
            secrets,
            config_maps,
            core_services,
            stateful_sets,
            clusters,
            scheduled_backups,
            deployments,
            services: cell_services,
        } = cell_build::build(cell, &credentials, &connections, &Default::default());
        push(&mut out, &namespace)?;
        push_all(&mut out, &resource_quotas)?;
        push_all(&mut out, &limit_ranges)?;
        push_all(&mut out, &network_policies)?;
        push_all(&mut out, &secrets)?;
        push_all(&mut out, &config_maps)?;
        push_all(&mut out, &core_services)?;
        push_all(&mut out, &stateful_sets)?;
        push_all(&mut out, &clusters)?;
        push_all(&mut out, &scheduled_backups)?;
        push_all(&mut out, &deployments)?;
        push_all(&mut out, &cell_services)?;
        services.extend(cell_services.into_iter().map(|s| (s, false)));
    }
    // Services given explicitly are printed too; those of a Cell were printed with it.
    services.extend(inputs.services.iter().cloned().map(|s| (s, true)));
    for (service, explicit) in &services {
        let id = format!(
            "{}/{}",
            service.namespace().unwrap_or_default(),
            service.name_any()
        );
        let cell = cells
            .get(&service.spec.cell)
            .ok_or_else(|| RenderError::MissingCell {
                service: id.clone(),
                cell: service.spec.cell.clone(),
            })?;
        if *explicit {
            push(&mut out, service)?;
        }
        let invalid = |e: validate::InvalidSpec| RenderError::Invalid {
            service: id.clone(),
            message: e.to_string(),
        };
        let rendered = validate::validate(service, &service.spec.cell).map_err(invalid)?;
        let ServiceObjects {
            config_map,
            core_service,
            deployment,
            pdb,
            hpa,
            migration,
        } = service_build::build(service, &CellView::of(cell), &rendered).map_err(invalid)?;
        push(&mut out, &config_map)?;
        if let Some(core_service) = &core_service {
            push(&mut out, core_service)?;
        }
        if let MigrationJob::Run(job) = &migration {
            push(&mut out, job)?;
        }
        push(&mut out, &deployment)?;
        push(&mut out, &pdb)?;
        if let Some(hpa) = &hpa {
            push(&mut out, hpa)?;
        }
    }
    Ok(out)
}

fn push<T: Serialize>(out: &mut String, object: &T) -> Result<(), RenderError> {
    out.push_str("---\n");
    out.push_str(&serde_yaml::to_string(object)?);
    Ok(())
}

fn push_all<T: Serialize>(out: &mut String, objects: &[T]) -> Result<(), RenderError> {
    objects.iter().try_for_each(|object| push(out, object))
}

/// The CRD files as committed in `manifests/crds/`: `(file name, content)`.
pub fn crd_files() -> Result<Vec<(String, String)>, RenderError> {
    titan_crds::definitions()
        .into_iter()
        .map(|crd| {
            let name = format!("{}.yaml", crd.metadata.name.clone().unwrap_or_default());
            let body = serde_yaml::to_string(&crd)?;
            Ok((
                name,
                format!(
                    "# Generated by `titan-operator crd --out manifests/crds`; do not edit.\n{body}"
                ),
            ))
        })
        .collect()
}
