//! Build stage, edge: the Gateway API routes of a cell with `spec.edge` — one `GRPCRoute` with a
//! rule per enabled service (its gRPC service, to its core Service's gRPC port) and one
//! `HTTPRoute` with a rule per enabled service that clients reach over HTTP (WebSockets, links in
//! e-mails, carriers' webhooks, to its HTTP port) — the typed subset of
//! `gateway.networking.k8s.io/v1` they are written in, and the cell's `EdgeRoutesApplied`
//! condition. Under `spec.tls` also a `BackendTLSPolicy` per service and the ConfigMap with the
//! cell's CA bundle they name, so the Gateway reaches the services over TLS and verifies them.
//!
//! What a client outside the cluster may call is listed here and only here ([`grpc_service`],
//! [`http_paths`]). Not listed on purpose: gRPC health and reflection (the Gateway has its own
//! health checks, and reflection would publish the whole API), the admin port (`/metrics`,
//! `/healthz`, `/readyz`), and livestream's RTMP callbacks (`/rtmp/…`): only the cell's own
//! media server may call them, and from outside anyone could forge a publish.

use std::collections::BTreeMap;

use k8s_openapi::{api::core::v1::ConfigMap, apimachinery::pkg::apis::meta::v1::ObjectMeta};
use kube::CustomResource;
use serde::{Deserialize, Serialize};
use titan_crds::{Cell, ServiceKind, cell::Edge, common::condition::EDGE_ROUTES_APPLIED};

use super::build::CellMeta;
use crate::{
    conditions::Observed,
    shared::{GRPC_PORT, HTTP_PORT, TLS_CA_KEY},
};

/// API group of the Gateway API.
pub const GROUP: &str = "gateway.networking.k8s.io";
/// The `commerce.titan.dev/component` of the routes.
pub const COMPONENT: &str = "edge";

/// The gRPC routes of a cell (`gateway.networking.k8s.io/v1` `GRPCRoute`), typed down to the
/// fields Titan sets; the API server keeps the rest at the Gateway API's defaults.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "gateway.networking.k8s.io",
    version = "v1",
    kind = "GRPCRoute",
    root = "GrpcRoute",
    namespaced,
    schema = "disabled",
    derive = "PartialEq",
    derive = "Default"
)]
#[serde(rename_all = "camelCase")]
pub struct GrpcRouteSpec {
    /// The Gateway (listener) the route attaches to.
    pub parent_refs: Vec<ParentRef>,
    /// Host names the route answers for.
    pub hostnames: Vec<String>,
    /// One rule per enabled service.
    pub rules: Vec<GrpcRouteRule>,
}

/// The HTTP routes of a cell (`gateway.networking.k8s.io/v1` `HTTPRoute`), typed down to the
/// fields Titan sets.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "gateway.networking.k8s.io",
    version = "v1",
    kind = "HTTPRoute",
    root = "HttpRoute",
    namespaced,
    schema = "disabled",
    derive = "PartialEq",
    derive = "Default"
)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteSpec {
    /// The Gateway (listener) the route attaches to.
    pub parent_refs: Vec<ParentRef>,
    /// Host names the route answers for.
    pub hostnames: Vec<String>,
    /// One rule per enabled service with public HTTP routes.
    pub rules: Vec<HttpRouteRule>,
}

/// How a Gateway reaches one service of a cell with TLS (`gateway.networking.k8s.io/v1`
/// `BackendTLSPolicy`, Gateway API v1.4 or later): over TLS, verifying the service's certificate
/// for its name against the cell's CA bundle. Typed down to the fields Titan sets.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "gateway.networking.k8s.io",
    version = "v1",
    kind = "BackendTLSPolicy",
    root = "BackendTlsPolicy",
    namespaced,
    schema = "disabled",
    derive = "PartialEq",
    derive = "Default"
)]
#[serde(rename_all = "camelCase")]
pub struct BackendTlsPolicySpec {
    /// The core Service it applies to.
    pub target_refs: Vec<PolicyTargetRef>,
    /// How its certificate is verified.
    pub validation: BackendTlsValidation,
}

