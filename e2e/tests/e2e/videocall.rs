//! Videocall against real `titan serve videocall` processes sharing PostgreSQL and Redis:
//! the caller on one replica and the callee on another, a call placed over gRPC rings on the
//! callee's socket, signaling crosses the replicas untouched, a third user's signaling is
//! refused, ICE servers carry a TURN credential for the user, both consent to recording, bob
//! uploads one through replica B and ann's GetCall on A hands a presigned URL serving its exact
//! bytes from the cell's object storage, the call ends ENDED with its duration; then a call left ringing is MISSED after the ringing timeout although the replica
//! that placed it was killed (SIGKILL) while it rang.

use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::{Value, json};
use titan_e2e::{Cell, CellOptions, authed};
use titan_kit::testing::{
    eventually,
    ws::{Client, Event, next, send},
};
use titan_proto::videocall::v1::{self as pb, videocall_service_client::VideocallServiceClient};
use tokio_tungstenite::connect_async;
use tonic::transport::Channel;

type Grpc = VideocallServiceClient<Channel>;

/// A 5 s ringing timeout (the shortest allowed) so the timeout test waits little; apps send no
/// Origin.
const CONFIG: &str = "realtime: { allowMissingOrigin: true }\nservices:\n  videocall: { ringTimeoutSeconds: 5, turn: { uris: [\"turn:127.0.0.1:3478?transport=udp\"] } }\n";
const TURN_SECRET: &str = "e2e-turn-secret";

async fn ws(http: std::net::SocketAddr, token: &str) -> Client {
    let url = format!("ws://{http}/v1/videocall/ws?access_token={token}");
    connect_async(url).await.expect("handshake").0
}

/// Sends a client frame and returns its ack's (`Ok`) or error's (`Err`) payload.
async fn request(ws: &mut Client, id: u64, kind: &str, payload: Value) -> Result<Value, Value> {
    send(ws, json!({"type": kind, "id": id, "payload": payload})).await;
    loop {
        match next(ws).await {
            Event::Frame(f) if f["id"] == json!(id) && f["type"] == "ack" => {
                return Ok(f["payload"].clone());
            }
            Event::Frame(f) if f["id"] == json!(id) && f["type"] == "error" => {
                return Err(f["payload"].clone());
            }
            Event::Frame(_) => {}
            Event::Closed(code, why) => panic!("closed {code}: {why}"),
        }
    }
}

/// The next pushed frame of `kind` whose payload satisfies `wanted`.
async fn pushed(ws: &mut Client, kind: &str, wanted: impl Fn(&Value) -> bool) -> Value {
    loop {
        match next(ws).await {
            Event::Frame(f) if f["type"] == kind && wanted(&f["payload"]) => {
                return f["payload"].clone();
            }
            Event::Frame(_) => {}
            Event::Closed(code, why) => panic!("closed {code}: {why}"),
        }
    }
}

