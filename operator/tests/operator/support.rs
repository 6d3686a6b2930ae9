//! Test support: fixtures, an OpenAPI validator for every object the operator builds, and a
//! fake API server that counts writes and can be told to fail.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

use k8s_openapi::api::{
    apps::v1::{Deployment, StatefulSet},
    autoscaling::v2::HorizontalPodAutoscaler,
    batch::v1::Job,
    core::v1::{
        ConfigMap, LimitRange, Namespace, PersistentVolumeClaim, Pod, ResourceQuota, Secret,
        Service as CoreService,
    },
    networking::v1::NetworkPolicy,
    policy::v1::PodDisruptionBudget,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{
    Api, Client, CustomResourceExt,
    api::{Patch, PatchParams},
};
use kube_fake_client::{
    ClientBuilder, Error as FakeError, PatchType, interceptor,
    validator::{RuntimeOpenAPIValidator, SchemaValidator},
};
use serde_json::Value;
use titan_crds::{Cell, Service};
use titan_operator::cell::{
    certificates::Certificate,
    gateway::{BackendTlsPolicy, GrpcRoute, HttpRoute},
};
use titan_operator::{
    cell::{
        build::{self as cell_build, CellObjects},
        certificates::Tls,
        connections,
        credentials::Credentials,
    },
    cnpg::{Cluster, ScheduledBackup},
};

/// Path of a file under `operator/tests/operator/`.
pub fn test_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/operator")
        .join(relative)
}

/// Path of a file under the workspace root.
pub fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative)
}

/// A Cell from a fixture file.
pub fn cell_fixture(name: &str) -> Cell {
    let text = std::fs::read_to_string(test_path(&format!("fixtures/{name}"))).expect("fixture");
    serde_yaml::from_str(&text).expect("fixture is a Cell")
}

/// What the Cell controller builds for `cell` with no cluster: placeholder credentials and
/// every Secret it reads present (as `titan-operator render` builds).
pub fn built(cell: &Cell) -> CellObjects {
    let credentials = Credentials::placeholders();
    let connections = connections::resolve(cell, &credentials, &connections::Offline);
    cell_build::build(
        cell,
        &credentials,
        &Tls::placeholders(cell),
        &connections,
        &Default::default(),
    )
}

/// Every kind the operator writes, as `group/version/Kind`: each has a schema, and an object of
/// any other kind is refused by [`validate`] rather than passed unchecked.
pub const VALIDATED: [&str; 21] = [
    "/v1/Namespace",
    "/v1/ConfigMap",
    "/v1/Service",
    "apps/v1/Deployment",
    "policy/v1/PodDisruptionBudget",
    "autoscaling/v2/HorizontalPodAutoscaler",
    "/v1/Secret",
    "/v1/ResourceQuota",
    "/v1/LimitRange",
    "/v1/PersistentVolumeClaim",
    "apps/v1/StatefulSet",
    "batch/v1/Job",
    "networking.k8s.io/v1/NetworkPolicy",
    "postgresql.cnpg.io/v1/Cluster",
    "postgresql.cnpg.io/v1/ScheduledBackup",
    "commerce.titan.dev/v1alpha1/Cell",
    "commerce.titan.dev/v1alpha1/Service",
    "gateway.networking.k8s.io/v1/GRPCRoute",
    "gateway.networking.k8s.io/v1/HTTPRoute",
    "gateway.networking.k8s.io/v1/BackendTLSPolicy",
    "cert-manager.io/v1/Certificate",
];

/// The vendored Gateway API CRDs, whole (the standard channel of one release: see
/// `fixtures/gateway-api/README.md`): installed as they are on the test control plane, and the
/// source of the route schemas [`validator`] checks against.
pub const GATEWAY_API_CRDS: [&str; 2] = [
    "fixtures/gateway-api/gateway.networking.k8s.io_grpcroutes.yaml",
    "fixtures/gateway-api/gateway.networking.k8s.io_httproutes.yaml",
];

/// cert-manager's `Certificate` CRD, vendored whole (see `fixtures/cert-manager/README.md`): the
/// schema [`validator`] checks the cells' Certificates against, installed on the test control
/// plane.
pub const CERT_MANAGER_CRD: &str = "fixtures/cert-manager/cert-manager.io_certificates.yaml";

