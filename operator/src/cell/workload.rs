//! Pieces the cell's own workloads (datastores, media servers) share: resources, security
//! contexts, ports and Services, so each workload only says what is particular to it.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::core::v1::{
        Capabilities, ContainerPort, PodSecurityContext, ResourceRequirements, SeccompProfile,
        SecurityContext, Service as CoreService, ServicePort, ServiceSpec,
    },
    apimachinery::pkg::{api::resource::Quantity, util::intstr::IntOrString},
};

use super::build::CellMeta;

/// Requests of CPU and memory and a memory limit; no CPU limit, since throttling a datastore
/// or a media relay hurts latency more than it protects neighbours (the quota caps the cell).
pub fn resources(cpu: &str, memory: &str, memory_limit: &str) -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_string(), Quantity(cpu.into())),
            ("memory".to_string(), Quantity(memory.into())),
        ])),
        limits: Some(BTreeMap::from([(
            "memory".to_string(),
            Quantity(memory_limit.into()),
        )])),
        ..Default::default()
    }
}

/// A container that runs as `uid`, never escalates and has no capabilities.
pub fn container_security(uid: i64) -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        run_as_non_root: Some(true),
        run_as_user: Some(uid),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A pod whose volumes belong to group `uid`, so a non-root server can write its data.
pub fn pod_security(uid: i64) -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(uid),
        run_as_group: Some(uid),
        fs_group: Some(uid),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A named container port.
pub fn container_port(name: &str, port: i32, protocol: &str) -> ContainerPort {
    ContainerPort {
        name: Some(name.into()),
        container_port: port,
        protocol: Some(protocol.into()),
        ..Default::default()
    }
}

/// A Service port forwarding `port` to `target` on the pods.
pub fn service_port(name: &str, port: i32, target: i32, protocol: &str) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port,
        target_port: Some(IntOrString::Int(target)),
        protocol: Some(protocol.into()),
        ..Default::default()
    }
}

/// A Service in front of one component's pods; `headless` for a StatefulSet's stable names.
pub fn service(
    cell_meta: &CellMeta,
    component: &str,
    type_: &str,
    headless: bool,
    ports: Vec<ServicePort>,
) -> CoreService {
    CoreService {
        metadata: cell_meta.meta(component, component),
        spec: Some(ServiceSpec {
            type_: Some(type_.into()),
            cluster_ip: headless.then(|| "None".to_string()),
            selector: Some(cell_meta.selector(component)),
            ports: Some(ports),
            ..Default::default()
        }),
        ..Default::default()
    }
}
