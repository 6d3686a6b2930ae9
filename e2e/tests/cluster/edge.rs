//! Edge routes through the real API server: the vendored Gateway API CRDs are installed before
//! the operators start (they look once, at start, whether the server serves the route kinds);
//! the dev cell gets `spec.edge`, and the operator, under the chart's ServiceAccount, creates
//! its GRPCRoute and HTTPRoute attached to the named Gateway; removing `spec.edge` prunes them.

use serde_json::{Value, json};

use super::{CELL, CONVERGE, NAMESPACE, cell_json, condition, patch_cell};
use crate::harness::{Kube, eventually, repo};

/// The standard-channel CRDs the operator's tests vendor: the routes (Gateway API v1.2.1) and
/// BackendTLSPolicy (v1.4.0, the first release with it in v1).
const CRDS: [&str; 3] = [
    "gateway.networking.k8s.io_grpcroutes.yaml",
    "gateway.networking.k8s.io_httproutes.yaml",
    "gateway.networking.k8s.io_backendtlspolicies.yaml",
];

/// Installs the Gateway API's GRPCRoute, HTTPRoute and BackendTLSPolicy CRDs and waits until
/// they are served.
pub fn install_gateway_api(kube: &Kube) {
    for file in CRDS {
        let path = repo("operator/tests/operator/fixtures/gateway-api").join(file);
        kube.k(&["apply", "--server-side", "-f", &path.display().to_string()]);
    }
    kube.k(&[
        "wait",
        "--for=condition=Established",
        "crd/grpcroutes.gateway.networking.k8s.io",
        "crd/httproutes.gateway.networking.k8s.io",
        "crd/backendtlspolicies.gateway.networking.k8s.io",
        "--timeout=60s",
    ]);
}

fn route(kube: &Kube, kind: &str, name: &str) -> Option<Value> {
    kube.get(&[kind, name, "-n", NAMESPACE])
}

/// `spec.edge` on the dev cell: its routes appear with the Gateway as their parent, the Cell
/// says so, and they go when `spec.edge` does.
pub fn routes_follow_spec_edge(kube: &Kube) {
    let grpc = format!("{CELL}-grpc");
    let http = format!("{CELL}-http");
    patch_cell(
        kube,
        CELL,
        json!({"spec": {"edge": {
            "gateway": {"name": "public", "namespace": "titan-edge", "sectionName": "https"},
            "hostnames": ["dev.titan.example"]
        }}}),
    );
    // The fields the operator sets (the server may default others in a newer release).
    let attached = |route: &Value| {
        let parent = &route["spec"]["parentRefs"][0];
        route["spec"]["parentRefs"].as_array().map(Vec::len) == Some(1)
            && parent["group"] == "gateway.networking.k8s.io"
            && parent["kind"] == "Gateway"
            && parent["namespace"] == "titan-edge"
            && parent["name"] == "public"
            && parent["sectionName"] == "https"
    };
    eventually(
        "the operator creates the dev cell's GRPCRoute attached to the Gateway",
        CONVERGE,
        || route(kube, "grpcroute", &grpc).is_some_and(|r| attached(&r)),
    );
    let grpc_route = route(kube, "grpcroute", &grpc).expect("grpcroute");
    assert_eq!(
        grpc_route["spec"]["hostnames"],
        json!(["dev.titan.example"])
    );
    let first_rule = &grpc_route["spec"]["rules"][0];
    assert_eq!(
        first_rule["matches"][0]["method"]["service"], "titan.flashsale.v1.FlashSaleService",
        "{grpc_route}"
    );
    assert_eq!(first_rule["backendRefs"][0]["name"], "flashsale");
    assert_eq!(first_rule["backendRefs"][0]["port"], 50051);
    eventually("the HTTPRoute too, and the cell says so", CONVERGE, || {
        route(kube, "httproute", &http).is_some_and(|r| attached(&r))
            && condition(&cell_json(kube, CELL), "EdgeRoutesApplied")
                .is_some_and(|c| c["status"] == "True" && c["reason"] == "RoutesApplied")
    });

    patch_cell(kube, CELL, json!({"spec": {"edge": null}}));
    eventually(
        "both routes are pruned with spec.edge, and the edge condition goes",
        CONVERGE,
        || {
            route(kube, "grpcroute", &grpc).is_none()
                && route(kube, "httproute", &http).is_none()
                && condition(&cell_json(kube, CELL), "EdgeRoutesApplied").is_none()
        },
    );
}
