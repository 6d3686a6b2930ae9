//! A cell's data over its life, against the in-memory API server: passwords generated once and
//! kept across rounds and operator restarts; Retain keeping volumes and credentials when the
//! Cell goes and a new Cell adopting them; Delete removing everything; an incomplete external
//! Secret stopping the rollout with a condition; CloudNativePG's readiness and Secret; and the
//! status of each component with the cell's endpoints.
//!
//! kube-fake-client deletes at once and has no garbage collector of its own beyond cascading
//! owner references, so the tests play the parts a cluster would: they mark the Cell as being
//! deleted (as the API server does when a finalizer holds it), create the PVC a StatefulSet
//! controller would, and report workloads ready.

use std::{collections::BTreeMap, sync::Arc};

use k8s_openapi::{
    ByteString,
    api::{
        apps::v1::StatefulSet,
        core::v1::{Namespace, PersistentVolumeClaim, Secret},
        networking::v1::NetworkPolicy,
    },
    apimachinery::pkg::apis::meta::v1::Time,
    jiff::Timestamp,
};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, Patch, PatchParams},
};
use serde_json::json;
use titan_crds::{Cell, cell::DeletionPolicy};
use titan_operator::{Context, cell, cnpg::Cluster, metrics::Metrics};

use crate::{
    reconcile::{
        condition, context, create_cell, get_cell, reconcile_cell, roll_out, round, services_in,
    },
    support::{Fake, cell_fixture, seed_secret},
};

fn text(secret: &Secret, key: &str) -> String {
    let value = secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .unwrap_or_else(|| panic!("{} has no key {key}", secret.name_any()));
    String::from_utf8(value.0.clone()).expect("utf-8")
}

async fn secret(fake: &Fake, namespace: &str, name: &str) -> Option<Secret> {
    Api::<Secret>::namespaced(fake.client.clone(), namespace)
        .get_opt(name)
        .await
        .expect("get secret")
}

async fn credentials(fake: &Fake, namespace: &str, cell: &str) -> BTreeMap<String, ByteString> {
    secret(fake, namespace, &format!("{cell}-credentials"))
        .await
        .expect("credentials secret")
        .data
        .expect("data")
}

/// Plays the StatefulSet controller: the PVC of every volume claim template, named
/// `<template>-<set>-0` and labelled as the template says.
async fn create_volumes(fake: &Fake, namespace: &str) {
    let sets = Api::<StatefulSet>::namespaced(fake.client.clone(), namespace);
    let claims = Api::<PersistentVolumeClaim>::namespaced(fake.client.clone(), namespace);
    for set in sets.list(&Default::default()).await.expect("list").items {
        for template in set
            .spec
            .iter()
            .flat_map(|s| s.volume_claim_templates.iter().flatten())
        {
            let mut claim = template.clone();
            claim.metadata.name = Some(format!("{}-{}-0", template.name_any(), set.name_any()));
            claim.metadata.namespace = Some(namespace.into());
            claims
                .create(&Default::default(), &claim)
                .await
                .expect("create pvc");
        }
    }
}

async fn volumes(fake: &Fake, namespace: &str) -> Vec<String> {
    let mut names: Vec<String> =
        Api::<PersistentVolumeClaim>::namespaced(fake.client.clone(), namespace)
            .list(&Default::default())
            .await
            .expect("list")
            .items
            .iter()
            .map(ResourceExt::name_any)
            .collect();
    names.sort();
    names
}

/// Deletes the Cell as a cluster would with the finalizer on it: the controller sees it with a
/// deletion timestamp and tears down; once the finalizer is off, the API server removes it
/// (and garbage collection what it owns).
async fn delete_cell(fake: &Fake, ctx: &Arc<Context>, name: &str) {
    let mut cell = get_cell(fake, name).await;
    assert!(
        cell.finalizers().iter().any(|f| f == cell::FINALIZER),
        "the finalizer went on with the first round"
    );
    cell.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
    cell::reconcile(Arc::new(cell), ctx.clone())
        .await
        .expect("teardown");
    let released = get_cell(fake, name).await;
    assert!(
        !released.finalizers().iter().any(|f| f == cell::FINALIZER),
        "the finalizer is released after the teardown"
    );
    Api::<Cell>::all(fake.client.clone())
        .delete(name, &DeleteParams::foreground())
        .await
        .expect("delete cell");
}

