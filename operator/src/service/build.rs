//! Build stage of the Service controller (pure: a Service, its cell and its rendered config in;
//! the ConfigMap, Deployment, core Service, PodDisruptionBudget, autoscaler and migration Job
//! out).

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
            HTTPGetAction, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
            ResourceRequirements, SeccompProfile, SecretVolumeSource, SecurityContext,
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
use titan_crds::{
    DatastoreKind, Service, ServiceKind,
    config::{
        CARRIER_API_KEY, PUSH_TOKEN_ENV, SMS_TOKEN_ENV, SMTP_PASSWORD_ENV, SMTP_USERNAME_ENV,
        ServiceConfig, WEBHOOK_SECRET_KEY,
    },
};

use super::{
    migration::{self, CONTAINER, MigrationJob},
    validate::{CONFIG_KEY, CONFIG_PATH, InvalidSpec, RenderedConfig},
};
use crate::{
    labels,
    shared::{
        ADMIN_PORT, CLICKHOUSE_LOGIN_KEYS, CellView, GRPC_PORT, HTTP_PORT, TLS_MOUNT,
        TURN_SECRET_KEY, auth_env, datastore_tls_env, object_storage_env, optional_secret_env,
        secret_env, tls_env, tracing_env,
    },
};

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
    /// The `titan migrate` Job the Deployment waits for.
    pub migration: MigrationJob,
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

    let migration = match (titan, cell.stopped) {
        (false, _) => MigrationJob::NotNeeded,
        (true, true) => MigrationJob::Stopped,
        (true, false) => MigrationJob::Run(Box::new(migration::job(
            service,
            &deployment,
            &object_labels,
        ))),
    };
    Ok(ServiceObjects {
        config_map,
        core_service,
        deployment,
        pdb,
        hpa,
        migration,
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
        if cell.tls_datastores.contains(&store) {
            env.extend(datastore_tls_env(store));
        }
    }
    if titan {
        env.push(secret_env(
            "TITAN_AUTH_HS256_SECRET",
            &cell.auth_secret(),
            "TITAN_AUTH_HS256_SECRET",
        ));
        env.extend(auth_env(&cell.auth));
        env.extend(tracing_env(cell.tracing.as_ref()));
        if cell.tls {
            env.extend(tls_env());
        }
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

    // The campaign service's SMTP login and provider tokens, from the Secrets its config
    // names (a provider's token is optional: a cell may run one provider, or one without).
    if spec.service == ServiceKind::Campaign
        && let Ok(ServiceConfig::Campaign(c)) =
            ServiceConfig::parse(ServiceKind::Campaign, spec.config.as_ref())
    {
        if let Some(secret) = c.smtp.and_then(|s| s.credentials_secret) {
            env.push(secret_env(SMTP_USERNAME_ENV, &secret, "username"));
            env.push(secret_env(SMTP_PASSWORD_ENV, &secret, "password"));
        }
        if let Some(secret) = c.provider_tokens_secret {
            env.push(optional_secret_env(PUSH_TOKEN_ENV, &secret, "push"));
            env.push(optional_secret_env(SMS_TOKEN_ENV, &secret, "sms"));
        }
    }

    // Each HTTP carrier's API key, from the Secret its entry names (required: the shipping
    // service refuses to start without it, naming the variable).
    if spec.service == ServiceKind::Shipping
        && let Ok(ServiceConfig::Shipping(c)) =
            ServiceConfig::parse(ServiceKind::Shipping, spec.config.as_ref())
    {
        for carrier in &c.carriers {
            env.push(secret_env(
                &carrier.api_key_env(),
                &carrier.credentials_secret,
                CARRIER_API_KEY,
            ));
        }
    }

    // Each carrier's webhook signing key, from the Secret its entry names (required: a
    // listed carrier without its key would have every call refused).
    if spec.service == ServiceKind::Tracking
        && let Ok(ServiceConfig::Tracking(c)) =
            ServiceConfig::parse(ServiceKind::Tracking, spec.config.as_ref())
    {
        for hook in &c.webhooks {
            env.push(secret_env(
                &hook.secret_env(),
                &hook.secret,
                WEBHOOK_SECRET_KEY,
            ));
        }
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
        name: CONTAINER.into(),
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
        // kit answers /healthz as soon as it runs, also while it waits for its datastores;
        // five minutes of grace covers a titan that connects before it listens.
        startup_probe: titan.then(|| probe("/healthz", 5, 60)),
        liveness_probe: titan.then(|| probe("/healthz", 10, 3)),
        readiness_probe: titan.then(|| probe("/readyz", 5, 2)),
        // A crash's last log lines become its termination message, which the Service's status
        // (and the migration's) reports.
        termination_message_policy: Some("FallbackToLogsOnError".into()),
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
        volume_mounts: Some(
            [("config", "/etc/titan", true), ("tls", TLS_MOUNT, cell.tls)]
                .into_iter()
                .filter(|(_, _, wanted)| *wanted)
                .map(|(name, path, _)| VolumeMount {
                    name: name.into(),
                    mount_path: path.into(),
                    read_only: Some(true),
                    ..Default::default()
                })
                .collect(),
        ),
        ..Default::default()
    };

    let template = PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(object_labels.clone()),
            // The Cell puts the hash of the Secret values this service reads on its `Service`:
            // on the template it rolls the pods when one of them changes, and only then.
            annotations: Some(
                [(labels::CONFIG_HASH.to_string(), config.hash.clone())]
                    .into_iter()
                    .chain(
                        service
                            .annotations()
                            .get(labels::SECRETS_HASH)
                            .map(|hash| (labels::SECRETS_HASH.to_string(), hash.clone())),
                    )
                    .collect(),
            ),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            containers: vec![container],
            volumes: Some(
                std::iter::once(Volume {
                    name: "config".into(),
                    config_map: Some(ConfigMapVolumeSource {
                        name: format!("{name}-config"),
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                // The certificate as a volume, not variables: the kubelet updates its files in
                // place when the Secret is renewed, and kit reloads them without a restart.
                // Default file modes: the one user of the container reads the key. A custom
                // worker gets it too: its datastore URLs and calls to the services verify
                // against the bundle.
                .chain(cell.tls.then(|| Volume {
                    name: "tls".into(),
                    secret: Some(SecretVolumeSource {
                        secret_name: Some(cell.tls_secret()),
                        ..Default::default()
                    }),
                    ..Default::default()
                }))
                .collect(),
            ),
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
    use titan_crds::Service;

    use super::{MigrationJob, build, merge_patch};
    use crate::{service::validate, shared::CellView};

    fn coupon() -> Service {
        serde_yaml::from_str(
            "apiVersion: commerce.titan.dev/v1alpha1\nkind: Service\nmetadata: {name: coupon, namespace: titan-sg-1}\nspec: {cell: sg-1, service: coupon, image: 'ghcr.io/titan/titan:0.1.0'}",
        )
        .expect("service yaml")
    }

    fn cell(stopped: bool) -> CellView {
        CellView {
            name: "sg-1".into(),
            version: "0.1.0".into(),
            stopped,
            paused: false,
            object_storage: None,
            turn: false,
            auth: Default::default(),
            tls: false,
            tls_datastores: Vec::new(),
            tracing: None,
        }
    }

    #[test]
    fn titan_pods_get_a_generous_startup_probe_and_keep_their_crash_logs() {
        let service = coupon();
        let rendered = validate::validate(&service, "sg-1").expect("valid");
        let objects = build(&service, &cell(false), &rendered).expect("builds");
        let pod = objects
            .deployment
            .spec
            .expect("spec")
            .template
            .spec
            .expect("pod");
        let container = &pod.containers[0];
        let startup = container.startup_probe.clone().expect("startup probe");
        let http = startup.http_get.clone().expect("http probe");
        assert_eq!(
            (
                http.path.as_deref(),
                http.port,
                startup.period_seconds,
                startup.failure_threshold
            ),
            (
                Some("/healthz"),
                k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String("admin".into()),
                Some(5),
                Some(60)
            ),
            "five minutes to start"
        );
        assert_eq!(
            container.termination_message_policy.as_deref(),
            Some("FallbackToLogsOnError")
        );
        assert!(matches!(objects.migration, MigrationJob::Run(_)));
        let stopped = build(&service, &cell(true), &rendered).expect("builds");
        assert_eq!(stopped.migration, MigrationJob::Stopped);
    }

    /// The container's variables from Secrets whose names start with `prefix`, as
    /// `NAME=secret/key` (`?` when optional).
    fn secret_vars(service: &Service, prefix: &str) -> Vec<String> {
        let rendered = validate::validate(service, "sg-1").expect("valid");
        let objects = build(service, &cell(false), &rendered).expect("builds");
        let pod = objects
            .deployment
            .spec
            .expect("spec")
            .template
            .spec
            .expect("pod");
        pod.containers[0]
            .env
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter_map(|e| {
                let from = e.value_from?.secret_key_ref?;
                Some(format!(
                    "{}={}/{}{}",
                    e.name,
                    from.name,
                    from.key,
                    if from.optional == Some(true) { "?" } else { "" }
                ))
            })
            .filter(|e| e.starts_with(prefix))
            .collect()
    }

    #[test]
    fn the_campaign_smtp_login_and_provider_tokens_come_from_the_secrets_its_config_names() {
        let mut service: Service = serde_yaml::from_str(
            "apiVersion: commerce.titan.dev/v1alpha1\nkind: Service\nmetadata: {name: campaign, namespace: titan-sg-1}\nspec: {cell: sg-1, service: campaign, image: 'ghcr.io/titan/titan:0.1.0', config: {smtp: {host: smtp.example, from: shop@example.com, credentialsSecret: smtp-login}, pushProviderUrl: 'https://push.example/send', providerTokensSecret: provider-tokens}}",
        )
        .expect("service yaml");
        let env = |service: &Service| secret_vars(service, "TITAN_CAMPAIGN_");
        // The login is required; each provider's token is optional (a cell may run one).
        assert_eq!(
            env(&service),
            vec![
                "TITAN_CAMPAIGN_SMTP_USERNAME=smtp-login/username",
                "TITAN_CAMPAIGN_SMTP_PASSWORD=smtp-login/password",
                "TITAN_CAMPAIGN_PUSH_TOKEN=provider-tokens/push?",
                "TITAN_CAMPAIGN_SMS_TOKEN=provider-tokens/sms?",
            ]
        );
        service.spec.config =
            Some(json!({"smtp": {"host": "smtp.example", "from": "shop@example.com"}}));
        assert_eq!(env(&service), Vec::<String>::new());
    }

    #[test]
    fn each_shipping_carrier_api_key_comes_from_the_secret_its_entry_names() {
        let mut service: Service = serde_yaml::from_str(
            "apiVersion: commerce.titan.dev/v1alpha1\nkind: Service\nmetadata: {name: shipping, namespace: titan-sg-1}\nspec: {cell: sg-1, service: shipping, image: 'ghcr.io/titan/titan:0.1.0', config: {carriers: [{name: dhl-express, baseUrl: 'https://api.dhl.example', credentialsSecret: dhl-api}, {name: ninjavan, baseUrl: 'https://api.ninjavan.example', credentialsSecret: ninja}]}}",
        )
        .expect("service yaml");
        let env = |service: &Service| secret_vars(service, "TITAN_SHIPPING_");
        // Required: a carrier without its key must not start half-configured.
        assert_eq!(
            env(&service),
            vec![
                "TITAN_SHIPPING_DHL_EXPRESS_API_KEY=dhl-api/apiKey",
                "TITAN_SHIPPING_NINJAVAN_API_KEY=ninja/apiKey",
            ]
        );
        service.spec.config = None;
        assert_eq!(env(&service), Vec::<String>::new());
    }

    #[test]
    fn each_tracking_webhook_key_comes_from_the_secret_its_entry_names() {
        let mut service: Service = serde_yaml::from_str(
            "apiVersion: commerce.titan.dev/v1alpha1\nkind: Service\nmetadata: {name: tracking, namespace: titan-sg-1}\nspec: {cell: sg-1, service: tracking, image: 'ghcr.io/titan/titan:0.1.0', config: {webhooks: [{carrier: dhl-express, secret: dhl-hooks}, {carrier: ninjavan, secret: nv-hooks}]}}",
        )
        .expect("service yaml");
        let env = |service: &Service| secret_vars(service, "TITAN_TRACKING_");
        assert_eq!(
            env(&service),
            vec![
                "TITAN_TRACKING_DHL_EXPRESS_WEBHOOK_SECRET=dhl-hooks/webhookSecret",
                "TITAN_TRACKING_NINJAVAN_WEBHOOK_SECRET=nv-hooks/webhookSecret",
            ]
        );
        service.spec.config = None;
        assert_eq!(env(&service), Vec::<String>::new());
    }

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut target = json!({"a": {"b": 1, "c": 2}, "l": [1, 2]});
        merge_patch(&mut target, &json!({"a": {"b": null, "d": 3}, "l": [3]}));
        assert_eq!(target, json!({"a": {"c": 2, "d": 3}, "l": [3]}));
    }
}
