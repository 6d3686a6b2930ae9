//! Reconcile rounds against the in-memory API server: what gets created, owned, pruned, left
//! alone, and how failures surface.

use std::sync::Arc;

use k8s_openapi::api::{
    apps::v1::{Deployment, StatefulSet},
    autoscaling::v2::HorizontalPodAutoscaler,
    batch::v1::Job,
    core::v1::{ConfigMap, Namespace, Pod, Service as CoreService},
    events::v1::Event,
    policy::v1::PodDisruptionBudget,
};
use kube::{
    Api, ResourceExt,
    api::{Patch, PatchParams, PostParams},
};
use serde_json::json;
use titan_crds::{Cell, Service};
use titan_operator::{Context, cell, cnpg::Cluster, conditions, metrics::Metrics, service};

use crate::support::{Fake, cell_fixture, seed_full_cell_secrets};

pub(crate) fn context(fake: &Fake) -> Arc<Context> {
    Arc::new(Context::new(
        fake.client.clone(),
        Metrics::new().expect("metrics"),
        Some("test".into()),
    ))
}

pub(crate) async fn create_cell(fake: &Fake, cell: &Cell) {
    Api::<Cell>::all(fake.client.clone())
        .create(&PostParams::default(), cell)
        .await
        .expect("create cell");
}

pub(crate) async fn get_cell(fake: &Fake, name: &str) -> Cell {
    Api::<Cell>::all(fake.client.clone())
        .get(name)
        .await
        .expect("get cell")
}

/// What the watches would make of one change to a Cell: a round; the round its finalizer
/// patch triggers, when that round only put the finalizer on (kube's `finalizer()` helper);
/// and, while the datastores the round built are not ready yet (nothing runs pods here), the
/// StatefulSet controller's and CloudNativePG's part (they report ready) and the round that
/// triggers.
pub(crate) async fn reconcile_cell(fake: &Fake, ctx: &Arc<Context>, name: &str) {
    let cell = get_cell(fake, name).await;
    let fresh = !cell.finalizers().iter().any(|f| f == cell::FINALIZER);
    cell::reconcile(Arc::new(cell), ctx.clone())
        .await
        .expect("cell reconcile");
    if fresh {
        cell::reconcile(Arc::new(get_cell(fake, name).await), ctx.clone())
            .await
            .expect("cell reconcile after the finalizer");
    }
    let cell = get_cell(fake, name).await;
    let namespace = cell.namespace_name();
    if ready_stateful_sets(fake, &namespace).await + ready_clusters(fake, &namespace).await > 0 {
        cell::reconcile(Arc::new(cell), ctx.clone())
            .await
            .expect("cell reconcile after the datastores");
    }
}

/// Plays the StatefulSet controller: every StatefulSet not yet ready reports itself ready;
/// returns how many did.
pub(crate) async fn ready_stateful_sets(fake: &Fake, namespace: &str) -> usize {
    let sets = Api::<StatefulSet>::namespaced(fake.client.clone(), namespace);
    let mut readied = 0;
    for s in sets.list(&Default::default()).await.expect("list").items {
        let ready = s
            .status
            .as_ref()
            .and_then(|st| st.ready_replicas)
            .unwrap_or(0);
        let wanted = s.spec.as_ref().and_then(|sp| sp.replicas).unwrap_or(1);
        let observed = s.status.as_ref().and_then(|st| st.observed_generation);
        if ready >= wanted && observed == s.metadata.generation {
            continue;
        }
        let status = json!({"status": {
            "observedGeneration": s.metadata.generation,
            "replicas": wanted, "readyReplicas": wanted, "availableReplicas": wanted
        }});
        sets.patch_status(
            &s.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&status),
        )
        .await
        .expect("statefulset status");
        readied += 1;
    }
    readied
}

/// Plays CloudNativePG: every Cluster not yet healthy reports itself healthy; returns how many
/// did.
pub(crate) async fn ready_clusters(fake: &Fake, namespace: &str) -> usize {
    let clusters = Api::<Cluster>::namespaced(fake.client.clone(), namespace);
    let mut readied = 0;
    for c in clusters
        .list(&Default::default())
        .await
        .expect("list")
        .items
    {
        if c.status.as_ref().and_then(|s| s.phase.as_deref())
            == Some(titan_operator::cnpg::HEALTHY_PHASE)
        {
            continue;
        }
        let status = json!({"status": {
            "instances": c.spec.instances, "readyInstances": c.spec.instances,
            "phase": titan_operator::cnpg::HEALTHY_PHASE
        }});
        clusters
            .patch_status(
                &c.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&status),
            )
            .await
            .expect("cluster status");
        readied += 1;
    }
    readied
}

pub(crate) async fn services_in(fake: &Fake, namespace: &str) -> Vec<Service> {
    Api::<Service>::namespaced(fake.client.clone(), namespace)
        .list(&Default::default())
        .await
        .expect("list services")
        .items
}

pub(crate) async fn reconcile_services(fake: &Fake, ctx: &Arc<Context>, namespace: &str) {
    for s in services_in(fake, namespace).await {
        service::reconcile(Arc::new(s), ctx.clone())
            .await
            .expect("service reconcile");
    }
}

