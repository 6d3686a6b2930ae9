//! The cell router's table kept from the Cells: who is in it (pure, from YAML), and the
//! ConfigMap written through a real API server and served by a real router.

use std::sync::Arc;

use k8s_openapi::{
    api::core::v1::{ConfigMap, Namespace},
    apimachinery::pkg::apis::meta::v1::Time,
    jiff::Timestamp,
};
use kube::{
    Api,
    api::{DeleteParams, Patch, PatchParams},
};
use prometheus::Registry;
use titan_crds::Cell;
use titan_kit::testing::eventually;
use titan_operator::router_table::{RouterTableError, RouterTableOptions, desired, sync};
use titan_router::{
    app::Router,
    domain::{BucketCount, Table},
    store::configmap::{ConfigMapSource, TABLE_KEY, test_control_plane, test_namespace},
};
use tokio_util::sync::CancellationToken;

/// A Cell named `name` at generation 2: `ready` says whether its Ready condition is True and
/// which generation that status observed; `routing` is its `spec.routing` as YAML.
fn cell(name: &str, ready: Option<i64>, routing: &str) -> Cell {
    let status = ready.map_or(String::new(), |observed| {
        format!(
            "status:\n  conditions:\n  - type: Ready\n    status: \"True\"\n    observedGeneration: {observed}\n    \
             lastTransitionTime: \"2026-12-07T00:00:00Z\"\n    reason: Ready\n    message: every service is ready\n"
        )
    });
    serde_yaml::from_str(&format!(
        "apiVersion: commerce.titan.dev/v1alpha1\nkind: Cell\nmetadata:\n  name: {name}\n  generation: 2\n\
         spec:\n  version: 1.0.0\n  routing: {routing}\n{status}"
    ))
    .unwrap()
}

fn ready(name: &str) -> Cell {
    cell(name, Some(2), "{}")
}

fn buckets(n: u32) -> BucketCount {
    BucketCount::new(n).unwrap()
}

/// Each cell's buckets, in the table's (name) order.
fn shares(table: &Table) -> Vec<(String, usize)> {
    table
        .cells()
        .iter()
        .map(|c| c.as_str().to_owned())
        .zip(table.counts())
        .collect()
}

#[test]
fn a_first_table_holds_the_cells_ready_for_their_current_generation_only() {
    let cells = [
        ready("sg-2"),
        cell("sg-1", None, "{}"),
        // Ready, but for generation 1: the status has not seen the latest spec.
        cell("sg-3", Some(1), "{}"),
        ready("sg-0"),
    ];
    let table = desired(None, &cells, buckets(1024)).unwrap().unwrap();
    assert_eq!(table.version(), 1);
    assert_eq!(
        shares(&table),
        [("sg-0".to_owned(), 512), ("sg-2".to_owned(), 512)]
    );
}

#[test]
fn no_ready_cell_makes_no_table() {
    let cells = [cell("sg-1", None, "{}"), cell("sg-2", Some(1), "{}")];
    assert_eq!(desired(None, &cells, buckets(1024)).unwrap(), None);
}

#[test]
fn a_listed_cell_stays_while_not_ready_and_its_buckets_move_only_when_it_is_deleted() {
    let first = desired(None, &[ready("sg-1"), ready("sg-2")], buckets(1024))
        .unwrap()
        .unwrap();
    // sg-2 restarts (not Ready): its users stay with it.
    let restarting = [ready("sg-1"), cell("sg-2", None, "{}")];
    assert_eq!(
        desired(Some(&first), &restarting, buckets(1024)).unwrap(),
        None
    );
    // Being deleted: its buckets go to sg-1, nothing else moves.
    let mut deleted = cell("sg-2", None, "{}");
    deleted.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
    let next = desired(Some(&first), &[ready("sg-1"), deleted], buckets(1024))
        .unwrap()
        .unwrap();
    assert_eq!(next.version(), 2);
    assert_eq!(shares(&next), [("sg-1".to_owned(), 1024)]);
}

#[test]
fn a_cell_that_becomes_ready_joins_and_takes_buckets_from_the_others_only() {
    let first = desired(None, &[ready("sg-1"), ready("sg-2")], buckets(16_384))
        .unwrap()
        .unwrap();
    let next = desired(
        Some(&first),
        &[ready("sg-1"), ready("sg-2"), ready("sg-3")],
        buckets(16_384),
    )
    .unwrap()
    .unwrap();
    assert_eq!(next.version(), 2);
    assert_eq!(
        shares(&next),
        [
            ("sg-1".to_owned(), 5462),
            ("sg-2".to_owned(), 5461),
            ("sg-3".to_owned(), 5461)
        ]
    );
    for bucket in 0..16_384 {
        let (before, after) = (first.owner(bucket).unwrap(), next.owner(bucket).unwrap());
        assert!(
            before == after || after.as_str() == "sg-3",
            "bucket {bucket} moved from {before:?} to {after:?}, not to the new cell"
        );
    }
    // The same Cells again: nothing to write.
    let again = [ready("sg-1"), ready("sg-2"), ready("sg-3")];
    assert_eq!(desired(Some(&next), &again, buckets(16_384)).unwrap(), None);
}