/// The Gateway API's `BackendTLSPolicy` CRD (v1.4.0, standard channel; see
/// `fixtures/gateway-api/README.md`).
pub const BACKEND_TLS_POLICY_CRD: &str =
    "fixtures/gateway-api/gateway.networking.k8s.io_backendtlspolicies.yaml";

/// A vendored CRD (of [`GATEWAY_API_CRDS`], or [`CERT_MANAGER_CRD`]).
pub fn vendored_crd(file: &str) -> CustomResourceDefinition {
    let text = std::fs::read_to_string(test_path(file)).expect("vendored gateway api crd");
    serde_yaml::from_str(&text).expect("a CustomResourceDefinition")
}

/// The OpenAPI schema of the `v1` version of a vendored CRD, the one the operator writes.
pub fn v1_schema(crd: &CustomResourceDefinition) -> Value {
    let version = crd
        .spec
        .versions
        .iter()
        .find(|v| v.name == "v1")
        .expect("the CRD serves v1");
    serde_json::to_value(
        version
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .expect("v1 has a schema"),
    )
    .expect("schema json")
}

/// The OpenAPI definitions of every kind the operator writes: the built-in kinds from
/// k8s-openapi's schemas (the Kubernetes OpenAPI, version v1_35) and the Titan kinds from their
/// CRDs, in the swagger shape kube-fake-client's validator reads.
pub fn validator() -> Arc<RuntimeOpenAPIValidator> {
    static FILE: std::sync::OnceLock<tempfile::NamedTempFile> = std::sync::OnceLock::new();
    let file = FILE.get_or_init(|| {
        let mut generator = schemars::generate::SchemaSettings::draft07().into_generator();
        generator.subschema_for::<Namespace>();
        generator.subschema_for::<ConfigMap>();
        generator.subschema_for::<CoreService>();
        generator.subschema_for::<Deployment>();
        generator.subschema_for::<PodDisruptionBudget>();
        generator.subschema_for::<HorizontalPodAutoscaler>();
        generator.subschema_for::<Secret>();
        generator.subschema_for::<StatefulSet>();
        generator.subschema_for::<NetworkPolicy>();
        generator.subschema_for::<ResourceQuota>();
        generator.subschema_for::<LimitRange>();
        generator.subschema_for::<PersistentVolumeClaim>();
        generator.subschema_for::<Job>();
        let mut definitions = generator.take_definitions(true);
        // kube-fake-client names the definition of a dotted group by reversing the whole group
        // (networking.k8s.io → io.k8s.networking), where the Kubernetes OpenAPI says
        // io.k8s.api.networking: give it the name it looks for.
        let network_policy = definitions["io.k8s.api.networking.v1.NetworkPolicy"].clone();
        definitions.insert("io.k8s.networking.v1.NetworkPolicy".into(), network_policy);
        // CloudNativePG's Cluster is a foreign CRD: checked against a hand-written subset of its
        // schema (see the file's description).
        for (name, file) in [
            ("io.cnpg.postgresql.v1.Cluster", "schemas/cnpg-cluster.json"),
            (
                "io.cnpg.postgresql.v1.SecretKeySelector",
                "schemas/cnpg-secret-key-selector.json",
            ),
            (
                "io.cnpg.postgresql.v1.ScheduledBackup",
                "schemas/cnpg-scheduled-backup.json",
            ),
        ] {
            let text = std::fs::read_to_string(test_path(file)).expect("cnpg schema");
            definitions.insert(
                name.into(),
                serde_json::from_str(&text).expect("schema json"),
            );
        }
        // The Gateway API's routes and cert-manager's Certificate: the v1 schema of the
        // vendored CRDs, as the API server has it (named by the group reversed, as the
        // validator looks them up).
        for file in GATEWAY_API_CRDS
            .into_iter()
            .chain([BACKEND_TLS_POLICY_CRD, CERT_MANAGER_CRD])
        {
            let crd = vendored_crd(file);
            let group: Vec<&str> = crd.spec.group.rsplit('.').collect();
            definitions.insert(
                format!("{}.v1.{}", group.join("."), crd.spec.names.kind),
                v1_schema(&crd),
            );
        }
        for crd in [Cell::crd(), Service::crd()] {
            let schema = crd.spec.versions[0]
                .schema
                .as_ref()
                .and_then(|s| s.open_api_v3_schema.clone())
                .expect("crd schema");
            let mut schema = serde_json::to_value(schema).expect("schema json");
            // The API server adds metadata's schema itself; the CRD leaves it out.
            schema["properties"]["metadata"] = serde_json::json!({"type": "object"});
            definitions.insert(
                format!("dev.titan.commerce.v1alpha1.{}", crd.spec.names.kind),
                schema,
            );
        }
        let file = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(
            file.path(),
            serde_json::json!({ "definitions": definitions }).to_string(),
        )
        .expect("write swagger");
        file
    });
    let validator = RuntimeOpenAPIValidator::from_file(file.path()).expect("validator");
    for gvk in VALIDATED {
        validator
            .enable_validation_for(gvk)
            .expect("definition exists");
    }
    Arc::new(validator)
}

