//! Build stage, isolation: the NetworkPolicies that fence a cell in (default deny; traffic
//! inside the cell, DNS, the public ports, the way out), and the ResourceQuota and LimitRange
//! that cap it at `spec.capacity`.
//!
//! A cell is one namespace, so "inside the cell" is "the same namespace": nothing in another
//! cell's namespace matches, and another cell's default-deny keeps this one out of it.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::{
        core::v1::{LimitRange, LimitRangeItem, LimitRangeSpec, ResourceQuota, ResourceQuotaSpec},
        networking::v1::{
            IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule,
            NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec,
        },
    },
    apimachinery::pkg::{
        api::resource::Quantity,
        apis::meta::v1::{LabelSelector, LabelSelectorRequirement},
        util::intstr::IntOrString,
    },
};
use titan_crds::cell::PostgresProvider;

use super::{build::Scope, media};
use crate::{
    labels,
    service::build::{GRPC_PORT, HTTP_PORT},
};

/// Namespace CloudNativePG's operator runs in by default; it must reach the instances' status
/// port.
const CNPG_NAMESPACE: &str = "cnpg-system";
/// The cloud metadata endpoint: pods have no business there, and it hands out node credentials.
const METADATA_ADDRESS: &str = "169.254.169.254/32";

/// The isolation objects of a cell.
#[derive(Debug, Clone, PartialEq)]
pub struct IsolationObjects {
    /// The quota, when the capacity names CPU or memory.
    pub resource_quotas: Vec<ResourceQuota>,
    /// Container defaults and maxima.
    pub limit_ranges: Vec<LimitRange>,
    /// Default deny and the allowed paths.
    pub network_policies: Vec<NetworkPolicy>,
}

fn port(protocol: &str, number: i32, end: Option<i32>) -> NetworkPolicyPort {
    NetworkPolicyPort {
        protocol: Some(protocol.into()),
        port: Some(IntOrString::Int(number)),
        end_port: end,
    }
}

fn matching(labels: BTreeMap<String, String>) -> LabelSelector {
    LabelSelector {
        match_labels: Some(labels),
        ..Default::default()
    }
}

/// Every pod of the namespace the policy lives in.
fn all_pods() -> LabelSelector {
    LabelSelector::default()
}

fn policy(scope: &Scope, name: &str, spec: NetworkPolicySpec) -> NetworkPolicy {
    NetworkPolicy {
        metadata: scope.meta(name, "isolation"),
        spec: Some(spec),
    }
}

/// Ingress from anywhere to `pods` on `ports`.
fn public(
    scope: &Scope,
    name: &str,
    pods: LabelSelector,
    ports: Vec<NetworkPolicyPort>,
) -> NetworkPolicy {
    policy(
        scope,
        name,
        NetworkPolicySpec {
            pod_selector: Some(pods),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                ports: Some(ports),
                ..Default::default()
            }]),
            ..Default::default()
        },
    )
}

