//! The edge routes of a cell (`spec.edge`): what the build stage renders (pure, from YAML),
//! checked against the vendored Gateway API schemas; rounds against the in-memory API server
//! with and without the Gateway API; and the rendered routes applied through a real API server
//! with the vendored CRDs installed.

use k8s_openapi::{
    api::core::v1::Namespace,
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api,
    api::{DeleteParams, Patch, PatchParams},
    core::cel::Validator,
};
use serde_json::{Value, json};
use titan_crds::{Cell, ServiceKind};
use titan_kit::testing::eventually;
use titan_operator::{
    MANAGER, apply,
    cell::gateway::{self, GrpcRoute, HttpRoute},
};
use titan_router::store::configmap::{test_control_plane, test_namespace};

use crate::{
    reconcile::{condition, context, create_cell, get_cell, reconcile_cell},
    support::{
        Fake, GATEWAY_API_CRDS, assert_unprocessable, built, cell_fixture, install_crd, placed,
        repo_path, server_side_apply, v1_schema, validate, validator, vendored_crd,
    },
};

fn edge_cell() -> Cell {
    cell_fixture("edge-cell.yaml")
}

fn json_of<T: serde::Serialize>(object: &T) -> Value {
    serde_json::to_value(object).unwrap()
}

/// The routes the build stage renders for `cell`, as JSON.
fn rendered(cell: &Cell) -> (Vec<Value>, Vec<Value>) {
    let objects = built(cell);
    (
        objects.grpc_routes.iter().map(json_of).collect(),
        objects.http_routes.iter().map(json_of).collect(),
    )
}

/// The backend Service names of a route's rules, in order.
fn backends(route: &Value) -> Vec<String> {
    route["spec"]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["backendRefs"][0]["name"].as_str().unwrap().to_string())
        .collect()
}

fn names(kinds: &[ServiceKind]) -> Vec<String> {
    kinds.iter().map(|k| k.as_str().to_string()).collect()
}

#[test]
fn a_cell_with_edge_renders_one_grpc_and_one_http_route_to_its_gateway() {
    let (grpc, http) = rendered(&edge_cell());
    assert_eq!((grpc.len(), http.len()), (1, 1));
    let (grpc, http) = (&grpc[0], &http[0]);
    let parent = json!([{
        "group": "gateway.networking.k8s.io",
        "kind": "Gateway",
        "namespace": "gateways",
        "name": "public",
        "sectionName": "https"
    }]);
    let hostnames = json!(["sg-1.shop.example", "*.sg-1.shop.example"]);
    for (route, kind, name) in [
        (grpc, "GRPCRoute", "sg-1-grpc"),
        (http, "HTTPRoute", "sg-1-http"),
    ] {
        assert_eq!(route["apiVersion"], "gateway.networking.k8s.io/v1");
        assert_eq!(route["kind"], kind);
        assert_eq!(route["metadata"]["name"], name);
        assert_eq!(route["metadata"]["namespace"], "titan-sg-1");
        assert_eq!(route["spec"]["parentRefs"], parent);
        assert_eq!(route["spec"]["hostnames"], hostnames);
        let labels = &route["metadata"]["labels"];
        assert_eq!(labels["commerce.titan.dev/cell"], "sg-1");
        assert_eq!(labels["commerce.titan.dev/component"], "edge");
        assert_eq!(labels["app.kubernetes.io/managed-by"], MANAGER);
        // Not a Titan service's object: no service label, so the cell's prune selector finds it.
        assert!(labels.get("commerce.titan.dev/service").is_none());
        let owner = &route["metadata"]["ownerReferences"][0];
        assert_eq!(
            (&owner["kind"], &owner["name"], &owner["controller"]),
            (&json!("Cell"), &json!("sg-1"), &json!(true))
        );
    }

    // Every enabled service but chat (off in the fixture), in the operator's order.
    let enabled: Vec<ServiceKind> = ServiceKind::TITAN
        .into_iter()
        .filter(|k| *k != ServiceKind::Chat)
        .collect();
    assert_eq!(backends(grpc), names(&enabled));
    let flashsale = &grpc["spec"]["rules"][0];
    assert_eq!(
        *flashsale,
        json!({
            "matches": [{"method": {"type": "Exact", "service": "titan.flashsale.v1.FlashSaleService"}}],
            "backendRefs": [{"name": "flashsale", "port": 50051}]
        })
    );

    assert_eq!(
        backends(http),
        names(&[
            ServiceKind::Flashsale,
            ServiceKind::Campaign,
            ServiceKind::Livestream,
            ServiceKind::Videocall,
            ServiceKind::Tracking
        ])
    );
    let campaign = &http["spec"]["rules"][1];
    assert_eq!(
        *campaign,
        json!({
            "matches": [
                {"path": {"type": "PathPrefix", "value": "/v1/campaign/o"}},
                {"path": {"type": "PathPrefix", "value": "/v1/campaign/c"}},
                {"path": {"type": "PathPrefix", "value": "/v1/campaign/u"}}
            ],
            "backendRefs": [{"name": "campaign", "port": 8080}]
        })
    );
    assert_eq!(
        http["spec"]["rules"][3]["matches"],
        json!([{"path": {"type": "Exact", "value": "/v1/videocall/ws"}}])
    );
}