/// Plays the workload controllers and CloudNativePG: every Deployment, StatefulSet and Cluster
/// reports itself rolled out.
pub(crate) async fn roll_out(fake: &Fake, namespace: &str) {
    let sets = Api::<StatefulSet>::namespaced(fake.client.clone(), namespace);
    for s in sets.list(&Default::default()).await.expect("list").items {
        let status = json!({"status": {
            "observedGeneration": s.metadata.generation,
            "replicas": 1, "readyReplicas": 1, "availableReplicas": 1
        }});
        sets.patch_status(
            &s.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&status),
        )
        .await
        .expect("statefulset status");
    }
    ready_clusters(fake, namespace).await;
    roll_out_deployments(fake, namespace).await;
}

/// Plays the Deployment controller: every Deployment reports itself rolled out.
async fn roll_out_deployments(fake: &Fake, namespace: &str) {
    let api = Api::<Deployment>::namespaced(fake.client.clone(), namespace);
    for d in api.list(&Default::default()).await.expect("list").items {
        let replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let status = json!({"status": {
            "observedGeneration": d.metadata.generation,
            "replicas": replicas, "readyReplicas": replicas, "updatedReplicas": replicas, "availableReplicas": replicas
        }});
        api.patch_status(
            &d.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&status),
        )
        .await
        .expect("deployment status");
    }
}

/// Plays the Job controller: every migration Job that has not finished reports success.
pub(crate) async fn complete_migrations(fake: &Fake, namespace: &str) -> usize {
    finish_jobs(fake, namespace, |_| true).await
}

/// Plays the Job controller for the Jobs `which` picks among the unfinished ones: they succeed.
pub(crate) async fn finish_jobs(
    fake: &Fake,
    namespace: &str,
    which: impl Fn(&Job) -> bool,
) -> usize {
    let jobs = Api::<Job>::namespaced(fake.client.clone(), namespace);
    let mut finished = 0;
    for job in jobs.list(&Default::default()).await.expect("list").items {
        let done = job.status.as_ref().and_then(|s| s.succeeded).unwrap_or(0) > 0;
        if done || !which(&job) {
            continue;
        }
        let status = json!({"status": {
            "succeeded": 1,
            "conditions": [{"type": "Complete", "status": "True"}]
        }});
        jobs.patch_status(
            &job.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&status),
        )
        .await
        .expect("job status");
        finished += 1;
    }
    finished
}

/// Cell, then its Services (their migrations succeed, then they roll out), then the Cell again:
/// the order in which watches would run them.
pub(crate) async fn round(fake: &Fake, ctx: &Arc<Context>, name: &str, namespace: &str) {
    reconcile_cell(fake, ctx, name).await;
    reconcile_services(fake, ctx, namespace).await;
    if complete_migrations(fake, namespace).await > 0 {
        reconcile_services(fake, ctx, namespace).await;
    }
    reconcile_cell(fake, ctx, name).await;
}

pub(crate) fn condition(
    status: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    type_: &str,
) -> (String, String) {
    let c = conditions::find(status, type_).unwrap_or_else(|| panic!("no {type_} condition"));
    (c.status.clone(), c.reason.clone())
}

