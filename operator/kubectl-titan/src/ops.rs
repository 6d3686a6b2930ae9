//! `pause`, `resume`, `stop`, `start` and `scale`: the server-side apply configuration of each,
//! planned (purely) from the live objects, or the reason it is refused.
//!
//! Each command applies only the fields it is about, as field manager [`MANAGER`]. Server-side
//! apply removes a field a manager stops applying, so a switch re-applies the other switch this
//! manager already owns with its live value: `pause` then `stop` leaves the cell paused.
//!
//! Who "owns" a switch: the API server records every writer, including the creator of a Cell
//! for the defaulted `false`s and `kubectl patch`. Only a manifest is worth respecting — the
//! next apply of it would undo the command — so a switch is refused when a server-side apply
//! of another manager, or a client-side `kubectl apply` (its last-applied-configuration), sets
//! it to another value; imperative writers and defaults are taken over (the apply is forced,
//! as `kubectl scale` overwrites whoever scaled last).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
use kube::ResourceExt;
use serde_json::{Value, json};
use titan_crds::{Cell, Service};

/// The field manager of every write of the plugin.
pub const MANAGER: &str = "kubectl-titan";

/// One of the cell's operating switches being set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Switch {
    /// `reconciliationPaused: true`.
    Pause,
    /// `reconciliationPaused: false`.
    Resume,
    /// `stopped: true`.
    Stop,
    /// `stopped: false`.
    Start,
}

/// The two fields of `spec.operation`, as the API spells them.
const PAUSED: &str = "reconciliationPaused";
const STOPPED: &str = "stopped";

impl Switch {
    /// The field of `spec.operation` it sets.
    pub fn field(self) -> &'static str {
        match self {
            Switch::Pause | Switch::Resume => PAUSED,
            Switch::Stop | Switch::Start => STOPPED,
        }
    }

    /// The value it sets.
    pub fn value(self) -> bool {
        matches!(self, Switch::Pause | Switch::Stop)
    }

    /// What the switch did, for the person who ran it.
    pub fn done(self, cell: &Cell) -> String {
        let name = cell.name_any();
        let what = match self {
            Switch::Pause => "paused: the operator changes nothing until `kubectl titan resume`",
            Switch::Resume => "resumed: the operator applies the spec again",
            Switch::Stop => {
                "stopping: every service and builtin datastore goes to zero, data is kept"
            }
            Switch::Start => "starting: services return to their replicas",
        };
        let mut out = format!(
            "cell {name} {what} (spec.operation.{}={}, field manager {MANAGER})",
            self.field(),
            self.value()
        );
        // Stopping or starting a paused cell is recorded, not carried out, until resumed.
        if matches!(self, Switch::Stop | Switch::Start) && cell.spec.operation.reconciliation_paused
        {
            out.push_str(&format!(
                "\nnote: cell {name} is paused, so nothing happens until `kubectl titan resume {name}`"
            ));
        }
        out
    }
}

/// Why a command does not write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A manifest sets the switch to another value: its next apply would undo this one, so
    /// the plugin does not fight it.
    #[error(
        "spec.operation.{field} of cell {cell} is {live} in {}: change it in that manifest (its next apply would undo this), or take the field over with --force-conflicts",
        owners.join(" and ")
    )]
    OwnedElsewhere {
        /// The cell.
        cell: String,
        /// The field of `spec.operation`.
        field: &'static str,
        /// Its live value.
        live: bool,
        /// The manifests, described.
        owners: Vec<String>,
    },
    /// The Cell sets the service's replicas, and the operator puts its value back.
    #[error(
        "cell {cell} sets spec.services.{service}.replicas to {replicas}: the Cell owns the field and the operator would put it back; change it in the Cell (kubectl edit cell {cell}) instead"
    )]
    CellOwnsReplicas {
        /// The cell.
        cell: String,
        /// The service.
        service: String,
        /// The Cell's value.
        replicas: i32,
    },
    /// The service autoscales: the autoscaler owns its replicas.
    #[error(
        "service {service} of cell {cell} autoscales between {min} and {max} replicas ({field}): the autoscaler owns replicas; change minReplicas/maxReplicas there instead"
    )]
    Autoscaled {
        /// The cell.
        cell: String,
        /// The service.
        service: String,
        /// Where the autoscaling is set.
        field: String,
        /// Its bounds.
        min: i32,
        /// See `min`.
        max: i32,
    },
    /// The Cell disables the service.
    #[error(
        "service {service} is disabled in cell {cell} (spec.services.{service}.enabled: false): enable it first"
    )]
    Disabled {
        /// The cell.
        cell: String,
        /// The service.
        service: String,
    },
}

