//! Two replicas served as the `titan` binary serves them (kit's runtime, JWT, WebSockets,
//! Redis hub) on one PostgreSQL and Redis: the caller on one, the callee on the other. Call
//! frames and signaling cross replicas with the SDP untouched; a third user's signaling, an
//! oversized frame and signaling after the call ended are refused.

use std::{collections::BTreeMap, time::Duration};

use serde_json::{Value, json};
use titan_kit::{
    auth::Authenticator,
    config::Config,
    error::reason_of,
    runtime,
    testing::{
        Served, TestPostgres, TestRedis, server_url,
        ws::{self, Client, Event},
    },
};
use titan_proto::videocall::v1::{self as pb, videocall_service_client::VideocallServiceClient};
use titan_videocall::service;
use tokio_tungstenite::connect_async;
use tonic::{Code, Request};

use crate::rid;

const SECRET: &str = "0123456789abcdef0123456789abcdef";

pub fn config(db: &TestPostgres, redis: &TestRedis) -> Config {
    let yaml = "services:\n  videocall:\n    ringTimeoutSeconds: 60\n    turn:\n      uris: [\"turn:127.0.0.1:3478?transport=udp\"]\n";
    let vars = BTreeMap::from([
        ("TITAN_GRPC_ADDR", "127.0.0.1:0".to_owned()),
        ("TITAN_HTTP_ADDR", "127.0.0.1:0".to_owned()),
        ("TITAN_ADMIN_ADDR", "127.0.0.1:0".to_owned()),
        ("TITAN_AUTH_HS256_SECRET", SECRET.to_owned()),
        ("TITAN_POSTGRES_URL", db.url.clone()),
        ("TITAN_REDIS_URL", redis.url.clone()),
        ("TITAN_REDIS_KEY_PREFIX", redis.config.key_prefix.clone()),
        ("TITAN_REALTIME_ALLOW_MISSING_ORIGIN", "true".to_owned()),
        ("TITAN_S3_ENDPOINT", server_url("TITAN_TEST_S3_ENDPOINT")),
        ("TITAN_S3_BUCKET", server_url("TITAN_TEST_S3_BUCKET")),
        (
            "TITAN_S3_ACCESS_KEY_ID",
            server_url("TITAN_TEST_S3_ACCESS_KEY_ID"),
        ),
        (
            "TITAN_S3_SECRET_ACCESS_KEY",
            server_url("TITAN_TEST_S3_SECRET_ACCESS_KEY"),
        ),
    ]);
    Config::from_sources(Some(yaml), move |name| vars.get(name).cloned()).expect("config")
}

pub fn token(config: &Config, user: &str) -> String {
    Authenticator::new(&config.auth)
        .expect("auth")
        .mint(user, &[], Duration::from_secs(600))
        .expect("mint")
}

async fn socket(served: &Served, token: &str) -> Client {
    let url = format!(
        "ws://{}/v1/videocall/ws?access_token={token}",
        served.bound.http
    );
    connect_async(url).await.expect("handshake").0
}

/// Sends a client frame with `id` and returns its ack's payload or error's payload.
async fn request(ws: &mut Client, id: u64, kind: &str, payload: Value) -> Result<Value, Value> {
    ws::send(ws, json!({"type": kind, "id": id, "payload": payload})).await;
    loop {
        match ws::next(ws).await {
            Event::Frame(f) if f["id"] == json!(id) && f["type"] == "ack" => {
                return Ok(f["payload"].clone());
            }
            Event::Frame(f) if f["id"] == json!(id) && f["type"] == "error" => {
                return Err(f["payload"].clone());
            }
            Event::Frame(_) => {}
            Event::Closed(code, why) => panic!("closed {code} {why}"),
        }
    }
}

/// The next pushed frame of type `kind`, skipping others.
async fn pushed(ws: &mut Client, kind: &str) -> Value {
    loop {
        match ws::next(ws).await {
            Event::Frame(f) if f["type"] == kind => return f["payload"].clone(),
            Event::Frame(_) => {}
            Event::Closed(code, why) => panic!("closed {code} {why}"),
        }
    }
}

pub fn authed<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    request
}

