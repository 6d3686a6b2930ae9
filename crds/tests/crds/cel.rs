//! The CRDs' CEL rules (`x-kubernetes-validations`) evaluated client-side with kube's CEL
//! engine (`titan_crds::admission`), as the API server evaluates them at admission; no API server
//! is needed.

use kube::CustomResourceExt;
use serde_json::{Value, json};
use titan_crds::{Cell, Service, admission};

/// The messages of the rules `object` breaks (creation, or an update from `old`).
fn broken<K: CustomResourceExt>(object: Value, old: Option<Value>) -> Vec<String> {
    admission::broken_rules::<K>(&object, old.as_ref())
        .into_iter()
        .map(|e| e.message)
        .collect()
}

fn cell(spec: Value) -> Value {
    json!({"apiVersion": "commerce.titan.dev/v1alpha1", "kind": "Cell", "metadata": {"name": "sg-1"}, "spec": spec})
}

fn service(spec: Value) -> Value {
    json!({"apiVersion": "commerce.titan.dev/v1alpha1", "kind": "Service", "metadata": {"name": "x", "namespace": "titan-sg-1"}, "spec": spec})
}

#[test]
fn a_plain_cell_passes() {
    assert_eq!(
        broken::<Cell>(cell(json!({"version": "0.1.0"})), None),
        Vec::<String>::new()
    );
}

#[test]
fn an_external_datastore_needs_a_secret_name() {
    let without =
        cell(json!({"version": "0.1.0", "datastores": {"redis": {"provider": "external"}}}));
    assert_eq!(
        broken::<Cell>(without, None),
        ["an external datastore needs secretName: the Secret that holds its connection URL"]
    );
    let with = cell(
        json!({"version": "0.1.0", "datastores": {"redis": {"provider": "external", "secretName": "r"}}}),
    );
    assert!(broken::<Cell>(with, None).is_empty());
}

#[test]
fn autoscaling_bounds_must_be_ordered_and_exclude_replicas() {
    let bad = cell(json!({"version": "0.1.0", "services": {"fraud": {
        "replicas": 2,
        "autoscaling": {"minReplicas": 5, "maxReplicas": 3, "targetCPUUtilizationPercentage": 70}
    }}}));
    let mut messages = broken::<Cell>(bad, None);
    messages.sort();
    assert_eq!(
        messages,
        [
            "minReplicas must not exceed maxReplicas",
            "set replicas or autoscaling, not both: with autoscaling the autoscaler owns replicas",
        ]
    );
}

#[test]
fn the_cell_namespace_cannot_change() {
    let old = cell(json!({"version": "0.1.0", "namespace": "a"}));
    assert_eq!(
        broken::<Cell>(
            cell(json!({"version": "0.1.0", "namespace": "b"})),
            Some(old.clone())
        ),
        ["namespace is immutable"]
    );
    // Removing it is refused by `has(self.namespace) == has(oldSelf.namespace)` on the API
    // server; kube-cel 0.8 evaluates `has()` on `oldSelf` as false, so that case is not asserted
    // here (the rule's presence is checked by the operator's CRD tests).
    assert!(
        broken::<Cell>(
            cell(json!({"version": "0.2.0", "namespace": "a"})),
            Some(old)
        )
        .is_empty()
    );
}

#[test]
fn an_enabled_turn_server_needs_a_realm() {
    let bad = cell(json!({"version": "0.1.0", "media": {"turn": {"enabled": true}}}));
    assert_eq!(
        broken::<Cell>(bad, None),
        ["an enabled TURN server needs a realm"]
    );
}

