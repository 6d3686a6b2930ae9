//! Build stage of the Service controller (pure: a Service, its cell and its rendered config in;
//! the ConfigMap, Deployment, core Service, PodDisruptionBudget and autoscaler out).

use std::collections::BTreeMap;

use k8s_openapi::{
    api::{
        apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment},
        autoscaling::v2::{
            CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec,
            MetricSpec, MetricTarget, ResourceMetricSource,
        },
        core::v1::{
            Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EnvVar,
            EnvVarSource, HTTPGetAction, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
            ResourceRequirements, SeccompProfile, SecretKeySelector, SecurityContext,
            Service as CoreService, ServicePort, ServiceSpec as CoreServiceSpec, Volume,
            VolumeMount,
        },
        policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec},
    },
    apimachinery::pkg::{
        api::resource::Quantity,
        apis::meta::v1::{LabelSelector, ObjectMeta},
        util::intstr::IntOrString,
    },
};
use kube::{Resource, ResourceExt};
use titan_crds::{Cell, DatastoreKind, Service, ServiceKind, cell::ObjectStorage};

use super::validate::{CONFIG_KEY, CONFIG_PATH, InvalidSpec, RenderedConfig};
use crate::labels;

/// gRPC port of every Titan service.
pub const GRPC_PORT: i32 = 50051;
/// HTTP port (WebSocket endpoints, media callbacks).
pub const HTTP_PORT: i32 = 8080;
/// Admin port (`/metrics`, `/healthz`, `/readyz`).
pub const ADMIN_PORT: i32 = 9090;

/// What of the cell a service's objects depend on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellView {
    /// Name of the cell.
    pub name: String,
    /// The cell's release, for the version label when the image has no tag.
    pub version: String,
    /// `spec.operation.stopped`.
    pub stopped: bool,
    /// `spec.operation.reconciliationPaused`.
    pub paused: bool,
    /// The cell's object storage, passed to the services that record or upload.
    pub object_storage: Option<ObjectStorage>,
    /// Whether the cell runs a TURN server, whose secret the videocall service gets.
    pub turn: bool,
}

impl CellView {
    /// The parts of `cell` a service depends on.
    pub fn of(cell: &Cell) -> Self {
        Self {
            name: cell.name_any(),
            version: cell.spec.version.clone(),
            stopped: cell.spec.operation.stopped,
            paused: cell.spec.operation.reconciliation_paused,
            object_storage: cell.spec.datastores.object_storage.clone(),
            turn: cell.spec.media.turn.as_ref().is_some_and(|t| t.enabled),
        }
    }

    /// Name of the Secret holding the datastore URLs of the cell.
    pub fn datastores_secret(&self) -> String {
        format!("{}-datastores", self.name)
    }

    /// Name of the Secret holding the cell's token key.
    pub fn auth_secret(&self) -> String {
        format!("{}-auth", self.name)
    }

    /// Name of the Secret holding the TURN server's shared secret.
    pub fn turn_secret(&self) -> String {
        format!("{}-turn", self.name)
    }
}

/// Key (and variable) of the TURN shared secret in [`CellView::turn_secret`].
pub const TURN_SECRET_KEY: &str = "TITAN_TURN_SECRET";
/// Keys (and variables) of the ClickHouse login in the datastores Secret: optional, because an
/// external ClickHouse may not need one.
pub const CLICKHOUSE_LOGIN_KEYS: [&str; 2] = ["TITAN_CLICKHOUSE_USER", "TITAN_CLICKHOUSE_PASSWORD"];
/// Keys of the object storage credentials Secret.
pub const OBJECT_STORAGE_KEYS: [&str; 2] = ["accessKeyId", "secretAccessKey"];

/// Everything the Service controller applies, in apply order (config before the workload that
/// mounts it). Destructure it in `apply` so a new kind cannot be forgotten.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceObjects {
    /// The rendered config file.
    pub config_map: ConfigMap,
    /// The core Service in front of the pods (none for a custom worker, which has no ports).
    pub core_service: Option<CoreService>,
    /// The pods.
    pub deployment: Deployment,
    /// Keeps voluntary evictions to one pod at a time.
    pub pdb: PodDisruptionBudget,
    /// The autoscaler, when `autoscaling` is set and the cell runs.
    pub hpa: Option<HorizontalPodAutoscaler>,
}

