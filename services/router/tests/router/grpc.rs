//! Lookups over gRPC and HTTP: exact answers for known keys, validation with the field named,
//! no token needed, an invalid one refused, and no answer (nor readiness) before a table.

use std::time::Duration;

use titan_kit::{auth::Authenticator, error::reason_of, testing::eventually};
use titan_proto::router::v1::{
    LookupManyRequest, LookupRequest, Route, router_service_client::RouterServiceClient,
};
use tonic::{Code, Request};

use crate::{serve, table, write_table};

fn lookup(key: &str) -> LookupRequest {
    LookupRequest { key: key.into() }
}

#[tokio::test]
async fn keys_go_to_the_cell_of_their_bucket() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("table.json");
    // Three cells: sg-1 owns buckets 0..5462, sg-2 5462..10923, sg-3 the rest.
    write_table(&path, &table(&["sg-1", "sg-2", "sg-3"]));
    let served = serve(&path).await;
    let mut client = RouterServiceClient::new(served.channel.clone());

    // XXH3-64("user-1") = 0x7c7615c11438e5c9; its low 14 bits are 9673.
    let answer = client
        .lookup(lookup("user-1"))
        .await
        .expect("lookup")
        .into_inner();
    assert_eq!(
        (answer.cell.as_str(), answer.bucket, answer.table_version),
        ("sg-2", 9673, 1)
    );
    // XXH3-64("héllo") = 0x6a45b79a7b549b1f: bucket 6943.
    let many = client
        .lookup_many(LookupManyRequest {
            keys: vec!["héllo".into(), "user-1".into(), "héllo".into()],
        })
        .await
        .expect("lookup many")
        .into_inner();
    let route = |cell: &str, bucket| Route {
        cell: cell.into(),
        bucket,
    };
    assert_eq!(
        many.routes,
        vec![
            route("sg-2", 6943),
            route("sg-2", 9673),
            route("sg-2", 6943)
        ]
    );
    assert_eq!(many.table_version, 1);

    // The same over HTTP.
    let http = reqwest::Client::new();
    let url = format!("http://{}/v1/route", served.bound.http);
    let response = http
        .get(&url)
        .query(&[("key", "user-1")])
        .send()
        .await
        .expect("http");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<serde_json::Value>().await.expect("json"),
        serde_json::json!({"cell": "sg-2", "bucket": 9673, "tableVersion": 1})
    );
    let response = http.get(&url).send().await.expect("http");
    assert_eq!(response.status(), 400);
    assert_eq!(
        response.json::<serde_json::Value>().await.expect("json"),
        serde_json::json!({"reason": "INVALID_KEY", "message": "key: key is empty"})
    );

    // A valid token is accepted, an invalid one refused by the runtime.
    let auth = Authenticator::new(&crate::config(&path).auth).expect("auth");
    let token = auth
        .mint("user-9", &[], Duration::from_secs(60))
        .expect("token");
    for (token, ok) in [(token.as_str(), true), ("not-a-jwt", false)] {
        let mut request = Request::new(lookup("user-1"));
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("header"),
        );
        let outcome = client.lookup(request).await;
        assert_eq!(
            outcome.map(|_| ()).map_err(|s| s.code()),
            if ok {
                Ok(())
            } else {
                Err(Code::Unauthenticated)
            }
        );
    }
    served.stop.cancel();
    served.task.await.expect("join").expect("clean stop");
}

#[tokio::test]
async fn bad_input_is_refused_with_the_field_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("table.json");
    write_table(&path, &table(&["sg-1"]));
    let served = serve(&path).await;
    let mut client = RouterServiceClient::new(served.channel.clone());

    let long = "k".repeat(257);
    let refused = [
        (
            client.lookup(lookup("")).await,
            "INVALID_KEY",
            "key: key is empty",
        ),
        (
            client.lookup(lookup(&long)).await,
            "INVALID_KEY",
            "key: key has 257 bytes; at most 256 are allowed",
        ),
    ];
    for (outcome, reason, message) in refused {
        let status = outcome.expect_err("refused");
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(reason_of(&status).as_deref(), Some(reason));
        assert_eq!(status.message(), message);
    }
    let cases = [
        (
            vec!["k".to_owned(); 1001],
            "BATCH_SIZE",
            "keys: 1001 keys; 1 to 1000 are allowed per call",
        ),
        (
            vec![],
            "BATCH_SIZE",
            "keys: 0 keys; 1 to 1000 are allowed per call",
        ),
        (
            vec!["a".to_owned(), String::new()],
            "INVALID_KEY",
            "keys[1]: key is empty",
        ),
    ];
    for (keys, reason, message) in cases {
        let status = client
            .lookup_many(LookupManyRequest { keys })
            .await
            .expect_err("refused");
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(reason_of(&status).as_deref(), Some(reason));
        assert_eq!(status.message(), message);
    }
    // 1,000 keys are fine.
    let many = client
        .lookup_many(LookupManyRequest {
            keys: (0..1000).map(|i| format!("user-{i}")).collect(),
        })
        .await
        .expect("1,000 keys")
        .into_inner();
    assert_eq!(many.routes.len(), 1000);
    assert!(many.routes.iter().all(|r| r.cell == "sg-1"));
    served.stop.cancel();
    served.task.await.expect("join").expect("clean stop");
}

#[tokio::test]
async fn nothing_is_answered_before_a_table_and_everything_after() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("table.json");
    let served = serve(&path).await;
    let mut client = RouterServiceClient::new(served.channel.clone());
    let status = client.lookup(lookup("user-1")).await.expect_err("no table");
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(reason_of(&status).as_deref(), Some("NO_TABLE"));
    let response = reqwest::get(format!("http://{}/v1/route?key=user-1", served.bound.http))
        .await
        .expect("http");
    assert_eq!(response.status(), 503);
    assert_eq!(
        crate::metric(
            &served,
            "titan_router_table_reload_failures_total{reason=\"source\"}"
        )
        .await,
        1.0
    );
    // Not ready either, so a Service sends no traffic to a replica that would refuse it all.
    assert_eq!(
        crate::readyz(&served).await,
        (
            503,
            "router table: no routing table is loaded yet".to_owned()
        )
    );

    write_table(&path, &table(&["sg-1", "sg-2"]));
    let answer = eventually("the table to be loaded", || {
        let mut client = client.clone();
        async move { client.lookup(lookup("user-1")).await.ok() }
    })
    .await
    .into_inner();
    // Bucket 9673 of two cells of 8,192: the second.
    assert_eq!((answer.cell.as_str(), answer.bucket), ("sg-2", 9673));
    assert_eq!(
        crate::metric(&served, "titan_router_table_version").await,
        1.0
    );
    assert_eq!(crate::readyz(&served).await, (200, "ready".to_owned()));
    served.stop.cancel();
    served.task.await.expect("join").expect("clean stop");
}