#[test]
fn disabled_services_have_no_rules_and_a_cell_without_public_http_paths_no_http_route() {
    let mut cell = edge_cell();
    // Only services without public HTTP paths stay on.
    for kind in [
        ServiceKind::Flashsale,
        ServiceKind::Campaign,
        ServiceKind::Livestream,
        ServiceKind::Videocall,
        ServiceKind::Tracking,
    ] {
        let patch = json!({"spec": {"services": {kind.as_str(): {"enabled": false}}}});
        let mut value = json_of(&cell);
        json_patch_merge(&mut value, &patch);
        cell = serde_json::from_value(value).unwrap();
    }
    let (grpc, http) = rendered(&cell);
    assert!(http.is_empty(), "{http:?}");
    assert_eq!(
        backends(&grpc[0]),
        names(&[
            ServiceKind::Coupon,
            ServiceKind::Gamification,
            ServiceKind::Abtesting,
            ServiceKind::Fraud,
            ServiceKind::Pricing,
            ServiceKind::Analytics,
            ServiceKind::Driver,
            ServiceKind::Warehouse,
            ServiceKind::Shipping,
            ServiceKind::Privacy
        ])
    );
}

/// An RFC 7386 merge of `patch` into `value`.
fn json_patch_merge(value: &mut Value, patch: &Value) {
    match (value, patch) {
        (Value::Object(target), Value::Object(fields)) => {
            for (key, field) in fields {
                json_patch_merge(target.entry(key.clone()).or_insert(Value::Null), field);
            }
        }
        (target, patch) => *target = patch.clone(),
    }
}

#[test]
fn a_cell_without_edge_has_no_routes() {
    for fixture in ["minimal-cell.yaml", "full-cell.yaml", "external-cell.yaml"] {
        let (grpc, http) = rendered(&cell_fixture(fixture));
        assert!(grpc.is_empty() && http.is_empty(), "{fixture}");
    }
}

