//! The Cell's build and status stages from YAML fixtures, for every provider and option: builtin
//! StatefulSets, the CloudNativePG cluster, external Secrets, object storage, isolation, the
//! media servers, the deletion policy, and every object valid against its schema.

use std::collections::BTreeMap;

use k8s_openapi::{
    ByteString,
    api::{
        apps::v1::{Deployment, StatefulSet},
        core::v1::{Container, EnvVar, PodSpec, Secret},
        networking::v1::NetworkPolicy,
    },
};
use kube::ResourceExt;
use titan_crds::{
    Cell, DatastoreKind, ServiceKind,
    cell::{ComponentStatus, DatastoresStatus, DeletionPolicy},
};
use titan_operator::{
    cell::{
        build::{CellObjects, build as cell_build},
        certificates::Tls,
        connections::{self, Lookup, SecretSource},
        credentials::{self, Credentials},
        observe::{self, Components},
        status,
    },
    conditions,
    service::{build as service_build, validate},
    shared::CellView,
};

use crate::support::{built, cell_fixture, repo_path, validate as validate_object, validator};

fn example(file: &str) -> Cell {
    let text = std::fs::read_to_string(repo_path(file)).expect("example");
    serde_yaml::from_str(&text).expect("a Cell")
}

fn named<'a, K: kube::Resource>(objects: &'a [K], name: &str) -> &'a K {
    objects
        .iter()
        .find(|o| o.meta().name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no {name}"))
}

fn pod(set: &StatefulSet) -> &PodSpec {
    set.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("pod spec")
}

fn deployment_pod(deployment: &Deployment) -> &PodSpec {
    deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("pod spec")
}

fn env<'a>(container: &'a Container, name: &str) -> &'a EnvVar {
    container
        .env
        .iter()
        .flatten()
        .find(|e| e.name == name)
        .unwrap_or_else(|| panic!("no {name} in {}", container.name))
}

/// `(secret, key)` a variable reads.
fn from_secret(variable: &EnvVar) -> (String, String) {
    let selector = variable
        .value_from
        .as_ref()
        .and_then(|v| v.secret_key_ref.as_ref())
        .expect("from a secret");
    (selector.name.clone(), selector.key.clone())
}

fn secret_text(secret: &Secret, key: &str) -> String {
    String::from_utf8(secret.data.as_ref().expect("data")[key].0.clone()).expect("utf-8")
}

fn values<T: serde::Serialize>(objects: &[T]) -> Vec<serde_json::Value> {
    objects
        .iter()
        .map(|o| serde_json::to_value(o).expect("json"))
        .collect()
}

/// Every object of `objects` as JSON, in apply order.
fn all_values(objects: &CellObjects) -> Vec<serde_json::Value> {
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
        services,
        grpc_routes,
        http_routes,
        backend_tls_policies,
        certificates,
    } = objects;
    [
        values(std::slice::from_ref(namespace)),
        values(resource_quotas),
        values(limit_ranges),
        values(network_policies),
        values(secrets),
        values(certificates),
        values(config_maps),
        values(core_services),
        values(stateful_sets),
        values(clusters),
        values(scheduled_backups),
        values(deployments),
        values(services),
        values(grpc_routes),
        values(http_routes),
        values(backend_tls_policies),
    ]
    .concat()
}

#[test]
fn every_object_of_every_fixture_is_valid_against_its_schema() {
    let validator = validator();
    for cell in [
        cell_fixture("minimal-cell.yaml"),
        cell_fixture("full-cell.yaml"),
        cell_fixture("external-cell.yaml"),
        example("manifests/examples/dev-cell.yaml"),
        example("manifests/examples/production-cell.yaml"),
    ] {
        for value in all_values(&built(&cell)) {
            validate_object(&validator, &value)
                .unwrap_or_else(|e| panic!("cell {}: {e}", cell.name_any()));
        }
    }
}

#[test]
fn builtin_datastores_are_stateful_sets_with_volumes_probes_and_secret_passwords() {
    let cell = cell_fixture("minimal-cell.yaml");
    let objects = built(&cell);
    let names: Vec<String> = objects
        .stateful_sets
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    assert_eq!(names, ["postgres", "redis", "clickhouse"]);
    for set in &objects.stateful_sets {
        let spec = set.spec.as_ref().expect("spec");
        assert_eq!(spec.service_name.as_deref(), Some(set.name_any().as_str()));
        let claim = &spec.volume_claim_templates.as_ref().expect("claims")[0];
        assert_eq!(
            claim
                .spec
                .as_ref()
                .and_then(|s| s.resources.as_ref())
                .and_then(|r| r.requests.as_ref())
                .map(|r| r["storage"].0.as_str()),
            Some("10Gi")
        );
        let retention = spec
            .persistent_volume_claim_retention_policy
            .as_ref()
            .expect("retention");
        assert_eq!(retention.when_deleted.as_deref(), Some("Retain"));
        let container = &pod(set).containers[0];
        assert!(container.readiness_probe.is_some(), "{}", set.name_any());
        assert!(
            container
                .resources
                .as_ref()
                .and_then(|r| r.requests.as_ref())
                .is_some()
        );
        assert_eq!(
            pod(set)
                .security_context
                .as_ref()
                .and_then(|s| s.run_as_non_root),
            Some(true)
        );
        let headless = named(&objects.core_services, &set.name_any());
        assert_eq!(
            headless.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()),
            Some("None")
        );
    }
    let postgres = &pod(named(&objects.stateful_sets, "postgres")).containers[0];
    assert_eq!(
        postgres.image.as_deref(),
        Some("docker.io/library/postgres:17")
    );
    assert_eq!(
        from_secret(env(postgres, "POSTGRES_PASSWORD")),
        ("sg-1-credentials".into(), "postgres-password".into()),
        "passwords are referenced, never inline"
    );
    let redis = &pod(named(&objects.stateful_sets, "redis")).containers[0];
    let command = redis.command.clone().expect("command").join(" ");
    assert!(
        command.contains("--appendonly yes") && command.contains("--appendfsync everysec"),
        "{command}"
    );
    assert_eq!(
        from_secret(env(redis, "REDIS_PASSWORD")).1,
        "redis-password"
    );
    let clickhouse = &pod(named(&objects.stateful_sets, "clickhouse")).containers[0];
    assert_eq!(
        clickhouse
            .readiness_probe
            .as_ref()
            .and_then(|p| p.http_get.as_ref())
            .and_then(|h| h.path.as_deref()),
        Some("/ping")
    );
}

