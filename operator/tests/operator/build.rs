//! The pure stages from YAML fixtures: what a Cell and a Service build, and that every object is
//! valid against the Kubernetes OpenAPI schema.

use k8s_openapi::api::apps::v1::Deployment;
use kube::ResourceExt;
use titan_crds::{Cell, Service, ServiceKind, ServiceStatus};
use titan_operator::{
    cell::status as cell_status,
    labels,
    render::{Inputs, render},
    service::{
        build::{self as service_build, ServiceObjects},
        migration::MigrationJob,
        validate,
    },
    shared::CellView,
};

use crate::support::{
    built, cell_fixture, repo_path, test_path, validate as validate_object, validator,
};

fn services_of(cell: &Cell) -> Vec<Service> {
    built(cell).services
}

fn objects_of(cell: &Cell, service: &Service) -> ServiceObjects {
    let rendered = validate::validate(service, &cell.name_any()).expect("valid config");
    service_build::build(service, &CellView::of(cell), &rendered).expect("builds")
}

fn deployment_of(cell: &Cell, name: &str) -> Deployment {
    let service = services_of(cell)
        .into_iter()
        .find(|s| s.name_any() == name)
        .expect("service");
    objects_of(cell, &service).deployment
}

#[test]
fn a_minimal_cell_builds_its_namespace_and_all_fifteen_services() {
    let cell = cell_fixture("minimal-cell.yaml");
    let objects = built(&cell);
    assert_eq!(objects.namespace.name_any(), "titan-sg-1");
    let ns_labels = objects.namespace.labels();
    assert_eq!(ns_labels[labels::CELL], "sg-1");
    assert_eq!(ns_labels["app.kubernetes.io/managed-by"], "titan-operator");
    let names: Vec<String> = objects.services.iter().map(ResourceExt::name_any).collect();
    let expected: Vec<String> = ServiceKind::TITAN.iter().map(|k| k.to_string()).collect();
    assert_eq!(names, expected);
    for service in &objects.services {
        assert_eq!(service.namespace().as_deref(), Some("titan-sg-1"));
        assert_eq!(service.spec.image, "ghcr.io/titan/titan:0.1.0");
        assert_eq!(
            service.spec.replicas, None,
            "the cell does not own replicas it does not set"
        );
        for key in [
            "app.kubernetes.io/name",
            "app.kubernetes.io/instance",
            "app.kubernetes.io/component",
            "app.kubernetes.io/part-of",
            "app.kubernetes.io/managed-by",
            "app.kubernetes.io/version",
            labels::CELL,
        ] {
            assert!(service.labels().contains_key(key), "{key}");
        }
    }
    // Retain (the default) keeps the namespace out of garbage collection.
    assert!(objects.namespace.metadata.owner_references.is_none());
}

#[test]
fn a_full_cell_builds_every_object_and_each_is_valid_against_the_openapi_schema() {
    let cell = cell_fixture("full-cell.yaml");
    let validator = validator();
    let objects = built(&cell);
    assert_eq!(objects.namespace.name_any(), "commerce-eu-2");
    validate_object(
        &validator,
        &serde_json::to_value(&objects.namespace).expect("json"),
    )
    .expect("namespace valid");
    let mut count = 1;
    for service in &objects.services {
        validate_object(&validator, &serde_json::to_value(service).expect("json"))
            .expect("service valid");
        let ServiceObjects {
            config_map,
            core_service,
            deployment,
            pdb,
            hpa,
            migration,
        } = objects_of(&cell, service);
        let mut values = vec![
            serde_json::to_value(&config_map),
            serde_json::to_value(&deployment),
            serde_json::to_value(&pdb),
        ];
        values.extend(core_service.iter().map(serde_json::to_value));
        values.extend(hpa.iter().map(serde_json::to_value));
        if let MigrationJob::Run(job) = &migration {
            values.push(serde_json::to_value(job));
        }
        for value in values {
            let value = value.expect("json");
            validate_object(&validator, &value).unwrap_or_else(|e| panic!("{e}"));
            count += 1;
        }
    }
    // 1 namespace + 16 × (ConfigMap, Deployment, PDB, core Service, migration Job) + 1
    // autoscaler (fraud).
    assert_eq!(count, 1 + 16 * 5 + 1);
}