/// Where `kubectl apply` (client-side) keeps the manifest it applied last.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The manifests that set `spec.operation.<field>` of `cell`: server-side applies of managers
/// other than this plugin, and the last client-side `kubectl apply`.
pub fn manifest_owners(cell: &Cell, field: &str) -> Vec<String> {
    let mut owners: Vec<String> = managed(cell.metadata.managed_fields.as_deref())
        .filter(|e| {
            e.manager.as_deref() != Some(MANAGER) && e.operation.as_deref() == Some("Apply")
        })
        .filter(|e| owns(e, &["spec", "operation", field]))
        .map(|e| {
            format!(
                "the manifest server-side applied by field manager {:?}",
                e.manager.as_deref().unwrap_or_default()
            )
        })
        .collect();
    let last_applied = cell
        .annotations()
        .get(LAST_APPLIED)
        .and_then(|text| serde_json::from_str::<Value>(text).ok());
    if last_applied.is_some_and(|m| m["spec"]["operation"].get(field).is_some()) {
        owners.push(format!(
            "the manifest applied with kubectl apply (annotation {LAST_APPLIED})"
        ));
    }
    owners
}

fn managed(entries: Option<&[ManagedFieldsEntry]>) -> impl Iterator<Item = &ManagedFieldsEntry> {
    entries.unwrap_or_default().iter()
}

/// Whether `entry` owns the field at `path` (in its `FieldsV1` set).
fn owns(entry: &ManagedFieldsEntry, path: &[&str]) -> bool {
    let Some(fields) = entry.fields_v1.as_ref() else {
        return false;
    };
    let mut node = &fields.0;
    for part in path {
        match node.get(format!("f:{part}")) {
            Some(next) => node = next,
            None => return false,
        }
    }
    true
}

/// The apply configuration of `switch` on `cell` (to be applied with force), or why it is
/// refused (`force` overrides a manifest, as `kubectl apply --force-conflicts` does).
pub fn switch_config(cell: &Cell, switch: Switch, force: bool) -> Result<Value, Refusal> {
    let operation = &cell.spec.operation;
    let live = |field: &str| match field {
        PAUSED => operation.reconciliation_paused,
        _ => operation.stopped,
    };
    let field = switch.field();
    // A manifest that says the same is no conflict: the value is shared.
    let owners = manifest_owners(cell, field);
    if !force && !owners.is_empty() && live(field) != switch.value() {
        return Err(Refusal::OwnedElsewhere {
            cell: cell.name_any(),
            field,
            live: live(field),
            owners,
        });
    }
    let ours = managed(cell.metadata.managed_fields.as_deref())
        .find(|e| e.manager.as_deref() == Some(MANAGER) && e.operation.as_deref() == Some("Apply"));
    let mut fields = serde_json::Map::new();
    for other in [PAUSED, STOPPED] {
        if other == field {
            fields.insert(other.to_string(), json!(switch.value()));
        } else if ours.is_some_and(|e| owns(e, &["spec", "operation", other])) {
            fields.insert(other.to_string(), json!(live(other)));
        }
    }
    Ok(json!({
        "apiVersion": "commerce.titan.dev/v1alpha1",
        "kind": "Cell",
        "metadata": {"name": cell.name_any()},
        "spec": {"operation": fields},
    }))
}

