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

use super::{build::CellMeta, media};
use crate::{
    labels,
    shared::{ADMIN_PORT, GRPC_PORT, HTTP_PORT},
};

/// The label every namespace carries with its name (the API server sets it).
const NAMESPACE_NAME: &str = "kubernetes.io/metadata.name";
/// The cloud metadata endpoint: pods have no business there, and it hands out node credentials.
const METADATA_ADDRESS: &str = "169.254.169.254/32";

/// Pods of other namespaces, by labels: which namespaces, and which pods in them (every pod
/// when `pods` is empty).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Peers {
    /// Labels of the namespaces.
    pub namespaces: BTreeMap<String, String>,
    /// Labels of the pods in them.
    pub pods: BTreeMap<String, String>,
}

impl Peers {
    fn peer(&self) -> NetworkPolicyPeer {
        NetworkPolicyPeer {
            namespace_selector: Some(matching(self.namespaces.clone())),
            pod_selector: (!self.pods.is_empty()).then(|| matching(self.pods.clone())),
            ..Default::default()
        }
    }
}

/// Who, outside a cell, its NetworkPolicies let in or out: operator settings
/// (`titan-operator run --dns-namespace-selector …`), because they depend on the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkSettings {
    /// The cluster DNS every pod resolves names with (default kube-dns in kube-system).
    pub dns: Peers,
    /// CloudNativePG's operator, which must reach its instances (default every pod of
    /// `cnpg-system`).
    pub cloudnative_pg: Peers,
    /// The monitoring system scraping the Titan services' admin port (none by default).
    pub monitoring: Option<Peers>,
}

/// Default of `--dns-namespace-selector`: kube-dns's (CoreDNS's) namespace.
pub const DEFAULT_DNS_NAMESPACES: &str = "kubernetes.io/metadata.name=kube-system";
/// Default of `--dns-pod-selector`: kube-dns's (CoreDNS's) pods.
pub const DEFAULT_DNS_PODS: &str = "k8s-app=kube-dns";
/// Default of `--cnpg-namespace-selector`: where CloudNativePG's manifests install it.
pub const DEFAULT_CNPG_NAMESPACES: &str = "kubernetes.io/metadata.name=cnpg-system";

impl Default for NetworkSettings {
    /// The defaults of `titan-operator run`'s flags.
    fn default() -> Self {
        let labels = |k: &str, v: &str| BTreeMap::from([(k.to_string(), v.to_string())]);
        Self {
            dns: Peers {
                namespaces: labels(NAMESPACE_NAME, "kube-system"),
                pods: labels("k8s-app", "kube-dns"),
            },
            cloudnative_pg: Peers {
                namespaces: labels(NAMESPACE_NAME, "cnpg-system"),
                pods: BTreeMap::new(),
            },
            monitoring: None,
        }
    }
}

/// Why a label selector setting was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("label selector {selector:?}: {reason}")]
pub struct SelectorError {
    selector: String,
    reason: &'static str,
}

/// Parses `key=value,key=value` (equality only, as `matchLabels` holds); empty is no labels.
pub fn parse_labels(selector: &str) -> Result<BTreeMap<String, String>, SelectorError> {
    let error = |reason| SelectorError {
        selector: selector.to_string(),
        reason,
    };
    let mut labels = BTreeMap::new();
    for pair in selector.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| error("each entry must be key=value"))?;
        let (key, value) = (key.trim(), value.trim());
        if key.is_empty() {
            return Err(error("a key is empty"));
        }
        if value.contains(['=', '!']) || key.contains('!') {
            return Err(error("only key=value equality is supported"));
        }
        if labels.insert(key.to_string(), value.to_string()).is_some() {
            return Err(error("a key is repeated"));
        }
    }
    Ok(labels)
}

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

/// The pods of the Titan services (and custom workers): those with the service label.
fn titan_services() -> LabelSelector {
    LabelSelector {
        match_expressions: Some(vec![LabelSelectorRequirement {
            key: labels::SERVICE.into(),
            operator: "Exists".into(),
            values: None,
        }]),
        ..Default::default()
    }
}

/// Every pod of the namespace the policy lives in.
fn all_pods() -> LabelSelector {
    LabelSelector::default()
}

fn policy(cell_meta: &CellMeta, name: &str, spec: NetworkPolicySpec) -> NetworkPolicy {
    NetworkPolicy {
        metadata: cell_meta.meta(name, "isolation"),
        spec: Some(spec),
    }
}