#[tokio::test]
async fn a_new_cell_gets_its_namespace_and_one_service_per_enabled_titan_service() {
    let fake = Fake::new().await;
    let ctx = context(&fake);
    let mut cell = cell_fixture("minimal-cell.yaml");
    cell.spec.services.chat = Some(titan_crds::cell::CellService {
        enabled: false,
        ..Default::default()
    });
    create_cell(&fake, &cell).await;
    reconcile_cell(&fake, &ctx, "sg-1").await;

    let namespace = Api::<Namespace>::all(fake.client.clone())
        .get("titan-sg-1")
        .await
        .expect("namespace");
    assert_eq!(namespace.labels()["commerce.titan.dev/cell"], "sg-1");
    let services = services_in(&fake, "titan-sg-1").await;
    assert_eq!(services.len(), 15);
    let uid = get_cell(&fake, "sg-1").await.uid().expect("uid");
    for s in &services {
        let owner = &s.owner_references()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("Cell", uid.as_str(), Some(true))
        );
    }
    let status = get_cell(&fake, "sg-1").await.status.expect("status");
    assert_eq!(status.services.expect("services").summary, "0/15");
    assert_eq!(
        condition(&status.conditions, "Ready"),
        ("False".into(), "ServicesNotReady".into())
    );
    assert_eq!(condition(&status.conditions, "Progressing").0, "True");
    assert_eq!(
        status.observed_generation,
        get_cell(&fake, "sg-1").await.metadata.generation
    );
    assert!(fake.invalid.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_service_gets_its_objects_owned_and_becomes_ready_with_its_deployment() {
    let fake = Fake::new().await;
    let ctx = context(&fake);
    create_cell(&fake, &cell_fixture("minimal-cell.yaml")).await;
    round(&fake, &ctx, "sg-1", "titan-sg-1").await;

    let ns = "titan-sg-1";
    let flashsale = Api::<Service>::namespaced(fake.client.clone(), ns)
        .get("flashsale")
        .await
        .expect("tsvc");
    let uid = flashsale.uid().expect("uid");
    let deployment = Api::<Deployment>::namespaced(fake.client.clone(), ns)
        .get("flashsale")
        .await
        .expect("deployment");
    let config_map = Api::<ConfigMap>::namespaced(fake.client.clone(), ns)
        .get("flashsale-config")
        .await
        .expect("cm");
    let core = Api::<CoreService>::namespaced(fake.client.clone(), ns)
        .get("flashsale")
        .await
        .expect("core service");
    let pdb = Api::<PodDisruptionBudget>::namespaced(fake.client.clone(), ns)
        .get("flashsale")
        .await
        .expect("pdb");
    for owners in [
        deployment.owner_references(),
        config_map.owner_references(),
        core.owner_references(),
        pdb.owner_references(),
    ] {
        assert_eq!(owners[0].uid, uid);
        assert_eq!(owners[0].kind, "Service");
    }
    assert!(config_map.data.expect("data")["config.yaml"].contains("reservationTtlSeconds: 300"));

    let status = flashsale.status.expect("status");
    assert_eq!(condition(&status.conditions, "ConfigValid").0, "True");
    assert_eq!(
        condition(&status.conditions, "Ready"),
        ("False".into(), "ReplicasNotReady".into())
    );
    assert_eq!(
        status.endpoint.as_deref(),
        Some("flashsale.titan-sg-1.svc:50051")
    );
    assert_eq!(
        status.selector.as_deref(),
        Some("commerce.titan.dev/cell=sg-1,commerce.titan.dev/service=flashsale")
    );

    roll_out(&fake, ns).await;
    round(&fake, &ctx, "sg-1", ns).await;
    let status = get_cell(&fake, "sg-1").await.status.expect("status");
    assert_eq!(status.services.expect("services").summary, "16/16");
    assert_eq!(
        condition(&status.conditions, "Ready"),
        ("True".into(), "AllServicesReady".into())
    );
    assert_eq!(status.version.as_deref(), Some("0.1.0"));
    assert!(
        fake.invalid.lock().unwrap().is_empty(),
        "{:?}",
        fake.invalid.lock().unwrap()
    );
}

#[tokio::test]
async fn an_unchanged_spec_costs_zero_writes() {
    let fake = Fake::new().await;
    let ctx = context(&fake);
    seed_full_cell_secrets(&fake).await;
    create_cell(&fake, &cell_fixture("full-cell.yaml")).await;
    let ns = "commerce-eu-2";
    round(&fake, &ctx, "eu-2", ns).await;
    roll_out(&fake, ns).await;
    round(&fake, &ctx, "eu-2", ns).await;
    round(&fake, &ctx, "eu-2", ns).await;

    let (writes, status_writes) = (fake.writes(), fake.status_writes());
    // 1 namespace + 15 Services + 15 × (ConfigMap, Deployment, core Service, PDB) + 1 autoscaler.
    let first_rounds = 1 + 15 + 15 * 4 + 1;
    assert!(
        writes >= first_rounds,
        "the first rounds did write ({writes})"
    );
    assert!(status_writes > 0);
    let versions = |items: Vec<Deployment>| {
        items
            .into_iter()
            .map(|d| d.resource_version())
            .collect::<Vec<_>>()
    };
    let deployments = Api::<Deployment>::namespaced(fake.client.clone(), ns);
    let before = versions(
        deployments
            .list(&Default::default())
            .await
            .expect("list")
            .items,
    );
    round(&fake, &ctx, "eu-2", ns).await;
    assert_eq!(fake.writes() - writes, 0, "writes on an unchanged spec");
    assert_eq!(
        fake.status_writes() - status_writes,
        0,
        "status writes on an unchanged spec"
    );
    assert_eq!(
        versions(
            deployments
                .list(&Default::default())
                .await
                .expect("list")
                .items
        ),
        before
    );
}

#[tokio::test]
async fn disabling_a_service_prunes_it_and_removing_autoscaling_prunes_the_autoscaler() {
    let fake = Fake::new().await;
    let ctx = context(&fake);
    seed_full_cell_secrets(&fake).await;
    create_cell(&fake, &cell_fixture("full-cell.yaml")).await;
    let ns = "commerce-eu-2";
    round(&fake, &ctx, "eu-2", ns).await;
    let hpas = Api::<HorizontalPodAutoscaler>::namespaced(fake.client.clone(), ns);
    hpas.get("fraud").await.expect("fraud autoscaler");

    let cells = Api::<Cell>::all(fake.client.clone());
    let patch = json!({"spec": {"services": {"chat": {"enabled": false}}}});
    cells
        .patch("eu-2", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("disable chat");
    reconcile_cell(&fake, &ctx, "eu-2").await;
    let names: Vec<String> = services_in(&fake, ns)
        .await
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    assert!(!names.contains(&"chat".to_string()));
    assert_eq!(names.len(), 15);

    let services = Api::<Service>::namespaced(fake.client.clone(), ns);
    let patch = json!({"spec": {"autoscaling": null, "replicas": 2}});
    services
        .patch("fraud", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("drop autoscaling");
    service::reconcile(
        Arc::new(services.get("fraud").await.expect("fraud")),
        ctx.clone(),
    )
    .await
    .expect("reconcile");
    assert!(
        hpas.get_opt("fraud").await.expect("get").is_none(),
        "autoscaler pruned"
    );
}

#[tokio::test]
async fn a_paused_cell_writes_nothing_but_status() {
    let fake = Fake::new().await;
    let ctx = context(&fake);
    create_cell(&fake, &cell_fixture("minimal-cell.yaml")).await;
    let ns = "titan-sg-1";
    round(&fake, &ctx, "sg-1", ns).await;

    let patch = json!({"spec": {"version": "0.2.0", "operation": {"reconciliationPaused": true}}});
    Api::<Cell>::all(fake.client.clone())
        .patch("sg-1", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("pause");
    let writes = fake.writes();
    round(&fake, &ctx, "sg-1", ns).await;
    assert_eq!(fake.writes(), writes, "no object written while paused");
    let status = get_cell(&fake, "sg-1").await.status.expect("status");
    assert_eq!(
        condition(&status.conditions, "ReconciliationPaused").0,
        "True"
    );
    let deployment = Api::<Deployment>::namespaced(fake.client.clone(), ns)
        .get("coupon")
        .await
        .expect("deployment");
    let image = deployment
        .spec
        .expect("spec")
        .template
        .spec
        .expect("pod")
        .containers[0]
        .image
        .clone();
    assert_eq!(
        image.as_deref(),
        Some("ghcr.io/titan/titan:0.1.0"),
        "still the old version"
    );
}

#[tokio::test]
async fn a_stopped_cell_scales_every_workload_to_zero_and_keeps_its_data() {
    let fake = Fake::new().await;
    let ctx = context(&fake);
    seed_full_cell_secrets(&fake).await;
    create_cell(&fake, &cell_fixture("full-cell.yaml")).await;
    let ns = "commerce-eu-2";
    round(&fake, &ctx, "eu-2", ns).await;
    let patch = json!({"spec": {"operation": {"stopped": true}}});
    Api::<Cell>::all(fake.client.clone())
        .patch("eu-2", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("stop");
    round(&fake, &ctx, "eu-2", ns).await;
    for d in Api::<Deployment>::namespaced(fake.client.clone(), ns)
        .list(&Default::default())
        .await
        .expect("list")
        .items
    {
        assert_eq!(
            d.spec.expect("spec").replicas,
            Some(0),
            "{}",
            d.metadata.name.unwrap_or_default()
        );
    }
    let hpas = Api::<HorizontalPodAutoscaler>::namespaced(fake.client.clone(), ns);
    assert!(hpas.get_opt("fraud").await.expect("get").is_none());
    // The cell's own servers stop too, their data kept: builtin datastores scale to zero and
    // the CloudNativePG cluster hibernates.
    for s in Api::<StatefulSet>::namespaced(fake.client.clone(), ns)
        .list(&Default::default())
        .await
        .expect("list")
        .items
    {
        assert_eq!(s.spec.expect("spec").replicas, Some(0));
    }
    let cluster = Api::<Cluster>::namespaced(fake.client.clone(), ns)
        .get("postgres")
        .await
        .expect("cluster");
    assert_eq!(cluster.annotations()["cnpg.io/hibernation"], "on");
    let status = get_cell(&fake, "eu-2").await.status.expect("status");
    assert_eq!(condition(&status.conditions, "Stopped").0, "True");
    assert_eq!(
        condition(&status.conditions, "DatastoresReady"),
        ("False".into(), "Stopped".into())
    );
    assert_eq!(
        status.datastores.expect("datastores").redis.reason,
        "SecretComplete",
        "an external datastore is not the cell's to stop"
    );
    assert_eq!(
        condition(&status.conditions, "Ready"),
        ("False".into(), "Stopped".into())
    );
}

#[tokio::test]
async fn a_bad_config_sets_config_valid_false_and_leaves_the_deployment_alone() {
    let fake = Fake::new().await;
    let ctx = context(&fake);
    create_cell(&fake, &cell_fixture("minimal-cell.yaml")).await;
    let ns = "titan-sg-1";
    round(&fake, &ctx, "sg-1", ns).await;
    let deployments = Api::<Deployment>::namespaced(fake.client.clone(), ns);
    let before = deployments.get("flashsale").await.expect("deployment");

    let patch = json!({"spec": {"services": {"flashsale": {"config": {"reservationTtlSeconds": 1, "sweepIntervalMs": 5000}}}}});
    Api::<Cell>::all(fake.client.clone())
        .patch("sg-1", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("bad config");
    round(&fake, &ctx, "sg-1", ns).await;

    let after = deployments.get("flashsale").await.expect("deployment");
    assert_eq!(
        after.resource_version(),
        before.resource_version(),
        "the running Deployment is untouched"
    );
    let flashsale = Api::<Service>::namespaced(fake.client.clone(), ns)
        .get("flashsale")
        .await
        .expect("tsvc");
    let status = flashsale.status.expect("status");
    assert_eq!(
        condition(&status.conditions, "ConfigValid"),
        ("False".into(), "InvalidConfig".into())
    );
    let message = &conditions::find(&status.conditions, "ConfigValid")
        .expect("condition")
        .message;
    assert!(message.contains("sweepIntervalMs"), "{message}");
    let cell_status = get_cell(&fake, "sg-1").await.status.expect("status");
    assert_eq!(condition(&cell_status.conditions, "Degraded").0, "True");

    let events = Api::<Event>::namespaced(fake.client.clone(), ns)
        .list(&Default::default())
        .await
        .expect("events");
    assert!(
        events
            .items
            .iter()
            .any(|e| e.reason.as_deref() == Some("InvalidConfig"))
    );
}

#[tokio::test]
async fn api_errors_fail_the_round_with_an_event_a_metric_and_a_backoff() {
    let fake = Fake::new().await;
    let ctx = context(&fake);
    create_cell(&fake, &cell_fixture("minimal-cell.yaml")).await;
    let ns = "titan-sg-1";
    reconcile_cell(&fake, &ctx, "sg-1").await;
    // The migrations succeed first: the Deployment is applied only after them.
    reconcile_services(&fake, &ctx, ns).await;
    complete_migrations(&fake, ns).await;
    fake.fail_kinds.lock().unwrap().push("Deployment".into());

    let services = Api::<Service>::namespaced(fake.client.clone(), ns);
    let coupon = Arc::new(services.get("coupon").await.expect("coupon"));
    let error = service::reconcile(coupon.clone(), ctx.clone())
        .await
        .expect_err("injected failure");
    assert_eq!(error.reason(), "ApiError");
    assert!(
        error.to_string().starts_with("apply Deployment coupon:"),
        "{error}"
    );
    assert_eq!(ctx.metrics.errors("service", "ApiError"), 1);
    let first = service::error_policy(coupon.clone(), &error, ctx.clone());
    let second = service::error_policy(coupon, &error, ctx.clone());
    assert_ne!(first, second, "the delay grows");
    let events = Api::<Event>::namespaced(fake.client.clone(), ns)
        .list(&Default::default())
        .await
        .expect("events");
    assert!(
        events
            .items
            .iter()
            .any(|e| e.reason.as_deref() == Some("ApiError"))
    );

    // The failure shows on the Service itself, and the generation it names is not applied.
    let failed = services.get("coupon").await.expect("coupon");
    let status = failed.status.expect("status");
    assert_eq!(
        condition(&status.conditions, "Degraded"),
        ("True".into(), "ApplyFailed".into())
    );
    let degraded = message(&status.conditions, "Degraded");
    assert!(
        degraded.starts_with("the spec could not be applied: apply Deployment coupon: ")
            && degraded.ends_with("; the operator retries with backoff"),
        "{degraded}"
    );

    // Other services' objects are not blocked by one failing kind: the ConfigMap went first.
    Api::<ConfigMap>::namespaced(fake.client.clone(), ns)
        .get("coupon-config")
        .await
        .expect("config map applied");
}

#[tokio::test]
async fn a_service_may_not_join_a_cell_of_another_namespace() {
    let fake = Fake::new().await;
    let ctx = context(&fake);
    create_cell(&fake, &cell_fixture("minimal-cell.yaml")).await;
    let mut rogue = Service::new(
        "rogue",
        titan_crds::ServiceSpec {
            cell: "sg-1".into(),
            service: titan_crds::ServiceKind::Custom,
            image: "example/rogue:1".into(),
            replicas: None,
            config: None,
            datastores: Some(vec![titan_crds::DatastoreKind::Postgres]),
            command: None,
            args: None,
            autoscaling: None,
            resources: None,
            pod_overrides: None,
        },
    );
    rogue.metadata.namespace = Some("elsewhere".into());
    let api = Api::<Service>::namespaced(fake.client.clone(), "elsewhere");
    api.create(&PostParams::default(), &rogue)
        .await
        .expect("create");
    service::reconcile(Arc::new(api.get("rogue").await.expect("get")), ctx.clone())
        .await
        .expect("reconcile");
    let status = api.get("rogue").await.expect("get").status.expect("status");
    assert_eq!(
        condition(&status.conditions, "Ready"),
        ("False".into(), "WrongNamespace".into())
    );
    assert!(
        Api::<Deployment>::namespaced(fake.client.clone(), "elsewhere")
            .get_opt("rogue")
            .await
            .expect("get")
            .is_none()
    );
}

#[tokio::test]
async fn a_malformed_cell_becomes_an_event_and_does_not_stall_the_controller() {
    use kube::{
        api::{ApiResource, DynamicObject},
        core::DeserializeGuard,
    };
    let fake = Fake::new().await;
    let ctx = context(&fake);
    let resource = ApiResource::erase::<Cell>(&());
    let malformed: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "commerce.titan.dev/v1alpha1",
        "kind": "Cell",
        "metadata": {"name": "broken"},
        "spec": {"version": "0.1.0", "services": {"flashsale": {"config": {"noSuchField": 1}}}}
    }))
    .expect("object");
    Api::<DynamicObject>::all_with(fake.client.clone(), &resource)
        .create(&PostParams::default(), &malformed)
        .await
        .expect("create");
    create_cell(&fake, &cell_fixture("minimal-cell.yaml")).await;

    let guarded = Api::<DeserializeGuard<Cell>>::all(fake.client.clone());
    let mut reconciled = 0;
    for object in guarded.list(&Default::default()).await.expect("list").items {
        titan_operator::guard::reconcile_cell(Arc::new(object), ctx.clone())
            .await
            .expect("a malformed object is not an error that retries");
        reconciled += 1;
    }
    assert_eq!(reconciled, 2);
    assert_eq!(ctx.metrics.errors("cell", "InvalidObject"), 1);
    assert!(
        get_cell(&fake, "sg-1")
            .await
            .finalizers()
            .iter()
            .any(|f| f == cell::FINALIZER),
        "the good cell was reconciled: its first round put the finalizer on"
    );
    reconcile_cell(&fake, &ctx, "sg-1").await;
    assert_eq!(
        services_in(&fake, "titan-sg-1").await.len(),
        16,
        "the good cell goes on"
    );
    let events = Api::<Event>::all(fake.client.clone())
        .list(&Default::default())
        .await
        .expect("events");
    let event = events
        .items
        .iter()
        .find(|e| e.reason.as_deref() == Some("InvalidObject"))
        .expect("an InvalidObject event");
    assert!(
        event
            .note
            .as_deref()
            .unwrap_or_default()
            .contains("noSuchField"),
        "{:?}",
        event.note
    );
}

/// The status of Service `name` in `namespace`.
async fn service_status(fake: &Fake, namespace: &str, name: &str) -> titan_crds::ServiceStatus {
    Api::<Service>::namespaced(fake.client.clone(), namespace)
        .get(name)
        .await
        .expect("service")
        .status
        .expect("status")
}

/// The message of condition `type_`.
fn message(
    status: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    type_: &str,
) -> String {
    conditions::find(status, type_)
        .unwrap_or_else(|| panic!("no {type_} condition"))
        .message
        .clone()
}

/// The image of Deployment `name`, if it exists.
async fn deployment_image(fake: &Fake, namespace: &str, name: &str) -> Option<String> {
    Api::<Deployment>::namespaced(fake.client.clone(), namespace)
        .get_opt(name)
        .await
        .expect("get")
        .and_then(|d| d.spec?.template.spec?.containers.first()?.image.clone())
}

/// The migration Jobs of service `name`.
async fn jobs_of(fake: &Fake, namespace: &str, name: &str) -> Vec<Job> {
    Api::<Job>::namespaced(fake.client.clone(), namespace)
        .list(
            &kube::api::ListParams::default().labels(&format!("commerce.titan.dev/service={name}")),
        )
        .await
        .expect("list jobs")
        .items
}

/// Creates a pod with `labels` and then its `status`, as the kubelet would report it.
async fn create_pod(
    fake: &Fake,
    namespace: &str,
    name: &str,
    labels: serde_json::Value,
    status: serde_json::Value,
) {
    let pods = Api::<Pod>::namespaced(fake.client.clone(), namespace);
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"containers": [{"name": "titan", "image": "ghcr.io/titan/titan:0.1.0"}]}
    }))
    .expect("pod");
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("create pod");
    pods.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(&json!({"status": status})),
    )
    .await
    .expect("pod status");
}

