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
    Cell, ServiceKind,
    cell::{ComponentStatus, DatastoresStatus, DeletionPolicy},
};
use titan_operator::{
    cell::{
        build::{CellObjects, build as cell_build},
        connections::{self, Lookup, SecretSource},
        credentials::{self, Credentials},
        observe::{self, Components},
        status,
    },
    conditions,
    service::{
        build::{self as service_build, CellView},
        validate,
    },
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
        deployments,
        services,
    } = objects;
    [
        values(std::slice::from_ref(namespace)),
        values(resource_quotas),
        values(limit_ranges),
        values(network_policies),
        values(secrets),
        values(config_maps),
        values(core_services),
        values(stateful_sets),
        values(clusters),
        values(deployments),
        values(services),
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
    assert_eq!(cluster.spec.bootstrap.initdb.database, "titan");
    let store = &cluster
        .spec
        .backup
        .as_ref()
        .expect("backup")
        .barman_object_store;
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
    let objects = cell_build(&cell, &credentials, &connections);
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
    let objects = cell_build(&cell, &credentials, &connections);
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