#[tokio::test]
async fn passwords_are_generated_once_and_kept_across_rounds_and_operator_restarts() {
    let fake = Fake::new().await;
    let ctx = context(&fake);
    let ns = "titan-sg-1";
    create_cell(&fake, &cell_fixture("minimal-cell.yaml")).await;
    round(&fake, &ctx, "sg-1", ns).await;

    let first = credentials(&fake, ns, "sg-1").await;
    assert_eq!(first.len(), 5);
    let values: Vec<&ByteString> = first.values().collect();
    for (i, value) in values.iter().enumerate() {
        assert_eq!(value.0.len(), 32);
        assert!(!values[..i].contains(value), "every secret is its own");
    }
    let datastores = secret(&fake, ns, "sg-1-datastores")
        .await
        .expect("datastores secret");
    let password = String::from_utf8(first["postgres-password"].0.clone()).expect("utf-8");
    assert_eq!(
        text(&datastores, "TITAN_POSTGRES_URL"),
        format!("postgres://titan:{password}@postgres.titan-sg-1.svc:5432/titan")
    );
    assert_eq!(
        text(
            &secret(&fake, ns, "sg-1-auth").await.expect("auth"),
            "TITAN_AUTH_HS256_SECRET"
        ),
        String::from_utf8(first["auth-hs256-secret"].0.clone()).expect("utf-8")
    );

    // A spec change, and then a new operator process (a fresh context) reconciling.
    let patch = json!({"spec": {"datastores": {"postgres": {"image": "postgres:17.6"}}}});
    Api::<Cell>::all(fake.client.clone())
        .patch("sg-1", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch");
    round(&fake, &ctx, "sg-1", ns).await;
    let restarted = Arc::new(Context::new(
        fake.client.clone(),
        Metrics::new().expect("metrics"),
        Some("restarted".into()),
    ));
    round(&fake, &restarted, "sg-1", ns).await;
    assert_eq!(credentials(&fake, ns, "sg-1").await, first);
    let after = secret(&fake, ns, "sg-1-datastores")
        .await
        .expect("datastores");
    assert_eq!(after.data, datastores.data, "the URLs did not change");
    assert_eq!(
        after.metadata.resource_version, datastores.metadata.resource_version,
        "not even rewritten"
    );
}

#[tokio::test]
async fn retain_keeps_volumes_and_credentials_and_a_new_cell_adopts_them() {
    let fake = Fake::new().await;
    let ctx = context(&fake);
    let ns = "titan-sg-1";
    let cell = cell_fixture("minimal-cell.yaml");
    assert_eq!(cell.spec.deletion_policy, DeletionPolicy::Retain);
    create_cell(&fake, &cell).await;
    round(&fake, &ctx, "sg-1", ns).await;
    create_volumes(&fake, ns).await;
    let kept = credentials(&fake, ns, "sg-1").await;
    let claims = volumes(&fake, ns).await;
    assert_eq!(
        claims,
        ["data-clickhouse-0", "data-postgres-0", "data-redis-0"]
    );

    delete_cell(&fake, &ctx, "sg-1").await;
    assert!(services_in(&fake, ns).await.is_empty(), "services removed");
    let sets = Api::<StatefulSet>::namespaced(fake.client.clone(), ns);
    assert!(
        sets.list(&Default::default())
            .await
            .expect("list")
            .items
            .is_empty()
    );
    let policies = Api::<NetworkPolicy>::namespaced(fake.client.clone(), ns);
    assert!(
        policies
            .list(&Default::default())
            .await
            .expect("list")
            .items
            .is_empty()
    );
    assert!(secret(&fake, ns, "sg-1-datastores").await.is_none());
    let credentials_secret = secret(&fake, ns, "sg-1-credentials")
        .await
        .expect("credentials kept");
    assert!(credentials_secret.owner_references().is_empty());
    assert_eq!(volumes(&fake, ns).await, claims, "volumes kept");
    assert!(
        Api::<Namespace>::all(fake.client.clone())
            .get_opt(ns)
            .await
            .expect("get")
            .is_some(),
        "the namespace holding them is kept"
    );

    // The same cell again: it finds its passwords and its volumes.
    create_cell(&fake, &cell).await;
    round(&fake, &ctx, "sg-1", ns).await;
    assert_eq!(credentials(&fake, ns, "sg-1").await, kept);
    let postgres = sets.get("postgres").await.expect("postgres again");
    let template = &postgres
        .spec
        .expect("spec")
        .volume_claim_templates
        .expect("templates")[0];
    assert_eq!(
        format!("{}-postgres-0", template.name_any()),
        "data-postgres-0",
        "the new StatefulSet claims the kept volume"
    );
    assert_eq!(volumes(&fake, ns).await, claims);
    assert_eq!(services_in(&fake, ns).await.len(), 16);
    assert!(fake.invalid.lock().unwrap().is_empty());
}

#[tokio::test]
async fn delete_removes_volumes_credentials_and_the_namespace() {
    let fake = Fake::new().await;
    let ctx = context(&fake);
    let ns = "titan-sg-1";
    let mut cell = cell_fixture("minimal-cell.yaml");
    cell.spec.deletion_policy = DeletionPolicy::Delete;
    create_cell(&fake, &cell).await;
    round(&fake, &ctx, "sg-1", ns).await;
    create_volumes(&fake, ns).await;
    assert_eq!(volumes(&fake, ns).await.len(), 3);
    let credentials_secret = secret(&fake, ns, "sg-1-credentials").await.expect("secret");
    assert_eq!(credentials_secret.owner_references()[0].kind, "Cell");

    delete_cell(&fake, &ctx, "sg-1").await;
    assert!(secret(&fake, ns, "sg-1-credentials").await.is_none());
    assert!(volumes(&fake, ns).await.is_empty());
    assert!(services_in(&fake, ns).await.is_empty());
    assert!(
        Api::<Namespace>::all(fake.client.clone())
            .get_opt(ns)
            .await
            .expect("get")
            .is_none()
    );
}

#[tokio::test]
async fn missing_external_secret_keys_set_a_condition_and_roll_out_nothing() {
    let fake = Fake::new().await;
    let ctx = context(&fake);
    let ns = "titan-ext";
    // The user's Secret has the wrong key, and Redis's Secret does not exist.
    seed_secret(
        &fake,
        ns,
        "pg-ext",
        &[("uri", "postgres://x@db.example/titan")],
    )
    .await;
    create_cell(&fake, &cell_fixture("external-cell.yaml")).await;
    round(&fake, &ctx, "ext", ns).await;
    round(&fake, &ctx, "ext", ns).await;

    assert!(services_in(&fake, ns).await.is_empty(), "no rollout");
    assert!(secret(&fake, ns, "ext-datastores").await.is_none());
    let status = get_cell(&fake, "ext").await.status.expect("status");
    assert_eq!(
        condition(&status.conditions, "DatastoresReady"),
        ("False".into(), "DatastoreMisconfigured".into())
    );
    assert_eq!(
        condition(&status.conditions, "Degraded"),
        ("True".into(), "CellMisconfigured".into())
    );
    let stores = status.datastores.expect("datastores");
    assert_eq!(stores.postgres.reason, "SecretKeysMissing");
    assert_eq!(
        stores.postgres.message,
        "external postgres: secret pg-ext lacks keys url"
    );
    assert_eq!(stores.redis.reason, "SecretNotFound");
    assert_eq!(
        stores.redis.message,
        "external redis: secret redis-ext does not exist"
    );

    // The user fixes both: the services roll out with the URLs given.
    let secrets = Api::<Secret>::namespaced(fake.client.clone(), ns);
    let url = "postgres://titan:pw@db.example:5432/titan";
    secrets
        .delete("pg-ext", &Default::default())
        .await
        .expect("delete");
    seed_secret(&fake, ns, "pg-ext", &[("url", url)]).await;
    seed_secret(
        &fake,
        ns,
        "redis-ext",
        &[("url", "redis://redis.example:6379")],
    )
    .await;
    round(&fake, &ctx, "ext", ns).await;
    assert_eq!(services_in(&fake, ns).await.len(), 16);
    let datastores = secret(&fake, ns, "ext-datastores").await.expect("secret");
    assert_eq!(text(&datastores, "TITAN_POSTGRES_URL"), url);
    assert_eq!(
        text(&datastores, "TITAN_REDIS_URL"),
        "redis://redis.example:6379"
    );
    let status = get_cell(&fake, "ext").await.status.expect("status");
    assert_eq!(condition(&status.conditions, "Degraded").0, "False");

    // Broken again: what runs stays as it is, Secret and services included.
    secrets
        .delete("redis-ext", &Default::default())
        .await
        .expect("delete");
    reconcile_cell(&fake, &ctx, "ext").await;
    assert_eq!(services_in(&fake, ns).await.len(), 16);
    assert_eq!(
        secret(&fake, ns, "ext-datastores").await.map(|s| s.data),
        Some(datastores.data)
    );
    let status = get_cell(&fake, "ext").await.status.expect("status");
    assert_eq!(
        condition(&status.conditions, "DatastoresReady").1,
        "DatastoreMisconfigured"
    );
}

#[tokio::test]
async fn cloudnative_pg_gives_readiness_and_the_connection_secret() {
    let fake = Fake::new().await;
    let ctx = context(&fake);
    let ns = "commerce-eu-2";
    seed_secret(
        &fake,
        ns,
        "redis-eu-2",
        &[("url", "redis://:pw@redis.example:6379")],
    )
    .await;
    seed_secret(
        &fake,
        ns,
        "s3-creds",
        &[("accessKeyId", "AKIA"), ("secretAccessKey", "s3cr3t")],
    )
    .await;
    create_cell(&fake, &cell_fixture("full-cell.yaml")).await;
    round(&fake, &ctx, "eu-2", ns).await;

    let clusters = Api::<Cluster>::namespaced(fake.client.clone(), ns);
    let cluster = clusters.get("postgres").await.expect("cluster");
    assert_eq!(cluster.spec.instances, 3);
    assert!(
        cluster.owner_references().is_empty(),
        "under Retain the database outlives the Cell"
    );
    let status = get_cell(&fake, "eu-2").await.status.expect("status");
    let postgres = status.datastores.expect("datastores").postgres;
    assert_eq!(
        (
            postgres.provider.as_deref(),
            postgres.ready,
            postgres.reason.as_str()
        ),
        (Some("cloudnative-pg"), false, "WaitingForCloudNativePG")
    );
    assert_eq!(
        condition(&status.conditions, "DatastoresReady"),
        ("False".into(), "DatastoresStarting".into())
    );
    assert_eq!(
        condition(&status.conditions, "Degraded").0,
        "False",
        "waiting for CloudNativePG needs nobody"
    );
    assert!(services_in(&fake, ns).await.is_empty());

    // CloudNativePG creates its application Secret, then reports the cluster healthy.
    let uri = "postgresql://titan:pw@postgres-rw.commerce-eu-2:5432/titan";
    seed_secret(&fake, ns, "postgres-app", &[("uri", uri)]).await;
    round(&fake, &ctx, "eu-2", ns).await;
    assert_eq!(services_in(&fake, ns).await.len(), 16);
    let datastores = secret(&fake, ns, "eu-2-datastores").await.expect("secret");
    assert_eq!(text(&datastores, "TITAN_POSTGRES_URL"), uri);
    roll_out(&fake, ns).await;
    round(&fake, &ctx, "eu-2", ns).await;
    let status = get_cell(&fake, "eu-2").await.status.expect("status");
    let stores = status.datastores.expect("datastores");
    assert!(stores.postgres.ready, "{:?}", stores.postgres);
    assert_eq!(
        stores.object_storage.map(|o| o.reason),
        Some("CredentialsComplete".into())
    );
    assert_eq!(
        condition(&status.conditions, "RecordingsEnabled"),
        ("True".into(), "ObjectStorageConfigured".into())
    );
    assert!(fake.invalid.lock().unwrap().is_empty());
}

#[tokio::test]
async fn status_reports_each_component_and_the_endpoints() {
    let fake = Fake::new().await;
    let ctx = context(&fake);
    let ns = "titan-dev";
    let text = std::fs::read_to_string(crate::support::repo_path(
        "manifests/examples/dev-cell.yaml",
    ))
    .expect("example");
    let cell: Cell = serde_yaml::from_str(&text).expect("cell");
    create_cell(&fake, &cell).await;
    round(&fake, &ctx, "dev", ns).await;

    let status = get_cell(&fake, "dev").await.status.expect("status");
    let media = status.media.clone().expect("media");
    assert_eq!(media.turn.expect("turn").reason, "Starting");
    assert_eq!(
        condition(&status.conditions, "RecordingsEnabled"),
        ("False".into(), "NoObjectStorage".into())
    );

    roll_out(&fake, ns).await;
    round(&fake, &ctx, "dev", ns).await;
    let status = get_cell(&fake, "dev").await.status.expect("status");
    assert_eq!(
        condition(&status.conditions, "Ready"),
        ("True".into(), "AllServicesReady".into())
    );
    assert_eq!(condition(&status.conditions, "MediaReady").0, "True");
    assert_eq!(condition(&status.conditions, "DatastoresReady").0, "True");
    let stores = status.datastores.expect("datastores");
    for store in [&stores.postgres, &stores.redis, &stores.clickhouse] {
        assert_eq!(
            (store.provider.as_deref(), store.ready),
            (Some("builtin"), true)
        );
    }
    assert!(stores.object_storage.is_none());
    let media = status.media.expect("media");
    assert!(media.turn.expect("turn").ready && media.rtmp.expect("rtmp").ready);
    let endpoints = status.endpoints.expect("endpoints");
    assert_eq!(
        endpoints.rtmp_ingest.as_deref(),
        Some("rtmp://rtmp.titan-dev.svc:1935/live")
    );
    assert_eq!(
        endpoints.hls_base.as_deref(),
        Some("http://rtmp.titan-dev.svc:80/hls")
    );
    assert_eq!(
        endpoints.turn_uris,
        [
            "turn:turn.titan-dev.svc:3478?transport=udp",
            "turn:turn.titan-dev.svc:3478?transport=tcp"
        ]
    );
    assert_eq!(endpoints.grpc.len(), 15, "chat is disabled");
    assert_eq!(endpoints.grpc["flashsale"], "flashsale.titan-dev.svc:50051");
    assert!(fake.invalid.lock().unwrap().is_empty());
}