#[test]
fn replicas_are_set_only_when_the_cell_sets_them() {
    let cell = cell_fixture("full-cell.yaml");
    assert_eq!(
        deployment_of(&cell, "flashsale")
            .spec
            .expect("spec")
            .replicas,
        Some(3)
    );
    assert_eq!(
        deployment_of(&cell, "tracking")
            .spec
            .expect("spec")
            .replicas,
        None
    );
}

#[test]
fn a_deployment_runs_titan_serve_with_probes_ports_and_datastore_secrets() {
    let cell = cell_fixture("full-cell.yaml");
    let deployment = deployment_of(&cell, "fraud");
    let pod = deployment
        .spec
        .expect("spec")
        .template
        .spec
        .expect("pod spec");
    let container = &pod.containers[0];
    assert_eq!(
        container.command.clone().expect("command"),
        [
            "titan",
            "serve",
            "fraud",
            "--config",
            "/etc/titan/config.yaml"
        ]
    );
    let ports: Vec<(String, i32)> = container
        .ports
        .iter()
        .flatten()
        .map(|p| (p.name.clone().unwrap_or_default(), p.container_port))
        .collect();
    assert_eq!(
        ports,
        [
            ("grpc".into(), 50051),
            ("http".into(), 8080),
            ("admin".into(), 9090)
        ]
    );
    let probe_path = |p: &Option<k8s_openapi::api::core::v1::Probe>| {
        p.as_ref()
            .and_then(|p| p.http_get.as_ref())
            .and_then(|h| h.path.clone())
    };
    assert_eq!(
        probe_path(&container.liveness_probe).as_deref(),
        Some("/healthz")
    );
    assert_eq!(
        probe_path(&container.readiness_probe).as_deref(),
        Some("/readyz")
    );
    let env: Vec<(String, String, String)> = container
        .env
        .iter()
        .flatten()
        .map(|e| {
            let r = e
                .value_from
                .as_ref()
                .and_then(|v| v.secret_key_ref.as_ref())
                .expect("secret ref");
            (e.name.clone(), r.name.clone(), r.key.clone())
        })
        .collect();
    assert_eq!(
        env,
        [
            (
                "TITAN_POSTGRES_URL".into(),
                "eu-2-datastores".into(),
                "TITAN_POSTGRES_URL".into()
            ),
            (
                "TITAN_REDIS_URL".into(),
                "eu-2-datastores".into(),
                "TITAN_REDIS_URL".into()
            ),
            (
                "TITAN_CLICKHOUSE_URL".into(),
                "eu-2-datastores".into(),
                "TITAN_CLICKHOUSE_URL".into()
            ),
            (
                "TITAN_CLICKHOUSE_USER".into(),
                "eu-2-datastores".into(),
                "TITAN_CLICKHOUSE_USER".into()
            ),
            (
                "TITAN_CLICKHOUSE_PASSWORD".into(),
                "eu-2-datastores".into(),
                "TITAN_CLICKHOUSE_PASSWORD".into()
            ),
            (
                "TITAN_AUTH_HS256_SECRET".into(),
                "eu-2-auth".into(),
                "TITAN_AUTH_HS256_SECRET".into()
            ),
        ]
    );
}

#[test]
fn the_config_map_holds_the_typed_config_with_defaults_and_a_change_rolls_the_pods() {
    let mut cell = cell_fixture("full-cell.yaml");
    let service = services_of(&cell)
        .into_iter()
        .find(|s| s.name_any() == "flashsale")
        .expect("flashsale");
    let objects = objects_of(&cell, &service);
    let file = &objects.config_map.data.as_ref().expect("data")["config.yaml"];
    let parsed: serde_yaml::Value = serde_yaml::from_str(file).expect("yaml");
    assert_eq!(parsed["cell"].as_str(), Some("eu-2"));
    assert_eq!(
        parsed["services"]["flashsale"]["reservationTtlSeconds"].as_u64(),
        Some(600)
    );
    assert_eq!(
        parsed["services"]["flashsale"]["defaultMaxPerUser"].as_u64(),
        Some(2)
    );
    // Defaults are written out, so the pod runs exactly what was validated.
    assert_eq!(
        parsed["services"]["flashsale"]["rateLimitBurst"].as_u64(),
        Some(10)
    );

    let hash = |d: Deployment| {
        d.spec
            .expect("spec")
            .template
            .metadata
            .expect("meta")
            .annotations
            .expect("ann")[labels::CONFIG_HASH]
            .clone()
    };
    let before = hash(objects.deployment);
    cell.spec
        .services
        .flashsale
        .as_mut()
        .expect("flashsale")
        .config
        .as_mut()
        .expect("config")
        .default_max_per_user = 3;
    let after = hash(deployment_of(&cell, "flashsale"));
    assert_ne!(before, after);
    assert_eq!(
        hash(deployment_of(&cell, "coupon")),
        hash(deployment_of(&cell_fixture("full-cell.yaml"), "coupon"))
    );
}