/// Validates one object (as JSON) against its kind's OpenAPI schema.
pub fn validate(validator: &RuntimeOpenAPIValidator, object: &Value) -> Result<(), String> {
    let api_version = object["apiVersion"].as_str().unwrap_or_default();
    let kind = object["kind"].as_str().unwrap_or_default();
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    if !VALIDATED.contains(&format!("{group}/{version}/{kind}").as_str()) {
        return Err(format!(
            "{api_version} {kind} has no schema to validate it against"
        ));
    }
    validator
        .validate(group, version, kind, object)
        .map_err(|e| format!("{kind} {}: {e}", object["metadata"]["name"]))
}

/// A fake API server with the Titan kinds registered, counting writes, validating every applied
/// object, and failing applies of the kinds listed in `fail_kinds`.
#[derive(Clone)]
pub struct Fake {
    /// The client to hand to the operator.
    pub client: Client,
    /// Writes (create, update, patch, delete) other than status and Events.
    pub writes: Arc<AtomicUsize>,
    /// Status subresource writes.
    pub status_writes: Arc<AtomicUsize>,
    /// Kinds whose applies fail with an injected internal error.
    pub fail_kinds: Arc<Mutex<Vec<String>>>,
    /// Objects refused by schema validation.
    pub invalid: Arc<Mutex<Vec<String>>>,
}

impl Fake {
    /// A fresh fake API server.
    pub async fn new() -> Fake {
        let writes = Arc::new(AtomicUsize::new(0));
        let status_writes = Arc::new(AtomicUsize::new(0));
        let fail_kinds: Arc<Mutex<Vec<String>>> = Arc::default();
        let invalid: Arc<Mutex<Vec<String>>> = Arc::default();
        let validator = validator();
        let shim_validator = validator.clone();
        let is_event = |object: &Value| object["kind"].as_str() == Some("Event");

        let (w1, w2, w3, w4) = (
            writes.clone(),
            writes.clone(),
            writes.clone(),
            writes.clone(),
        );
        let s1 = status_writes.clone();
        let (fail, bad) = (fail_kinds.clone(), invalid.clone());
        let funcs = interceptor::Funcs::new()
            .create(move |ctx| {
                if !is_event(ctx.object) {
                    w1.fetch_add(1, Ordering::SeqCst);
                }
                Ok(None)
            })
            .update(move |_| {
                w2.fetch_add(1, Ordering::SeqCst);
                Ok(None)
            })
            .delete(move |_| {
                w3.fetch_add(1, Ordering::SeqCst);
                Ok(None)
            })
            .patch(move |ctx| {
                if is_event(ctx.patch) {
                    return Ok(None);
                }
                w4.fetch_add(1, Ordering::SeqCst);
                let kind = ctx.patch["kind"].as_str().unwrap_or_default().to_string();
                if fail.lock().unwrap().contains(&kind) {
                    return Err(FakeError::Internal(format!(
                        "injected failure applying {kind}"
                    )));
                }
                if ctx.patch_type == PatchType::ApplyPatch
                    && let Err(e) = validate(&validator, ctx.patch)
                {
                    bad.lock().unwrap().push(e.clone());
                    return Err(FakeError::Internal(e));
                }
                Ok(None)
            })
            .patch_status(move |_| {
                s1.fetch_add(1, Ordering::SeqCst);
                Ok(None)
            });

        // Cell and Service get their status subresource on their first status write.
        let client = ClientBuilder::new()
            .with_resource::<Cell>()
            .with_resource::<Service>()
            .with_resource::<Cluster>()
            .with_resource::<ScheduledBackup>()
            .with_resource::<GrpcRoute>()
            .with_resource::<HttpRoute>()
            .with_resource::<BackendTlsPolicy>()
            .with_resource::<Certificate>()
            .with_status_subresource::<Deployment>()
            .with_status_subresource::<Job>()
            .with_status_subresource::<Pod>()
            .with_status_subresource::<StatefulSet>()
            .with_status_subresource::<Cluster>()
            .with_interceptor_funcs(funcs)
            .build()
            .await
            .expect("fake client");
        Fake {
            client: shim(client, writes.clone(), shim_validator),
            writes,
            status_writes,
            fail_kinds,
            invalid,
        }
    }

