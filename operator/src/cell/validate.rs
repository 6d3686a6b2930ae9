//! Validate stage of the Cell controller: the services whose config would be refused, so the
//! Cell can say so at once (each `Service` also reports it as `ConfigValid=False`).

use titan_crds::{Cell, ServiceConfig, ServiceKind};

/// `(service, error)` for every enabled service whose config does not validate.
pub fn invalid_configs(cell: &Cell) -> Vec<(ServiceKind, String)> {
    ServiceKind::TITAN
        .into_iter()
        .filter_map(|kind| {
            let settings = cell.spec.services.get(kind)?;
            if !settings.enabled {
                return None;
            }
            ServiceConfig::parse(kind, settings.config.as_ref())
                .err()
                .map(|e| (kind, e.to_string()))
        })
        .collect()
}