/// kit's WebSocket gate reads `realtime:` from the rendered file: a service's own
/// `allowedOrigins` go there, and clients without `Origin` (apps, servers) are let in on their
/// token, so a cell's WebSockets serve at all.
#[test]
fn websocket_origins_reach_the_runtime_of_their_service_only() {
    let cell = cell_fixture("full-cell.yaml");
    let realtime = |name: &str| {
        let service = services_of(&cell)
            .into_iter()
            .find(|s| s.name_any() == name)
            .expect("service");
        let objects = objects_of(&cell, &service);
        let text = objects.config_map.data.as_ref().expect("data")["config.yaml"].clone();
        titan_kit::config::Config::from_sources(Some(&text), |name| match name {
            "TITAN_AUTH_HS256_SECRET" => Some("from-the-cell-auth-secret-32-bytes!".to_owned()),
            _ => None,
        })
        .unwrap_or_else(|e| panic!("{name}: {e}\n{text}"))
        .realtime
    };
    let chat = realtime("chat");
    assert_eq!(
        chat.allowed_origins,
        vec!["https://shop.example".to_owned()]
    );
    assert!(chat.allow_missing_origin);
    let flashsale = realtime("flashsale");
    assert_eq!(
        flashsale.allowed_origins,
        vec!["https://sale.shop.example".to_owned()]
    );
    assert!(flashsale.allow_missing_origin);
    let coupon = realtime("coupon");
    assert_eq!(coupon.allowed_origins, Vec::<String>::new());
    assert!(coupon.allow_missing_origin);
}

/// `spec.auth` reaches every Titan process as kit's variables: what kit then reads from the
/// rendered file and variables is the Cell's provider, and a cell without it sets none.
/// The runtime config kit reads in `service`'s pod of `cell`: its config file and the
/// variables its container sets (a Secret's value only for the token key, which kit requires).
fn runtime_config_of(cell: &Cell, service: &Service) -> titan_kit::config::Config {
    let objects = objects_of(cell, service);
    let text = objects.config_map.data.as_ref().expect("data")["config.yaml"].clone();
    let pod = objects
        .deployment
        .spec
        .expect("spec")
        .template
        .spec
        .expect("pod");
    let env = pod.containers[0].env.clone().unwrap_or_default();
    titan_kit::config::Config::from_sources(Some(&text), |name| {
        let var = env.iter().find(|e| e.name == name)?;
        // The token key's Secret reference stands for what the cell's auth Secret holds; the
        // datastores' are not needed to read these settings.
        var.value.clone().or_else(|| {
            (name == "TITAN_AUTH_HS256_SECRET")
                .then(|| "from-the-cell-auth-secret-32-bytes!".to_owned())
        })
    })
    .unwrap_or_else(|e| panic!("{}: {e}", service.name_any()))
}

/// `spec.tracing` reaches every Titan process as kit's tracing settings; without it none
/// exports.
#[test]
fn the_cells_collector_reaches_every_titan_process() {
    let mut cell = cell_fixture("minimal-cell.yaml");
    for service in services_of(&cell) {
        let tracing = runtime_config_of(&cell, &service).tracing;
        assert_eq!(
            (tracing.otlp_endpoint, tracing.sample_ratio),
            (None, 1.0),
            "{}",
            service.name_any()
        );
    }
    cell.spec.tracing = serde_yaml::from_str(
        "{otlpEndpoint: 'http://otel-collector.observability:4317', sampleRatio: '0.25'}",
    )
    .expect("tracing");
    let services = services_of(&cell);
    assert_eq!(services.len(), ServiceKind::TITAN.len());
    for service in services {
        let tracing = runtime_config_of(&cell, &service).tracing;
        assert_eq!(
            (tracing.otlp_endpoint.as_deref(), tracing.sample_ratio),
            (Some("http://otel-collector.observability:4317"), 0.25),
            "{}",
            service.name_any()
        );
    }
}

