//! A Cell's status tells the truth and no single object stalls it: failed applies and lost
//! credentials show in conditions, a paused cell does not claim a spec it never applied,
//! services wait for their datastores, Secrets the cell reads are marked for the watch, and a
//! malformed `Service` does not fail the cell's rounds.

use std::sync::Arc;

use k8s_openapi::api::{
    apps::v1::StatefulSet,
    core::v1::{PersistentVolumeClaim, Secret},
};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, DynamicObject, Patch, PatchParams, PostParams},
    discovery::ApiResource,
};
use serde_json::json;
use titan_crds::{Cell, Service};
use titan_operator::{Context, cell, conditions};

use crate::{
    reconcile::{
        condition, context, create_cell, get_cell, ready_stateful_sets, reconcile_cell, round,
        services_in,
    },
    support::{Fake, cell_fixture, seed_full_cell_secrets},
};

const NS: &str = "titan-sg-1";

/// One round of cell sg-1, as the watch of its last change would run it.
async fn one_round(fake: &Fake, ctx: &Arc<Context>) {
    cell::reconcile(Arc::new(get_cell(fake, "sg-1").await), ctx.clone())
        .await
        .expect("round");
}

/// Whether cell sg-1's credentials Secret exists.
async fn credentials_exist(secrets: &Api<Secret>) -> bool {
    secrets
        .get_opt("sg-1-credentials")
        .await
        .expect("get")
        .is_some()
}

async fn patch_cell(fake: &Fake, patch: serde_json::Value) {
    Api::<Cell>::all(fake.client.clone())
        .patch("sg-1", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch cell");
}

fn message(cell: &Cell, type_: &str) -> String {
    let status = cell.status.as_ref().expect("status");
    conditions::find(&status.conditions, type_)
        .unwrap_or_else(|| panic!("no {type_} condition"))
        .message
        .clone()
}

#[tokio::test]
async fn a_failed_apply_shows_in_status_and_keeps_the_observed_generation() {
    let fake = Fake::new().await;
    let ctx = context(&fake);
    create_cell(&fake, &cell_fixture("minimal-cell.yaml")).await;
    round(&fake, &ctx, "sg-1", NS).await;
    let applied = get_cell(&fake, "sg-1").await;
    let applied_generation = applied.metadata.generation;
    assert_eq!(
        applied.status.as_ref().expect("status").observed_generation,
        applied_generation
    );

    // A new version must update every Titan `Service`; the API server refuses them.
    patch_cell(&fake, json!({"spec": {"version": "0.2.0"}})).await;
    fake.fail_kinds.lock().unwrap().push("Service".into());
    let error = cell::reconcile(Arc::new(get_cell(&fake, "sg-1").await), ctx.clone())
        .await
        .expect_err("the apply fails");
    assert_eq!(error.reason(), "ApiError");

    let failed = get_cell(&fake, "sg-1").await;
    let status = failed.status.as_ref().expect("status");
    assert_eq!(
        condition(&status.conditions, "Degraded"),
        ("True".into(), "ApplyFailed".into())
    );
    let degraded = message(&failed, "Degraded");
    assert!(
        degraded.starts_with("the spec could not be applied: apply Service ")
            && degraded.contains("injected failure applying Service"),
        "{degraded}"
    );
    assert_eq!(
        status.observed_generation, applied_generation,
        "the new generation is not applied"
    );
    assert_ne!(failed.metadata.generation, applied_generation);

    // Once the API server takes the objects, the condition clears and the generation advances.
    fake.fail_kinds.lock().unwrap().clear();
    reconcile_cell(&fake, &ctx, "sg-1").await;
    let healed = get_cell(&fake, "sg-1").await;
    let status = healed.status.as_ref().expect("status");
    assert_eq!(condition(&status.conditions, "Degraded").0, "False");
    assert_eq!(status.observed_generation, healed.metadata.generation);
}

#[tokio::test]
async fn a_paused_cell_does_not_claim_a_spec_it_never_applied() {
    let fake = Fake::new().await;
    let ctx = context(&fake);
    create_cell(&fake, &cell_fixture("minimal-cell.yaml")).await;
    round(&fake, &ctx, "sg-1", NS).await;
    let applied_generation = get_cell(&fake, "sg-1").await.metadata.generation;

    patch_cell(
        &fake,
        json!({"spec": {"version": "0.2.0", "operation": {"reconciliationPaused": true}}}),
    )
    .await;
    round(&fake, &ctx, "sg-1", NS).await;
    let paused = get_cell(&fake, "sg-1").await;
    let pending = paused.metadata.generation.expect("generation");
    let status = paused.status.as_ref().expect("status");
    assert_eq!(status.observed_generation, applied_generation);
    assert_eq!(
        condition(&status.conditions, "Ready"),
        ("False".into(), "SpecNotApplied".into())
    );
    assert_eq!(
        message(&paused, "Ready"),
        format!(
            "reconciliation is paused: generation {pending} of the spec is not applied; the cell runs generation {}",
            applied_generation.expect("generation")
        )
    );
    assert!(
        status
            .conditions
            .iter()
            .all(|c| c.observed_generation == applied_generation),
        "no condition speaks for the unapplied generation"
    );

    patch_cell(
        &fake,
        json!({"spec": {"operation": {"reconciliationPaused": false}}}),
    )
    .await;
    round(&fake, &ctx, "sg-1", NS).await;
    let resumed = get_cell(&fake, "sg-1").await;
    assert_eq!(
        resumed.status.as_ref().expect("status").observed_generation,
        resumed.metadata.generation
    );
    assert_ne!(
        condition(&resumed.status.expect("status").conditions, "Ready").1,
        "SpecNotApplied"
    );
}

#[tokio::test]
async fn services_roll_out_only_once_the_datastores_serve() {
    let fake = Fake::new().await;
    let ctx = context(&fake);
    create_cell(&fake, &cell_fixture("minimal-cell.yaml")).await;
    // The finalizer round, then a round that builds the datastores; nothing runs them yet.
    for _ in 0..2 {
        one_round(&fake, &ctx).await;
    }
    let sets = Api::<StatefulSet>::namespaced(fake.client.clone(), NS)
        .list(&Default::default())
        .await
        .expect("list");
    assert_eq!(
        sets.items.len(),
        3,
        "postgres, redis and clickhouse are built"
    );
    assert!(
        services_in(&fake, NS).await.is_empty(),
        "no service starts before its datastores serve"
    );

    assert_eq!(ready_stateful_sets(&fake, NS).await, 3);
    one_round(&fake, &ctx).await;
    assert_eq!(services_in(&fake, NS).await.len(), 16);
}

async fn seed_volume(fake: &Fake, name: &str) {
    let claim: PersistentVolumeClaim = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": NS, "labels": {
            "commerce.titan.dev/cell": "sg-1",
            "app.kubernetes.io/managed-by": "titan-operator",
        }},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }))
    .expect("a claim");
    Api::<PersistentVolumeClaim>::namespaced(fake.client.clone(), NS)
        .create(&PostParams::default(), &claim)
        .await
        .expect("create claim");
}