#[test]
fn only_custom_services_set_a_command_and_kind_and_cell_are_immutable() {
    let titan =
        service(json!({"cell": "sg-1", "service": "flashsale", "image": "t:1", "command": ["sh"]}));
    assert_eq!(
        broken::<Service>(titan, None),
        ["only a custom service sets command or args: Titan services run `titan serve <service>`"]
    );
    let custom =
        service(json!({"cell": "sg-1", "service": "custom", "image": "w:1", "command": ["w"]}));
    assert!(broken::<Service>(custom.clone(), None).is_empty());
    let moved = service(json!({"cell": "eu-2", "service": "coupon", "image": "w:1"}));
    let mut messages = broken::<Service>(moved, Some(custom));
    messages.sort();
    assert_eq!(
        messages,
        [
            "cell is immutable",
            "service is immutable: create another Service instead"
        ]
    );
}

#[test]
fn the_turn_relay_range_is_ordered_and_small_enough_to_list_in_a_service() {
    let turn = |min: i32, max: i32| {
        cell(json!({"version": "0.1.0", "media": {"turn": {
            "enabled": true, "realm": "r", "listeningPort": 3478, "minPort": min, "maxPort": max
        }}}))
    };
    let message = "the relay port range must be ordered and hold at most 200 ports: each one is a port of the TURN Service";
    assert_eq!(broken::<Cell>(turn(50000, 49000), None), [message]);
    assert_eq!(broken::<Cell>(turn(49000, 49200), None), [message]);
    assert!(broken::<Cell>(turn(49000, 49199), None).is_empty());
}

#[test]
fn instances_are_a_cloudnative_pg_setting() {
    let with = |provider: &str| {
        cell(
            json!({"version": "0.1.0", "datastores": {"postgres": {"provider": provider, "instances": 3}}}),
        )
    };
    assert_eq!(
        broken::<Cell>(with("builtin"), None),
        ["instances is a cloudnative-pg setting: a builtin PostgreSQL runs one instance"]
    );
    assert!(broken::<Cell>(with("cloudnative-pg"), None).is_empty());
}

#[test]
fn a_builtin_datastore_keeps_its_volume_size() {
    let sized = |provider: &str, storage: &str| {
        cell(json!({"version": "0.1.0", "datastores": {
            "postgres": {"provider": provider, "storage": storage},
            "redis": {"provider": "builtin", "storage": "1Gi"}
        }}))
    };
    let message = "storage of a builtin datastore cannot change: a StatefulSet's volume claim is immutable; expand its PVC instead";
    assert_eq!(
        broken::<Cell>(sized("builtin", "20Gi"), Some(sized("builtin", "10Gi")))
            .into_iter()
            .filter(|m| m == message)
            .count(),
        1,
        "only PostgreSQL's size changed"
    );
    // CloudNativePG resizes its own volumes.
    assert!(
        !broken::<Cell>(
            sized("cloudnative-pg", "20Gi"),
            Some(sized("cloudnative-pg", "10Gi"))
        )
        .iter()
        .any(|m| m == message)
    );
}

fn named<K: CustomResourceExt>(name: &str, spec: Value) -> Value {
    let mut object = json!({"apiVersion": "commerce.titan.dev/v1alpha1", "kind": K::crd().spec.names.kind, "metadata": {"name": name}, "spec": spec});
    if K::crd().spec.scope == "Namespaced" {
        object["metadata"]["namespace"] = json!("titan-sg-1");
    }
    object
}

const CELL_NAME_IS_A_LABEL: &str = "a Cell name has at most 63 characters: it is the value of the commerce.titan.dev/cell label on every object of the cell";
const CELL_NAME_MAKES_A_NAMESPACE: &str = "a Cell without spec.namespace lives in the namespace titan-<name>, a DNS label: its name needs at most 57 characters and no '.' (or set spec.namespace)";

#[test]
fn a_cell_name_makes_a_valid_namespace() {
    let plain = json!({"version": "0.1.0"});
    // `titan-` and 57 characters make the longest DNS label, 63 characters.
    let longest = "a".repeat(57);
    let cell: Cell = serde_json::from_value(named::<Cell>(&longest, plain.clone())).expect("cell");
    assert_eq!(cell.namespace_name().len(), 63);
    assert!(broken::<Cell>(named::<Cell>(&longest, plain.clone()), None).is_empty());
    for name in ["a".repeat(58), "edge.prod".into()] {
        assert_eq!(
            broken::<Cell>(named::<Cell>(&name, plain.clone()), None),
            [CELL_NAME_MAKES_A_NAMESPACE],
            "{name}"
        );
    }
}