#[tokio::test]
async fn the_deployment_waits_for_its_migration_job_and_an_upgrade_migrates_first() {
    let fake = Fake::new().await;
    let ctx = context(&fake);
    create_cell(&fake, &cell_fixture("minimal-cell.yaml")).await;
    let ns = "titan-sg-1";
    reconcile_cell(&fake, &ctx, "sg-1").await;
    reconcile_services(&fake, &ctx, ns).await;

    // Before the migrations: a Job, and no Deployment.
    assert_eq!(deployment_image(&fake, ns, "coupon").await, None);
    let jobs = jobs_of(&fake, ns, "coupon").await;
    assert_eq!(jobs.len(), 1);
    let first_job = jobs[0].name_any();
    assert!(first_job.starts_with("coupon-migrate-"), "{first_job}");
    let pod = jobs[0].spec.clone().expect("spec").template;
    let pod_labels = pod.metadata.expect("metadata").labels.expect("labels");
    assert_eq!(
        pod_labels
            .get("commerce.titan.dev/migration")
            .map(String::as_str),
        Some("coupon")
    );
    assert!(
        !pod_labels.contains_key("commerce.titan.dev/service"),
        "the Deployment, core Service and PDB must not select the migration's pod"
    );
    let pod = pod.spec.expect("pod spec");
    assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
    let container = &pod.containers[0];
    assert_eq!(
        container.command.clone().expect("command"),
        [
            "titan",
            "migrate",
            "coupon",
            "--config",
            "/etc/titan/config.yaml"
        ]
    );
    assert_eq!(
        container.image.as_deref(),
        Some("ghcr.io/titan/titan:0.1.0")
    );
    assert_eq!(
        container.termination_message_policy.as_deref(),
        Some("FallbackToLogsOnError")
    );
    assert!(container.readiness_probe.is_none() && container.ports.is_none());
    let status = service_status(&fake, ns, "coupon").await;
    assert_eq!(
        condition(&status.conditions, "Migrated"),
        ("False".into(), "Migrating".into())
    );
    assert_eq!(
        condition(&status.conditions, "Ready"),
        ("False".into(), "Migrating".into())
    );
    assert_eq!(
        condition(&status.conditions, "Progressing"),
        ("True".into(), "Migrating".into())
    );
    reconcile_cell(&fake, &ctx, "sg-1").await;
    let cell = get_cell(&fake, "sg-1").await.status.expect("status");
    assert_eq!(
        condition(&cell.conditions, "Migrated"),
        ("False".into(), "Migrating".into())
    );

    // The Job succeeds: the Deployment is created.
    complete_migrations(&fake, ns).await;
    reconcile_services(&fake, &ctx, ns).await;
    assert_eq!(
        deployment_image(&fake, ns, "coupon").await.as_deref(),
        Some("ghcr.io/titan/titan:0.1.0")
    );
    let status = service_status(&fake, ns, "coupon").await;
    assert_eq!(
        condition(&status.conditions, "Migrated"),
        ("True".into(), "Migrated".into())
    );
    roll_out(&fake, ns).await;
    round(&fake, &ctx, "sg-1", ns).await;
    let cell = get_cell(&fake, "sg-1").await.status.expect("status");
    assert_eq!(
        condition(&cell.conditions, "Migrated"),
        ("True".into(), "Migrated".into())
    );
    assert_eq!(condition(&cell.conditions, "Ready").0, "True");

    // An upgrade: a new Job first, the old pods serve meanwhile.
    Api::<Cell>::all(fake.client.clone())
        .patch(
            "sg-1",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"version": "0.2.0"}})),
        )
        .await
        .expect("upgrade");
    reconcile_cell(&fake, &ctx, "sg-1").await;
    reconcile_services(&fake, &ctx, ns).await;
    assert_eq!(
        deployment_image(&fake, ns, "coupon").await.as_deref(),
        Some("ghcr.io/titan/titan:0.1.0"),
        "the Deployment waits for the new migrations"
    );
    let jobs = jobs_of(&fake, ns, "coupon").await;
    let names: Vec<String> = jobs.iter().map(ResourceExt::name_any).collect();
    assert_eq!(names.len(), 1, "the old Job is pruned: {names:?}");
    assert_ne!(names[0], first_job);
    let image = jobs[0]
        .spec
        .clone()
        .expect("spec")
        .template
        .spec
        .expect("pod")
        .containers[0]
        .image
        .clone();
    assert_eq!(image.as_deref(), Some("ghcr.io/titan/titan:0.2.0"));
    let status = service_status(&fake, ns, "coupon").await;
    assert_eq!(
        condition(&status.conditions, "Migrated"),
        ("False".into(), "Migrating".into())
    );
    assert_eq!(
        condition(&status.conditions, "Ready"),
        ("False".into(), "Migrating".into()),
        "Ready is about the new spec"
    );
    assert_eq!(
        message(&status.conditions, "Ready"),
        "1 of 1 replicas of the previous spec serve; the pods move to this one once the migrations succeed"
    );

    let new_job = names[0].clone();
    finish_jobs(&fake, ns, |j| j.name_any() == new_job).await;
    reconcile_services(&fake, &ctx, ns).await;
    assert_eq!(
        deployment_image(&fake, ns, "coupon").await.as_deref(),
        Some("ghcr.io/titan/titan:0.2.0")
    );
}