/// The objects a service should own.
pub fn build(
    service: &Service,
    cell: &CellView,
    config: &RenderedConfig,
) -> Result<ServiceObjects, InvalidSpec> {
    let name = service.name_any();
    let namespace = service.namespace().unwrap_or_default();
    let spec = &service.spec;
    let titan = spec.service != ServiceKind::Custom;
    let version = match labels::image_tag(&spec.image) {
        "latest" => cell.version.clone(),
        tag => tag.to_string(),
    };
    let mut object_labels = labels::common(&cell.name, &name, &version);
    object_labels.insert(labels::SERVICE.into(), name.clone());
    let selector = labels::pod_selector(&cell.name, &name);
    let meta = |object_name: String| ObjectMeta {
        name: Some(object_name),
        namespace: Some(namespace.clone()),
        labels: Some(object_labels.clone()),
        owner_references: service.controller_owner_ref(&()).map(|o| vec![o]),
        ..Default::default()
    };

    let config_map = ConfigMap {
        metadata: meta(format!("{name}-config")),
        data: Some(BTreeMap::from([(
            CONFIG_KEY.to_string(),
            config.yaml.clone(),
        )])),
        ..Default::default()
    };

    let template = pod_template(service, cell, config, &object_labels)?;
    // Without replicas in the spec the operator does not set them, so it never owns the field
    // and `kubectl scale tsvc` / the autoscaler decide; stopped is the one override.
    let replicas = if cell.stopped { Some(0) } else { spec.replicas };
    let deployment = Deployment {
        metadata: meta(name.clone()),
        spec: Some(DeploymentSpec {
            replicas,
            selector: LabelSelector {
                match_labels: Some(selector.clone()),
                ..Default::default()
            },
            revision_history_limit: Some(5),
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::String("25%".into())),
                    max_unavailable: Some(IntOrString::Int(0)),
                }),
            }),
            template,
            ..Default::default()
        }),
        ..Default::default()
    };

    let core_service = titan.then(|| CoreService {
        metadata: meta(name.clone()),
        spec: Some(CoreServiceSpec {
            selector: Some(selector.clone()),
            ports: Some(vec![
                service_port("grpc", GRPC_PORT, Some("grpc")),
                service_port("http", HTTP_PORT, Some("http")),
                service_port("metrics", ADMIN_PORT, Some("http")),
            ]),
            ..Default::default()
        }),
        ..Default::default()
    });

    let pdb = PodDisruptionBudget {
        metadata: meta(name.clone()),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };

    let hpa = match (&spec.autoscaling, cell.stopped) {
        (Some(autoscaling), false) => Some(HorizontalPodAutoscaler {
            metadata: meta(name.clone()),
            spec: Some(HorizontalPodAutoscalerSpec {
                // The autoscaler scales the Deployment, whose replicas the operator leaves
                // unset (the Service's CEL rule forbids replicas with autoscaling): one owner
                // of the field, no tug-of-war. Not the Service's scale subresource: with no
                // `spec.replicas` there it has no scale the autoscaler could read.
                scale_target_ref: CrossVersionObjectReference {
                    api_version: Some(Deployment::api_version(&()).into_owned()),
                    kind: Deployment::kind(&()).into_owned(),
                    name: name.clone(),
                },
                min_replicas: Some(autoscaling.min_replicas),
                max_replicas: autoscaling.max_replicas,
                metrics: Some(vec![MetricSpec {
                    type_: "Resource".into(),
                    resource: Some(ResourceMetricSource {
                        name: "cpu".into(),
                        target: MetricTarget {
                            type_: "Utilization".into(),
                            average_utilization: Some(
                                autoscaling.target_cpu_utilization_percentage,
                            ),
                            ..Default::default()
                        },
                    }),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }),
        _ => None,
    };

    Ok(ServiceObjects {
        config_map,
        core_service,
        deployment,
        pdb,
        hpa,
    })
}

fn service_port(name: &str, port: i32, app_protocol: Option<&str>) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port,
        target_port: Some(IntOrString::String(name_of_target(name).into())),
        protocol: Some("TCP".into()),
        app_protocol: app_protocol.map(|p| match p {
            // gRPC over cleartext HTTP/2, as meshes and gateways expect it named.
            "grpc" => "kubernetes.io/h2c".to_string(),
            other => other.to_string(),
        }),
        ..Default::default()
    }
}

fn name_of_target(service_port: &str) -> &str {
    match service_port {
        "metrics" => "admin",
        other => other,
    }
}

fn pod_template(
    service: &Service,
    cell: &CellView,
    config: &RenderedConfig,
    object_labels: &BTreeMap<String, String>,
) -> Result<PodTemplateSpec, InvalidSpec> {
    let spec = &service.spec;
    let name = service.name_any();
    let titan = spec.service != ServiceKind::Custom;

    let mut env: Vec<EnvVar> = Vec::new();
    for store in spec.datastores() {
        env.push(secret_env(
            store.env_var(),
            &cell.datastores_secret(),
            store.env_var(),
        ));
        if store == DatastoreKind::ClickHouse {
            env.extend(
                CLICKHOUSE_LOGIN_KEYS
                    .map(|key| optional_secret_env(key, &cell.datastores_secret(), key)),
            );
        }
    }
    if titan {
        env.push(secret_env(
            "TITAN_AUTH_HS256_SECRET",
            &cell.auth_secret(),
            "TITAN_AUTH_HS256_SECRET",
        ));
    }
    if let Some(storage) = &cell.object_storage
        && spec.service.uses_object_storage()
    {
        env.extend(object_storage_env(storage));
    }
    if cell.turn && spec.service == ServiceKind::Videocall {
        env.push(secret_env(
            TURN_SECRET_KEY,
            &cell.turn_secret(),
            TURN_SECRET_KEY,
        ));
    }

    let (command, args) = if titan {
        (
            Some(vec![
                "titan".to_string(),
                "serve".to_string(),
                spec.service.as_str().to_string(),
                "--config".to_string(),
                CONFIG_PATH.to_string(),
            ]),
            None,
        )
    } else {
        (spec.command.clone(), spec.args.clone())
    };

    let probe = |path: &str, period: i32, failures: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("admin".into()),
            ..Default::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        ..Default::default()
    };
    let port = |name: &str, port: i32| ContainerPort {
        name: Some(name.into()),
        container_port: port,
        protocol: Some("TCP".into()),
        ..Default::default()
    };

    let container = Container {
        name: "titan".into(),
        image: Some(spec.image.clone()),
        image_pull_policy: Some("IfNotPresent".into()),
        command,
        args,
        env: (!env.is_empty()).then_some(env),
        ports: titan.then(|| {
            vec![
                port("grpc", GRPC_PORT),
                port("http", HTTP_PORT),
                port("admin", ADMIN_PORT),
            ]
        }),
        liveness_probe: titan.then(|| probe("/healthz", 10, 3)),
        readiness_probe: titan.then(|| probe("/readyz", 5, 2)),
        resources: Some(spec.resources.clone().unwrap_or_else(default_resources)),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Default::default()
            }),
            ..Default::default()
        }),
        volume_mounts: Some(vec![VolumeMount {
            name: "config".into(),
            mount_path: "/etc/titan".into(),
            read_only: Some(true),
            ..Default::default()
        }]),
        ..Default::default()
    };

    let template = PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(object_labels.clone()),
            annotations: Some(BTreeMap::from([(
                labels::CONFIG_HASH.to_string(),
                config.hash.clone(),
            )])),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            containers: vec![container],
            volumes: Some(vec![Volume {
                name: "config".into(),
                config_map: Some(ConfigMapVolumeSource {
                    name: format!("{name}-config"),
                    ..Default::default()
                }),
                ..Default::default()
            }]),
            // kit drains in-flight calls for 25 s after SIGTERM; leave it room to exit.
            termination_grace_period_seconds: Some(30),
            // Service links would add a dozen variables per Titan service in the namespace.
            enable_service_links: Some(false),
            automount_service_account_token: Some(false),
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                seccomp_profile: Some(SeccompProfile {
                    type_: "RuntimeDefault".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    };

    match &spec.pod_overrides {
        None => Ok(template),
        Some(overrides) => apply_overrides(template, overrides),
    }
}

