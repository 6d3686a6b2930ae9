//! Build stage, media servers: coturn for support calls (TURN over UDP and TCP plus its relay
//! range) and nginx-rtmp for live streams (RTMP ingest, HLS over HTTP, and a `titan recorder`
//! sidecar sharing the media volume when the cell has object storage). Their configs are
//! rendered by [`super::coturn`] and [`super::nginx`] into ConfigMaps, and a config change rolls
//! the pods through a hash on the pod template.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::{
        apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy},
        core::v1::{
            ConfigMap, ConfigMapVolumeSource, Container, EmptyDirVolumeSource, HTTPGetAction,
            KeyToPath, PodSpec, PodTemplateSpec, Probe, SecretVolumeSource, Service as CoreService,
            TCPSocketAction, Volume, VolumeMount,
        },
    },
    apimachinery::pkg::{
        apis::meta::v1::{LabelSelector, ObjectMeta},
        util::intstr::IntOrString,
    },
};
use titan_crds::{
    Cell, ServiceKind,
    cell::{Rtmp, Turn},
};

use super::{
    build::CellMeta,
    coturn,
    credentials::{self, Credentials, Key},
    nginx::{self, CallbackTls, MEDIA_DIR, NginxSettings, RECORDINGS_DIR},
    workload,
};
use crate::{
    labels,
    shared::{
        CellView, HTTP_PORT, TLS_CA_KEY, TLS_MOUNT, object_storage_env, secret_env, value_env,
    },
};

/// Name of the TURN server's objects and component.
pub const TURN: &str = "turn";
/// Name of the RTMP server's objects and component.
pub const RTMP: &str = "rtmp";
/// RTMP ingest port.
pub const RTMP_PORT: i32 = 1935;
/// Port nginx serves HLS on inside the pod (unprivileged).
pub const HLS_PORT: i32 = 8080;
/// Port of HLS on the RTMP Service.
pub const HLS_SERVICE_PORT: i32 = 80;
/// Default TURN image.
pub const COTURN_IMAGE: &str = "docker.io/coturn/coturn:4.6";
/// Default RTMP image: Debian's nginx with libnginx-mod-rtmp (`manifests/images/nginx-rtmp`).
pub const NGINX_RTMP_IMAGE: &str = "ghcr.io/titan/nginx-rtmp:1.22";
/// Where Debian's libnginx-mod-rtmp puts the module.
pub const DEBIAN_RTMP_MODULE: &str = "/usr/lib/nginx/modules/ngx_rtmp_module.so";
/// Port of nginx's loopback server that carries the RTMP callbacks over TLS.
pub const CALLBACK_PROXY_PORT: i32 = 8081;
/// The uid media servers run as (`nobody`).
const MEDIA_UID: i64 = 65534;
const CONFIG_KEY_TURN: &str = "turnserver.conf";
const CONFIG_KEY_NGINX: &str = "nginx.conf";

/// The media objects of a cell.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaObjects {
    /// Rendered configs.
    pub config_maps: Vec<ConfigMap>,
    /// The servers' Services.
    pub services: Vec<CoreService>,
    /// The servers.
    pub deployments: Vec<Deployment>,
}

/// The cell's TURN settings when it runs a TURN server.
pub fn enabled_turn(cell: &Cell) -> Option<&Turn> {
    cell.spec.media.turn.as_ref().filter(|t| t.enabled)
}

/// The cell's RTMP settings when it runs an RTMP server.
pub fn enabled_rtmp(cell: &Cell) -> Option<&Rtmp> {
    cell.spec.media.rtmp.as_ref().filter(|r| r.enabled)
}