#[test]
fn the_grpc_services_are_those_the_services_serve() {
    use titan_proto::*;
    let served = [
        (
            ServiceKind::Flashsale,
            flashsale::v1::flash_sale_service_server::SERVICE_NAME,
        ),
        (
            ServiceKind::Coupon,
            coupon::v1::coupon_service_server::SERVICE_NAME,
        ),
        (
            ServiceKind::Gamification,
            gamification::v1::gamification_service_server::SERVICE_NAME,
        ),
        (
            ServiceKind::Campaign,
            campaign::v1::campaign_service_server::SERVICE_NAME,
        ),
        (
            ServiceKind::Abtesting,
            abtesting::v1::ab_testing_service_server::SERVICE_NAME,
        ),
        (
            ServiceKind::Fraud,
            fraud::v1::fraud_service_server::SERVICE_NAME,
        ),
        (
            ServiceKind::Pricing,
            pricing::v1::pricing_service_server::SERVICE_NAME,
        ),
        (
            ServiceKind::Analytics,
            analytics::v1::analytics_service_server::SERVICE_NAME,
        ),
        (
            ServiceKind::Chat,
            chat::v1::chat_service_server::SERVICE_NAME,
        ),
        (
            ServiceKind::Livestream,
            livestream::v1::livestream_service_server::SERVICE_NAME,
        ),
        (
            ServiceKind::Videocall,
            videocall::v1::videocall_service_server::SERVICE_NAME,
        ),
        (
            ServiceKind::Driver,
            driver::v1::driver_service_server::SERVICE_NAME,
        ),
        (
            ServiceKind::Tracking,
            tracking::v1::tracking_service_server::SERVICE_NAME,
        ),
        (
            ServiceKind::Warehouse,
            warehouse::v1::warehouse_service_server::SERVICE_NAME,
        ),
        (
            ServiceKind::Shipping,
            shipping::v1::shipping_service_server::SERVICE_NAME,
        ),
        (
            ServiceKind::Privacy,
            privacy::v1::privacy_service_server::SERVICE_NAME,
        ),
    ];
    assert_eq!(
        served.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
        ServiceKind::TITAN.to_vec()
    );
    for (kind, name) in served {
        assert_eq!(gateway::grpc_service(kind), Some(name), "{kind}");
    }
    assert_eq!(gateway::grpc_service(ServiceKind::Custom), None);
}

#[test]
fn no_public_path_reaches_the_admin_routes_or_the_rtmp_callbacks() {
    let private = [
        "/metrics",
        "/healthz",
        "/readyz",
        "/rtmp/publish",
        "/rtmp/publish-done",
        "/rtmp/recorded",
    ];
    let covers = |public: &gateway::PublicPath, path: &str| match public.matching {
        gateway::PathMatch::Exact => public.path == path,
        gateway::PathMatch::Prefix => {
            path == public.path || path.starts_with(&format!("{}/", public.path))
        }
    };
    for kind in ServiceKind::TITAN {
        for public in gateway::http_paths(kind) {
            for path in private {
                assert!(!covers(public, path), "{kind} exposes {path}");
            }
        }
    }
    // And the routes the services do serve to clients are covered.
    let served = [
        (ServiceKind::Flashsale, "/v1/flashsale/sales/s-1/watch"),
        (ServiceKind::Campaign, "/v1/campaign/o/t0k3n"),
        (ServiceKind::Campaign, "/v1/campaign/c/t0k3n"),
        (ServiceKind::Campaign, "/v1/campaign/u/t0k3n"),
        (ServiceKind::Chat, "/v1/chat/ws"),
        (ServiceKind::Livestream, "/v1/livestream/streams/st-1/ws"),
        (ServiceKind::Videocall, "/v1/videocall/ws"),
        (ServiceKind::Tracking, "/webhooks/tracking/acme"),
    ];
    for (kind, path) in served {
        assert!(
            gateway::http_paths(kind).iter().any(|p| covers(p, path)),
            "{kind}: {path} is not routed"
        );
    }
}

