//! Carriers' webhooks over HTTP: a good signature appends, a bad or stale one is 401 and
//! appends nothing, a replay is de-duplicated, bad events name their field and append nothing.

use std::sync::Arc;

use serde_json::{Value, json};
use titan_tracking::{
    domain::{Status, signature::sign},
    web::{self, SIGNATURE_HEADER, TIMESTAMP_HEADER},
};

use crate::{World, kinds, lookup, support};

const SECRET: &str = "acme-webhook-secret-acme-webhook-secret";

/// Serves the webhook routes of `w`'s app on a local port; answers its base URL.
async fn serve(w: &World) -> String {
    let secrets: web::Secrets = Arc::new(|carrier| (carrier == "acme").then(|| SECRET.to_owned()));
    let router = web::router(w.app.clone(), secrets);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}/webhooks/tracking")
}

/// Posts `body` to `url` signed with `secret` at `timestamp`; answers status and JSON.
async fn post(url: &str, body: &Value, secret: &str, timestamp: i64) -> (u16, Value) {
    let raw = serde_json::to_vec(body).expect("json");
    let ts = timestamp.to_string();
    let response = reqwest::Client::new()
        .post(url)
        .header(TIMESTAMP_HEADER, &ts)
        .header(SIGNATURE_HEADER, sign(secret.as_bytes(), &ts, &raw))
        .header("content-type", "application/json")
        .body(raw)
        .send()
        .await
        .expect("post");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn scans(number: &str) -> Value {
    json!({"events": [
        {"id": "acme-1", "tracking_number": number, "type": "PICKED_UP", "location": "Tuas depot",
         "at": "2030-03-17T17:50:00Z", "note": "collected by van 4"},
        {"id": "acme-2", "tracking_number": number, "type": "IN_TRANSIT", "location": "Changi hub",
         "at": "2030-03-17T18:10:00Z", "estimated_delivery": "2030-03-19T12:00:00Z"},
    ]})
}

#[tokio::test]
async fn signed_events_append_once_and_unsigned_ones_never() {
    let w = World::new().await;
    let n = "AC0000000000000001";
    w.deliver(&crate::shipment_created("ship-1", n, "acme"))
        .await
        .expect("created");
    let url = format!("{}/acme", serve(&w).await);
    let now = w.clock.now().timestamp();
    let body = scans(n);
    // Wrong secret, stale timestamp, a body altered after signing, no headers: 401.
    assert_eq!(
        post(&url, &body, "another-secret-another-secret-another", now)
            .await
            .0,
        401
    );
    let (status, answer) = post(&url, &body, SECRET, now - 301).await;
    assert_eq!(status, 401);
    assert!(
        answer["error"]
            .as_str()
            .unwrap_or_default()
            .contains("more than 5 minutes"),
        "{answer}"
    );
    let ts = now.to_string();
    let signed = sign(
        SECRET.as_bytes(),
        &ts,
        &serde_json::to_vec(&body).expect("json"),
    );
    let mut altered = body.clone();
    altered["events"][0]["type"] = json!("DELIVERED");
    let response = reqwest::Client::new()
        .post(&url)
        .header(TIMESTAMP_HEADER, &ts)
        .header(SIGNATURE_HEADER, &signed)
        .body(serde_json::to_vec(&altered).expect("json"))
        .send()
        .await
        .expect("post");
    assert_eq!(response.status().as_u16(), 401);
    let bare = reqwest::Client::new()
        .post(&url)
        .body("{}")
        .send()
        .await
        .expect("post");
    assert_eq!(bare.status().as_u16(), 401);
    assert_eq!(w.count("SELECT count(*) FROM tracking_events").await, 1);
    // A carrier without a secret, or one that is not a carrier name: 404.
    assert_eq!(
        post(&url.replace("/acme", "/other"), &body, SECRET, now)
            .await
            .0,
        404
    );
    assert_eq!(
        post(&url.replace("/acme", "/ACME"), &body, SECRET, now)
            .await
            .0,
        404
    );

    // Signed: both appended; the same request again (a replay within 5 minutes): duplicates.
    let (status, answer) = post(&url, &body, SECRET, now).await;
    assert_eq!(
        (status, answer),
        (200, json!({"appended": 2, "duplicates": 0}))
    );
    let (status, answer) = post(&url, &body, SECRET, now).await;
    assert_eq!(
        (status, answer),
        (200, json!({"appended": 0, "duplicates": 2}))
    );
    let page = w.app.get(&support(), &lookup(n)).await.expect("page");
    assert_eq!(
        kinds(&page),
        [("CREATED", true), ("PICKED_UP", true), ("IN_TRANSIT", true)]
    );
    assert_eq!(page.record.status, Status::InTransit);
    assert_eq!(page.record.location, "Changi hub");
    assert_eq!(page.events[1].0.source, "carrier:acme");
    assert_eq!(page.events[1].0.source_event_id, "acme-1");
    assert_eq!(page.events[1].0.note, "collected by van 4");
    assert_eq!(
        page.record.estimated_delivery.map(|t| t.to_rfc3339()),
        Some("2030-03-19T12:00:00+00:00".to_owned())
    );
}

#[tokio::test]
async fn bad_events_name_their_field_and_append_nothing() {
    let w = World::new().await;
    let n = "AC0000000000000002";
    w.deliver(&crate::shipment_created("ship-1", n, "acme"))
        .await
        .expect("created");
    let url = format!("{}/acme", serve(&w).await);
    let now = w.clock.now().timestamp();
    let good = scans(n);
    let mut bad_type = good.clone();
    bad_type["events"][1]["type"] = json!("LOST");
    let mut created = good.clone();
    created["events"][0]["type"] = json!("CREATED");
    let mut unknown = good.clone();
    unknown["events"][1]["tracking_number"] = json!("AC0000000000000099");
    let too_many =
        json!({"events": (0..101).map(|i| json!({"id": format!("e{i}")})).collect::<Vec<_>>()});
    for (body, status, error) in [
        (bad_type, 400, "events[1].type: \"LOST\" is not one of"),
        (
            created,
            400,
            "events[0].type: CREATED is recorded when shipping",
        ),
        (
            json!({"events": []}),
            400,
            "events: has 0; 1 to 100 are allowed",
        ),
        (too_many, 400, "events: has 101"),
        (json!({"scans": []}), 400, "body: unknown field `scans`"),
        (
            unknown,
            404,
            "no tracking record for AC0000000000000099 of acme",
        ),
    ] {
        let (got, answer) = post(&url, &body, SECRET, now).await;
        assert_eq!(got, status, "{answer}");
        let message = answer["error"].as_str().unwrap_or_default();
        assert!(
            message.starts_with(error),
            "{message:?} does not start with {error:?}"
        );
    }
    assert_eq!(w.count("SELECT count(*) FROM tracking_events").await, 1);
    // Another carrier's number is not this carrier's to move.
    w.deliver(&crate::shipment_created(
        "ship-2",
        "FR0000000000000002",
        "flat-rate",
    ))
    .await
    .expect("flat-rate");
    let mut theirs = good.clone();
    theirs["events"][0]["tracking_number"] = json!("FR0000000000000002");
    assert_eq!(post(&url, &theirs, SECRET, now).await.0, 404);
    assert_eq!(w.count("SELECT count(*) FROM tracking_events").await, 2);
}