#[tokio::test]
async fn a_lost_credentials_secret_is_not_minted_again_while_the_data_is_there() {
    let fake = Fake::new().await;
    let ctx = context(&fake);
    create_cell(&fake, &cell_fixture("minimal-cell.yaml")).await;
    round(&fake, &ctx, "sg-1", NS).await;
    seed_volume(&fake, "data-postgres-0").await;
    let secrets = Api::<Secret>::namespaced(fake.client.clone(), NS);
    secrets
        .delete("sg-1-credentials", &DeleteParams::default())
        .await
        .expect("delete credentials");

    one_round(&fake, &ctx).await;
    assert!(!credentials_exist(&secrets).await, "no new passwords");
    let lost = get_cell(&fake, "sg-1").await;
    assert_eq!(
        condition(
            &lost.status.as_ref().expect("status").conditions,
            "Degraded"
        ),
        ("True".into(), "CredentialsLost".into())
    );
    assert_eq!(
        message(&lost, "Degraded"),
        "secret sg-1-credentials is missing while the builtin datastores keep their data in data-postgres-0: new passwords would not open those databases, so none are generated; restore sg-1-credentials from a backup, or delete those PersistentVolumeClaims to start the datastores empty"
    );

    // Without data there is nothing to open: the cell starts afresh.
    Api::<PersistentVolumeClaim>::namespaced(fake.client.clone(), NS)
        .delete("data-postgres-0", &DeleteParams::default())
        .await
        .expect("delete claim");
    one_round(&fake, &ctx).await;
    assert!(credentials_exist(&secrets).await, "the cell starts afresh");
}

#[tokio::test]
async fn a_secret_the_cell_reads_is_labelled_for_the_watch_and_keeps_its_data() {
    let fake = Fake::new().await;
    let ctx = context(&fake);
    seed_full_cell_secrets(&fake).await;
    create_cell(&fake, &cell_fixture("full-cell.yaml")).await;
    reconcile_cell(&fake, &ctx, "eu-2").await;
    let secrets = Api::<Secret>::namespaced(fake.client.clone(), "commerce-eu-2");
    for name in ["redis-eu-2", "postgres-app", "s3-creds"] {
        let secret = secrets.get(name).await.expect("secret");
        assert_eq!(
            secret
                .labels()
                .get("commerce.titan.dev/referenced")
                .map(String::as_str),
            Some("true"),
            "{name}"
        );
        assert!(
            secret.owner_references().is_empty(),
            "{name} stays its owner's"
        );
    }
    let s3 = secrets.get("s3-creds").await.expect("secret");
    assert_eq!(
        s3.data.expect("data")["secretAccessKey"].0,
        b"s3cr3t".to_vec()
    );
}

#[tokio::test]
async fn a_malformed_service_in_the_namespace_does_not_fail_the_cell() {
    let fake = Fake::new().await;
    let ctx = context(&fake);
    create_cell(&fake, &cell_fixture("minimal-cell.yaml")).await;
    round(&fake, &ctx, "sg-1", NS).await;
    // A `Service` as a newer operator might write it: a kind of service this one does not know.
    let resource = ApiResource::erase::<Service>(&());
    let malformed: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "commerce.titan.dev/v1alpha1",
        "kind": "Service",
        "metadata": {"name": "teleport", "namespace": NS, "labels": {"commerce.titan.dev/cell": "sg-1"}},
        "spec": {"cell": "sg-1", "service": "teleport", "image": "ghcr.io/titan/titan:9.0.0"},
    }))
    .expect("an object");
    Api::<DynamicObject>::namespaced_with(fake.client.clone(), NS, &resource)
        .create(&PostParams::default(), &malformed)
        .await
        .expect("create the malformed service");

    patch_cell(&fake, json!({"spec": {"version": "0.2.0"}})).await;
    cell::reconcile(Arc::new(get_cell(&fake, "sg-1").await), ctx.clone())
        .await
        .expect("the round goes on past the malformed service");
    let cell = get_cell(&fake, "sg-1").await;
    assert_eq!(
        cell.status.as_ref().expect("status").observed_generation,
        cell.metadata.generation
    );
    let coupon = Api::<Service>::namespaced(fake.client.clone(), NS)
        .get("coupon")
        .await
        .expect("coupon");
    assert_eq!(coupon.spec.image, "ghcr.io/titan/titan:0.2.0");
}