/// The CEL rules (`x-kubernetes-validations`) of a route's v1 schema that `route` breaks.
fn broken_rules(crd: &CustomResourceDefinition, route: &Value) -> Vec<String> {
    match Validator::new().validate(&v1_schema(crd), route, None) {
        Ok(()) => Vec::new(),
        Err(errors) => errors.into_vec().iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn rendered_routes_pass_the_vendored_gateway_api_schemas() {
    let validator = validator();
    let [grpc_crd, http_crd] = GATEWAY_API_CRDS.map(vendored_crd);
    let production: Cell = serde_yaml::from_str(
        &std::fs::read_to_string(repo_path("manifests/examples/production-cell.yaml")).unwrap(),
    )
    .unwrap();
    // With every service on: the most rules a route gets.
    let mut all_on = edge_cell();
    all_on.spec.services.chat = None;
    for cell in [edge_cell(), all_on, production] {
        let (grpc, http) = rendered(&cell);
        assert_eq!((grpc.len(), http.len()), (1, 1));
        for route in grpc.iter().chain(&http) {
            assert_eq!(validate(&validator, route), Ok(()));
        }
        assert_eq!(broken_rules(&grpc_crd, &grpc[0]), Vec::<String>::new());
        assert_eq!(broken_rules(&http_crd, &http[0]), Vec::<String>::new());
    }

    // The schemas do refuse: a path that is not absolute, a hostname with a port.
    let (_, http) = rendered(&edge_cell());
    let mut bad = http[0].clone();
    bad["spec"]["rules"][0]["matches"][0]["path"]["value"] = json!("v1/flashsale/sales");
    bad["spec"]["hostnames"][0] = json!("sg-1.shop.example:443");
    let refused = validate(&validator, &bad).unwrap_err();
    assert!(refused.contains("sg-1.shop.example:443"), "{refused}");
    assert_ne!(broken_rules(&http_crd, &bad), Vec::<String>::new());
}

#[tokio::test]
async fn without_the_gateway_api_a_cell_asking_for_routes_says_so_and_runs() {
    let fake = Fake::new().await;
    let ctx = context(&fake);
    assert!(!ctx.gateway_api);
    create_cell(&fake, &edge_cell()).await;
    reconcile_cell(&fake, &ctx, "sg-1").await;

    let status = get_cell(&fake, "sg-1").await.status.unwrap();
    assert_eq!(
        condition(&status.conditions, "EdgeRoutesApplied"),
        ("False".into(), "GatewayAPINotInstalled".into())
    );
    let message = &titan_operator::conditions::find(&status.conditions, "EdgeRoutesApplied")
        .unwrap()
        .message;
    assert!(
        message.contains("gateway gateways/public") && message.contains("remove spec.edge"),
        "{message}"
    );
    // The rest of the cell is applied as ever.
    assert_eq!(status.services.unwrap().total, 15);
    assert!(fake.invalid.lock().unwrap().is_empty());
}

#[tokio::test]
async fn routes_are_applied_with_the_services_and_pruned_when_edge_is_removed() {
    let fake = Fake::new().await;
    let ctx = std::sync::Arc::new((*context(&fake)).clone().with_gateway_api(true));
    create_cell(&fake, &edge_cell()).await;
    reconcile_cell(&fake, &ctx, "sg-1").await;

    let grpc_routes = Api::<GrpcRoute>::namespaced(fake.client.clone(), "titan-sg-1");
    let http_routes = Api::<HttpRoute>::namespaced(fake.client.clone(), "titan-sg-1");
    let route = grpc_routes.get("sg-1-grpc").await.unwrap();
    assert_eq!(route.spec, built(&edge_cell()).grpc_routes[0].spec);
    http_routes.get("sg-1-http").await.unwrap();
    let status = get_cell(&fake, "sg-1").await.status.unwrap();
    assert_eq!(
        condition(&status.conditions, "EdgeRoutesApplied"),
        ("True".into(), "RoutesApplied".into())
    );
    assert!(fake.invalid.lock().unwrap().is_empty());

    // Unchanged, a round writes no route again.
    let writes = fake.writes();
    reconcile_cell(&fake, &ctx, "sg-1").await;
    assert_eq!(fake.writes(), writes);

    let cells = Api::<Cell>::all(fake.client.clone());
    cells
        .patch(
            "sg-1",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"edge": null}})),
        )
        .await
        .unwrap();
    reconcile_cell(&fake, &ctx, "sg-1").await;
    assert_eq!(grpc_routes.get_opt("sg-1-grpc").await.unwrap(), None);
    assert_eq!(http_routes.get_opt("sg-1-http").await.unwrap(), None);
    let status = get_cell(&fake, "sg-1").await.status.unwrap();
    assert!(
        titan_operator::conditions::find(&status.conditions, "EdgeRoutesApplied").is_none(),
        "{:?}",
        status.conditions
    );
}