#[test]
fn a_cell_with_its_own_namespace_needs_only_a_label_value_for_a_name() {
    let own = json!({"version": "0.1.0", "namespace": "edge"});
    for name in ["edge.prod".to_string(), "a".repeat(63)] {
        assert!(
            broken::<Cell>(named::<Cell>(&name, own.clone()), None).is_empty(),
            "{name}"
        );
    }
    assert_eq!(
        broken::<Cell>(named::<Cell>(&"a".repeat(64), own), None),
        [CELL_NAME_IS_A_LABEL]
    );
    let mut both = broken::<Cell>(
        named::<Cell>(&"a".repeat(64), json!({"version": "0.1.0"})),
        None,
    );
    both.sort();
    assert_eq!(both, [CELL_NAME_IS_A_LABEL, CELL_NAME_MAKES_A_NAMESPACE]);
}

#[test]
fn a_service_name_is_a_dns_label() {
    let spec = json!({"cell": "sg-1", "service": "coupon", "image": "t:1"});
    let message = "a Service name has at most 63 characters and no '.': it names the service's Deployment, container and core Service, and is a label value";
    assert!(broken::<Service>(named::<Service>(&"a".repeat(63), spec.clone()), None).is_empty());
    for name in ["a".repeat(64), "coupon.v2".into()] {
        assert_eq!(
            broken::<Service>(named::<Service>(&name, spec.clone()), None),
            [message],
            "{name}"
        );
    }
}

#[test]
fn a_tag_in_the_image_must_be_the_version() {
    for image in [
        "ghcr.io/titan/titan",
        "ghcr.io/titan/titan:0.1.0",
        "host:5000/titan",
        "host:5000/titan:0.1.0",
        "titan@sha256:4f53cda18c2baa0c",
        "host:5000/titan:0.1.0@sha256:4f53cda18c2baa0c",
    ] {
        assert_eq!(
            broken::<Cell>(cell(json!({"version": "0.1.0", "image": image})), None),
            Vec::<String>::new(),
            "{image}"
        );
    }
    for image in [
        "ghcr.io/titan/titan:10.1.0",
        "host:5000/titan:latest",
        "titan:0.2.0@sha256:4f53cda18c2baa0c",
    ] {
        assert_eq!(
            broken::<Cell>(cell(json!({"version": "0.1.0", "image": image})), None),
            [
                "spec.image has a tag other than spec.version: drop the tag (the version is the tag) or make them equal"
            ],
            "{image}"
        );
    }
}

#[test]
fn a_pinned_image_moves_with_the_version() {
    let pinned = "titan@sha256:4f53cda18c2baa0c";
    let old = cell(json!({"version": "0.1.0", "image": pinned}));
    assert_eq!(
        broken::<Cell>(
            cell(json!({"version": "0.2.0", "image": pinned})),
            Some(old.clone())
        ),
        [
            "spec.image is pinned by digest: change its digest together with spec.version, or the services keep running the pinned image"
        ]
    );
    assert!(
        broken::<Cell>(
            cell(json!({"version": "0.2.0", "image": "titan@sha256:0000aaaa"})),
            Some(old)
        )
        .is_empty()
    );
}