#[test]
fn the_cells_identity_provider_reaches_every_titan_process() {
    let auth_of = |cell: &Cell, service: &Service| runtime_config_of(cell, service).auth;
    let mut cell = cell_fixture("minimal-cell.yaml");
    for service in services_of(&cell) {
        let auth = auth_of(&cell, &service);
        assert_eq!(
            (auth.jwks, auth.issuer, auth.audience),
            (None, None, None),
            "{}",
            service.name_any()
        );
    }
    cell.spec.auth = serde_yaml::from_str(
        "{jwksUrl: 'https://id.shop.example/.well-known/jwks.json', issuer: 'https://id.shop.example/', audience: titan}",
    )
    .expect("auth");
    let services = services_of(&cell);
    assert_eq!(services.len(), ServiceKind::TITAN.len());
    for service in services {
        let auth = auth_of(&cell, &service);
        assert_eq!(
            (
                auth.jwks.map(|j| j.url),
                auth.issuer.as_deref(),
                auth.audience.as_deref()
            ),
            (
                Some("https://id.shop.example/.well-known/jwks.json".to_owned()),
                Some("https://id.shop.example/"),
                Some("titan")
            ),
            "{}",
            service.name_any()
        );
        assert!(auth.hs256_secret.is_some(), "the cell's own key stays");
    }
}

/// videocall's TURN URIs: without its own `turn.uris` the rendered file carries the cell's
/// TURN URIs (the ones in the Cell's status), with its own list that list, and a cell without
/// a TURN server writes none.
#[test]
fn videocall_gets_the_cells_turn_uris_unless_it_lists_its_own() {
    let turn_uris = |cell: &Cell| {
        let service = services_of(cell)
            .into_iter()
            .find(|s| s.name_any() == "videocall")
            .expect("videocall");
        let objects = objects_of(cell, &service);
        let text = &objects.config_map.data.as_ref().expect("data")["config.yaml"];
        let parsed: serde_yaml::Value = serde_yaml::from_str(text).expect("yaml");
        parsed["services"]["videocall"]["turn"]["uris"]
            .as_sequence()
            .map(|uris| {
                uris.iter()
                    .map(|u| u.as_str().expect("a string").to_owned())
                    .collect::<Vec<_>>()
            })
    };
    let text = std::fs::read_to_string(repo_path("manifests/examples/production-cell.yaml"))
        .expect("production cell");
    let mut production: Cell = serde_yaml::from_str(&text).expect("a Cell");
    let own = vec![
        "turn:203.0.113.7:3478?transport=udp".to_owned(),
        "turn:203.0.113.7:3478?transport=tcp".to_owned(),
    ];
    assert_eq!(turn_uris(&production), Some(own));

    production
        .spec
        .services
        .videocall
        .get_or_insert_with(Default::default)
        .config
        .get_or_insert_with(Default::default)
        .turn
        .uris = vec![];
    let from_status = titan_operator::cell::observe::turn_uris(&production);
    assert_eq!(
        from_status,
        vec![
            "turn:203.0.113.7:3478?transport=udp".to_owned(),
            "turn:203.0.113.7:3478?transport=tcp".to_owned()
        ]
    );
    production
        .spec
        .media
        .turn
        .as_mut()
        .expect("turn")
        .external_address = None;
    let in_cluster = vec![
        "turn:turn.titan-sg-1.svc:3478?transport=udp".to_owned(),
        "turn:turn.titan-sg-1.svc:3478?transport=tcp".to_owned(),
    ];
    assert_eq!(
        titan_operator::cell::observe::turn_uris(&production),
        in_cluster
    );
    assert_eq!(turn_uris(&production), Some(in_cluster));

    production.spec.media.turn.as_mut().expect("turn").enabled = false;
    assert_eq!(turn_uris(&production), Some(vec![]));
}