async fn place(grpc: &mut Grpc, token: &str, callee: &str) -> pb::Call {
    grpc.initiate_call(authed(
        pb::InitiateCallRequest {
            request_id: uuid::Uuid::new_v4().to_string(),
            callee_id: callee.into(),
            r#type: pb::CallType::Support as i32,
            media: pb::Media::Video as i32,
        },
        token,
    ))
    .await
    .expect("initiate")
    .into_inner()
    .call
    .expect("call")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_across_two_replicas_and_a_missed_call_after_its_replica_died() {
    let mut cell = Cell::start_with(CellOptions {
        services: vec!["videocall".into()],
        config: Some(CONFIG.into()),
        ..CellOptions::default()
    })
    .await;
    let b = cell.replica_with(&[("TITAN_TURN_SECRET", TURN_SECRET)]);
    let (ann, bob, eve) = (
        cell.token("ann", &[]),
        cell.token("bob", &[]),
        cell.token("eve", &[]),
    );
    let mut on_a = VideocallServiceClient::new(cell.channel().await);
    let mut on_b = VideocallServiceClient::new(b.channel().await);
    let mut ann_ws = ws(cell.http, &ann).await;
    let mut bob_ws = ws(b.http, &bob).await;
    let mut eve_ws = ws(b.http, &eve).await;
    // A first frame answered means the socket follows its user's topic.
    for socket in [&mut ann_ws, &mut bob_ws, &mut eve_ws] {
        let refused = request(socket, 0, "iceServers", json!({"callId": "none"}))
            .await
            .expect_err("bad id");
        assert_eq!(refused["reason"], "INVALID_ARGUMENT");
    }

    // Ann (replica A) calls bob (replica B): his socket rings.
    let call = place(&mut on_a, &ann, "bob").await;
    assert_eq!(call.status, pb::CallStatus::Ringing as i32);
    let id = call.id.clone();
    pushed(&mut bob_ws, "call", |c| {
        c["id"] == id.as_str() && c["status"] == "RINGING"
    })
    .await;

    // The offer crosses replicas byte for byte; eve's is refused.
    let sdp = "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 VP8/90000\r\n";
    request(
        &mut ann_ws,
        1,
        "signal",
        json!({"callId": id, "kind": "offer", "data": {"type": "offer", "sdp": sdp}}),
    )
    .await
    .expect("offer");
    let offer = pushed(&mut bob_ws, "signal", |s| s["kind"] == "offer").await;
    assert_eq!(
        (offer["from"].as_str(), offer["data"]["sdp"].as_str()),
        (Some("ann"), Some(sdp))
    );
    let refused = request(
        &mut eve_ws,
        1,
        "signal",
        json!({"callId": id, "kind": "ice", "data": {"candidate": "x"}}),
    )
    .await
    .expect_err("eve");
    assert_eq!(refused["reason"], "NOT_A_PARTICIPANT");

    // Bob answers on B; ann's socket on A hears it, then his answer and candidate.
    let answered = on_b
        .answer_call(authed(
            pb::AnswerCallRequest {
                request_id: uuid::Uuid::new_v4().to_string(),
                call_id: id.clone(),
            },
            &bob,
        ))
        .await
        .expect("answer")
        .into_inner()
        .call
        .expect("call");
    assert_eq!(answered.status, pb::CallStatus::Active as i32);
    pushed(&mut ann_ws, "call", |c| c["status"] == "ACTIVE").await;
    let candidate = json!({"candidate": "candidate:842163049 1 udp 1677729535 127.0.0.1 49170 typ relay raddr 0.0.0.0 rport 0", "sdpMid": "0", "sdpMLineIndex": 0});
    for (n, (kind, data)) in [
        ("answer", json!({"type": "answer", "sdp": "v=0\r\n"})),
        ("ice", candidate),
    ]
    .into_iter()
    .enumerate()
    {
        request(
            &mut bob_ws,
            10 + n as u64,
            "signal",
            json!({"callId": id, "kind": kind, "data": data}),
        )
        .await
        .expect("relayed");
        let got = pushed(&mut ann_ws, "signal", |s| s["kind"] == kind).await;
        assert_eq!(got["data"], data);
    }

    // B has the TURN secret: bob's credential is his, and expires within the TTL.
    let ice = on_b
        .get_ice_servers(authed(
            pb::GetIceServersRequest {
                call_id: id.clone(),
            },
            &bob,
        ))
        .await
        .expect("ice")
        .into_inner();
    assert_eq!(ice.ice_servers.len(), 1);
    let turn = &ice.ice_servers[0];
    assert_eq!(
        turn.urls,
        vec!["turn:127.0.0.1:3478?transport=udp".to_owned()]
    );
    let (expiry, user) = turn.username.split_once(':').expect("expiry:user");
    assert_eq!(user, "bob");
    let expiry: i64 = expiry.parse().expect("unix time");
    let now = chrono::Utc::now().timestamp();
    assert!(expiry > now && expiry <= now + 3_600, "{expiry} vs {now}");
    let expected = titan_kit::turn::mint(TURN_SECRET.as_bytes(), "bob", expiry as u64);
    assert_eq!(turn.credential, expected.password);

    // Both consent; bob streams a recording to B in three messages; ann reads the call on A
    // and fetches the exact bytes from object storage through its presigned URL.
    for (grpc, token) in [(&mut on_a, &ann), (&mut on_b, &bob)] {
        grpc.set_recording_consent(authed(
            pb::SetRecordingConsentRequest {
                request_id: uuid::Uuid::new_v4().to_string(),
                call_id: id.clone(),
                consent: true,
            },
            token,
        ))
        .await
        .expect("consent");
    }
    let recording: Vec<u8> = (0..150_000u32).map(|i| (i % 251) as u8).collect();
    let mut messages = vec![pb::UploadRecordingRequest {
        part: Some(pb::upload_recording_request::Part::Header(
            pb::RecordingHeader {
                request_id: uuid::Uuid::new_v4().to_string(),
                call_id: id.clone(),
                content_type: "video/webm;codecs=vp8".into(),
            },
        )),
    }];
    messages.extend(
        recording
            .chunks(60_000)
            .map(|c| pb::UploadRecordingRequest {
                part: Some(pb::upload_recording_request::Part::Data(c.to_vec())),
            }),
    );
    let uploaded = on_b
        .upload_recording(authed(futures::stream::iter(messages), &bob))
        .await
        .expect("upload")
        .into_inner()
        .recording
        .expect("recording");
    assert_eq!(
        (
            uploaded.bytes,
            uploaded.uploader_id.as_str(),
            uploaded.content_type.as_str()
        ),
        (150_000, "bob", "video/webm")
    );
    let listed = on_a
        .get_call(authed(
            pb::GetCallRequest {
                call_id: id.clone(),
            },
            &ann,
        ))
        .await
        .expect("get")
        .into_inner()
        .call
        .expect("call")
        .recordings;
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].id.as_str(), listed[0].sha256.as_str()),
        (uploaded.id.as_str(), uploaded.sha256.as_str())
    );
    let fetched = reqwest::get(&listed[0].url)
        .await
        .expect("GET the recording");
    assert_eq!(fetched.status(), 200);
    assert_eq!(
        fetched.bytes().await.expect("body").as_ref(),
        recording.as_slice()
    );

    // Ann hangs up: ENDED with a duration, on both sides.
    let ended = on_a
        .end_call(authed(
            pb::EndCallRequest {
                request_id: uuid::Uuid::new_v4().to_string(),
                call_id: id.clone(),
            },
            &ann,
        ))
        .await
        .expect("end")
        .into_inner()
        .call
        .expect("call");
    assert_eq!(ended.status, pb::CallStatus::Ended as i32);
    assert_eq!(ended.end_reason, "HANGUP");
    assert!(ended.ended_at.is_some() && ended.answered_at.is_some());
    let seen = pushed(&mut bob_ws, "call", |c| c["status"] == "ENDED").await;
    assert_eq!(seen["durationSeconds"], json!(ended.duration_seconds));

    // A call placed on A rings; A is killed while it rings; B misses it after the timeout.
    let ringing = place(&mut on_a, &ann, "bob").await;
    cell.process.signal(Signal::SIGKILL);
    cell.process.wait_exit(Duration::from_secs(10));
    let missed = eventually("the call missed by replica B", || {
        let mut on_b = on_b.clone();
        let (bob, id) = (bob.clone(), ringing.id.clone());
        async move {
            let call = on_b
                .get_call(authed(pb::GetCallRequest { call_id: id }, &bob))
                .await
                .expect("get")
                .into_inner()
                .call
                .expect("call");
            (call.status == pb::CallStatus::Missed as i32).then_some(call)
        }
    })
    .await;
    assert_eq!(missed.end_reason, "NO_ANSWER");
    pushed(&mut bob_ws, "call", |c| {
        c["id"] == ringing.id.as_str() && c["status"] == "MISSED"
    })
    .await;
    drop(b);
}