#[test]
fn the_edge_condition_names_what_is_missing() {
    let cell = edge_cell();
    let desired = vec![
        "GRPCRoute sg-1-grpc".to_string(),
        "HTTPRoute sg-1-http".to_string(),
    ];
    let applied = gateway::condition(&cell, true, true, &desired, &desired).unwrap();
    assert_eq!(
        (applied.status, applied.reason, applied.message.as_str()),
        (
            true,
            "RoutesApplied",
            "GRPCRoute sg-1-grpc and HTTPRoute sg-1-http attach to gateway gateways/public"
        )
    );
    let pending = gateway::condition(&cell, true, true, &desired, &desired[..1]).unwrap();
    assert_eq!(
        (pending.status, pending.reason, pending.message.as_str()),
        (
            false,
            "RoutesNotApplied",
            "HTTPRoute sg-1-http is not applied yet"
        )
    );
    let missing = gateway::condition(&cell, false, true, &desired, &[]).unwrap();
    assert_eq!(
        (missing.status, missing.reason),
        (false, "GatewayAPINotInstalled")
    );
    assert_eq!(
        gateway::condition(&cell_fixture("minimal-cell.yaml"), true, true, &[], &[]),
        None
    );
}

#[tokio::test]
async fn a_real_api_server_with_the_gateway_api_accepts_the_rendered_routes() {
    let client = match test_control_plane().await {
        Ok(client) => client,
        Err(reason) => {
            eprintln!("gateway api test skipped: {reason}");
            return;
        }
    };
    // The vendored CRDs, whole, as a cluster installs them (applied again when present).
    for file in GATEWAY_API_CRDS {
        install_crd(&client, vendored_crd(file)).await;
    }

    let ns = test_namespace(&client, "gateway-routes-test")
        .await
        .unwrap();
    let resource = |kind: &str, plural: &str| kube::api::ApiResource {
        group: gateway::GROUP.into(),
        version: "v1".into(),
        api_version: format!("{}/v1", gateway::GROUP),
        kind: kind.into(),
        plural: plural.into(),
    };
    let grpc_api = Api::<kube::api::DynamicObject>::namespaced_with(
        client.clone(),
        &ns,
        &resource("GRPCRoute", "grpcroutes"),
    );
    let http_api = Api::<kube::api::DynamicObject>::namespaced_with(
        client.clone(),
        &ns,
        &resource("HTTPRoute", "httproutes"),
    );
    let (grpc, http) = rendered(&edge_cell());
    // In the fresh namespace, without the owner (no such Cell there).
    let here = |route: &Value| placed(route, &ns);
    // A newly established CRD may take a moment to be served for writes.
    let first = here(&grpc[0]);
    eventually("the GRPCRoute accepted", || async {
        server_side_apply(&grpc_api, &first).await.ok()
    })
    .await;
    server_side_apply(&http_api, &here(&http[0])).await.unwrap();
    // What the server stored holds every field the operator set (it adds its defaults: backend
    // group, kind and weight), so the next round finds nothing to write.
    for (api, route) in [(&grpc_api, &grpc[0]), (&http_api, &http[0])] {
        let name = route["metadata"]["name"].as_str().unwrap();
        let stored = json_of(&api.get(name).await.unwrap());
        assert!(apply::contains(&stored, &here(route)), "{stored}");
        assert_eq!(stored["spec"]["rules"][0]["backendRefs"][0]["weight"], 1);
    }

    // A broken route is refused with the API server's message: a path match must be absolute.
    let mut bad = here(&http[0]);
    bad["metadata"]["name"] = json!("sg-1-broken");
    bad["spec"]["rules"][0]["matches"][0]["path"]["value"] = json!("v1/flashsale/sales");
    assert_unprocessable(
        server_side_apply(&http_api, &bad).await.unwrap_err(),
        "value must be an absolute path and start with '/'",
    );

    Api::<Namespace>::all(client.clone())
        .delete(&ns, &DeleteParams::default())
        .await
        .unwrap();
}