/// The nginx settings of a cell's RTMP server.
pub fn nginx_settings(cell: &Cell, rtmp: &Rtmp) -> NginxSettings {
    NginxSettings {
        module_path: match rtmp.module_path.as_deref() {
            None => Some(DEBIAN_RTMP_MODULE.to_string()),
            Some("") => None,
            Some(path) => Some(path.to_string()),
        },
        callback_base: format!(
            "{}://{}.{}.svc:{HTTP_PORT}",
            if cell.spec.tls.is_some() {
                "https"
            } else {
                "http"
            },
            ServiceKind::Livestream,
            cell.namespace_name()
        ),
        callback_tls: cell.spec.tls.as_ref().map(|_| CallbackTls {
            ca_file: format!("{TLS_MOUNT}/{TLS_CA_KEY}"),
            proxy_port: CALLBACK_PROXY_PORT,
        }),
        media_dir: MEDIA_DIR.into(),
        record: cell.spec.datastores.object_storage.is_some(),
        rtmp_port: RTMP_PORT,
        http_port: HLS_PORT,
    }
}

fn config_map(cell_meta: &CellMeta, component: &str, key: &str, text: &str) -> ConfigMap {
    ConfigMap {
        metadata: cell_meta.meta(&format!("{component}-config"), component),
        data: Some(BTreeMap::from([(key.to_string(), text.to_string())])),
        ..Default::default()
    }
}