#[test]
fn postgres_backups_and_restores_are_cloudnative_pg_settings_with_their_sources() {
    let s3 =
        json!({"endpoint": "https://s3.example", "bucket": "titan", "credentialsSecret": "s3"});
    let backup = json!({"schedule": "0 0 3 * * *"});
    let ok = cell(json!({"version": "0.1.0", "datastores": {
        "postgres": {"provider": "cloudnative-pg", "backup": backup, "restore": {"cell": "old"}},
        "objectStorage": s3,
    }}));
    assert_eq!(broken::<Cell>(ok, None), Vec::<String>::new());

    let builtin = cell(json!({"version": "0.1.0", "datastores": {
        "postgres": {"provider": "builtin", "backup": backup}, "objectStorage": s3,
    }}));
    assert_eq!(
        broken::<Cell>(builtin, None),
        ["backup and restore are cloudnative-pg settings"]
    );
    let no_store = cell(json!({"version": "0.1.0", "datastores": {
        "postgres": {"provider": "cloudnative-pg", "backup": backup, "restore": {"cell": "old"}},
    }}));
    let mut messages = broken::<Cell>(no_store, None);
    messages.sort();
    assert_eq!(
        messages,
        [
            "postgres backups to the object store need spec.datastores.objectStorage",
            "restoring postgres from the object store needs spec.datastores.objectStorage (its endpoint and credentials)",
        ]
    );
    let snapshots = cell(json!({"version": "0.1.0", "datastores": {"postgres": {
        "provider": "cloudnative-pg",
        "backup": {"schedule": "@daily", "method": "volumeSnapshot"},
        "restore": {"volumeSnapshot": "snap-1"},
    }}}));
    assert_eq!(broken::<Cell>(snapshots, None), Vec::<String>::new());
    let two_sources = cell(json!({"version": "0.1.0", "datastores": {"postgres": {
        "provider": "cloudnative-pg",
        "restore": {"volumeSnapshot": "snap-1", "cell": "old", "targetTime": "2026-12-01T10:00:00Z"},
    }, "objectStorage": s3}}));
    let mut messages = broken::<Cell>(two_sources, None);
    messages.sort();
    assert_eq!(
        messages,
        [
            "restore from exactly one of cell, destinationPath and volumeSnapshot",
            "targetTime needs the archived WAL of an object store: a volume snapshot restores as it was taken",
        ]
    );
    let class_without_snapshots = cell(json!({"version": "0.1.0", "datastores": {"postgres": {
        "provider": "cloudnative-pg",
        "backup": {"schedule": "@daily", "volumeSnapshotClass": "csi"},
    }, "objectStorage": s3}}));
    assert_eq!(
        broken::<Cell>(class_without_snapshots, None),
        ["volumeSnapshotClass is a volumeSnapshot setting"]
    );
    // A running cell cannot be re-bootstrapped from a backup.
    let running = cell(json!({"version": "0.1.0", "datastores": {
        "postgres": {"provider": "cloudnative-pg"}, "objectStorage": s3,
    }}));
    let restoring = cell(json!({"version": "0.1.0", "datastores": {
        "postgres": {"provider": "cloudnative-pg", "restore": {"cell": "old"}}, "objectStorage": s3,
    }}));
    assert_eq!(
        broken::<Cell>(restoring, Some(running)),
        [
            "restore only bootstraps a new cluster: set it when the cell is created, and leave it as it is"
        ]
    );
}

#[test]
fn backup_rules_pass_with_every_schedule_form_and_without_postgres() {
    let with = |schedule: &str| {
        cell(json!({"version": "0.1.0", "datastores": {
            "redis": {"provider": "builtin"},
            "postgres": {"provider": "cloudnative-pg", "backup": {"schedule": schedule, "method": "volumeSnapshot"}},
        }}))
    };
    for schedule in ["0 0 3 * * *", "@daily", "@every 6h"] {
        assert!(
            broken::<Cell>(with(schedule), None).is_empty(),
            "{schedule}"
        );
    }
    // No postgres at all: the datastores rules still evaluate.
    let redis_only =
        cell(json!({"version": "0.1.0", "datastores": {"redis": {"provider": "builtin"}}}));
    assert!(broken::<Cell>(redis_only, None).is_empty());
}