/// `spec.targetRefs[]` of a `BackendTLSPolicy`: a core Service.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct PolicyTargetRef {
    /// `""`, the core group.
    pub group: String,
    /// `Service`.
    pub kind: String,
    /// Name of the Service.
    pub name: String,
}

/// `spec.validation` of a `BackendTLSPolicy`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct BackendTlsValidation {
    /// The ConfigMap holding the cell's CA bundle (key `ca.crt`).
    pub ca_certificate_refs: Vec<LocalObjectRef>,
    /// The name the Gateway sends (SNI) and verifies: `<service>.<namespace>.svc`.
    pub hostname: String,
}

/// A ConfigMap of the policy's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct LocalObjectRef {
    /// `""`, the core group.
    pub group: String,
    /// `ConfigMap`.
    pub kind: String,
    /// Its name.
    pub name: String,
}

/// `spec.parentRefs[]`: a Gateway, and optionally one of its listeners.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ParentRef {
    /// `gateway.networking.k8s.io`.
    pub group: String,
    /// `Gateway`.
    pub kind: String,
    /// Namespace of the Gateway.
    pub namespace: String,
    /// Name of the Gateway.
    pub name: String,
    /// Name of the listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
}

/// `spec.rules[].backendRefs[]`: a core Service of the route's namespace and its port.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct BackendRef {
    /// Name of the Service.
    pub name: String,
    /// Its port.
    pub port: i32,
}

/// A `GRPCRoute` rule: the calls of some gRPC services, to one backend.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct GrpcRouteRule {
    /// The calls the rule takes.
    pub matches: Vec<GrpcRouteMatch>,
    /// Where they go.
    pub backend_refs: Vec<BackendRef>,
}

/// `matches[]` of a `GRPCRoute` rule.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct GrpcRouteMatch {
    /// The calls, by service (every method of it).
    pub method: GrpcMethodMatch,
}

/// `matches[].method`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct GrpcMethodMatch {
    /// `Exact`.
    #[serde(rename = "type")]
    pub type_: String,
    /// The fully qualified gRPC service (`titan.chat.v1.ChatService`).
    pub service: String,
}

/// An `HTTPRoute` rule: some paths, to one backend.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteRule {
    /// The requests the rule takes.
    pub matches: Vec<HttpRouteMatch>,
    /// Where they go.
    pub backend_refs: Vec<BackendRef>,
}

/// `matches[]` of an `HTTPRoute` rule.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct HttpRouteMatch {
    /// The requests, by path.
    pub path: HttpPathMatch,
}

/// `matches[].path`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct HttpPathMatch {
    /// `Exact` or `PathPrefix`.
    #[serde(rename = "type")]
    pub type_: String,
    /// The path, or its prefix (whole path segments).
    pub value: String,
}

/// The gRPC service a Titan service serves (`package.Service` of its proto in
/// `services/proto/titan/<service>/v1`); none for `custom`.
pub fn grpc_service(kind: ServiceKind) -> Option<&'static str> {
    Some(match kind {
        ServiceKind::Flashsale => "titan.flashsale.v1.FlashSaleService",
        ServiceKind::Coupon => "titan.coupon.v1.CouponService",
        ServiceKind::Gamification => "titan.gamification.v1.GamificationService",
        ServiceKind::Campaign => "titan.campaign.v1.CampaignService",
        ServiceKind::Abtesting => "titan.abtesting.v1.AbTestingService",
        ServiceKind::Fraud => "titan.fraud.v1.FraudService",
        ServiceKind::Pricing => "titan.pricing.v1.PricingService",
        ServiceKind::Analytics => "titan.analytics.v1.AnalyticsService",
        ServiceKind::Chat => "titan.chat.v1.ChatService",
        ServiceKind::Livestream => "titan.livestream.v1.LivestreamService",
        ServiceKind::Videocall => "titan.videocall.v1.VideocallService",
        ServiceKind::Driver => "titan.driver.v1.DriverService",
        ServiceKind::Tracking => "titan.tracking.v1.TrackingService",
        ServiceKind::Warehouse => "titan.warehouse.v1.WarehouseService",
        ServiceKind::Shipping => "titan.shipping.v1.ShippingService",
        ServiceKind::Privacy => "titan.privacy.v1.PrivacyService",
        ServiceKind::Custom => return None,
    })
}