#[tokio::test]
async fn signaling_crosses_replicas_between_the_two_participants_only() {
    let db = TestPostgres::new().await;
    let redis = TestRedis::new().await;
    let config = config(&db, &redis);
    runtime::migrate(&config, &[service()])
        .await
        .expect("migrate");
    let a = titan_kit::testing::serve(config.clone(), vec![service()]).await;
    let b = titan_kit::testing::serve(config.clone(), vec![service()]).await;
    let (ann, bob, eve) = (
        token(&config, "ann"),
        token(&config, "bob"),
        token(&config, "eve"),
    );
    let mut ann_ws = socket(&a, &ann).await;
    let mut bob_ws = socket(&b, &bob).await;
    let mut eve_ws = socket(&a, &eve).await;
    // Each socket is subscribed once its first frame is answered.
    for ws in [&mut ann_ws, &mut bob_ws, &mut eve_ws] {
        let refused = request(ws, 0, "iceServers", json!({"callId": "x"}))
            .await
            .expect_err("bad id");
        assert_eq!(refused["reason"], "INVALID_ARGUMENT");
    }

    // Bad input over gRPC: InvalidArgument naming the field, reason in ErrorInfo.
    let mut grpc = VideocallServiceClient::new(a.channel.clone());
    let bad = grpc
        .initiate_call(authed(
            pb::InitiateCallRequest {
                request_id: rid(),
                callee_id: "bob".into(),
                r#type: 0,
                media: pb::Media::Video as i32,
            },
            &ann,
        ))
        .await
        .expect_err("no type");
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().starts_with("type: "), "{}", bad.message());
    assert_eq!(reason_of(&bad).as_deref(), Some("INVALID_ARGUMENT"));

    // Ann calls bob over gRPC on replica A; bob's socket on B rings.
    let call = grpc
        .initiate_call(authed(
            pb::InitiateCallRequest {
                request_id: rid(),
                callee_id: "bob".into(),
                r#type: pb::CallType::Sales as i32,
                media: pb::Media::Video as i32,
            },
            &ann,
        ))
        .await
        .expect("initiate")
        .into_inner()
        .call
        .expect("call");
    assert_eq!(call.status, pb::CallStatus::Ringing as i32);
    let ringing = pushed(&mut bob_ws, "call").await;
    assert_eq!(
        (
            ringing["id"].as_str(),
            ringing["status"].as_str(),
            ringing["callerId"].as_str()
        ),
        (Some(call.id.as_str()), Some("RINGING"), Some("ann"))
    );

    // The offer reaches bob byte for byte, while the call rings.
    let sdp = "v=0\r\no=- 46117 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 VP8/90000\r\n";
    let offer = json!({"type": "offer", "sdp": sdp});
    request(
        &mut ann_ws,
        1,
        "signal",
        json!({"callId": call.id, "kind": "offer", "data": offer}),
    )
    .await
    .expect("offer relayed");
    let got = pushed(&mut bob_ws, "signal").await;
    assert_eq!(got["from"], "ann");
    assert_eq!(got["kind"], "offer");
    assert_eq!(got["data"]["sdp"].as_str(), Some(sdp));

    // Eve is not in the call; an oversized frame is refused before anything is sent.
    let eve_try = request(
        &mut eve_ws,
        1,
        "signal",
        json!({"callId": call.id, "kind": "offer", "data": offer}),
    )
    .await
    .expect_err("eve");
    assert_eq!(eve_try["reason"], "NOT_A_PARTICIPANT");
    let big = request(
        &mut ann_ws,
        2,
        "signal",
        json!({"callId": call.id, "kind": "ice", "data": "x".repeat(40 * 1024)}),
    )
    .await
    .expect_err("too big");
    assert_eq!(big["reason"], "INVALID_ARGUMENT");
    assert!(
        big["message"]
            .as_str()
            .expect("message")
            .starts_with("data: ")
    );

    // Bob answers on B; ann hears it on A and gets bob's answer and candidate.
    let answered = request(
        &mut bob_ws,
        1,
        "answer",
        json!({"requestId": rid(), "callId": call.id}),
    )
    .await
    .expect("answer");
    assert_eq!(answered["status"], "ACTIVE");
    loop {
        let c = pushed(&mut ann_ws, "call").await;
        if c["status"] == "ACTIVE" {
            break;
        }
        assert_eq!(c["status"], "RINGING");
    }
    for (i, (kind, data)) in [
        ("answer", json!({"type": "answer", "sdp": "v=0\r\n"})),
        (
            "ice",
            json!({"candidate": "candidate:1 1 udp 1 127.0.0.1 50000 typ relay", "sdpMid": "0"}),
        ),
    ]
    .into_iter()
    .enumerate()
    {
        request(
            &mut bob_ws,
            10 + i as u64,
            "signal",
            json!({"callId": call.id, "kind": kind, "data": data}),
        )
        .await
        .expect("relayed");
        let got = pushed(&mut ann_ws, "signal").await;
        assert_eq!((got["kind"].as_str(), &got["data"]), (Some(kind), &data));
    }
    // This process has no TITAN_TURN_SECRET (a test cannot set its own environment safely):
    // no credential can be minted, so the TURN URI is not handed out (rules.rs checks the
    // credentials; the e2e test gives the binary a secret).
    let ice = request(&mut bob_ws, 20, "iceServers", json!({"callId": call.id}))
        .await
        .expect("ice");
    assert_eq!(ice["iceServers"], json!([]));

    // Ann hangs up; no more signaling in this call.
    let ended = request(
        &mut ann_ws,
        3,
        "end",
        json!({"requestId": rid(), "callId": call.id}),
    )
    .await
    .expect("end");
    assert_eq!(ended["status"], "ENDED");
    loop {
        if pushed(&mut bob_ws, "call").await["status"] == "ENDED" {
            break;
        }
    }
    let after = request(
        &mut bob_ws,
        30,
        "signal",
        json!({"callId": call.id, "kind": "hangup", "data": null}),
    )
    .await
    .expect_err("over");
    assert_eq!(after["reason"], "CALL_NOT_LIVE");
    for s in [a, b] {
        s.stop.cancel();
        s.task.await.expect("join").expect("stopped cleanly");
    }
}