/// A variable read from a Secret's key; the pod does not start without it.
pub(crate) fn secret_env(variable: &str, secret: &str, key: &str) -> EnvVar {
    secret_key_env(variable, secret, key, false)
}

/// A variable read from a Secret's key, left unset when the key is absent.
fn optional_secret_env(variable: &str, secret: &str, key: &str) -> EnvVar {
    secret_key_env(variable, secret, key, true)
}

fn secret_key_env(variable: &str, secret: &str, key: &str, optional: bool) -> EnvVar {
    EnvVar {
        name: variable.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.into(),
                key: key.into(),
                optional: Some(optional),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A variable with a literal value.
pub(crate) fn value_env(variable: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: variable.into(),
        value: Some(value.into()),
        ..Default::default()
    }
}

/// The variables that point a process at the cell's object storage; the services that upload
/// and the RTMP server's recorder get the same ones.
pub(crate) fn object_storage_env(storage: &ObjectStorage) -> Vec<EnvVar> {
    let [access_key, secret_key] = OBJECT_STORAGE_KEYS;
    vec![
        value_env("TITAN_S3_ENDPOINT", &storage.endpoint),
        value_env("TITAN_S3_BUCKET", &storage.bucket),
        value_env(
            "TITAN_S3_REGION",
            storage.region.as_deref().unwrap_or("us-east-1"),
        ),
        secret_env(
            "TITAN_S3_ACCESS_KEY_ID",
            &storage.credentials_secret,
            access_key,
        ),
        secret_env(
            "TITAN_S3_SECRET_ACCESS_KEY",
            &storage.credentials_secret,
            secret_key,
        ),
    ]
}

fn default_resources() -> ResourceRequirements {
    // Requests give the autoscaler a base for CPU utilization; only memory is limited, since a
    // CPU limit throttles latency-sensitive gRPC handlers.
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_string(), Quantity("100m".into())),
            ("memory".to_string(), Quantity("128Mi".into())),
        ])),
        limits: Some(BTreeMap::from([(
            "memory".to_string(),
            Quantity("512Mi".into()),
        )])),
        ..Default::default()
    }
}