    /// Writes (other than status and Events) so far.
    pub fn writes(&self) -> usize {
        self.writes.load(Ordering::SeqCst)
    }

    /// Status writes so far.
    pub fn status_writes(&self) -> usize {
        self.status_writes.load(Ordering::SeqCst)
    }
}

/// Works around two limits of kube-fake-client 0.3 so that the operator's real requests reach it:
/// it registers every custom resource as namespaced (refusing the cluster-scoped `Cell`), so Cell
/// paths are moved into a namespace of their own; and it cannot address a Namespace by name, so
/// Namespaces are kept here, with resource versions, server-side apply as a merge, counted writes
/// and schema validation like everything else.
fn shim(fake: Client, writes: Arc<AtomicUsize>, validator: Arc<RuntimeOpenAPIValidator>) -> Client {
    const CELLS: &str = "/apis/commerce.titan.dev/v1alpha1/cells";
    const NAMESPACES: &str = "/api/v1/namespaces/";
    let namespaces: Arc<Mutex<BTreeMap<String, Value>>> = Arc::default();
    let version = Arc::new(AtomicUsize::new(1));
    let service = tower::service_fn(move |mut request: http::Request<kube::client::Body>| {
        let (fake, writes, validator) = (fake.clone(), writes.clone(), validator.clone());
        let (namespaces, version) = (namespaces.clone(), version.clone());
        async move {
            let path = request.uri().path().to_string();
            if let Some(rest) = path.strip_prefix(CELLS) {
                let query = request
                    .uri()
                    .query()
                    .map(|q| format!("?{q}"))
                    .unwrap_or_default();
                let rewritten = format!(
                    "/apis/commerce.titan.dev/v1alpha1/namespaces/cluster-scope/cells{rest}{query}"
                );
                *request.uri_mut() = rewritten.parse().expect("rewritten uri");
                let json_patch = request
                    .headers()
                    .get(http::header::CONTENT_TYPE)
                    .is_some_and(|t| t == "application/json-patch+json");
                if !json_patch {
                    return fake.send(request).await;
                }
                // The API server's JSON patch takes `test` of a missing member against null as a
                // pass (kube's `finalizer()` adds the first finalizer that way); the fake's
                // does not, so such a test is checked here and dropped.
                let (parts, body) = request.into_parts();
                let mut ops: Vec<Value> =
                    serde_json::from_slice(&body.collect_bytes().await?).expect("json patch");
                ops.retain(|op| !(op["op"] == "test" && op["value"].is_null()));
                let body = kube::client::Body::from(serde_json::to_vec(&ops).expect("json"));
                return fake.send(http::Request::from_parts(parts, body)).await;
            }
            let Some(name) = path
                .strip_prefix(NAMESPACES)
                .filter(|n| !n.is_empty() && !n.contains('/'))
            else {
                return fake.send(request).await;
            };
            let name = name.to_string();
            let method = request.method().clone();
            let body = request.into_body().collect_bytes().await?;
            let mut store = namespaces.lock().unwrap();
            let (code, object) = match method {
                http::Method::GET => match store.get(&name) {
                    Some(object) => (200, object.clone()),
                    None => (404, not_found(&name)),
                },
                http::Method::DELETE => match store.remove(&name) {
                    Some(object) => {
                        writes.fetch_add(1, Ordering::SeqCst);
                        (200, object)
                    }
                    None => (404, not_found(&name)),
                },
                http::Method::PATCH => {
                    let patch: Value = serde_json::from_slice(&body).expect("patch body");
                    if let Err(e) = validate(&validator, &patch) {
                        return Ok(response(
                            422,
                            &serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": e, "reason": "Invalid", "code": 422}),
                        ));
                    }
                    writes.fetch_add(1, Ordering::SeqCst);
                    let rv = version.fetch_add(1, Ordering::SeqCst).to_string();
                    let object = store.entry(name.clone()).or_insert_with(|| {
                        serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "uid": format!("ns-{rv}")}})
                    });
                    merge(object, &patch);
                    object["metadata"]["resourceVersion"] = Value::String(rv);
                    (200, object.clone())
                }
                _ => (405, not_found(&name)),
            };
            Ok(response(code, &object))
        }
    });
    Client::new(service, "default")
}

fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                merge(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (t, p) => *t = p.clone(),
    }
}

fn not_found(name: &str) -> Value {
    serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
        "message": format!("namespaces \"{name}\" not found"), "reason": "NotFound", "code": 404})
}

fn response(code: u16, body: &Value) -> http::Response<kube::client::Body> {
    http::Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(kube::client::Body::from(body.to_string().into_bytes()))
        .expect("response")
}

/// Creates Secret `name` in `namespace` with `data`, as a user (or CloudNativePG) would.
pub async fn seed_secret(fake: &Fake, namespace: &str, name: &str, data: &[(&str, &str)]) {
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            namespace: Some(namespace.into()),
            ..Default::default()
        },
        data: Some(
            data.iter()
                .map(|(k, v)| {
                    (
                        k.to_string(),
                        k8s_openapi::ByteString(v.as_bytes().to_vec()),
                    )
                })
                .collect(),
        ),
        ..Default::default()
    };
    kube::Api::<Secret>::namespaced(fake.client.clone(), namespace)
        .create(&Default::default(), &secret)
        .await
        .expect("create secret");
}

/// The Secrets the full-cell fixture reads: its external Redis, CloudNativePG's application
/// Secret (standing in for CloudNativePG) and the object storage credentials.
pub async fn seed_full_cell_secrets(fake: &Fake) {
    let ns = "commerce-eu-2";
    seed_secret(
        fake,
        ns,
        "redis-eu-2",
        &[("url", "redis://:pw@redis.example:6379")],
    )
    .await;
    seed_secret(
        fake,
        ns,
        "postgres-app",
        &[(
            "uri",
            "postgresql://titan:pw@postgres-rw.commerce-eu-2:5432/titan",
        )],
    )
    .await;
    seed_secret(
        fake,
        ns,
        "s3-creds",
        &[("accessKeyId", "AKIA"), ("secretAccessKey", "s3cr3t")],
    )
    .await;
}

/// Server-side apply of `object` (JSON) through `api`, as the operator writes.
pub async fn server_side_apply(
    api: &Api<kube::api::DynamicObject>,
    object: &Value,
) -> Result<(), kube::Error> {
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    api.patch(
        name,
        &PatchParams::apply(titan_operator::MANAGER).force(),
        &Patch::Apply(object),
    )
    .await
    .map(|_| ())
}

/// `object` (JSON) moved into namespace `ns`, without its owner (no such Cell there).
pub fn placed(object: &Value, ns: &str) -> Value {
    let mut object = object.clone();
    object["metadata"]["namespace"] = serde_json::json!(ns);
    if let Some(metadata) = object["metadata"].as_object_mut() {
        metadata.remove("ownerReferences");
    }
    object
}

/// Installs `crd` on a real API server (applied again when present) and waits until it is
/// established.
pub async fn install_crd(client: &Client, mut crd: CustomResourceDefinition) {
    let crds = Api::<CustomResourceDefinition>::all(client.clone());
    crd.status = None;
    crd.metadata.creation_timestamp = None;
    let name = crd.metadata.name.clone().expect("a named CRD");
    crds.patch(
        &name,
        &PatchParams::apply("titan-operator-tests").force(),
        &Patch::Apply(&crd),
    )
    .await
    .expect("install the CRD");
    titan_kit::testing::eventually(&format!("{name} established"), || async {
        let crd = crds.get(&name).await.ok()?;
        crd.status?
            .conditions?
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True")
            .then_some(())
    })
    .await;
}

/// `refused` is the API server's 422 for an invalid object, and its message contains `needle`.
pub fn assert_unprocessable(refused: kube::Error, needle: &str) {
    let kube::Error::Api(status) = &refused else {
        panic!("not refused by the API server: {refused}");
    };
    assert_eq!(status.code, 422, "{status:?}");
    assert!(status.message.contains(needle), "{}", status.message);
}
