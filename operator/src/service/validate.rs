//! Validate stage of the Service controller: parse the service's config into its typed form and
//! render the file the pod reads. Anything refused here becomes `ConfigValid=False` and nothing
//! is applied, so the running pods stay as they are.

use kube::ResourceExt;
use serde_json::json;
use titan_crds::{Cell, Service, ServiceConfig, ServiceKind};

/// Path of the rendered config inside the container.
pub const CONFIG_PATH: &str = "/etc/titan/config.yaml";
/// Key of the rendered config in its ConfigMap.
pub const CONFIG_KEY: &str = "config.yaml";

/// The config file of a service, ready to mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedConfig {
    /// The YAML text of the file.
    pub yaml: String,
    /// Hex SHA-256 of the text (first 16 bytes), put on the pod template.
    pub hash: String,
}

/// Why a service's spec cannot be turned into pods.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidSpec {
    /// The config does not parse or validate.
    #[error("{0}")]
    Config(String),
    /// `podOverrides` does not merge into a valid pod template.
    #[error("podOverrides: {0}")]
    PodOverrides(String),
}

impl InvalidSpec {
    /// Stable reason for the condition and Event.
    pub fn reason(&self) -> &'static str {
        match self {
            InvalidSpec::Config(_) => "InvalidConfig",
            InvalidSpec::PodOverrides(_) => "InvalidPodOverrides",
        }
    }
}

/// Why a service cannot run at all, whatever its spec says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked {
    /// Stable reason for the conditions.
    pub reason: &'static str,
    /// What is wrong and what to do.
    pub message: String,
}

/// Whether `service` may run in `cell`: the cell must exist, and a Service may only join the
/// cell whose namespace it lives in, so it can never reach another cell's datastores.
pub fn blocked(service: &Service, cell: Option<&Cell>) -> Option<Blocked> {
    let namespace = service.namespace().unwrap_or_default();
    match cell {
        None => Some(Blocked {
            reason: "CellNotFound",
            message: format!("cell {} does not exist", service.spec.cell),
        }),
        Some(cell) if cell.namespace_name() != namespace => Some(Blocked {
            reason: "WrongNamespace",
            message: format!(
                "cell {} lives in namespace {}, not {namespace}: a service may only join the cell of its namespace",
                service.spec.cell,
                cell.namespace_name()
            ),
        }),
        Some(_) => None,
    }
}

/// Parses and validates the config and renders the file `titan serve` reads
/// (`cell` and `services.<name>`, as `services/kit` expects).
pub fn validate(service: &Service, cell: &str) -> Result<RenderedConfig, InvalidSpec> {
    let document = match service.spec.service {
        // A custom worker's config is its own business: it is mounted as given.
        ServiceKind::Custom => service.spec.config.clone().unwrap_or_else(|| json!({})),
        kind => {
            let config = ServiceConfig::parse(kind, service.spec.config.as_ref())
                .map_err(|e| InvalidSpec::Config(e.to_string()))?;
            // kit's WebSocket gate: browsers always send `Origin` and are held to the
            // service's list; apps and servers send none and are let in on their token alone
            // (forging a missing Origin gains nothing a forged one would not).
            let realtime = json!({
                "allowedOrigins": config.websocket_origins(),
                "allowMissingOrigin": true,
            });
            json!({
                "cell": cell,
                "realtime": realtime,
                "services": { kind.as_str(): config.to_json() },
            })
        }
    };
    let yaml = serde_yaml::to_string(&document)
        .map_err(|e| InvalidSpec::Config(format!("cannot render config: {e}")))?;
    let hash = crate::labels::config_hash(&yaml);
    Ok(RenderedConfig { yaml, hash })
}
