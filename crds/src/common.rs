//! Pieces both resources share: autoscaling, pod overrides, and the schema helpers that keep the
//! CRDs structural (condition lists as maps, free-form objects that preserve unknown fields).

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// Horizontal autoscaling of a service on CPU; the operator creates a HorizontalPodAutoscaler
/// that scales the `Service` through its scale subresource.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "self.minReplicas <= self.maxReplicas",
    "message": "minReplicas must not exceed maxReplicas"
}]))]
pub struct Autoscaling {
    /// Fewest replicas the autoscaler keeps.
    #[schemars(range(min = 1))]
    pub min_replicas: i32,
    /// Most replicas the autoscaler may run.
    #[schemars(range(min = 1))]
    pub max_replicas: i32,
    /// Average CPU use, as a percentage of the CPU request, the autoscaler aims at.
    #[serde(
        default = "default_cpu_target",
        rename = "targetCPUUtilizationPercentage"
    )]
    #[schemars(range(min = 1, max = 100))]
    pub target_cpu_utilization_percentage: i32,
}

fn default_cpu_target() -> i32 {
    70
}

/// Schema of a free-form object whose fields the API server keeps as given.
///
/// Used for `podOverrides` (so the CRD does not embed a whole pod spec) and for a `Service`'s
/// `config`, whose shape depends on `spec.service` and is checked by the operator.
pub fn preserve_unknown_object(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

/// Schema of a list of `metav1.Condition` keyed by `type`, as Kubernetes API conventions ask.
pub fn conditions_schema(generator: &mut SchemaGenerator) -> Schema {
    let mut schema =
        generator.subschema_for::<Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>>();
    schema.insert("x-kubernetes-list-type".into(), "map".into());
    schema.insert(
        "x-kubernetes-list-map-keys".into(),
        serde_json::json!(["type"]),
    );
    schema
}

/// The condition types both resources report.
pub mod condition {
    /// The resource does what its spec asks.
    pub const READY: &str = "Ready";
    /// The resource is moving towards its spec.
    pub const PROGRESSING: &str = "Progressing";
    /// Something keeps the resource from doing what its spec asks and needs a person.
    pub const DEGRADED: &str = "Degraded";
    /// A Cell's `operation.reconciliationPaused` is on.
    pub const RECONCILIATION_PAUSED: &str = "ReconciliationPaused";
    /// A Cell's `operation.stopped` is on.
    pub const STOPPED: &str = "Stopped";
    /// Every datastore of a Cell serves and its connection Secret is complete.
    pub const DATASTORES_READY: &str = "DatastoresReady";
    /// Every enabled media server of a Cell serves.
    pub const MEDIA_READY: &str = "MediaReady";
    /// A Cell has object storage, so recordings and uploads are on.
    pub const RECORDINGS_ENABLED: &str = "RecordingsEnabled";
    /// A Service's config parsed and validated.
    pub const CONFIG_VALID: &str = "ConfigValid";
    /// A Service's migrations (its `titan migrate` Job for the image and config it runs) have
    /// succeeded; on a Cell, every service's have.
    pub const MIGRATED: &str = "Migrated";
    /// A Cell's edge routes (`spec.edge`: its GRPCRoute and HTTPRoute) are applied; reported
    /// only while the Cell asks for routes.
    pub const EDGE_ROUTES_APPLIED: &str = "EdgeRoutesApplied";
    /// A Cell's TLS certificate (`spec.tls`) is issued and current; reported only while the
    /// Cell asks for TLS.
    pub const CERTIFICATES_READY: &str = "CertificatesReady";
}

/// Schema of a container's `resources`: requests and limits by resource name.
///
/// Written by hand because the generated one embeds the long `Quantity` description in every
/// service of the Cell CRD; the API server still checks each value as a quantity.
pub fn resources_schema(_: &mut SchemaGenerator) -> Schema {
    let quantities = |what: &str| {
        serde_json::json!({
            "description": format!("{what}, by resource name (`cpu`, `memory`), as quantities (`500m`, `1Gi`)."),
            "type": "object",
            "additionalProperties": { "x-kubernetes-int-or-string": true }
        })
    };
    json_schema!({
        "type": "object",
        "properties": {
            "requests": quantities("What the container is guaranteed"),
            "limits": quantities("The most the container may use")
        }
    })
}