/// livestream's playback URLs: without its own `hlsBaseUrl` the rendered file carries the
/// cell's HLS base (the one in the Cell's status), with one the cell's own, and a cell without
/// an RTMP server writes none.
#[test]
fn livestream_gets_the_cells_hls_base_unless_it_sets_its_own() {
    let hls_base_url = |cell: &Cell| {
        let service = services_of(cell)
            .into_iter()
            .find(|s| s.name_any() == "livestream")
            .expect("livestream");
        let objects = objects_of(cell, &service);
        let text = &objects.config_map.data.as_ref().expect("data")["config.yaml"];
        let parsed: serde_yaml::Value = serde_yaml::from_str(text).expect("yaml");
        parsed["services"]["livestream"]["hlsBaseUrl"]
            .as_str()
            .map(str::to_owned)
    };
    let text = std::fs::read_to_string(repo_path("manifests/examples/production-cell.yaml"))
        .expect("production cell");
    let mut production: Cell = serde_yaml::from_str(&text).expect("a Cell");
    assert_eq!(
        hls_base_url(&production).as_deref(),
        Some("http://live.sg-1.titan.example:80/hls")
    );
    assert_eq!(
        titan_operator::cell::observe::hls_base(&production).as_deref(),
        Some("http://live.sg-1.titan.example:80/hls")
    );

    production
        .spec
        .services
        .livestream
        .get_or_insert_with(Default::default)
        .config
        .get_or_insert_with(Default::default)
        .hls_base_url = Some("https://cdn.example/hls".into());
    assert_eq!(
        hls_base_url(&production).as_deref(),
        Some("https://cdn.example/hls")
    );

    assert_eq!(hls_base_url(&cell_fixture("full-cell.yaml")), None);
}

#[test]
fn autoscaling_targets_the_service_scale_subresource() {
    let cell = cell_fixture("full-cell.yaml");
    let service = services_of(&cell)
        .into_iter()
        .find(|s| s.name_any() == "fraud")
        .expect("fraud");
    let hpa = objects_of(&cell, &service)
        .hpa
        .expect("autoscaler")
        .spec
        .expect("spec");
    assert_eq!(hpa.scale_target_ref.kind, "Deployment");
    assert_eq!(hpa.scale_target_ref.api_version.as_deref(), Some("apps/v1"));
    assert_eq!(hpa.scale_target_ref.name, "fraud");
    assert_eq!((hpa.min_replicas, hpa.max_replicas), (Some(2), 10));
    assert_eq!(
        deployment_of(&cell, "fraud").spec.expect("spec").replicas,
        None
    );
}

#[test]
fn a_stopped_cell_scales_to_zero_and_drops_the_autoscaler() {
    let mut cell = cell_fixture("full-cell.yaml");
    cell.spec.operation.stopped = true;
    let service = services_of(&cell)
        .into_iter()
        .find(|s| s.name_any() == "fraud")
        .expect("fraud");
    let objects = objects_of(&cell, &service);
    assert_eq!(objects.deployment.spec.expect("spec").replicas, Some(0));
    assert!(objects.hpa.is_none());
}

#[test]
fn deletion_policy_delete_lets_the_cell_own_its_namespace() {
    let mut cell = cell_fixture("minimal-cell.yaml");
    cell.metadata.uid = Some("uid-1".into());
    cell.spec.deletion_policy = titan_crds::cell::DeletionPolicy::Delete;
    let owners = built(&cell)
        .namespace
        .metadata
        .owner_references
        .expect("owner");
    assert_eq!(owners[0].uid, "uid-1");
    assert_eq!(owners[0].controller, Some(true));
}

#[test]
fn a_config_that_breaks_a_rule_is_refused_with_the_field() {
    let cell = cell_fixture("bad-config-cell.yaml");
    let service = services_of(&cell)
        .into_iter()
        .find(|s| s.name_any() == "flashsale")
        .expect("flashsale");
    let error = validate::validate(&service, "bad").expect_err("invalid");
    assert_eq!(error.reason(), "InvalidConfig");
    assert_eq!(
        error.to_string(),
        "flashsale.sweepIntervalMs: 5000 ms is not shorter than the reservation TTL of 1 s: sweep more often"
    );
    let invalid = titan_operator::cell::validate::invalid_configs(&cell);
    assert_eq!(invalid.len(), 1);
}

#[test]
fn pod_overrides_merge_into_the_pod_template_and_bad_ones_are_refused() {
    let cell = cell_fixture("full-cell.yaml");
    let pod = deployment_of(&cell, "shipping")
        .spec
        .expect("spec")
        .template
        .spec
        .expect("pod");
    let tolerations = pod.tolerations.expect("tolerations");
    assert_eq!(tolerations[0].key.as_deref(), Some("dedicated"));
    assert_eq!(
        pod.containers.len(),
        1,
        "overrides keep what they do not mention"
    );

    let mut service = services_of(&cell)
        .into_iter()
        .find(|s| s.name_any() == "shipping")
        .expect("shipping");
    service.spec.pod_overrides = Some(serde_json::json!({"spec": {"containers": "nope"}}));
    let rendered = validate::validate(&service, "eu-2").expect("config valid");
    let error =
        service_build::build(&service, &CellView::of(&cell), &rendered).expect_err("bad overrides");
    assert_eq!(error.reason(), "InvalidPodOverrides");
}