fn network_policies(scope: &Scope) -> Vec<NetworkPolicy> {
    let spec = &scope.cell.spec;
    let same_namespace = NetworkPolicyPeer {
        pod_selector: Some(all_pods()),
        ..Default::default()
    };
    let mut policies = vec![
        policy(
            scope,
            "default-deny",
            NetworkPolicySpec {
                pod_selector: Some(all_pods()),
                policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
                ..Default::default()
            },
        ),
        policy(
            scope,
            "allow-within-cell",
            NetworkPolicySpec {
                pod_selector: Some(all_pods()),
                policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
                ingress: Some(vec![NetworkPolicyIngressRule {
                    from: Some(vec![same_namespace.clone()]),
                    ..Default::default()
                }]),
                egress: Some(vec![NetworkPolicyEgressRule {
                    to: Some(vec![same_namespace]),
                    ..Default::default()
                }]),
            },
        ),
        policy(
            scope,
            "allow-dns",
            NetworkPolicySpec {
                pod_selector: Some(all_pods()),
                policy_types: Some(vec!["Egress".into()]),
                egress: Some(vec![NetworkPolicyEgressRule {
                    to: Some(vec![NetworkPolicyPeer {
                        namespace_selector: Some(matching(BTreeMap::from([(
                            "kubernetes.io/metadata.name".to_string(),
                            "kube-system".to_string(),
                        )]))),
                        pod_selector: Some(matching(BTreeMap::from([(
                            "k8s-app".to_string(),
                            "kube-dns".to_string(),
                        )]))),
                        ..Default::default()
                    }]),
                    ports: Some(vec![port("UDP", 53, None), port("TCP", 53, None)]),
                }]),
                ..Default::default()
            },
        ),
        // External datastores, object storage, SMTP, carriers and TURN peers live outside the
        // cluster; other cells stay unreachable because their own default-deny refuses this
        // cell's traffic.
        policy(
            scope,
            "allow-egress-outside",
            NetworkPolicySpec {
                pod_selector: Some(all_pods()),
                policy_types: Some(vec!["Egress".into()]),
                egress: Some(vec![NetworkPolicyEgressRule {
                    to: Some(vec![
                        NetworkPolicyPeer {
                            ip_block: Some(IPBlock {
                                cidr: "0.0.0.0/0".into(),
                                except: Some(vec![METADATA_ADDRESS.into()]),
                            }),
                            ..Default::default()
                        },
                        NetworkPolicyPeer {
                            ip_block: Some(IPBlock {
                                cidr: "::/0".into(),
                                except: None,
                            }),
                            ..Default::default()
                        },
                    ]),
                    ..Default::default()
                }]),
                ..Default::default()
            },
        ),
        public(
            scope,
            "allow-public-services",
            LabelSelector {
                match_expressions: Some(vec![LabelSelectorRequirement {
                    key: labels::SERVICE.into(),
                    operator: "Exists".into(),
                    values: None,
                }]),
                ..Default::default()
            },
            vec![port("TCP", GRPC_PORT, None), port("TCP", HTTP_PORT, None)],
        ),
    ];
    if let Some(turn) = media::enabled_turn(scope.cell) {
        policies.push(public(
            scope,
            "allow-public-turn",
            matching(scope.selector(media::TURN)),
            vec![
                port("UDP", turn.listening_port, None),
                port("TCP", turn.listening_port, None),
                port("UDP", turn.min_port, Some(turn.max_port)),
            ],
        ));
    }
    if media::enabled_rtmp(scope.cell).is_some() {
        policies.push(public(
            scope,
            "allow-public-rtmp",
            matching(scope.selector(media::RTMP)),
            vec![
                port("TCP", media::RTMP_PORT, None),
                port("TCP", media::HLS_PORT, None),
            ],
        ));
    }
    if spec.datastores.postgres.provider == PostgresProvider::CloudnativePg {
        policies.push(policy(
            scope,
            "allow-cloudnative-pg",
            NetworkPolicySpec {
                pod_selector: Some(matching(BTreeMap::from([(
                    "cnpg.io/cluster".to_string(),
                    super::connections::POSTGRES.to_string(),
                )]))),
                policy_types: Some(vec!["Ingress".into()]),
                ingress: Some(vec![NetworkPolicyIngressRule {
                    from: Some(vec![NetworkPolicyPeer {
                        namespace_selector: Some(matching(BTreeMap::from([(
                            "kubernetes.io/metadata.name".to_string(),
                            CNPG_NAMESPACE.to_string(),
                        )]))),
                        ..Default::default()
                    }]),
                    ports: Some(vec![port("TCP", 8000, None), port("TCP", 5432, None)]),
                }]),
                ..Default::default()
            },
        ));
    }
    policies
}

/// Default requests and memory limit of a container that sets none (the quota counts requests,
/// so every container needs them), and no container more memory than the whole cell.
///
/// CPU has no maximum: a LimitRange maximum makes a limit mandatory, and the cell's workloads set
/// no CPU limit on purpose (throttling hurts latency; the quota caps the cell's requests).
fn limit_range(scope: &Scope) -> LimitRange {
    let quantities = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
            .collect::<BTreeMap<_, _>>()
    };
    let max = scope
        .cell
        .spec
        .capacity
        .as_ref()
        .and_then(|c| c.memory.clone())
        .map(|memory| BTreeMap::from([("memory".to_string(), memory)]));
    LimitRange {
        metadata: scope.meta("cell-defaults", "isolation"),
        spec: Some(LimitRangeSpec {
            limits: vec![LimitRangeItem {
                type_: "Container".into(),
                default_request: Some(quantities(&[("cpu", "100m"), ("memory", "128Mi")])),
                default: Some(quantities(&[("memory", "512Mi")])),
                max,
                ..Default::default()
            }],
        }),
    }
}

fn resource_quota(scope: &Scope) -> Option<ResourceQuota> {
    let capacity = scope.cell.spec.capacity.as_ref()?;
    let hard: BTreeMap<String, Quantity> = [
        ("requests.cpu", &capacity.cpu),
        ("requests.memory", &capacity.memory),
    ]
    .into_iter()
    .filter_map(|(k, v)| Some((k.to_string(), v.clone()?)))
    .collect();
    (!hard.is_empty()).then(|| ResourceQuota {
        metadata: scope.meta("cell-capacity", "isolation"),
        spec: Some(ResourceQuotaSpec {
            hard: Some(hard),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// The isolation objects of the cell in `scope`.
pub fn build(scope: &Scope) -> IsolationObjects {
    IsolationObjects {
        resource_quotas: resource_quota(scope).into_iter().collect(),
        limit_ranges: vec![limit_range(scope)],
        network_policies: network_policies(scope),
    }
}
