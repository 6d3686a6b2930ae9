//! The `Service` resource (namespaced, in a cell's namespace; short name `tsvc`): one Titan
//! service (or a custom worker) of a cell. The Cell controller creates one per enabled Titan
//! service; the Service controller turns each into a ConfigMap, a Deployment, a core Service, a
//! PodDisruptionBudget and, with autoscaling, a HorizontalPodAutoscaler.

use k8s_openapi::{
    api::core::v1::ResourceRequirements, apimachinery::pkg::apis::meta::v1::Condition,
};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{
    common::{Autoscaling, conditions_schema, preserve_unknown_object, resources_schema},
    kind::{DatastoreKind, ServiceKind},
};

/// The API server holds the name to a DNS subdomain; a container name, a core Service name and
/// a label value need a DNS label: at most 63 characters and no `.`.
const NAME_IS_A_DNS_LABEL: &str =
    "size(self.metadata.name) <= 63 && !self.metadata.name.contains('.')";
const NAME_IS_A_DNS_LABEL_MESSAGE: &str = "a Service name has at most 63 characters and no '.': it names the service's Deployment, container and core Service, and is a label value";

/// The desired state of one service of a cell.
// kube's printcolumn(...) repeats `type_ = ...` per column, which clippy takes for duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[kube(
    group = "commerce.titan.dev",
    version = "v1alpha1",
    kind = "Service",
    plural = "services",
    shortname = "tsvc",
    category = "titan",
    namespaced,
    status = "ServiceStatus",
    derive = "PartialEq",
    doc = "One Titan service of a cell (or a custom worker), run as a Deployment in the cell's namespace. `kubectl get tsvc` or `services.commerce.titan.dev` reach it; plain `services` means the core kind.",
    // The name becomes the Deployment's container name, the core Service's name and a label
    // value: one that makes none of them valid is refused at admission.
    validation = Rule::new(NAME_IS_A_DNS_LABEL).message(NAME_IS_A_DNS_LABEL_MESSAGE),
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(
        name = "Service",
        type_ = "string",
        json_path = ".spec.service",
        description = "Which Titan service"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether the service is ready"
    ),
    printcolumn(
        name = "Replicas",
        type_ = "integer",
        json_path = ".status.readyReplicas",
        description = "Ready replicas"
    ),
    printcolumn(
        name = "Image",
        type_ = "string",
        json_path = ".spec.image",
        description = "Image the service runs"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "!(has(self.replicas) && has(self.autoscaling))",
        "message": "set replicas or autoscaling, not both: with autoscaling the autoscaler owns replicas"
    },
    {
        "rule": "self.service == 'custom' || (!has(self.command) && !has(self.args))",
        "message": "only a custom service sets command or args: Titan services run `titan serve <service>`"
    }
]))]
pub struct ServiceSpec {
    /// The cell this service belongs to; the Service must live in that cell's namespace.
    #[schemars(length(min = 1, max = 63))]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "cell is immutable"}]))]
    pub cell: String,
    /// Which Titan service this is, or `custom` for a worker with its own image and command.
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "service is immutable: create another Service instead"}]))]
    pub service: ServiceKind,
    /// Image the pods run.
    #[schemars(length(min = 1))]
    pub image: String,
    /// Replicas of the Deployment. Absent: the operator leaves the count to whoever scales the
    /// Service (`kubectl scale tsvc/<name>`, the autoscaler) and a new Deployment starts with 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub replicas: Option<i32>,
    /// The service's typed configuration (see the `crds` crate for each service's fields); an
    /// invalid one sets `ConfigValid=False` and the running pods are left as they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserve_unknown_object")]
    pub config: Option<serde_json::Value>,
    /// The cell datastores the service connects to; defaults from the service kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub datastores: Option<Vec<DatastoreKind>>,
    /// Command of a custom worker (its image's entrypoint when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Arguments of a custom worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
    /// CPU autoscaling; the autoscaler then owns `replicas`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<Autoscaling>,
    /// CPU and memory requests and limits of the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "resources_schema")]
    pub resources: Option<ResourceRequirements>,
    /// A JSON merge patch applied to the pod template (metadata and spec).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserve_unknown_object")]
    pub pod_overrides: Option<serde_json::Value>,
}

impl ServiceSpec {
    /// The datastores the service connects to, defaulted from its kind.
    pub fn datastores(&self) -> Vec<DatastoreKind> {
        match &self.datastores {
            Some(list) => list.clone(),
            None => self.service.default_datastores(),
        }
    }
}

/// What the operator observed of a service.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ServiceStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Progressing`, `Degraded` and `ConfigValid`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// Pods of the Deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// Pods that pass their readiness probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
    /// The image the Deployment runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The gRPC address of the service inside the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Label selector of the pods, for the scale subresource and autoscalers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
}