/// How a public path matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathMatch {
    /// This path only.
    Exact,
    /// This path and every path below it, by whole segments (`/a/b` takes `/a/b/c`, not
    /// `/a/bc`): for routes with a parameter.
    Prefix,
}

/// A path a service serves on its HTTP port to clients outside the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublicPath {
    /// How it matches.
    pub matching: PathMatch,
    /// The path or prefix.
    pub path: &'static str,
}

const fn exact(path: &'static str) -> PublicPath {
    PublicPath {
        matching: PathMatch::Exact,
        path,
    }
}

const fn prefix(path: &'static str) -> PublicPath {
    PublicPath {
        matching: PathMatch::Prefix,
        path,
    }
}

/// The public paths of a service's HTTP port, from the services' routers (`.route(…)` in
/// `services/<service>/src`): WebSockets, campaign links and carriers' webhooks. Everything
/// else on the port stays inside the cluster (see the module's doc).
pub fn http_paths(kind: ServiceKind) -> &'static [PublicPath] {
    match kind {
        // /v1/flashsale/sales/{sale_id}/watch
        ServiceKind::Flashsale => const { &[prefix("/v1/flashsale/sales")] },
        // open pixel, click, unsubscribe page and form: /v1/campaign/{o,c,u}/{token}
        ServiceKind::Campaign => {
            const {
                &[
                    prefix("/v1/campaign/o"),
                    prefix("/v1/campaign/c"),
                    prefix("/v1/campaign/u"),
                ]
            }
        }
        ServiceKind::Chat => const { &[exact("/v1/chat/ws")] },
        // /v1/livestream/streams/{stream_id}/ws; the /rtmp/… callbacks are not public.
        ServiceKind::Livestream => const { &[prefix("/v1/livestream/streams")] },
        ServiceKind::Videocall => const { &[exact("/v1/videocall/ws")] },
        // /webhooks/tracking/{carrier}
        ServiceKind::Tracking => const { &[prefix("/webhooks/tracking")] },
        ServiceKind::Coupon
        | ServiceKind::Gamification
        | ServiceKind::Abtesting
        | ServiceKind::Fraud
        | ServiceKind::Pricing
        | ServiceKind::Analytics
        | ServiceKind::Driver
        | ServiceKind::Warehouse
        | ServiceKind::Shipping
        | ServiceKind::Privacy
        | ServiceKind::Custom => &[],
    }
}

/// Name of a cell's GRPCRoute.
pub fn grpc_route_name(cell: &str) -> String {
    format!("{cell}-grpc")
}

/// Name of a cell's HTTPRoute.
pub fn http_route_name(cell: &str) -> String {
    format!("{cell}-http")
}

/// The routes of a cell.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Routes {
    /// Its GRPCRoute, unless it has no `spec.edge` or no enabled service.
    pub grpc_routes: Vec<GrpcRoute>,
    /// Its HTTPRoute, unless it has no `spec.edge` or no enabled service with public paths.
    pub http_routes: Vec<HttpRoute>,
    /// Under `spec.tls`, a BackendTLSPolicy per enabled service, so the Gateway speaks TLS to
    /// it and verifies it against the cell's CA bundle.
    pub backend_tls_policies: Vec<BackendTlsPolicy>,
    /// The ConfigMap with that bundle (`<cell>-ca-bundle`, key `ca.crt`: what the policies
    /// name; a CA certificate is public).
    pub ca_bundles: Vec<ConfigMap>,
}