#[test]
fn an_upgrade_leaves_the_immutable_parts_of_a_stateful_set_alone() {
    let cell = cell_fixture("minimal-cell.yaml");
    let mut upgraded = cell.clone();
    upgraded.spec.version = "0.2.0".into();
    let fixed = |cell: &Cell| {
        built(cell)
            .stateful_sets
            .into_iter()
            .map(|set| {
                let spec = set.spec.expect("spec");
                (
                    spec.selector,
                    spec.service_name,
                    spec.volume_claim_templates,
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(fixed(&cell), fixed(&upgraded));
}

#[test]
fn images_sizes_and_resources_can_be_overridden() {
    let mut cell = cell_fixture("minimal-cell.yaml");
    let text = r#"{"postgres": {"image": "postgres:16.4", "storage": "50Gi",
        "resources": {"requests": {"cpu": "2", "memory": "4Gi"}}},
        "redis": {"image": "valkey/valkey:8"}}"#;
    cell.spec.datastores = serde_json::from_str(text).expect("datastores");
    let objects = built(&cell);
    let postgres = named(&objects.stateful_sets, "postgres");
    let container = &pod(postgres).containers[0];
    assert_eq!(container.image.as_deref(), Some("postgres:16.4"));
    assert_eq!(
        container
            .resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .map(|r| r["cpu"].0.as_str()),
        Some("2")
    );
    let claim = &postgres
        .spec
        .as_ref()
        .expect("spec")
        .volume_claim_templates
        .as_ref()
        .expect("claims")[0];
    assert_eq!(
        claim
            .spec
            .as_ref()
            .and_then(|s| s.resources.as_ref())
            .and_then(|r| r.requests.as_ref())
            .map(|r| r["storage"].0.as_str()),
        Some("50Gi")
    );
    assert_eq!(
        pod(named(&objects.stateful_sets, "redis")).containers[0]
            .image
            .as_deref(),
        Some("valkey/valkey:8")
    );
}

#[test]
fn cloudnative_pg_is_a_cluster_backed_up_to_the_object_storage() {
    let cell = cell_fixture("full-cell.yaml");
    let objects = built(&cell);
    let names: Vec<String> = objects
        .stateful_sets
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    assert_eq!(
        names,
        ["clickhouse"],
        "PostgreSQL runs on CloudNativePG, Redis elsewhere"
    );
    let cluster = &objects.clusters[0];
    assert_eq!(cluster.name_any(), "postgres");
    assert_eq!(cluster.spec.instances, 3);
    assert_eq!(cluster.spec.storage.size, "100Gi");
    assert_eq!(
        cluster
            .spec
            .bootstrap
            .initdb
            .as_ref()
            .map(|i| i.database.as_str()),
        Some("titan")
    );
    let store = &cluster
        .spec
        .backup
        .as_ref()
        .and_then(|b| b.barman_object_store.as_ref())
        .expect("backup");
    assert_eq!(store.destination_path, "s3://titan-eu-2/eu-2/postgres");
    assert_eq!(store.endpoint_url, "https://s3.eu-west-1.amazonaws.com");
    assert_eq!(
        (
            store.s3_credentials.access_key_id.name.as_str(),
            store.s3_credentials.access_key_id.key.as_str()
        ),
        ("s3-creds", "accessKeyId")
    );
    let policies: Vec<String> = objects
        .network_policies
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    assert!(policies.contains(&"allow-cloudnative-pg".to_string()));

    let mut without_storage = cell.clone();
    without_storage.spec.datastores.object_storage = None;
    assert!(built(&without_storage).clusters[0].spec.backup.is_none());
}

/// Secrets read from a map, as the API server would return them.
fn secrets(entries: &[(&str, &[(&str, &str)])]) -> BTreeMap<String, Secret> {
    entries
        .iter()
        .map(|(name, data)| {
            (
                name.to_string(),
                Secret {
                    data: Some(
                        data.iter()
                            .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                            .collect(),
                    ),
                    ..Default::default()
                },
            )
        })
        .collect()
}

#[test]
fn every_provider_fills_the_same_keys_of_the_same_secret() {
    let credentials = Credentials::resolve(None, || "pw".into());
    let keys = |cell: &Cell, source: &dyn SecretSource| {
        let connections = connections::resolve(cell, &credentials, source);
        let mut keys: Vec<String> = connections
            .datastore_values()
            .expect("resolved")
            .into_keys()
            .collect();
        keys.sort();
        keys
    };
    let builtin = keys(&cell_fixture("minimal-cell.yaml"), &connections::Offline);
    let external = keys(
        &cell_fixture("external-cell.yaml"),
        &secrets(&[
            ("pg-ext", &[("url", "postgres://x")]),
            ("redis-ext", &[("url", "redis://x")]),
        ]),
    );
    let cloudnative = keys(
        &cell_fixture("full-cell.yaml"),
        &secrets(&[
            ("postgres-app", &[("uri", "postgres://y")]),
            ("redis-eu-2", &[("url", "redis://y")]),
        ]),
    );
    let expected = [
        "TITAN_CLICKHOUSE_PASSWORD",
        "TITAN_CLICKHOUSE_URL",
        "TITAN_CLICKHOUSE_USER",
        "TITAN_POSTGRES_URL",
        "TITAN_REDIS_URL",
    ];
    assert_eq!(builtin, expected);
    assert_eq!(external, expected);
    assert_eq!(cloudnative, expected);

    // ... and the services read them the same way whatever the provider.
    let env_of = |cell: &Cell| {
        let service = built(cell)
            .services
            .into_iter()
            .find(|s| s.spec.service == ServiceKind::Analytics)
            .expect("analytics");
        let rendered = validate::validate(&service, &cell.name_any()).expect("config");
        let deployment = service_build::build(&service, &CellView::of(cell), &rendered)
            .expect("builds")
            .deployment;
        deployment_pod(&deployment).containers[0]
            .env
            .iter()
            .flatten()
            .map(|e| (e.name.clone(), from_secret(e).1))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        env_of(&cell_fixture("minimal-cell.yaml")),
        env_of(&cell_fixture("external-cell.yaml"))
    );
}

#[test]
fn an_external_secret_missing_keys_is_named_and_the_datastores_secret_left_out() {
    let cell = cell_fixture("external-cell.yaml");
    let credentials = Credentials::resolve(None, || "pw".into());
    let source = secrets(&[("pg-ext", &[("uri", "postgres://x")])]);
    assert_eq!(source.lookup("pg-ext", "url"), Lookup::NoKey);
    let connections = connections::resolve(&cell, &credentials, &source);
    let postgres = connections.postgres.clone().expect_err("no url key");
    assert_eq!(
        (
            postgres.reason,
            postgres.message.as_str(),
            postgres.needs_action
        ),
        (
            "SecretKeysMissing",
            "external postgres: secret pg-ext lacks keys url",
            true
        )
    );
    let redis = connections.redis.clone().expect_err("no secret");
    assert_eq!(redis.reason, "SecretNotFound");
    let objects = cell_build(
        &cell,
        &credentials,
        &Tls::default(),
        &connections,
        &Default::default(),
    );
    let names: Vec<String> = objects.secrets.iter().map(ResourceExt::name_any).collect();
    assert_eq!(names, ["ext-credentials", "ext-auth"]);
}

#[test]
fn the_credentials_outlive_the_cell_only_under_retain() {
    let mut cell = cell_fixture("full-cell.yaml");
    cell.metadata.uid = Some("uid-1".into());
    let objects = built(&cell);
    let credentials = named(&objects.secrets, "eu-2-credentials");
    assert!(credentials.owner_references().is_empty());
    assert!(objects.clusters[0].owner_references().is_empty());
    assert!(
        !named(&objects.secrets, "eu-2-auth")
            .owner_references()
            .is_empty()
    );
    assert!(!objects.stateful_sets[0].owner_references().is_empty());

    cell.spec.deletion_policy = DeletionPolicy::Delete;
    let objects = built(&cell);
    assert_eq!(
        named(&objects.secrets, "eu-2-credentials").owner_references()[0].uid,
        "uid-1"
    );
    assert_eq!(objects.clusters[0].owner_references()[0].uid, "uid-1");
    assert_eq!(
        objects.stateful_sets[0]
            .spec
            .as_ref()
            .and_then(|s| s.persistent_volume_claim_retention_policy.as_ref())
            .and_then(|p| p.when_deleted.as_deref()),
        Some("Delete")
    );
}

#[test]
fn isolation_denies_by_default_and_opens_only_the_public_ports() {
    let cell = example("manifests/examples/production-cell.yaml");
    let objects = built(&cell);
    let policy = |name: &str| -> NetworkPolicy { named(&objects.network_policies, name).clone() };
    let deny = policy("default-deny").spec.expect("spec");
    assert_eq!(
        deny.policy_types,
        Some(vec!["Ingress".into(), "Egress".into()])
    );
    assert!(deny.ingress.is_none() && deny.egress.is_none());
    assert_eq!(
        deny.pod_selector,
        Some(Default::default()),
        "every pod of the cell"
    );

    let ports = |name: &str| {
        policy(name).spec.expect("spec").ingress.expect("ingress")[0]
            .ports
            .clone()
            .expect("ports")
            .into_iter()
            .map(|p| {
                let port = match p.port.expect("port") {
                    k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(n) => n,
                    other => panic!("named port {other:?}"),
                };
                (p.protocol.expect("protocol"), port, p.end_port)
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ports("allow-public-services"),
        [("TCP".into(), 50051, None), ("TCP".into(), 8080, None)]
    );
    assert_eq!(
        ports("allow-public-rtmp"),
        [("TCP".into(), 1935, None), ("TCP".into(), 8080, None)]
    );
    assert_eq!(
        ports("allow-public-turn"),
        [
            ("UDP".into(), 3478, None),
            ("TCP".into(), 3478, None),
            ("UDP".into(), 49160, Some(49260))
        ]
    );
    let within = policy("allow-within-cell").spec.expect("spec");
    let peer = &within.ingress.expect("ingress")[0]
        .from
        .clone()
        .expect("from")[0];
    assert!(
        peer.namespace_selector.is_none() && peer.pod_selector.is_some(),
        "only pods of the cell's own namespace"
    );
    let dns = policy("allow-dns")
        .spec
        .expect("spec")
        .egress
        .expect("egress");
    assert_eq!(dns[0].ports.as_ref().map(Vec::len), Some(2));
    let outside = policy("allow-egress-outside")
        .spec
        .expect("spec")
        .egress
        .expect("egress");
    let block = outside[0].to.as_ref().expect("to")[0]
        .ip_block
        .clone()
        .expect("ip block");
    assert_eq!(block.except, Some(vec!["169.254.169.254/32".into()]));

    // Capacity becomes the quota; the limit range gives containers requests to count.
    let quota = &objects.resource_quotas[0]
        .spec
        .as_ref()
        .expect("spec")
        .hard
        .clone()
        .expect("hard");
    assert_eq!(quota["requests.cpu"].0, "64");
    assert_eq!(quota["requests.memory"].0, "256Gi");
    let limits = &objects.limit_ranges[0].spec.as_ref().expect("spec").limits[0];
    assert_eq!(
        limits.default_request.as_ref().map(|r| r["cpu"].0.as_str()),
        Some("100m")
    );
    let max = limits.max.clone().expect("max");
    assert_eq!(max["memory"].0, "256Gi");
    assert!(
        !max.contains_key("cpu"),
        "a CPU maximum would make CPU limits mandatory"
    );

    assert!(
        built(&cell_fixture("minimal-cell.yaml"))
            .resource_quotas
            .is_empty()
    );
}

#[test]
fn turn_runs_coturn_with_the_secret_from_the_credentials_and_exposes_udp_and_tcp() {
    let cell = example("manifests/examples/production-cell.yaml");
    let objects = built(&cell);
    let turn = named(&objects.deployments, "turn");
    let container = &deployment_pod(turn).containers[0];
    let command = container.command.clone().expect("command");
    assert_eq!(
        command[..3],
        ["turnserver", "-c", "/etc/coturn/turnserver.conf"]
    );
    assert_eq!(command[3], "--static-auth-secret=$(TURN_SECRET)");
    assert_eq!(
        from_secret(env(container, "TURN_SECRET")),
        ("sg-1-credentials".into(), "turn-secret".into())
    );
    let service = named(&objects.core_services, "turn")
        .spec
        .clone()
        .expect("spec");
    assert_eq!(
        service.type_.as_deref(),
        Some("LoadBalancer"),
        "an external address"
    );
    let ports = service.ports.expect("ports");
    assert_eq!(
        ports.len(),
        2 + 101,
        "TURN on UDP and TCP, and each relay port"
    );
    let config = named(&objects.config_maps, "turn-config")
        .data
        .clone()
        .expect("data")["turnserver.conf"]
        .clone();
    for line in [
        "use-auth-secret",
        "realm=sg-1.titan.example",
        "external-ip=203.0.113.7",
        "listening-port=3478",
        "min-port=49160",
        "max-port=49260",
    ] {
        assert!(config.lines().any(|l| l == line), "{line} in\n{config}");
    }
    assert!(
        !config.lines().any(|l| l.starts_with("static-auth-secret")),
        "the secret stays out of the ConfigMap"
    );

    // The videocall service gets the same secret, from the Secret made for services.
    let videocall = built(&cell)
        .services
        .into_iter()
        .find(|s| s.spec.service == ServiceKind::Videocall)
        .expect("videocall");
    let rendered = validate::validate(&videocall, "sg-1").expect("config");
    let deployment = service_build::build(&videocall, &CellView::of(&cell), &rendered)
        .expect("builds")
        .deployment;
    let container = &deployment_pod(&deployment).containers[0];
    assert_eq!(
        from_secret(env(container, "TITAN_TURN_SECRET")),
        ("sg-1-turn".into(), "TITAN_TURN_SECRET".into())
    );
    assert_eq!(
        secret_text(named(&objects.secrets, "sg-1-turn"), "TITAN_TURN_SECRET"),
        secret_text(named(&objects.secrets, "sg-1-credentials"), "turn-secret")
    );
}

#[test]
fn rtmp_shares_its_media_volume_with_a_recorder_only_when_there_is_object_storage() {
    let cell = example("manifests/examples/production-cell.yaml");
    let objects = built(&cell);
    let rtmp = deployment_pod(named(&objects.deployments, "rtmp")).clone();
    let names: Vec<&str> = rtmp.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["nginx", "recorder"]);
    let recorder = &rtmp.containers[1];
    assert_eq!(
        recorder.command.clone().expect("command"),
        [
            "titan",
            "recorder",
            "--dir",
            "/var/lib/titan-media/recordings"
        ]
    );
    assert_eq!(recorder.image.as_deref(), Some("ghcr.io/titan/titan:0.1.0"));
    assert_eq!(
        env(recorder, "TITAN_S3_BUCKET").value.as_deref(),
        Some("titan-sg-1")
    );
    assert_eq!(
        from_secret(env(recorder, "TITAN_S3_SECRET_ACCESS_KEY")),
        ("s3-sg-1".into(), "secretAccessKey".into())
    );
    let mounts = |c: &Container| {
        c.volume_mounts
            .iter()
            .flatten()
            .filter(|m| m.name == "media")
            .map(|m| m.mount_path.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(mounts(&rtmp.containers[0]), mounts(recorder));
    let config = named(&objects.config_maps, "rtmp-config")
        .data
        .clone()
        .expect("data")["nginx.conf"]
        .clone();
    for line in [
        "load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;",
        "on_publish http://livestream.titan-sg-1.svc:8080/rtmp/publish;",
        "on_publish_done http://livestream.titan-sg-1.svc:8080/rtmp/publish-done;",
        "hls_path /var/lib/titan-media/hls;",
        "record all;",
        "record_path /var/lib/titan-media/recordings;",
    ] {
        assert!(
            config.lines().any(|l| l.trim() == line),
            "{line} in\n{config}"
        );
    }

    // Without object storage: no recording, no recorder.
    let dev = example("manifests/examples/dev-cell.yaml");
    let objects = built(&dev);
    let rtmp = deployment_pod(named(&objects.deployments, "rtmp")).clone();
    assert_eq!(rtmp.containers.len(), 1);
    let config = named(&objects.config_maps, "rtmp-config")
        .data
        .clone()
        .expect("data")["nginx.conf"]
        .clone();
    assert!(!config.contains("record "), "{config}");
}

#[test]
fn a_media_config_change_rolls_the_pods() {
    let hash = |cell: &Cell| {
        named(&built(cell).deployments, "turn")
            .spec
            .as_ref()
            .and_then(|s| s.template.metadata.as_ref())
            .and_then(|m| m.annotations.as_ref())
            .map(|a| a["commerce.titan.dev/config-hash"].clone())
            .expect("hash")
    };
    let cell = example("manifests/examples/dev-cell.yaml");
    let mut changed = cell.clone();
    changed.spec.media.turn.as_mut().expect("turn").realm = Some("other.example".into());
    assert_ne!(hash(&cell), hash(&changed));
}

#[test]
fn object_storage_reaches_only_the_services_that_record_or_upload() {
    let cell = example("manifests/examples/production-cell.yaml");
    let view = CellView::of(&cell);
    for service in built(&cell).services {
        let rendered = validate::validate(&service, "sg-1").expect("config");
        let deployment = service_build::build(&service, &view, &rendered)
            .expect("builds")
            .deployment;
        let has_bucket = deployment_pod(&deployment).containers[0]
            .env
            .iter()
            .flatten()
            .any(|e| e.name == "TITAN_S3_BUCKET");
        assert_eq!(
            has_bucket,
            service.spec.service.uses_object_storage(),
            "{}",
            service.name_any()
        );
    }
}

fn ready(provider: &str) -> ComponentStatus {
    ComponentStatus {
        provider: Some(provider.into()),
        ready: true,
        reason: "Running".into(),
        message: String::new(),
    }
}

#[test]
fn without_object_storage_the_cell_says_recordings_and_uploads_are_off() {
    let cell = cell_fixture("minimal-cell.yaml");
    let components = Components {
        datastores: DatastoresStatus {
            postgres: ready("builtin"),
            redis: ready("builtin"),
            clickhouse: ready("builtin"),
            object_storage: None,
        },
        ..Default::default()
    };
    let computed = status::compute(
        &cell,
        &[],
        &[],
        &[],
        &components,
        k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
    );
    let recordings =
        conditions::find(&computed.conditions, "RecordingsEnabled").expect("condition");
    assert_eq!(
        (
            recordings.status.as_str(),
            recordings.reason.as_str(),
            recordings.message.as_str()
        ),
        (
            "False",
            "NoObjectStorage",
            "spec.datastores.objectStorage is absent: recordings and uploads are off"
        )
    );
    let endpoints = observe::endpoints(
        &example("manifests/examples/production-cell.yaml"),
        &["flashsale".into()],
    );
    assert_eq!(
        endpoints.rtmp_ingest.as_deref(),
        Some("rtmp://live.sg-1.titan.example:1935/live")
    );
    assert_eq!(
        endpoints.turn_uris,
        [
            "turn:203.0.113.7:3478?transport=udp",
            "turn:203.0.113.7:3478?transport=tcp"
        ]
    );
}

/// The contract between the Cell's Secrets, a service's Deployment and the `titan` runtime: every
/// variable the Deployment reads from a Secret is a key the Cell put there, and the values make
/// a configuration the runtime accepts, ClickHouse login included.
#[test]
fn the_secrets_the_cell_builds_configure_the_runtime_of_a_service() {
    let cell = example("manifests/examples/dev-cell.yaml");
    // Real generated values: the runtime has rules of its own (a token key of 32 bytes or more).
    let credentials = Credentials::resolve(None, credentials::generate);
    let connections = connections::resolve(&cell, &credentials, &connections::Offline);
    let objects = cell_build(
        &cell,
        &credentials,
        &Tls::default(),
        &connections,
        &Default::default(),
    );
    let service = objects
        .services
        .iter()
        .find(|s| s.spec.service == ServiceKind::Analytics)
        .expect("analytics");
    let rendered = validate::validate(service, "dev").expect("config");
    let deployment = service_build::build(service, &CellView::of(&cell), &rendered)
        .expect("builds")
        .deployment;
    let mut env = BTreeMap::new();
    for variable in deployment_pod(&deployment).containers[0]
        .env
        .iter()
        .flatten()
    {
        let (secret, key) = from_secret(variable);
        env.insert(
            variable.name.clone(),
            secret_text(named(&objects.secrets, &secret), &key),
        );
    }
    let config = titan_kit::config::Config::from_sources(Some(&rendered.yaml), |name| {
        env.get(name).cloned()
    })
    .expect("the runtime accepts it");
    assert!(config.postgres.is_some() && config.redis.is_some());
    assert!(config.auth.hs256_secret.is_some());
    let clickhouse = config.clickhouse.expect("clickhouse");
    assert_eq!(clickhouse.url, "http://clickhouse.titan-dev.svc:8123");
    assert_eq!(clickhouse.user.as_deref(), Some("titan"));
    assert!(clickhouse.password.is_some());
}

/// Another cell's pods reach this one only where anyone may (the public ports): no policy admits
/// ingress from another namespace, except CloudNativePG's operator to its instances.
#[test]
fn no_policy_lets_another_namespace_in_except_to_the_public_ports() {
    for cell in [
        example("manifests/examples/dev-cell.yaml"),
        example("manifests/examples/production-cell.yaml"),
    ] {
        for policy in built(&cell).network_policies {
            let name = policy.name_any();
            for rule in policy.spec.iter().flat_map(|s| s.ingress.iter().flatten()) {
                match &rule.from {
                    // No peers: open to all, which only the public ports may be.
                    None => assert!(name.starts_with("allow-public-"), "{name}"),
                    Some(peers) => {
                        for peer in peers {
                            let other_namespace = peer.namespace_selector.is_some();
                            assert!(
                                !other_namespace || name == "allow-cloudnative-pg",
                                "{name} admits another namespace"
                            );
                            assert!(peer.ip_block.is_none(), "{name}");
                        }
                    }
                }
            }
        }
    }
}

/// What rolls pods when it changes: each datastore's and media server's pod template, and each
/// Titan `Service` (its spec, and the hash of the Secret values it reads, which the Service
/// controller puts on its pod template).
fn rollout_inputs(objects: &CellObjects) -> BTreeMap<String, serde_json::Value> {
    let template =
        |t: &k8s_openapi::api::core::v1::PodTemplateSpec| serde_json::to_value(t).expect("json");
    let mut inputs = BTreeMap::new();
    for set in &objects.stateful_sets {
        let spec = set.spec.as_ref().expect("spec");
        inputs.insert(
            format!("statefulset/{}", set.name_any()),
            template(&spec.template),
        );
    }
    for deployment in &objects.deployments {
        let spec = deployment.spec.as_ref().expect("spec");
        inputs.insert(
            format!("deployment/{}", deployment.name_any()),
            template(&spec.template),
        );
    }
    for service in &objects.services {
        inputs.insert(
            format!("service/{}", service.name_any()),
            serde_json::json!({
                "spec": service.spec,
                "secrets-hash": service.annotations().get("commerce.titan.dev/secrets-hash"),
            }),
        );
    }
    inputs
}

/// The keys of `before` whose values differ in `after` (both have the same keys).
fn changed(
    before: &BTreeMap<String, serde_json::Value>,
    after: &BTreeMap<String, serde_json::Value>,
) -> Vec<String> {
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>()
    );
    before
        .iter()
        .filter(|(k, v)| after[*k] != **v)
        .map(|(k, _)| k.clone())
        .collect()
}

fn service_names(objects: &CellObjects, wanted: impl Fn(ServiceKind) -> bool) -> Vec<String> {
    objects
        .services
        .iter()
        .filter(|s| wanted(s.spec.service))
        .map(|s| format!("service/{}", s.name_any()))
        .collect()
}

#[test]
fn a_version_bump_changes_only_the_titan_services() {
    for file in [
        "manifests/examples/dev-cell.yaml",
        "manifests/examples/production-cell.yaml",
    ] {
        let cell = example(file);
        let mut upgraded = cell.clone();
        upgraded.spec.version = "0.2.0".into();
        let (before, after) = (built(&cell), built(&upgraded));
        let mut expected = service_names(&before, |_| true);
        // The one Titan process in a media pod: the recorder uploads with the cell's release
        // (documented in docs/upgrade.md), so a cell with object storage restarts its RTMP pod.
        if cell.spec.datastores.object_storage.is_some() {
            expected.insert(0, "deployment/rtmp".into());
        }
        let mut rolled = changed(&rollout_inputs(&before), &rollout_inputs(&after));
        rolled.sort();
        expected.sort();
        assert_eq!(rolled, expected, "{file}");

        // The objects themselves keep their labels too: a datastore or media server is
        // labelled with its own image's tag, never the cell's version.
        for (kind, labels, pod) in before
            .stateful_sets
            .iter()
            .map(|s| ("StatefulSet", s.labels(), pod(s)))
            .chain(
                before
                    .deployments
                    .iter()
                    .map(|d| ("Deployment", d.labels(), deployment_pod(d))),
            )
        {
            let image = pod.containers[0].image.clone().expect("image");
            let tag = image.rsplit_once(':').expect("a tag").1;
            assert_eq!(
                labels.get("app.kubernetes.io/version").map(String::as_str),
                Some(tag),
                "{file}: {kind} running {image}"
            );
        }
        // Every object but the namespace and the Titan `Service`s is the same after the bump.
        let cell_owned = |objects: &CellObjects| {
            let mut values = all_values(objects);
            values.retain(|v| {
                v["kind"] != "Namespace" && v["apiVersion"] != "commerce.titan.dev/v1alpha1"
            });
            values
        };
        let (old, new) = (cell_owned(&before), cell_owned(&after));
        let differing: Vec<String> = old
            .iter()
            .zip(&new)
            .filter(|(a, b)| a != b)
            .map(|(a, _)| format!("{} {}", a["kind"], a["metadata"]["name"]))
            .collect();
        let expected: &[&str] = if cell.spec.datastores.object_storage.is_some() {
            &["\"Deployment\" \"rtmp\""]
        } else {
            &[]
        };
        assert_eq!(differing, expected, "{file}: only Titan objects move");
    }
}

#[test]
fn a_changed_secret_value_rolls_exactly_the_pods_that_read_it() {
    let mut cell = example("manifests/examples/dev-cell.yaml");
    cell.spec.datastores.object_storage = Some(
        serde_json::from_value(serde_json::json!({
            "endpoint": "https://s3.example", "bucket": "titan-dev", "credentialsSecret": "s3"
        }))
        .expect("object storage"),
    );
    let mut counter = 0;
    let credentials = Credentials::resolve(None, || {
        counter += 1;
        format!("generated-{counter}")
    });
    let build = |credentials: &Credentials, secret_access_key: &str| {
        let source = secrets(&[(
            "s3",
            &[
                ("accessKeyId", "AKIA1"),
                ("secretAccessKey", secret_access_key),
            ],
        )]);
        let connections = connections::resolve(&cell, credentials, &source);
        cell_build(
            &cell,
            credentials,
            &Tls::default(),
            &connections,
            &Default::default(),
        )
    };
    let with = |key: &str| {
        let mut data = credentials.data();
        data.insert(key.into(), ByteString(b"rotated".to_vec()));
        let secret = Secret {
            data: Some(data),
            ..Default::default()
        };
        Credentials::resolve(Some(&secret), || unreachable!("every key is present"))
    };
    let base = build(&credentials, "s3cr3t");
    let before = rollout_inputs(&base);
    let rolled = |objects: CellObjects| changed(&before, &rollout_inputs(&objects));
    let sorted = |mut names: Vec<String>| {
        names.sort();
        names
    };
    let using = |store: DatastoreKind| {
        service_names(&base, move |kind| {
            kind.default_datastores().contains(&store)
        })
    };

    // Datastore passwords: the server, and the services whose URL carries it.
    let mut expected = vec!["statefulset/redis".to_string()];
    expected.extend(using(DatastoreKind::Redis));
    assert_eq!(
        rolled(build(&with("redis-password"), "s3cr3t")),
        sorted(expected)
    );
    let mut expected = vec!["statefulset/postgres".to_string()];
    expected.extend(using(DatastoreKind::Postgres));
    assert_eq!(
        rolled(build(&with("postgres-password"), "s3cr3t")),
        sorted(expected)
    );
    let mut expected = vec!["statefulset/clickhouse".to_string()];
    expected.extend(using(DatastoreKind::ClickHouse));
    assert_eq!(
        rolled(build(&with("clickhouse-password"), "s3cr3t")),
        sorted(expected)
    );
    // The TURN secret: coturn and the videocall service that mints credentials from it.
    assert_eq!(
        rolled(build(&with("turn-secret"), "s3cr3t")),
        ["deployment/turn", "service/videocall"]
    );
    // The token key: every Titan service, no datastore or media server.
    assert_eq!(
        rolled(build(&with("auth-hs256-secret"), "s3cr3t")),
        sorted(service_names(&base, |_| true))
    );
    // The user's object storage Secret: the recorder's pod and the services that upload.
    let mut expected = vec!["deployment/rtmp".to_string()];
    expected.extend(service_names(&base, ServiceKind::uses_object_storage));
    assert_eq!(rolled(build(&credentials, "rotated")), sorted(expected));
    // The same values roll nothing.
    assert!(rolled(build(&credentials, "s3cr3t")).is_empty());
}

#[test]
fn the_service_controller_puts_the_cells_secrets_hash_on_the_pod_template() {
    let cell = example("manifests/examples/dev-cell.yaml");
    for service in built(&cell).services {
        let hash = service.annotations()["commerce.titan.dev/secrets-hash"].clone();
        let rendered = validate::validate(&service, "dev").expect("config");
        let deployment = service_build::build(&service, &CellView::of(&cell), &rendered)
            .expect("builds")
            .deployment;
        let annotations = deployment
            .spec
            .and_then(|s| s.template.metadata)
            .and_then(|m| m.annotations)
            .expect("annotations");
        assert_eq!(
            annotations.get("commerce.titan.dev/secrets-hash"),
            Some(&hash),
            "{}",
            service.name_any()
        );
    }
}

#[test]
fn spec_image_takes_a_tag_a_registry_port_or_a_digest() {
    let digest = "sha256:4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945";
    let pinned = format!("ghcr.io/titan/titan@{digest}");
    let tagged_pinned = format!("host:5000/titan/titan:0.1.0@{digest}");
    let table: [(&str, &str, &str); 6] = [
        ("ghcr.io/titan/titan", "ghcr.io/titan/titan:0.1.0", "0.1.0"),
        (
            "ghcr.io/titan/titan:0.1.0",
            "ghcr.io/titan/titan:0.1.0",
            "0.1.0",
        ),
        ("host:5000/titan", "host:5000/titan:0.1.0", "0.1.0"),
        ("host:5000/titan:0.1.0", "host:5000/titan:0.1.0", "0.1.0"),
        (&pinned, &pinned, "0.1.0"),
        (&tagged_pinned, &tagged_pinned, "0.1.0"),
    ];
    for (image, runs, version_label) in table {
        let mut cell = cell_fixture("minimal-cell.yaml");
        cell.spec.version = "0.1.0".into();
        cell.spec.image = image.into();
        let service = built(&cell)
            .services
            .into_iter()
            .find(|s| s.spec.service == ServiceKind::Coupon)
            .expect("coupon");
        assert_eq!(service.spec.image, runs, "{image}");
        let rendered = validate::validate(&service, &cell.name_any()).expect("config");
        let deployment = service_build::build(&service, &CellView::of(&cell), &rendered)
            .expect("builds")
            .deployment;
        assert_eq!(
            deployment_pod(&deployment).containers[0].image.as_deref(),
            Some(runs)
        );
        assert_eq!(
            deployment
                .labels()
                .get("app.kubernetes.io/version")
                .map(String::as_str),
            Some(version_label),
            "{image}"
        );
    }
}

#[test]
fn a_public_turn_server_keeps_client_addresses() {
    let policy = |cell: &Cell| {
        named(&built(cell).core_services, "turn")
            .spec
            .clone()
            .expect("spec")
            .external_traffic_policy
    };
    assert_eq!(
        policy(&example("manifests/examples/production-cell.yaml")).as_deref(),
        Some("Local"),
        "a LoadBalancer that SNATs would hide the peers' addresses"
    );
    assert_eq!(
        policy(&example("manifests/examples/dev-cell.yaml")),
        None,
        "a ClusterIP Service has no external traffic"
    );
}

#[test]
fn network_policies_admit_the_configured_dns_cloudnative_pg_and_monitoring() {
    use titan_operator::cell::isolation::{NetworkSettings, Peers};
    let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let cell = cell_fixture("full-cell.yaml");
    let credentials = Credentials::placeholders();
    let connections = connections::resolve(&cell, &credentials, &connections::Offline);
    let build = |settings: &NetworkSettings| {
        cell_build(&cell, &credentials, &Tls::default(), &connections, settings).network_policies
    };
    let peer = |policies: &[NetworkPolicy], name: &str| {
        let spec = named(policies, name).spec.clone().expect("spec");
        let peers = match spec.ingress {
            Some(rules) => rules[0].from.clone(),
            None => spec.egress.expect("egress")[0].to.clone(),
        };
        let peer = peers.expect("peers")[0].clone();
        (
            peer.namespace_selector.and_then(|s| s.match_labels),
            peer.pod_selector.and_then(|s| s.match_labels),
        )
    };

    // The defaults are what the policies always said.
    let defaults = build(&NetworkSettings::default());
    assert_eq!(
        peer(&defaults, "allow-dns"),
        (
            Some(labels(&[("kubernetes.io/metadata.name", "kube-system")])),
            Some(labels(&[("k8s-app", "kube-dns")]))
        )
    );
    assert_eq!(
        peer(&defaults, "allow-cloudnative-pg"),
        (
            Some(labels(&[("kubernetes.io/metadata.name", "cnpg-system")])),
            None
        )
    );
    assert!(
        defaults.iter().all(|p| p.name_any() != "allow-monitoring"),
        "no monitoring namespace is admitted unless one is configured"
    );

    let settings = NetworkSettings {
        dns: Peers {
            namespaces: labels(&[("kubernetes.io/metadata.name", "dns")]),
            pods: labels(&[("app", "coredns")]),
        },
        cloudnative_pg: Peers {
            namespaces: labels(&[("team", "databases")]),
            pods: labels(&[("app.kubernetes.io/name", "cloudnative-pg")]),
        },
        monitoring: Some(Peers {
            namespaces: labels(&[("kubernetes.io/metadata.name", "monitoring")]),
            pods: labels(&[("app.kubernetes.io/name", "prometheus")]),
        }),
    };
    let policies = build(&settings);
    assert_eq!(
        peer(&policies, "allow-dns"),
        (
            Some(settings.dns.namespaces.clone()),
            Some(settings.dns.pods.clone())
        )
    );
    assert_eq!(
        peer(&policies, "allow-cloudnative-pg"),
        (
            Some(settings.cloudnative_pg.namespaces.clone()),
            Some(settings.cloudnative_pg.pods.clone())
        )
    );
    let monitoring = settings.monitoring.clone().expect("monitoring");
    assert_eq!(
        peer(&policies, "allow-monitoring"),
        (Some(monitoring.namespaces), Some(monitoring.pods))
    );
    // Only the admin port of the Titan services' pods (the chart's cell PodMonitor scrapes
    // `admin` on pods with the service label).
    let spec = named(&policies, "allow-monitoring")
        .spec
        .clone()
        .expect("spec");
    let ports = spec.ingress.expect("ingress")[0]
        .ports
        .clone()
        .expect("ports");
    assert_eq!(ports.len(), 1);
    assert_eq!(
        ports[0].port,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(9090))
    );
    let selector = spec
        .pod_selector
        .expect("pods")
        .match_expressions
        .expect("expressions");
    assert_eq!(
        (selector[0].key.as_str(), selector[0].operator.as_str()),
        ("commerce.titan.dev/service", "Exists")
    );
    let validator = validator();
    for policy in &policies {
        validate_object(&validator, &serde_json::to_value(policy).expect("json")).expect("valid");
    }
}

/// A cloudnative-pg cell with `extra` merged into `spec.datastores.postgres`.
fn cloudnative_pg_cell(extra: serde_json::Value) -> Cell {
    let mut cell = cell_fixture("full-cell.yaml");
    let mut postgres = serde_json::to_value(&cell.spec.datastores.postgres).expect("json");
    for (key, value) in extra.as_object().expect("object") {
        postgres[key] = value.clone();
    }
    cell.spec.datastores.postgres = serde_json::from_value(postgres).expect("postgres");
    cell
}

#[test]
fn cloudnative_pg_backups_are_a_scheduled_backup_and_the_clusters_backup_section() {
    let validator = validator();
    let check = |objects: &CellObjects| {
        for value in all_values(objects) {
            validate_object(&validator, &value).expect("valid");
        }
    };
    // Without `backup`: WAL archiving to the object storage (as before), no schedule.
    let plain = built(&cell_fixture("full-cell.yaml"));
    assert!(plain.scheduled_backups.is_empty());

    let cell = cloudnative_pg_cell(serde_json::json!({
        "backup": {"schedule": "0 0 3 * * *", "retentionPolicy": "14d"}
    }));
    let objects = built(&cell);
    check(&objects);
    let scheduled = &objects.scheduled_backups[0];
    assert_eq!(scheduled.name_any(), "postgres");
    assert_eq!(
        serde_json::to_value(&scheduled.spec).expect("json"),
        serde_json::json!({
            "schedule": "0 0 3 * * *",
            "cluster": {"name": "postgres"},
            "method": "barmanObjectStore",
            "backupOwnerReference": "cluster",
        })
    );
    assert!(
        scheduled.owner_references().is_empty(),
        "kept with the Cluster under Retain"
    );
    let backup = objects.clusters[0].spec.backup.clone().expect("backup");
    assert_eq!(backup.retention_policy, "14d");
    assert_eq!(
        backup.barman_object_store.expect("store").destination_path,
        "s3://titan-eu-2/eu-2/postgres"
    );
    assert!(backup.volume_snapshot.is_none());

    let snapshots = built(&cloudnative_pg_cell(serde_json::json!({
        "backup": {"schedule": "@daily", "method": "volumeSnapshot", "volumeSnapshotClass": "csi-snap"}
    })));
    check(&snapshots);
    assert_eq!(snapshots.scheduled_backups[0].spec.method, "volumeSnapshot");
    let backup = snapshots.clusters[0].spec.backup.clone().expect("backup");
    assert_eq!(
        backup.volume_snapshot.and_then(|v| v.class_name).as_deref(),
        Some("csi-snap")
    );
    assert!(
        backup.barman_object_store.is_some(),
        "the WAL is still archived, for point-in-time recovery"
    );
}

#[test]
fn a_new_cloudnative_pg_cell_can_start_from_another_cells_backups_or_a_snapshot() {
    let validator = validator();
    let restored = built(&cloudnative_pg_cell(serde_json::json!({
        "restore": {"cell": "eu-1", "targetTime": "2026-12-01T10:00:00Z"}
    })));
    for value in all_values(&restored) {
        validate_object(&validator, &value).expect("valid");
    }
    let cluster = serde_json::to_value(&restored.clusters[0].spec).expect("json");
    assert_eq!(
        cluster["bootstrap"],
        serde_json::json!({"recovery": {
            "source": "origin",
            "recoveryTarget": {"targetTime": "2026-12-01T10:00:00Z"},
            "database": "titan",
            "owner": "titan",
        }})
    );
    assert_eq!(
        cluster["externalClusters"],
        serde_json::json!([{"name": "origin", "barmanObjectStore": {
            "destinationPath": "s3://titan-eu-2/eu-1/postgres",
            "endpointURL": "https://s3.eu-west-1.amazonaws.com",
            "s3Credentials": {
                "accessKeyId": {"name": "s3-creds", "key": "accessKeyId"},
                "secretAccessKey": {"name": "s3-creds", "key": "secretAccessKey"},
            },
            "serverName": "postgres",
        }}])
    );
    // It archives to its own path, so the backups it started from are never written over.
    assert_eq!(
        cluster["backup"]["barmanObjectStore"]["destinationPath"],
        "s3://titan-eu-2/eu-2/postgres"
    );

    let from_path = built(&cloudnative_pg_cell(serde_json::json!({
        "restore": {"destinationPath": "s3://old-bucket/x/postgres"}
    })));
    assert_eq!(
        from_path.clusters[0].spec.external_clusters[0]
            .barman_object_store
            .destination_path,
        "s3://old-bucket/x/postgres"
    );

    let snapshot = built(&cloudnative_pg_cell(serde_json::json!({
        "restore": {"volumeSnapshot": "postgres-20261201"}
    })));
    for value in all_values(&snapshot) {
        validate_object(&validator, &value).expect("valid");
    }
    let cluster = serde_json::to_value(&snapshot.clusters[0].spec).expect("json");
    assert_eq!(
        cluster["bootstrap"],
        serde_json::json!({"recovery": {
            "volumeSnapshots": {"storage": {
                "name": "postgres-20261201",
                "kind": "VolumeSnapshot",
                "apiGroup": "snapshot.storage.k8s.io",
            }},
            "database": "titan",
            "owner": "titan",
        }})
    );
    assert!(cluster.get("externalClusters").is_none());
}

/// The schedule is applied with the Cluster, costs no write once applied, and goes when the
/// cell's backups are turned off (the Cluster stays).
#[tokio::test]
async fn a_scheduled_backup_is_applied_once_and_removed_when_backups_are_off() {
    use kube::api::{Api, Patch, PatchParams};
    use titan_operator::cnpg::{Cluster, ScheduledBackup};

    use crate::{
        reconcile::{context, create_cell, round},
        support::{Fake, seed_full_cell_secrets},
    };

    let fake = Fake::new().await;
    let ctx = context(&fake);
    seed_full_cell_secrets(&fake).await;
    let cell = cloudnative_pg_cell(serde_json::json!({
        "backup": {"schedule": "@daily"}
    }));
    create_cell(&fake, &cell).await;
    let ns = cell.namespace_name();
    round(&fake, &ctx, "eu-2", &ns).await;
    let schedules = Api::<ScheduledBackup>::namespaced(fake.client.clone(), &ns);
    let applied = schedules
        .get("postgres")
        .await
        .expect("the schedule exists");
    assert_eq!(applied.spec.schedule, "@daily");
    assert_eq!(applied.spec.cluster.name, "postgres");

    round(&fake, &ctx, "eu-2", &ns).await;
    let writes = fake.writes();
    round(&fake, &ctx, "eu-2", &ns).await;
    assert_eq!(fake.writes() - writes, 0, "writes on an unchanged spec");

    Api::<Cell>::all(fake.client.clone())
        .patch(
            "eu-2",
            &PatchParams::default(),
            &Patch::Merge(
                serde_json::json!({"spec": {"datastores": {"postgres": {"backup": null}}}}),
            ),
        )
        .await
        .expect("turn backups off");
    round(&fake, &ctx, "eu-2", &ns).await;
    assert!(
        schedules.get_opt("postgres").await.expect("get").is_none(),
        "the schedule is gone"
    );
    assert!(
        Api::<Cluster>::namespaced(fake.client.clone(), &ns)
            .get_opt("postgres")
            .await
            .expect("get")
            .is_some(),
        "the Cluster stays"
    );
}

#[test]
fn a_changed_external_datastore_secret_rolls_only_the_services_that_use_it() {
    let cell = cell_fixture("external-cell.yaml");
    let credentials = Credentials::resolve(None, || "pw".into());
    let build = |redis_url: &str| {
        let source = secrets(&[
            ("pg-ext", &[("url", "postgres://pg.example/titan")]),
            ("redis-ext", &[("url", redis_url)]),
        ]);
        let connections = connections::resolve(&cell, &credentials, &source);
        cell_build(
            &cell,
            &credentials,
            &Tls::default(),
            &connections,
            &Default::default(),
        )
    };
    let before = build("redis://:one@redis.example:6379");
    let after = build("redis://:two@redis.example:6379");
    let mut expected = service_names(&before, |kind| {
        kind.default_datastores().contains(&DatastoreKind::Redis)
    });
    expected.sort();
    assert!(!expected.is_empty());
    assert_eq!(
        changed(&rollout_inputs(&before), &rollout_inputs(&after)),
        expected,
        "no builtin datastore reads an external Secret"
    );
}