/// The apply configuration that sets `service`'s replicas to `replicas`, or why the Cell or an
/// autoscaler owns them.
pub fn scale_config(cell: &Cell, service: &Service, replicas: i32) -> Result<Value, Refusal> {
    let (cell_name, name) = (cell.name_any(), service.name_any());
    if let Some(settings) = cell.spec.services.get(service.spec.service) {
        if !settings.enabled {
            return Err(Refusal::Disabled {
                cell: cell_name,
                service: name,
            });
        }
        if let Some(owned) = settings.replicas {
            return Err(Refusal::CellOwnsReplicas {
                cell: cell_name,
                service: name,
                replicas: owned,
            });
        }
        if let Some(a) = settings.autoscaling {
            return Err(Refusal::Autoscaled {
                field: format!("spec.services.{name}.autoscaling of the Cell"),
                cell: cell_name,
                service: name,
                min: a.min_replicas,
                max: a.max_replicas,
            });
        }
    }
    if let Some(a) = &service.spec.autoscaling {
        return Err(Refusal::Autoscaled {
            field: "spec.autoscaling of the Service".to_string(),
            cell: cell_name,
            service: name,
            min: a.min_replicas,
            max: a.max_replicas,
        });
    }
    Ok(json!({
        "apiVersion": "commerce.titan.dev/v1alpha1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": service.namespace()},
        "spec": {"replicas": replicas},
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    fn with_owner(mut cell: Cell, manager: &str, operation: &str, fields: Value) -> Cell {
        cell.metadata
            .managed_fields
            .get_or_insert_with(Vec::new)
            .push(ManagedFieldsEntry {
                manager: Some(manager.to_string()),
                operation: Some(operation.to_string()),
                fields_v1: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::FieldsV1(
                    fields,
                )),
                ..Default::default()
            });
        cell
    }

    #[test]
    fn a_switch_applies_its_field_and_keeps_the_other_one_the_plugin_owns() {
        let mut cell = fixtures::cell();
        assert_eq!(
            switch_config(&cell, Switch::Pause, false),
            Ok(json!({
                "apiVersion": "commerce.titan.dev/v1alpha1",
                "kind": "Cell",
                "metadata": {"name": "dev"},
                "spec": {"operation": {"reconciliationPaused": true}},
            }))
        );
        // Paused by this plugin earlier: stopping must not release (and so clear) the pause.
        cell.spec.operation.reconciliation_paused = true;
        let cell = with_owner(
            cell,
            MANAGER,
            "Apply",
            json!({"f:spec": {"f:operation": {"f:reconciliationPaused": {}}}}),
        );
        assert_eq!(
            switch_config(&cell, Switch::Stop, false).map(|c| c["spec"].clone()),
            Ok(json!({"operation": {"reconciliationPaused": true, "stopped": true}}))
        );
    }

    #[test]
    fn a_switch_a_manifest_sets_differently_is_refused_unless_forced() {
        let mut cell = fixtures::cell();
        cell.spec.operation.stopped = true;
        let cell = with_owner(
            cell,
            "argocd-controller",
            "Apply",
            json!({"f:spec": {"f:operation": {"f:stopped": {}}}}),
        );
        let refused = switch_config(&cell, Switch::Start, false).expect_err("a manifest sets it");
        assert_eq!(
            refused.to_string(),
            "spec.operation.stopped of cell dev is true in the manifest server-side applied by field manager \"argocd-controller\": change it in that manifest (its next apply would undo this), or take the field over with --force-conflicts"
        );
        // The same value is shared, not a conflict; and --force-conflicts takes over.
        assert!(switch_config(&cell, Switch::Stop, false).is_ok());
        assert!(switch_config(&cell, Switch::Start, true).is_ok());
        // The other switch is not in that manifest.
        assert!(switch_config(&cell, Switch::Pause, false).is_ok());
    }

    #[test]
    fn a_client_side_manifest_owns_only_what_it_wrote() {
        // The API server credits the creator with the defaulted switches; they are not its.
        let mut cell = with_owner(
            fixtures::cell(),
            "kubectl-client-side-apply",
            "Update",
            json!({"f:spec": {"f:operation": {"f:stopped": {}, "f:reconciliationPaused": {}}}}),
        );
        assert!(switch_config(&cell, Switch::Stop, false).is_ok());
        cell.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(
                LAST_APPLIED.to_string(),
                json!({"spec": {"operation": {"stopped": false}}}).to_string(),
            );
        assert_eq!(
            switch_config(&cell, Switch::Stop, false).map_err(|e| e.to_string()),
            Err(format!(
                "spec.operation.stopped of cell dev is false in the manifest applied with kubectl apply (annotation {LAST_APPLIED}): change it in that manifest (its next apply would undo this), or take the field over with --force-conflicts"
            ))
        );
        assert!(switch_config(&cell, Switch::Pause, false).is_ok());
    }

    #[test]
    fn scale_sets_only_the_services_replicas() {
        let cell = fixtures::cell();
        let coupon = fixtures::service("coupon");
        assert_eq!(
            scale_config(&cell, &coupon, 3),
            Ok(json!({
                "apiVersion": "commerce.titan.dev/v1alpha1",
                "kind": "Service",
                "metadata": {"name": "coupon", "namespace": "titan-dev"},
                "spec": {"replicas": 3},
            }))
        );
    }

    #[test]
    fn scale_refuses_what_the_cell_or_an_autoscaler_owns() {
        let cell = fixtures::cell();
        assert_eq!(
            scale_config(&cell, &fixtures::service("flashsale"), 5)
                .expect_err("the cell sets replicas")
                .to_string(),
            "cell dev sets spec.services.flashsale.replicas to 2: the Cell owns the field and the operator would put it back; change it in the Cell (kubectl edit cell dev) instead"
        );
        assert_eq!(
            scale_config(&cell, &fixtures::service("fraud"), 5)
                .expect_err("autoscaled")
                .to_string(),
            "service fraud of cell dev autoscales between 1 and 4 replicas (spec.services.fraud.autoscaling of the Cell): the autoscaler owns replicas; change minReplicas/maxReplicas there instead"
        );
    }
}