#[test]
fn a_custom_worker_runs_its_own_command_without_a_core_service() {
    let mut inputs = Inputs::default();
    for file in [
        "manifests/examples/dev-cell.yaml",
        "manifests/examples/custom-service.yaml",
    ] {
        let text = std::fs::read_to_string(repo_path(file)).expect("example");
        inputs.add(file, &text).expect("parses");
    }
    let cell = inputs.cells[0].clone();
    let worker = inputs.services[0].clone();
    let objects = objects_of(&cell, &worker);
    assert!(objects.core_service.is_none());
    let container = &objects
        .deployment
        .spec
        .expect("spec")
        .template
        .spec
        .expect("pod")
        .containers[0];
    assert_eq!(
        container.command.clone().expect("command"),
        ["report-worker"]
    );
    assert!(container.readiness_probe.is_none());
    let env: Vec<String> = container
        .env
        .iter()
        .flatten()
        .map(|e| e.name.clone())
        .collect();
    assert_eq!(env, ["TITAN_POSTGRES_URL", "TITAN_REDIS_URL"]);
}

/// Renders example files, checks every object against its schema, compares the output with the
/// committed snapshot (rewritten with `TITAN_BLESS=1`), and returns `(apiVersion/kind, count)`.
fn render_examples(files: &[&str], snapshot: &str) -> Vec<(String, usize)> {
    let mut inputs = Inputs::default();
    for file in files {
        let text = std::fs::read_to_string(repo_path(file)).expect("example");
        inputs.add(file, &text).expect("parses");
    }
    let output = render(&inputs).expect("renders");
    let validator = validator();
    let mut kinds = std::collections::BTreeMap::<String, usize>::new();
    for document in serde_yaml::Deserializer::from_str(&output) {
        let value: serde_json::Value = serde::Deserialize::deserialize(document).expect("yaml");
        validate_object(&validator, &value).unwrap_or_else(|e| panic!("{e}"));
        *kinds
            .entry(format!(
                "{}/{}",
                value["apiVersion"].as_str().unwrap_or_default(),
                value["kind"].as_str().unwrap_or_default()
            ))
            .or_default() += 1;
    }
    let path = test_path(&format!("snapshots/{snapshot}"));
    if std::env::var_os("TITAN_BLESS").is_some() {
        std::fs::write(&path, &output).expect("write snapshot");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == output,
        "the rendering of {files:?} changed: review `titan-operator render -f ...` and re-run this test with TITAN_BLESS=1"
    );
    kinds.into_iter().collect()
}

fn counts(expected: &[(&str, usize)]) -> Vec<(String, usize)> {
    expected.iter().map(|(k, n)| (k.to_string(), *n)).collect()
}

#[test]
fn the_dev_cell_renders_a_valid_complete_set_matching_the_snapshot() {
    let kinds = render_examples(
        &[
            "manifests/examples/dev-cell.yaml",
            "manifests/examples/custom-service.yaml",
        ],
        "dev-cell.yaml",
    );
    // chat is disabled: 15 Titan services and the custom worker; all datastores builtin; TURN
    // and RTMP; no capacity, so no quota.
    let expected = counts(&[
        // 16 services + turn + rtmp.
        ("apps/v1/Deployment", 18),
        ("apps/v1/StatefulSet", 3),
        ("autoscaling/v2/HorizontalPodAutoscaler", 1),
        // One migration Job per Titan service (not the custom worker).
        ("batch/v1/Job", 15),
        ("commerce.titan.dev/v1alpha1/Service", 16),
        // deny, within, dns, outside, services, turn, rtmp.
        ("networking.k8s.io/v1/NetworkPolicy", 7),
        ("policy/v1/PodDisruptionBudget", 16),
        ("v1/ConfigMap", 18),
        ("v1/LimitRange", 1),
        ("v1/Namespace", 1),
        // credentials, auth, turn, datastores.
        ("v1/Secret", 4),
        // 15 services + 3 headless + turn + rtmp.
        ("v1/Service", 20),
    ]);
    assert_eq!(kinds, expected);
}