#[tokio::test]
async fn a_failed_migration_names_its_error_on_the_service_and_the_cell() {
    let fake = Fake::new().await;
    let ctx = context(&fake);
    create_cell(&fake, &cell_fixture("minimal-cell.yaml")).await;
    let ns = "titan-sg-1";
    reconcile_cell(&fake, &ctx, "sg-1").await;
    reconcile_services(&fake, &ctx, ns).await;
    let job = jobs_of(&fake, ns, "coupon").await[0].name_any();
    finish_jobs(&fake, ns, |j| j.name_any() != job).await;

    // Plays the Job controller and the kubelet: every attempt failed, the last pod says why.
    create_pod(
        &fake,
        ns,
        &format!("{job}-x7k2p"),
        json!({"batch.kubernetes.io/job-name": job, "commerce.titan.dev/cell": "sg-1",
               "commerce.titan.dev/migration": "coupon"}),
        json!({"phase": "Failed", "containerStatuses": [{
            "name": "titan", "image": "ghcr.io/titan/titan:0.1.0", "imageID": "",
            "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 1, "reason": "Error",
                "message": "coupon: migration 3 failed: relation \"coupons\" already exists"}}
        }]}),
    )
    .await;
    Api::<Job>::namespaced(fake.client.clone(), ns)
        .patch_status(
            &job,
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {"failed": 7, "conditions": [{
                "type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                "message": "Job has reached the specified backoff limit"}]}})),
        )
        .await
        .expect("job status");
    reconcile_services(&fake, &ctx, ns).await;

    let expected = format!(
        "job {job} failed: exit code 1 (Error): coupon: migration 3 failed: relation \"coupons\" already exists"
    );
    let status = service_status(&fake, ns, "coupon").await;
    assert_eq!(
        condition(&status.conditions, "Migrated"),
        ("False".into(), "MigrationFailed".into())
    );
    assert_eq!(message(&status.conditions, "Migrated"), expected);
    assert_eq!(
        condition(&status.conditions, "Degraded"),
        ("True".into(), "MigrationFailed".into())
    );
    assert_eq!(deployment_image(&fake, ns, "coupon").await, None);

    reconcile_cell(&fake, &ctx, "sg-1").await;
    let cell = get_cell(&fake, "sg-1").await.status.expect("status");
    assert_eq!(
        condition(&cell.conditions, "Migrated"),
        ("False".into(), "MigrationFailed".into())
    );
    assert_eq!(
        message(&cell.conditions, "Migrated"),
        format!("coupon: {expected}")
    );
    assert_eq!(condition(&cell.conditions, "Degraded").0, "True");
    assert!(
        message(&cell.conditions, "Degraded").starts_with("coupon: job "),
        "{}",
        message(&cell.conditions, "Degraded")
    );
}

#[tokio::test]
async fn a_crash_looping_service_says_so_and_its_cell_names_it_first() {
    let fake = Fake::new().await;
    let ctx = context(&fake);
    create_cell(&fake, &cell_fixture("minimal-cell.yaml")).await;
    let ns = "titan-sg-1";
    round(&fake, &ctx, "sg-1", ns).await;
    roll_out(&fake, ns).await;

    // abtesting's rollout is stuck (a lesser problem), flashsale crash-loops.
    let deployments = Api::<Deployment>::namespaced(fake.client.clone(), ns);
    deployments
        .patch_status(
            "abtesting",
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {"readyReplicas": 0, "conditions": [{
                "type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]}})),
        )
        .await
        .expect("abtesting status");
    deployments
        .patch_status(
            "flashsale",
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {"readyReplicas": 0}})),
        )
        .await
        .expect("flashsale status");
    create_pod(
        &fake,
        ns,
        "flashsale-7d9f-x2x",
        json!({"commerce.titan.dev/cell": "sg-1", "commerce.titan.dev/service": "flashsale"}),
        json!({"phase": "Running", "containerStatuses": [{
            "name": "titan", "image": "ghcr.io/titan/titan:0.1.0", "imageID": "",
            "ready": false, "restartCount": 5,
            "state": {"waiting": {"reason": "CrashLoopBackOff",
                "message": "back-off 2m40s restarting failed container=titan pod=flashsale-7d9f-x2x"}},
            "lastState": {"terminated": {"exitCode": 1, "reason": "Error",
                "message": "error: redis: connection refused"}}
        }]}),
    )
    .await;
    reconcile_services(&fake, &ctx, ns).await;

    let expected = "pod flashsale-7d9f-x2x: back-off 2m40s restarting failed container=titan pod=flashsale-7d9f-x2x; last exit: exit code 1 (Error): error: redis: connection refused";
    let status = service_status(&fake, ns, "flashsale").await;
    assert_eq!(
        condition(&status.conditions, "Degraded"),
        ("True".into(), "CrashLoopBackOff".into())
    );
    assert_eq!(message(&status.conditions, "Degraded"), expected);
    assert_eq!(
        condition(
            &service_status(&fake, ns, "abtesting").await.conditions,
            "Degraded"
        ),
        ("True".into(), "RolloutStuck".into())
    );

    reconcile_cell(&fake, &ctx, "sg-1").await;
    let cell = get_cell(&fake, "sg-1").await.status.expect("status");
    assert_eq!(
        condition(&cell.conditions, "Degraded"),
        ("True".into(), "ServiceDegraded".into())
    );
    let degraded = message(&cell.conditions, "Degraded");
    assert!(
        degraded.starts_with(&format!("flashsale: {expected}; abtesting: ")),
        "{degraded}"
    );
}

#[tokio::test]
async fn a_malformed_cell_is_reported_by_its_services_which_carry_on() {
    use kube::api::{ApiResource, DynamicObject};
    let fake = Fake::new().await;
    let ctx = context(&fake);
    create_cell(&fake, &cell_fixture("minimal-cell.yaml")).await;
    let ns = "titan-sg-1";
    round(&fake, &ctx, "sg-1", ns).await;
    let before = Api::<Deployment>::namespaced(fake.client.clone(), ns)
        .get("coupon")
        .await
        .expect("deployment")
        .resource_version();

    // A field of a newer schema, written past this operator's CRD.
    let resource = ApiResource::erase::<Cell>(&());
    Api::<DynamicObject>::all_with(fake.client.clone(), &resource)
        .patch(
            "sg-1",
            &PatchParams::default(),
            &Patch::Merge(
                &json!({"spec": {"services": {"coupon": {"config": {"noSuchField": 1}}}}}),
            ),
        )
        .await
        .expect("patch");
    let services = Api::<Service>::namespaced(fake.client.clone(), ns);
    service::reconcile(
        Arc::new(services.get("coupon").await.expect("coupon")),
        ctx.clone(),
    )
    .await
    .expect("a malformed cell does not fail the service's round");

    let status = service_status(&fake, ns, "coupon").await;
    assert_eq!(
        condition(&status.conditions, "Degraded"),
        ("True".into(), "CellMalformed".into())
    );
    assert!(
        message(&status.conditions, "Degraded").starts_with("cell sg-1 does not match the schema"),
        "{}",
        message(&status.conditions, "Degraded")
    );
    let after = Api::<Deployment>::namespaced(fake.client.clone(), ns)
        .get("coupon")
        .await
        .expect("deployment")
        .resource_version();
    assert_eq!(after, before, "the running pods are left as they are");
}