/// The enabled Titan services of a cell, in the operator's order.
fn enabled(cell: &Cell) -> impl Iterator<Item = ServiceKind> + '_ {
    ServiceKind::TITAN
        .into_iter()
        .filter(|kind| cell.spec.services.get(*kind).is_some_and(|s| s.enabled))
}

fn parent_refs(edge: &Edge) -> Vec<ParentRef> {
    vec![ParentRef {
        group: GROUP.into(),
        kind: "Gateway".into(),
        namespace: edge.gateway.namespace.clone(),
        name: edge.gateway.name.clone(),
        section_name: edge.gateway.section_name.clone(),
    }]
}

/// Name of the ConfigMap with a cell's CA bundle, which its BackendTLSPolicies name.
pub fn ca_bundle_name(cell: &str) -> String {
    format!("{cell}-ca-bundle")
}

/// The routes `cell` asks for (none without `spec.edge`); each rule's backend is the core
/// Service the Service controller makes for that service, named after it. Under `spec.tls`,
/// once the cell's CA `bundle` is known, the policies that make the Gateway reach the services
/// over TLS.
pub fn build(cell_meta: &CellMeta, bundle: Option<&str>) -> Routes {
    let cell = cell_meta.cell;
    let Some(edge) = &cell.spec.edge else {
        return Routes::default();
    };
    let backend = |kind: ServiceKind, port| {
        vec![BackendRef {
            name: kind.as_str().into(),
            port,
        }]
    };
    let grpc_rules: Vec<GrpcRouteRule> = enabled(cell)
        .filter_map(|kind| {
            Some(GrpcRouteRule {
                matches: vec![GrpcRouteMatch {
                    method: GrpcMethodMatch {
                        type_: "Exact".into(),
                        service: grpc_service(kind)?.into(),
                    },
                }],
                backend_refs: backend(kind, GRPC_PORT),
            })
        })
        .collect();
    let http_rules: Vec<HttpRouteRule> = enabled(cell)
        .filter(|kind| !http_paths(*kind).is_empty())
        .map(|kind| HttpRouteRule {
            matches: http_paths(kind)
                .iter()
                .map(|public| HttpRouteMatch {
                    path: HttpPathMatch {
                        type_: match public.matching {
                            PathMatch::Exact => "Exact",
                            PathMatch::Prefix => "PathPrefix",
                        }
                        .into(),
                        value: public.path.into(),
                    },
                })
                .collect(),
            backend_refs: backend(kind, HTTP_PORT),
        })
        .collect();

    let mut routes = Routes::default();
    // A route without rules would not be empty: the Gateway API defaults it to one rule taking
    // every request, with no backend to send it to.
    if !grpc_rules.is_empty() {
        let mut route = GrpcRoute::new(
            &grpc_route_name(&cell_meta.name),
            GrpcRouteSpec {
                parent_refs: parent_refs(edge),
                hostnames: edge.hostnames.clone(),
                rules: grpc_rules,
            },
        );
        route.metadata = cell_meta.meta(&grpc_route_name(&cell_meta.name), COMPONENT);
        routes.grpc_routes.push(route);
    }
    if !http_rules.is_empty() {
        let mut route = HttpRoute::new(
            &http_route_name(&cell_meta.name),
            HttpRouteSpec {
                parent_refs: parent_refs(edge),
                hostnames: edge.hostnames.clone(),
                rules: http_rules,
            },
        );
        route.metadata = cell_meta.meta(&http_route_name(&cell_meta.name), COMPONENT);
        routes.http_routes.push(route);
    }
    if let Some(bundle) = bundle.filter(|_| cell.spec.tls.is_some()) {
        let bundle_name = ca_bundle_name(&cell_meta.name);
        routes.ca_bundles.push(ConfigMap {
            metadata: cell_meta.meta(&bundle_name, COMPONENT),
            data: Some(BTreeMap::from([(
                TLS_CA_KEY.to_string(),
                bundle.to_string(),
            )])),
            ..Default::default()
        });
        routes.backend_tls_policies = enabled(cell)
            .map(|kind| {
                let name = format!("{}-{}-backend-tls", cell_meta.name, kind.as_str());
                let mut policy = BackendTlsPolicy::new(
                    &name,
                    BackendTlsPolicySpec {
                        target_refs: vec![PolicyTargetRef {
                            group: String::new(),
                            kind: "Service".into(),
                            name: kind.as_str().into(),
                        }],
                        validation: BackendTlsValidation {
                            ca_certificate_refs: vec![LocalObjectRef {
                                group: String::new(),
                                kind: "ConfigMap".into(),
                                name: bundle_name.clone(),
                            }],
                            hostname: format!("{}.{}.svc", kind.as_str(), cell_meta.namespace),
                        },
                    },
                );
                policy.metadata = cell_meta.meta(&name, COMPONENT);
                policy
            })
            .collect();
    }
    routes
}