#[test]
fn weight_and_draining_come_from_spec_routing() {
    let weighted = desired(
        None,
        &[ready("sg-1"), cell("sg-2", Some(2), "{weight: 3}")],
        buckets(1024),
    )
    .unwrap()
    .unwrap();
    assert_eq!(
        shares(&weighted),
        [("sg-1".to_owned(), 256), ("sg-2".to_owned(), 768)]
    );
    // sg-2 drains, then sg-3 joins: sg-2 keeps all it has, sg-3 takes from sg-1 only.
    let draining = [
        ready("sg-1"),
        cell("sg-2", Some(2), "{weight: 3, draining: true}"),
    ];
    assert_eq!(
        desired(Some(&weighted), &draining, buckets(1024)).unwrap(),
        None,
        "draining alone moves nothing"
    );
    let joined = desired(
        Some(&weighted),
        &[
            ready("sg-1"),
            cell("sg-2", Some(2), "{weight: 3, draining: true}"),
            ready("sg-3"),
        ],
        buckets(1024),
    )
    .unwrap()
    .unwrap();
    assert_eq!(
        shares(&joined),
        [
            ("sg-1".to_owned(), 128),
            ("sg-2".to_owned(), 768),
            ("sg-3".to_owned(), 128)
        ]
    );
}

#[tokio::test]
async fn the_table_written_through_a_real_api_server_is_served_by_the_router() {
    let client = match test_control_plane().await {
        Ok(client) => client,
        Err(reason) => {
            eprintln!("router table test skipped: {reason}");
            return;
        }
    };
    let ns = test_namespace(&client, "router-table-test").await.unwrap();
    let options = RouterTableOptions {
        namespace: ns.clone(),
        name: "titan-router-table".into(),
        buckets: buckets(1024),
    };
    let registry = Registry::new();
    let router = Arc::new(Router::new(&registry).unwrap());
    let stop = CancellationToken::new();
    let source = ConfigMapSource::new(
        client.clone(),
        Some(&ns),
        "titan-router-table",
        router.clone(),
    );
    let task = tokio::spawn(source.run(stop.clone()));
    let served = || router.table().ok().map(|t| shares(&t));

    assert_eq!(
        sync(&client, &options, &[cell("sg-1", None, "{}")])
            .await
            .unwrap(),
        None
    );
    let v1 = sync(&client, &options, &[ready("sg-1"), ready("sg-2")])
        .await
        .unwrap()
        .unwrap();
    eventually("version 1 served", || async {
        (router.table().ok().map(|t| t.version()) == Some(1)).then_some(())
    })
    .await;
    assert_eq!(served(), Some(shares(&v1)));

    // Unchanged Cells write nothing: the ConfigMap keeps its resourceVersion.
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let before = maps.get("titan-router-table").await.unwrap();
    let same = sync(&client, &options, &[ready("sg-1"), ready("sg-2")])
        .await
        .unwrap();
    assert_eq!(same.as_ref(), Some(&v1));
    let after = maps.get("titan-router-table").await.unwrap();
    assert_eq!(
        after.metadata.resource_version,
        before.metadata.resource_version
    );

    let three = [ready("sg-1"), ready("sg-2"), ready("sg-3")];
    let v2 = sync(&client, &options, &three).await.unwrap().unwrap();
    assert_eq!(v2.version(), 2);
    eventually("version 2 served", || async {
        (router.table().ok().map(|t| t.version()) == Some(2)).then_some(())
    })
    .await;
    assert_eq!(
        served(),
        Some(vec![
            ("sg-1".to_owned(), 342),
            ("sg-2".to_owned(), 341),
            ("sg-3".to_owned(), 341)
        ])
    );

    // A table someone broke is not overwritten: a fresh one would move every user.
    maps.patch(
        "titan-router-table",
        &PatchParams::apply("someone-else").force(),
        &Patch::Apply(serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "titan-router-table"},
            "data": {TABLE_KEY: "{\"format\":9}"}
        })),
    )
    .await
    .unwrap();
    let refused = sync(&client, &options, &three).await.unwrap_err();
    assert!(
        matches!(&refused, RouterTableError::Stored { name, .. } if name == "titan-router-table"),
        "{refused}"
    );
    assert_eq!(
        maps.get("titan-router-table").await.unwrap().data.unwrap()[TABLE_KEY],
        "{\"format\":9}"
    );

    stop.cancel();
    task.await.unwrap().unwrap();
    Api::<Namespace>::all(client.clone())
        .delete(&ns, &DeleteParams::default())
        .await
        .unwrap();
}
