//! The table's sources: a file rewritten under a running router, and a ConfigMap changed
//! through a real API server. Each new table is served, a malformed one is refused and counted
//! while the previous one stays.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::{
    Api,
    api::{DeleteParams, Patch, PatchParams},
};
use prometheus::Registry;
use titan_kit::testing::eventually;
use titan_proto::router::v1::{LookupRequest, router_service_client::RouterServiceClient};
use titan_router::{
    app::Router,
    domain::{PartitionKey, encoding, rebalance},
    store::configmap::{ConfigMapSource, TABLE_KEY, configmap, test_control_plane, test_namespace},
};
use tokio_util::sync::CancellationToken;

use crate::{cells, metric, serve, table, write, write_table};

#[tokio::test]
async fn a_rewritten_file_is_served_and_a_malformed_one_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("table.json");
    let v1 = table(&["sg-1", "sg-2"]);
    write_table(&path, &v1);
    let served = serve(&path).await;
    let client = RouterServiceClient::new(served.channel.clone());
    // A third cell; a key whose bucket moves to it shows which table answers.
    let v2 = rebalance(&v1, &cells(&["sg-1", "sg-2", "sg-3"])).expect("cells");
    let key = (0..)
        .map(|i| format!("user-{i}"))
        .find(|k| {
            let key = PartitionKey::parse(k).expect("valid key");
            v2.route(key).cell.as_str() == "sg-3"
        })
        .expect("some key moves");
    let before = v1
        .route(PartitionKey::parse(&key).expect("valid key"))
        .cell
        .to_string();
    let version = || {
        let mut client = client.clone();
        let key = key.clone();
        async move {
            let answer = client
                .lookup(LookupRequest { key })
                .await
                .expect("lookup")
                .into_inner();
            (answer.cell, answer.table_version)
        }
    };
    assert_eq!(version().await, (before, 1));
    write_table(&path, &v2);
    eventually("version 2 to be served", || async {
        (version().await == ("sg-3".to_owned(), 2)).then_some(())
    })
    .await;

    write(&path, "{\"format\":1,\"version\":3}");
    let failures = "titan_router_table_reload_failures_total{reason=\"malformed\"}";
    eventually("the malformed table to be refused", || async {
        (metric(&served, failures).await == 1.0).then_some(())
    })
    .await;
    assert_eq!(version().await, ("sg-3".to_owned(), 2));
    assert_eq!(metric(&served, "titan_router_table_version").await, 2.0);

    let v3 = rebalance(&v2, &cells(&["sg-1", "sg-3"])).expect("cells");
    write_table(&path, &v3);
    eventually("version 3 to be served", || async {
        (version().await.1 == 3).then_some(())
    })
    .await;
    assert_eq!(
        metric(&served, "titan_router_table_reloads_total").await,
        2.0
    );
    served.stop.cancel();
    served.task.await.expect("join").expect("clean stop");
}

#[tokio::test]
async fn a_changed_configmap_is_served_through_a_real_api_server() {
    let client = match test_control_plane().await {
        Ok(client) => client,
        Err(reason) => {
            eprintln!("router ConfigMap test skipped: {reason}");
            return;
        }
    };
    let ns = test_namespace(&client, "router-test")
        .await
        .expect("create the namespace");
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let apply = |cm: ConfigMap| {
        let maps = maps.clone();
        async move {
            maps.patch(
                "titan-router-table",
                &PatchParams::apply("titan-router-test").force(),
                &Patch::Apply(&cm),
            )
            .await
            .expect("apply the ConfigMap");
        }
    };
    let v1 = table(&["sg-1", "sg-2"]);
    apply(configmap("titan-router-table", &ns, &v1)).await;

    let registry = Registry::new();
    let router = Arc::new(Router::new(&registry).expect("metrics"));
    let stop = CancellationToken::new();
    let source = ConfigMapSource::new(
        client.clone(),
        Some(&ns),
        "titan-router-table",
        router.clone(),
    );
    let task = tokio::spawn(source.run(stop.clone()));
    let served_version = || router.table().map(|t| t.version()).ok();
    eventually("version 1 from the ConfigMap", || async {
        (served_version() == Some(1)).then_some(())
    })
    .await;

    let v2 = rebalance(&v1, &cells(&["sg-1", "sg-2", "sg-3"])).expect("cells");
    apply(configmap("titan-router-table", &ns, &v2)).await;
    eventually("version 2 from the ConfigMap", || async {
        (served_version() == Some(2)).then_some(())
    })
    .await;
    assert_eq!(router.table().expect("table").as_ref(), &v2);

    // A malformed table, then a ConfigMap without the key: both refused, version 2 stays.
    let mut broken = configmap("titan-router-table", &ns, &v2);
    broken.data = Some([(TABLE_KEY.to_owned(), "{\"format\":9}".to_owned())].into());
    apply(broken).await;
    eventually("the malformed table to be refused", || async {
        (router.reload_failures("malformed") == 1).then_some(())
    })
    .await;
    assert_eq!(served_version(), Some(2));
    assert_eq!(
        encoding::encode(&router.table().expect("table")),
        encoding::encode(&v2)
    );

    maps.delete("titan-router-table", &DeleteParams::default())
        .await
        .expect("delete");
    let v3 = rebalance(&v2, &cells(&["sg-2", "sg-3"])).expect("cells");
    apply(configmap("titan-router-table", &ns, &v3)).await;
    eventually("version 3 after the ConfigMap was recreated", || async {
        (served_version() == Some(3)).then_some(())
    })
    .await;
    stop.cancel();
    task.await.expect("join").expect("clean stop");
    Api::<Namespace>::all(client.clone())
        .delete(&ns, &DeleteParams::default())
        .await
        .expect("delete the namespace");
}