/// The `config` volume: the component's rendered config.
fn config_volume(component: &str) -> Volume {
    Volume {
        name: "config".into(),
        config_map: Some(ConfigMapVolumeSource {
            name: format!("{component}-config"),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A scratch volume shared by the pod's containers.
fn scratch_volume(name: &str) -> Volume {
    Volume {
        name: name.into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Default::default()
    }
}

fn mount(name: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        ..Default::default()
    }
}

/// A one-replica Deployment of a media server whose pods roll when `config` or one of the
/// `secrets` values its containers read changes, and only then: its labels carry the server's
/// image tag, never the cell's version.
fn deployment(
    cell_meta: &CellMeta,
    component: &str,
    config: &str,
    secrets: &[(&str, &str)],
    containers: Vec<Container>,
    volumes: Vec<Volume>,
) -> Deployment {
    let server_image = containers
        .first()
        .and_then(|c| c.image.as_deref())
        .unwrap_or_default();
    let labels = cell_meta.workload_labels(component, server_image);
    let mut annotations =
        BTreeMap::from([(labels::CONFIG_HASH.to_string(), labels::config_hash(config))]);
    if !secrets.is_empty() {
        annotations.insert(
            labels::SECRETS_HASH.to_string(),
            labels::secrets_hash(secrets.iter().copied()),
        );
    }
    Deployment {
        metadata: ObjectMeta {
            labels: Some(labels.clone()),
            ..cell_meta.meta(component, component)
        },
        spec: Some(DeploymentSpec {
            replicas: Some(cell_meta.replicas()),
            selector: LabelSelector {
                match_labels: Some(cell_meta.selector(component)),
                ..Default::default()
            },
            // One pod holds the published ports and the media volume: replace, never overlap.
            strategy: Some(DeploymentStrategy {
                type_: Some("Recreate".into()),
                ..Default::default()
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    annotations: Some(annotations),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers,
                    volumes: Some(volumes),
                    security_context: Some(workload::pod_security(MEDIA_UID)),
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn turn(cell_meta: &CellMeta, credentials: &Credentials, turn: &Turn, objects: &mut MediaObjects) {
    let config = coturn::render(&cell_meta.name, turn);
    let port = turn.listening_port;
    let relay_ports = turn.min_port..=turn.max_port;
    let mut container_ports = vec![
        workload::container_port("turn-udp", port, "UDP"),
        workload::container_port("turn-tcp", port, "TCP"),
    ];
    let mut service_ports = vec![
        workload::service_port("turn-udp", port, port, "UDP"),
        workload::service_port("turn-tcp", port, port, "TCP"),
    ];
    for relay in relay_ports {
        container_ports.push(workload::container_port(
            &format!("relay-{relay}"),
            relay,
            "UDP",
        ));
        service_ports.push(workload::service_port(
            &format!("relay-{relay}"),
            relay,
            relay,
            "UDP",
        ));
    }
    let container = Container {
        name: "turnserver".into(),
        image: Some(turn.image.clone().unwrap_or_else(|| COTURN_IMAGE.into())),
        image_pull_policy: Some("IfNotPresent".into()),
        command: Some(vec![
            "turnserver".into(),
            "-c".into(),
            format!("/etc/coturn/{CONFIG_KEY_TURN}"),
            // Kubernetes expands $(VAR) from the container's env, which reads the Secret.
            "--static-auth-secret=$(TURN_SECRET)".into(),
        ]),
        env: Some(vec![secret_env(
            "TURN_SECRET",
            &credentials::secret_name(&cell_meta.name),
            Key::TurnSecret.as_str(),
        )]),
        ports: Some(container_ports),
        readiness_probe: Some(Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::Int(port),
                ..Default::default()
            }),
            period_seconds: Some(5),
            ..Default::default()
        }),
        resources: Some(
            turn.resources
                .clone()
                .unwrap_or_else(|| workload::resources("100m", "128Mi", "256Mi")),
        ),
        security_context: Some(workload::container_security(MEDIA_UID)),
        volume_mounts: Some(vec![mount("config", "/etc/coturn")]),
        ..Default::default()
    };
    // A public address means clients outside the cluster: a LoadBalancer carries UDP and TCP.
    let service_type = match turn.external_address {
        Some(_) => "LoadBalancer",
        None => "ClusterIP",
    };
    objects
        .config_maps
        .push(config_map(cell_meta, TURN, CONFIG_KEY_TURN, &config));
    let mut service = workload::service(cell_meta, TURN, service_type, false, service_ports);
    // Cluster-wide forwarding would SNAT clients to a node's address: coturn would see (and
    // its peers answer) the node, not the client. `Local` keeps the client's address and
    // sends traffic only to nodes that run the pod.
    if let Some(spec) = service.spec.as_mut()
        && matches!(service_type, "LoadBalancer" | "NodePort")
    {
        spec.external_traffic_policy = Some("Local".into());
    }
    objects.services.push(service);
    objects.deployments.push(deployment(
        cell_meta,
        TURN,
        &config,
        &[(Key::TurnSecret.as_str(), credentials.get(Key::TurnSecret))],
        vec![container],
        vec![config_volume(TURN)],
    ));
}

fn rtmp(
    cell_meta: &CellMeta,
    object_storage: Option<&BTreeMap<String, String>>,
    tls_bundle: Option<&str>,
    rtmp: &Rtmp,
    objects: &mut MediaObjects,
) {
    let settings = nginx_settings(cell_meta.cell, rtmp);
    let config = nginx::render(&cell_meta.name, &settings);
    let nginx = Container {
        name: "nginx".into(),
        image: Some(
            rtmp.image
                .clone()
                .unwrap_or_else(|| NGINX_RTMP_IMAGE.into()),
        ),
        image_pull_policy: Some("IfNotPresent".into()),
        command: Some(
            [
                "nginx",
                "-p",
                "/var/run/nginx/",
                "-e",
                "stderr",
                "-c",
                "/etc/nginx-rtmp/nginx.conf",
            ]
            .map(String::from)
            .to_vec(),
        ),
        ports: Some(vec![
            workload::container_port("rtmp", RTMP_PORT, "TCP"),
            workload::container_port("hls", HLS_PORT, "TCP"),
        ]),
        readiness_probe: Some(Probe {
            http_get: Some(HTTPGetAction {
                path: Some("/healthz".into()),
                port: IntOrString::String("hls".into()),
                ..Default::default()
            }),
            period_seconds: Some(5),
            ..Default::default()
        }),
        resources: Some(
            rtmp.resources
                .clone()
                .unwrap_or_else(|| workload::resources("250m", "256Mi", "1Gi")),
        ),
        security_context: Some(workload::container_security(MEDIA_UID)),
        volume_mounts: Some(
            [
                Some(mount("config", "/etc/nginx-rtmp")),
                Some(mount("media", MEDIA_DIR)),
                Some(mount("run", "/var/run/nginx")),
                settings
                    .callback_tls
                    .as_ref()
                    .map(|_| mount("tls", TLS_MOUNT)),
            ]
            .into_iter()
            .flatten()
            .collect(),
        ),
        ..Default::default()
    };
    let mut containers = vec![nginx];
    // The recorder reads the object storage credentials: a new key rolls the pod. nginx reads
    // the CA bundle when it starts: a new bundle rolls it too.
    let mut secrets: Vec<(&str, &str)> = tls_bundle
        .map(|bundle| ("TITAN_TLS_CA_FILE", bundle))
        .into_iter()
        .collect();
    if let Some(storage) = &cell_meta.cell.spec.datastores.object_storage {
        secrets.extend(
            object_storage
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        );
        let mut env = vec![value_env("TITAN_CELL", &cell_meta.name)];
        env.extend(object_storage_env(storage));
        containers.push(Container {
            name: "recorder".into(),
            image: Some(cell_meta.titan_image()),
            image_pull_policy: Some("IfNotPresent".into()),
            command: Some(vec![
                "titan".into(),
                "recorder".into(),
                "--dir".into(),
                format!("{MEDIA_DIR}/{RECORDINGS_DIR}"),
            ]),
            env: Some(env),
            resources: Some(workload::resources("50m", "64Mi", "256Mi")),
            security_context: Some(workload::container_security(MEDIA_UID)),
            volume_mounts: Some(vec![mount("media", MEDIA_DIR)]),
            ..Default::default()
        });
    }
    objects
        .config_maps
        .push(config_map(cell_meta, RTMP, CONFIG_KEY_NGINX, &config));
    objects.services.push(workload::service(
        cell_meta,
        RTMP,
        "ClusterIP",
        false,
        vec![
            workload::service_port("rtmp", RTMP_PORT, RTMP_PORT, "TCP"),
            workload::service_port("hls", HLS_SERVICE_PORT, HLS_PORT, "TCP"),
        ],
    ));
    objects.deployments.push(deployment(
        cell_meta,
        RTMP,
        &config,
        &secrets,
        containers,
        [
            Some(config_volume(RTMP)),
            Some(scratch_volume("media")),
            Some(scratch_volume("run")),
            // Only the CA bundle: the RTMP server serves no certificate.
            settings.callback_tls.as_ref().map(|_| Volume {
                name: "tls".into(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some(CellView::of(cell_meta.cell).tls_secret()),
                    items: Some(vec![KeyToPath {
                        key: TLS_CA_KEY.into(),
                        path: TLS_CA_KEY.into(),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        ]
        .into_iter()
        .flatten()
        .collect(),
    ));
}

/// The media objects of the cell in `cell_meta`: `credentials` has the TURN secret,
/// `object_storage` the object storage credentials when they resolved, and `tls_bundle` the
/// cell's CA bundle under TLS.
pub fn build(
    cell_meta: &CellMeta,
    credentials: &Credentials,
    object_storage: Option<&BTreeMap<String, String>>,
    tls_bundle: Option<&str>,
) -> MediaObjects {
    let mut objects = MediaObjects {
        config_maps: Vec::new(),
        services: Vec::new(),
        deployments: Vec::new(),
    };
    if let Some(settings) = enabled_turn(cell_meta.cell) {
        turn(cell_meta, credentials, settings, &mut objects);
    }
    if let Some(settings) = enabled_rtmp(cell_meta.cell) {
        rtmp(
            cell_meta,
            object_storage,
            tls_bundle,
            settings,
            &mut objects,
        );
    }
    objects
}