/// Applies `podOverrides` as a JSON merge patch (RFC 7386) over the pod template.
fn apply_overrides(
    template: PodTemplateSpec,
    overrides: &serde_json::Value,
) -> Result<PodTemplateSpec, InvalidSpec> {
    let serde_json::Value::Object(fields) = overrides else {
        return Err(InvalidSpec::PodOverrides(
            "must be an object with metadata and/or spec".into(),
        ));
    };
    if let Some(unknown) = fields.keys().find(|k| *k != "metadata" && *k != "spec") {
        return Err(InvalidSpec::PodOverrides(format!(
            "unknown field {unknown:?}: only metadata and spec"
        )));
    }
    let mut value =
        serde_json::to_value(&template).map_err(|e| InvalidSpec::PodOverrides(e.to_string()))?;
    merge_patch(&mut value, overrides);
    serde_json::from_value(value).map_err(|e| InvalidSpec::PodOverrides(e.to_string()))
}

fn merge_patch(target: &mut serde_json::Value, patch: &serde_json::Value) {
    match (target, patch) {
        (serde_json::Value::Object(target), serde_json::Value::Object(patch)) => {
            for (key, value) in patch {
                if value.is_null() {
                    target.remove(key);
                } else {
                    merge_patch(
                        target.entry(key.clone()).or_insert(serde_json::Value::Null),
                        value,
                    );
                }
            }
        }
        (target, patch) => *target = patch.clone(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::merge_patch;

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut target = json!({"a": {"b": 1, "c": 2}, "l": [1, 2]});
        merge_patch(&mut target, &json!({"a": {"b": null, "d": 3}, "l": [3]}));
        assert_eq!(target, json!({"a": {"c": 2, "d": 3}, "l": [3]}));
    }
}
