//! Offline rendering: every object the operator would apply for some Cells and Services, with no
//! cluster (`titan-operator render`), and the CRD files (`titan-operator crd`).
//!
//! `render` is a pipeline gate: it refuses every document the API server would refuse, with the
//! API server's messages (`titan_crds::admission`: unknown fields, the schema, names, the CEL
//! rules), and prints YAML that YAML 1.1 readers read as the same objects (its `yaml` module).

mod yaml;

use std::collections::BTreeMap;

use kube::ResourceExt;
use serde::Serialize;
use titan_crds::{Cell, Service, admission};

use crate::{
    cell::{
        build::{self as cell_build, CellObjects},
        certificates::Tls,
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
    /// Documents the API server would refuse, or that are not Cells or Services.
    #[error("{}", refused_lines(.0))]
    Refused(Vec<Problem>),
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
    /// An input file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

fn refused_lines(problems: &[Problem]) -> String {
    let lines: Vec<String> = problems.iter().map(Problem::to_string).collect();
    let plural = if problems.len() == 1 { "" } else { "s" };
    format!(
        "the API server would refuse the inputs ({} problem{plural}):\n{}",
        problems.len(),
        lines.join("\n")
    )
}

/// One reason a document of the inputs would be refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file (or other source) the document came from.
    pub source_name: String,
    /// 1-based position of the document in it.
    pub index: usize,
    /// `Kind name` (`Cell sg-1`, `Service titan-sg-1/coupon`), as far as the document says.
    pub object: String,
    /// The API server's message, field included (`unknown field "spec.foo"`).
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Self {
            source_name,
            index,
            object,
            message,
        } = self;
        write!(f, "{source_name}: document {index} ({object}): {message}")
    }
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
    /// Reads every document of every source (`(name, text)`, multi-document YAML), checking each
    /// as the API server would; the problems of all of them are refused together.
    pub fn read<'a>(
        sources: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, RenderError> {
        let mut inputs = Self::default();
        let mut problems = Vec::new();
        for (source_name, text) in sources {
            inputs.collect(source_name, text, &mut problems);
        }
        refuse(problems).map(|()| inputs)
    }

    /// Reads every document of `text` (a multi-document YAML file named `source_name`); the
    /// documents without problems are kept even when others are refused.
    pub fn add(&mut self, source_name: &str, text: &str) -> Result<(), RenderError> {
        let mut problems = Vec::new();
        self.collect(source_name, text, &mut problems);
        refuse(problems)
    }

    fn collect(&mut self, source_name: &str, text: &str, problems: &mut Vec<Problem>) {
        use serde::Deserialize;
        for (i, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
            let index = i + 1;
            let problem = |object: &str, message: String| Problem {
                source_name: source_name.to_string(),
                index,
                object: object.to_string(),
                message,
            };
            let value = match serde_yaml::Value::deserialize(document) {
                Ok(value) => value,
                Err(e) => {
                    // The YAML stream is broken from here on: nothing after it can be read.
                    problems.push(problem("not YAML", e.to_string()));
                    return;
                }
            };
            if value.is_null() {
                continue;
            }
            let object = match serde_json::to_value(&value) {
                Ok(object) => object,
                Err(e) => {
                    problems.push(problem("not JSON", e.to_string()));
                    continue;
                }
            };
            let text = |field: &str| object[field].as_str().unwrap_or_default().to_string();
            let (kind, api_version) = (text("kind"), text("apiVersion"));
            let name = object["metadata"]["name"].as_str().unwrap_or_default();
            let described = match object["metadata"]["namespace"].as_str() {
                _ if kind.is_empty() => "no kind".to_string(),
                Some(namespace) if kind == "Service" => format!("{kind} {namespace}/{name}"),
                _ => format!("{kind} {name}").trim_end().to_string(),
            };
            if api_version != "commerce.titan.dev/v1alpha1" {
                problems.push(problem(
                    &described,
                    format!("apiVersion {api_version:?} is not commerce.titan.dev/v1alpha1"),
                ));
                continue;
            }
            let refusals = match kind.as_str() {
                "Cell" => admission::check::<Cell>(&object),
                "Service" => admission::check::<Service>(&object),
                other => {
                    problems.push(problem(
                        &described,
                        format!("kind {other:?} is neither Cell nor Service"),
                    ));
                    continue;
                }
            };
            if !refusals.is_empty() {
                problems.extend(refusals.into_iter().map(|r| problem(&described, r.message)));
                continue;
            }
            // What admission lets through the operator must still read (a number beyond its
            // type's range, say); the operator would fail on it, so it is refused here too.
            let typed = match kind.as_str() {
                "Cell" => serde_json::from_value(object).map(|c| self.cells.push(c)),
                _ => serde_json::from_value(object).map(|s| self.services.push(s)),
            };
            if let Err(e) = typed {
                problems.push(problem(&described, format!("cannot be read: {e}")));
            }
        }
    }
}

fn refuse(problems: Vec<Problem>) -> Result<(), RenderError> {
    if problems.is_empty() {
        Ok(())
    } else {
        Err(RenderError::Refused(problems))
    }
}

/// Reads `files` and renders them: `titan-operator render -f` and `kubectl titan render -f`.
/// Every file is checked before anything is rendered, so a pipeline sees all problems at once.
pub fn render_files(files: &[std::path::PathBuf]) -> Result<String, RenderError> {
    let mut sources = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file).map_err(|source| RenderError::Read {
            path: file.display().to_string(),
            source,
        })?;
        sources.push((file.display().to_string(), text));
    }
    let inputs = Inputs::read(
        sources
            .iter()
            .map(|(name, text)| (name.as_str(), text.as_str())),
    )?;
    render(&inputs)
}

/// Every object the operator would apply, in apply order, as YAML documents that every YAML
/// reader (1.1 or 1.2) reads as these objects.
pub fn render(inputs: &Inputs) -> Result<String, RenderError> {
    let mut out = String::new();
    for object in objects(inputs)? {
        out.push_str("---\n");
        out.push_str(&yaml::to_string(&object)?);
    }
    Ok(out)
}

/// Every object the operator would apply, in apply order.
pub fn objects(inputs: &Inputs) -> Result<Vec<serde_yaml::Value>, RenderError> {
    let mut out = Vec::new();
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
            grpc_routes,
            http_routes,
            backend_tls_policies,
            certificates,
        } = cell_build::build(
            cell,
            &credentials,
            &Tls::placeholders(cell),
            &connections,
            &Default::default(),
        );
        push(&mut out, &namespace)?;
        push_all(&mut out, &resource_quotas)?;
        push_all(&mut out, &limit_ranges)?;
        push_all(&mut out, &network_policies)?;
        push_all(&mut out, &secrets)?;
        push_all(&mut out, &certificates)?;
        push_all(&mut out, &config_maps)?;
        push_all(&mut out, &core_services)?;
        push_all(&mut out, &stateful_sets)?;
        push_all(&mut out, &clusters)?;
        push_all(&mut out, &scheduled_backups)?;
        push_all(&mut out, &deployments)?;
        push_all(&mut out, &cell_services)?;
        push_all(&mut out, &grpc_routes)?;
        push_all(&mut out, &http_routes)?;
        push_all(&mut out, &backend_tls_policies)?;
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

fn push<T: Serialize>(out: &mut Vec<serde_yaml::Value>, object: &T) -> Result<(), RenderError> {
    out.push(serde_yaml::to_value(object)?);
    Ok(())
}

fn push_all<T: Serialize>(
    out: &mut Vec<serde_yaml::Value>,
    objects: &[T],
) -> Result<(), RenderError> {
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