/// The routes as a person names them: `GRPCRoute <name>`, `HTTPRoute <name>`.
pub fn names(
    grpc_routes: &[GrpcRoute],
    http_routes: &[HttpRoute],
    policies: &[BackendTlsPolicy],
) -> Vec<String> {
    fn name(kind: &str, meta: &ObjectMeta) -> String {
        format!("{kind} {}", meta.name.as_deref().unwrap_or_default())
    }
    grpc_routes
        .iter()
        .map(|r| name("GRPCRoute", &r.metadata))
        .chain(http_routes.iter().map(|r| name("HTTPRoute", &r.metadata)))
        .chain(
            policies
                .iter()
                .map(|p| name("BackendTLSPolicy", &p.metadata)),
        )
        .collect()
}

/// The cell's `EdgeRoutesApplied`, while it has `spec.edge`: whether the API server serves the
/// route kinds (`served`) and, for a cell with TLS, `BackendTLSPolicy` (`backend_tls`), and
/// whether every route and policy it wants (`desired`) is among those there now (`present`).
pub fn condition(
    cell: &Cell,
    served: bool,
    backend_tls: bool,
    desired: &[String],
    present: &[String],
) -> Option<Observed> {
    let edge = cell.spec.edge.as_ref()?;
    let gateway = format!("{}/{}", edge.gateway.namespace, edge.gateway.name);
    Some(if !served {
        Observed::new(
            EDGE_ROUTES_APPLIED,
            false,
            "GatewayAPINotInstalled",
            format!(
                "spec.edge asks for routes from gateway {gateway}, but the API server does not serve GRPCRoute and HTTPRoute ({GROUP}/v1): install the Gateway API's standard CRDs (v1.2 or later) and restart the operator, or remove spec.edge"
            ),
        )
    } else if cell.spec.tls.is_some() && !backend_tls {
        Observed::new(
            EDGE_ROUTES_APPLIED,
            false,
            "BackendTLSPolicyNotInstalled",
            format!(
                "the routes attach to gateway {gateway}, but the cell's services serve TLS (spec.tls) and the API server does not serve BackendTLSPolicy ({GROUP}/v1), which tells the Gateway to reach them over TLS and verify them: install the Gateway API's standard CRDs v1.4 or later and restart the operator"
            ),
        )
    } else if let Some(missing) = desired.iter().find(|d| !present.contains(d)) {
        Observed::new(
            EDGE_ROUTES_APPLIED,
            false,
            "RoutesNotApplied",
            format!("{missing} is not applied yet"),
        )
    } else if desired.is_empty() {
        Observed::new(
            EDGE_ROUTES_APPLIED,
            true,
            "NoRoutes",
            "no enabled service has a public route",
        )
    } else {
        Observed::new(
            EDGE_ROUTES_APPLIED,
            true,
            "RoutesApplied",
            format!("{} attach to gateway {gateway}", desired.join(" and ")),
        )
    })
}