#[test]
fn the_production_cell_renders_a_valid_complete_set_matching_the_snapshot() {
    let kinds = render_examples(
        &["manifests/examples/production-cell.yaml"],
        "production-cell.yaml",
    );
    let expected = counts(&[
        ("apps/v1/Deployment", 18),
        // Redis only: PostgreSQL on CloudNativePG, ClickHouse external.
        ("apps/v1/StatefulSet", 1),
        ("autoscaling/v2/HorizontalPodAutoscaler", 1),
        ("batch/v1/Job", 16),
        ("commerce.titan.dev/v1alpha1/Service", 16),
        // spec.edge: every service's gRPC, and the HTTP paths of five.
        ("gateway.networking.k8s.io/v1/GRPCRoute", 1),
        ("gateway.networking.k8s.io/v1/HTTPRoute", 1),
        // ... plus the CloudNativePG operator's way in.
        ("networking.k8s.io/v1/NetworkPolicy", 8),
        ("policy/v1/PodDisruptionBudget", 16),
        ("postgresql.cnpg.io/v1/Cluster", 1),
        ("v1/ConfigMap", 18),
        ("v1/LimitRange", 1),
        ("v1/Namespace", 1),
        ("v1/ResourceQuota", 1),
        ("v1/Secret", 4),
        // 16 services + redis + turn + rtmp.
        ("v1/Service", 19),
    ]);
    assert_eq!(kinds, expected);
}

#[test]
fn render_refuses_a_service_without_its_cell() {
    let mut inputs = Inputs::default();
    let text = std::fs::read_to_string(repo_path("manifests/examples/custom-service.yaml"))
        .expect("example");
    inputs.add("custom-service.yaml", &text).expect("parses");
    let error = render(&inputs).expect_err("no cell");
    assert!(
        error.to_string().contains("which is not among the inputs"),
        "{error}"
    );
}

fn child(generation: i64, observed: i64, ready: bool) -> Service {
    let cell = cell_fixture("minimal-cell.yaml");
    let mut service = services_of(&cell).remove(0);
    service.metadata.generation = Some(generation);
    service.status = Some(ServiceStatus {
        observed_generation: Some(observed),
        conditions: vec![k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
            type_: "Ready".into(),
            status: if ready { "True" } else { "False" }.into(),
            reason: "Test".into(),
            message: String::new(),
            observed_generation: Some(observed),
            last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ),
        }],
        ..Default::default()
    });
    service
}

#[test]
fn a_child_counts_as_ready_only_once_it_observed_its_generation() {
    assert!(cell_status::child_ready(&child(2, 2, true)));
    assert!(
        !cell_status::child_ready(&child(3, 2, true)),
        "a Ready from an older spec does not count"
    );
    assert!(!cell_status::child_ready(&child(2, 2, false)));
}

/// The contract between the operator and the `titan` binary: the config file the operator
/// mounts is one the runtime accepts (with the Secrets' variables it gets from the
/// Deployment), and each service's section is one its typed config accepts.
#[test]
fn every_rendered_config_file_is_accepted_by_the_runtime() {
    let text =
        std::fs::read_to_string(repo_path("manifests/examples/dev-cell.yaml")).expect("example");
    let cell: Cell = serde_yaml::from_str(&text).expect("the example is a Cell");
    let mut checked = 0;
    for service in services_of(&cell) {
        let objects = objects_of(&cell, &service);
        let data = objects.config_map.data.as_ref().expect("config map data");
        let text = data.get("config.yaml").expect("config.yaml key");
        let env = |name: &str| match name {
            "TITAN_AUTH_HS256_SECRET" => Some("from-the-cell-auth-secret-32-bytes!".to_owned()),
            "TITAN_POSTGRES_URL" => Some("postgres://titan@postgres:5432/titan".to_owned()),
            "TITAN_REDIS_URL" => Some("redis://redis:6379".to_owned()),
            _ => None,
        };
        let config = titan_kit::config::Config::from_sources(Some(text), env)
            .unwrap_or_else(|e| panic!("{}: {e}\n{text}", service.name_any()));
        assert_eq!(config.cell, cell.name_any());
        if service.spec.service == ServiceKind::Flashsale {
            use titan_crds::config::TitanConfig;
            let section = config.services.get("flashsale").cloned();
            titan_crds::config::FlashsaleConfig::from_yaml(section)
                .expect("flashsale section parses");
        }
        checked += 1;
    }
    assert!(
        checked >= 14,
        "every enabled service of the dev cell was checked"
    );
}