/// Ingress from anywhere to `pods` on `ports`.
fn public(
    cell_meta: &CellMeta,
    name: &str,
    pods: LabelSelector,
    ports: Vec<NetworkPolicyPort>,
) -> NetworkPolicy {
    policy(
        cell_meta,
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

fn network_policies(cell_meta: &CellMeta, settings: &NetworkSettings) -> Vec<NetworkPolicy> {
    let spec = &cell_meta.cell.spec;
    let same_namespace = NetworkPolicyPeer {
        pod_selector: Some(all_pods()),
        ..Default::default()
    };
    let mut policies = vec![
        policy(
            cell_meta,
            "default-deny",
            NetworkPolicySpec {
                pod_selector: Some(all_pods()),
                policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
                ..Default::default()
            },
        ),
        policy(
            cell_meta,
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
            cell_meta,
            "allow-dns",
            NetworkPolicySpec {
                pod_selector: Some(all_pods()),
                policy_types: Some(vec!["Egress".into()]),
                egress: Some(vec![NetworkPolicyEgressRule {
                    to: Some(vec![settings.dns.peer()]),
                    ports: Some(vec![port("UDP", 53, None), port("TCP", 53, None)]),
                }]),
                ..Default::default()
            },
        ),
        // External datastores, object storage, SMTP, carriers and TURN peers live outside the
        // cluster; other cells stay unreachable because their own default-deny refuses this
        // cell's traffic.
        policy(
            cell_meta,
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
            cell_meta,
            "allow-public-services",
            titan_services(),
            vec![port("TCP", GRPC_PORT, None), port("TCP", HTTP_PORT, None)],
        ),
    ];
    // The admin port (/metrics) of the Titan services, to the monitoring system only: the
    // probes of the kubelet need no policy.
    if let Some(monitoring) = &settings.monitoring {
        policies.push(policy(
            cell_meta,
            "allow-monitoring",
            NetworkPolicySpec {
                pod_selector: Some(titan_services()),
                policy_types: Some(vec!["Ingress".into()]),
                ingress: Some(vec![NetworkPolicyIngressRule {
                    from: Some(vec![monitoring.peer()]),
                    ports: Some(vec![port("TCP", ADMIN_PORT, None)]),
                }]),
                ..Default::default()
            },
        ));
    }
    if let Some(turn) = media::enabled_turn(cell_meta.cell) {
        policies.push(public(
            cell_meta,
            "allow-public-turn",
            matching(cell_meta.selector(media::TURN)),
            vec![
                port("UDP", turn.listening_port, None),
                port("TCP", turn.listening_port, None),
                port("UDP", turn.min_port, Some(turn.max_port)),
            ],
        ));
    }
    if media::enabled_rtmp(cell_meta.cell).is_some() {
        policies.push(public(
            cell_meta,
            "allow-public-rtmp",
            matching(cell_meta.selector(media::RTMP)),
            vec![
                port("TCP", media::RTMP_PORT, None),
                port("TCP", media::HLS_PORT, None),
            ],
        ));
    }
    if spec.datastores.postgres.provider == PostgresProvider::CloudnativePg {
        policies.push(policy(
            cell_meta,
            "allow-cloudnative-pg",
            NetworkPolicySpec {
                pod_selector: Some(matching(BTreeMap::from([(
                    "cnpg.io/cluster".to_string(),
                    super::connections::POSTGRES.to_string(),
                )]))),
                policy_types: Some(vec!["Ingress".into()]),
                ingress: Some(vec![NetworkPolicyIngressRule {
                    from: Some(vec![settings.cloudnative_pg.peer()]),
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
fn limit_range(cell_meta: &CellMeta) -> LimitRange {
    let quantities = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
            .collect::<BTreeMap<_, _>>()
    };
    let max = cell_meta
        .cell
        .spec
        .capacity
        .as_ref()
        .and_then(|c| c.memory.clone())
        .map(|memory| BTreeMap::from([("memory".to_string(), memory)]));
    LimitRange {
        metadata: cell_meta.meta("cell-defaults", "isolation"),
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

fn resource_quota(cell_meta: &CellMeta) -> Option<ResourceQuota> {
    let capacity = cell_meta.cell.spec.capacity.as_ref()?;
    let hard: BTreeMap<String, Quantity> = [
        ("requests.cpu", &capacity.cpu),
        ("requests.memory", &capacity.memory),
    ]
    .into_iter()
    .filter_map(|(k, v)| Some((k.to_string(), v.clone()?)))
    .collect();
    (!hard.is_empty()).then(|| ResourceQuota {
        metadata: cell_meta.meta("cell-capacity", "isolation"),
        spec: Some(ResourceQuotaSpec {
            hard: Some(hard),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// The isolation objects of the cell in `cell_meta`, admitting the peers of `settings`.
pub fn build(cell_meta: &CellMeta, settings: &NetworkSettings) -> IsolationObjects {
    IsolationObjects {
        resource_quotas: resource_quota(cell_meta).into_iter().collect(),
        limit_ranges: vec![limit_range(cell_meta)],
        network_policies: network_policies(cell_meta, settings),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_settings_are_the_flags_defaults() {
        let defaults = NetworkSettings::default();
        assert_eq!(
            parse_labels(DEFAULT_DNS_NAMESPACES),
            Ok(defaults.dns.namespaces)
        );
        assert_eq!(parse_labels(DEFAULT_DNS_PODS), Ok(defaults.dns.pods));
        assert_eq!(
            parse_labels(DEFAULT_CNPG_NAMESPACES),
            Ok(defaults.cloudnative_pg.namespaces)
        );
        assert!(defaults.cloudnative_pg.pods.is_empty() && defaults.monitoring.is_none());
    }

    #[test]
    fn label_selectors_are_equality_pairs() {
        assert_eq!(
            parse_labels(" a=b , c.io/d=e "),
            Ok(BTreeMap::from([
                ("a".to_string(), "b".to_string()),
                ("c.io/d".to_string(), "e".to_string()),
            ]))
        );
        assert_eq!(parse_labels(""), Ok(BTreeMap::new()));
        for (bad, reason) in [
            ("a", "each entry must be key=value"),
            ("=b", "a key is empty"),
            ("a!=b", "only key=value equality is supported"),
            ("a==b", "only key=value equality is supported"),
            ("a=b,a=c", "a key is repeated"),
        ] {
            assert_eq!(
                parse_labels(bad).map_err(|e| e.to_string()),
                Err(format!("label selector {bad:?}: {reason}")),
            );
        }
    }
}
