//! Recordings on the test S3 server: stored bytes read back equal with their SHA-256 and row,
//! a presigned URL that serves them to participants (not to analysts), every refusal with its
//! code and reason and nothing stored, the size caps (also above the multipart threshold),
//! consent withdrawn while the bytes stream in, the per-call maximum and idempotent retries;
//! then the gRPC stream's header rules over a served replica.

use bytes::Bytes;
use futures::{StreamExt, stream};
use sha2::{Digest, Sha256};
use titan_kit::{
    ErrorCode, ServiceError,
    objects::{ObjectKey, ObjectStorage},
    testing::{TestObjectStorage, TestPostgres, TestRedis, caller},
};
use titan_proto::videocall::v1::{
    self as pb, upload_recording_request::Part, videocall_service_client::VideocallServiceClient,
};
use titan_videocall::{
    app::{MAX_RECORDINGS_PER_CALL, UploadHeader, VideocallError},
    domain::{Call, recording::MAX_CHUNK_BYTES},
};
use tonic::Code;

use crate::{World, objects_of, reason, rid, settings, user};

/// `len` bytes that differ from one position to the next (so a reordered chunk shows).
fn body(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// `bytes` cut into chunks of at most `size`.
fn chunks(
    bytes: &[u8],
    size: usize,
) -> stream::Iter<std::vec::IntoIter<Result<Bytes, VideocallError>>> {
    let parts: Vec<_> = bytes
        .chunks(size)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    stream::iter(parts)
}

fn header(request_id: &str, call: &Call, content_type: &str) -> UploadHeader {
    UploadHeader {
        request_id: request_id.to_owned(),
        call_id: call.id.to_string(),
        content_type: content_type.to_owned(),
    }
}

/// An ACTIVE call from ann to bob that both consented to record.
async fn consented(w: &World) -> Call {
    let call = w.active("ann", "bob").await;
    for who in ["ann", "bob"] {
        w.app
            .consent(&user(who), &rid(), &call.id.to_string(), true)
            .await
            .expect("consent");
    }
    call
}

async fn rows(w: &World, call: &Call) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM videocall_recordings WHERE call_id = $1")
        .bind(call.id)
        .fetch_one(&w.db.pool)
        .await
        .expect("count")
}

/// Nothing of `call` was kept: no row, no object.
async fn nothing_stored(w: &World, call: &Call) {
    assert_eq!(rows(w, call).await, 0);
    assert_eq!(objects_of(&w.objects, call).await, Vec::<String>::new());
}

fn field(e: &VideocallError) -> &str {
    match e {
        VideocallError::Invalid(e) => &e.field,
        other => panic!("not invalid input: {other}"),
    }
}

#[tokio::test]
async fn a_participant_uploads_and_both_read_it_back_through_a_presigned_url() {
    let w = World::new().await;
    let call = consented(&w).await;
    let bytes = body(200_000, 7);
    let request_id = rid();
    let stored = w
        .app
        .upload_recording(
            &user("bob"),
            header(&request_id, &call, "video/webm;codecs=vp8,opus"),
            chunks(&bytes, 65_536),
        )
        .await
        .expect("upload");
    let sha: [u8; 32] = Sha256::digest(&bytes).into();
    assert_eq!(
        (
            stored.call_id,
            stored.uploader_id.as_str(),
            stored.content_type.as_str(),
            stored.bytes,
            stored.sha256,
            stored.created_at,
        ),
        (call.id, "bob", "video/webm", 200_000, sha, w.clock.now())
    );
    assert_eq!(
        stored.key,
        format!("videocall/recordings/{}/{}.webm", call.id, stored.id)
    );
    // The row as stored, the object byte for byte with its type.
    let (key, size, digest): (String, i64, Vec<u8>) =
        sqlx::query_as("SELECT object_key, bytes, sha256 FROM videocall_recordings WHERE id = $1")
            .bind(stored.id)
            .fetch_one(&w.db.pool)
            .await
            .expect("row");
    assert_eq!(
        (key.as_str(), size, digest.as_slice()),
        (stored.key.as_str(), 200_000, &sha[..])
    );
    let object = w
        .objects
        .get(&ObjectKey::parse(&stored.key).expect("key"))
        .await
        .expect("object");
    assert_eq!(object.bytes.as_ref(), bytes.as_slice());
    assert_eq!(object.info.content_type.as_deref(), Some("video/webm"));

    // Participants and admin get a URL that serves the exact bytes; an analyst only the row.
    let http = reqwest::Client::new();
    for reader in [user("ann"), user("bob"), caller("root", &["admin"])] {
        let views = w.app.recordings(&reader, &call).await.expect("recordings");
        assert_eq!(views.len(), 1);
        assert_eq!(views[0].recording, stored);
        assert_eq!(
            views[0].url_expires_at,
            Some(w.clock.now() + chrono::Duration::minutes(15))
        );
        let url = views[0].url.as_deref().expect("a url");
        let got = http.get(url).send().await.expect("GET");
        assert_eq!(got.status(), 200);
        assert_eq!(got.bytes().await.expect("body").as_ref(), bytes.as_slice());
    }
    let analyst = w
        .app
        .recordings(&caller("an", &["analyst"]), &call)
        .await
        .expect("recordings");
    assert_eq!((analyst.len(), analyst[0].url.as_deref()), (1, None));

    // After the call ENDED the other party uploads theirs: two recordings, oldest first.
    w.app
        .end(&user("ann"), &rid(), &call.id.to_string())
        .await
        .expect("end");
    w.clock.advance(chrono::Duration::seconds(1));
    let second = w
        .app
        .upload_recording(
            &user("ann"),
            header(&rid(), &call, "audio/ogg"),
            chunks(b"OggS", 4),
        )
        .await
        .expect("upload after the end");
    assert_eq!((second.bytes, second.key.ends_with(".ogg")), (4, true));
    let listed: Vec<_> = w
        .app
        .recordings(&user("ann"), &call)
        .await
        .expect("recordings")
        .into_iter()
        .map(|v| v.recording.id)
        .collect();
    assert_eq!(listed, vec![stored.id, second.id]);
    assert_eq!(objects_of(&w.objects, &call).await.len(), 2);
}

#[tokio::test]
async fn a_retry_answers_the_first_recording_and_stores_nothing_more() {
    let w = World::new().await;
    let call = consented(&w).await;
    let request_id = rid();
    let first = w
        .app
        .upload_recording(
            &user("ann"),
            header(&request_id, &call, "video/mp4"),
            chunks(&body(5_000, 1), 1_000),
        )
        .await
        .expect("upload");
    // The retry's bytes are not read: the first recording is the answer.
    let again = w
        .app
        .upload_recording(
            &user("ann"),
            header(&request_id, &call, "video/mp4"),
            chunks(&body(9, 2), 9),
        )
        .await
        .expect("retry");
    assert_eq!(again, first);
    assert_eq!(rows(&w, &call).await, 1);
    assert_eq!(objects_of(&w.objects, &call).await, vec![first.key.clone()]);
    // The same id for another type is a reused id; bob's own id space is his.
    let reused = w
        .app
        .upload_recording(
            &user("ann"),
            header(&request_id, &call, "video/webm"),
            chunks(b"x", 1),
        )
        .await
        .expect_err("reused");
    assert_eq!(
        (reused.code(), reason(&reused)),
        (ErrorCode::FailedPrecondition, "REQUEST_ID_REUSED")
    );
    let bobs = w
        .app
        .upload_recording(
            &user("bob"),
            header(&request_id, &call, "video/mp4"),
            chunks(b"y", 1),
        )
        .await
        .expect("bob's own");
    assert_ne!(bobs.id, first.id);
    assert_eq!(rows(&w, &call).await, 2);
}

#[tokio::test]
async fn refusals_have_their_code_and_reason_and_store_nothing() {
    let w = World::new().await;
    // Not both consents: the callee's is missing.
    let call = w.active("ann", "bob").await;
    w.app
        .consent(&user("ann"), &rid(), &call.id.to_string(), true)
        .await
        .expect("consent");
    let e = w
        .app
        .upload_recording(
            &user("ann"),
            header(&rid(), &call, "video/webm"),
            chunks(b"x", 1),
        )
        .await
        .expect_err("consent");
    assert_eq!(
        (e.code(), reason(&e)),
        (ErrorCode::FailedPrecondition, "CONSENT_MISSING")
    );
    assert_eq!(
        e.to_string(),
        format!(
            "call {} is not recorded: the callee has not consented",
            call.id
        )
    );
    nothing_stored(&w, &call).await;
    w.app
        .end(&user("ann"), &rid(), &call.id.to_string())
        .await
        .expect("end");

    // Both consented, but the call only rings.
    let ringing = w.ring("cat", "dan").await;
    for who in ["cat", "dan"] {
        w.app
            .consent(&user(who), &rid(), &ringing.id.to_string(), true)
            .await
            .expect("consent");
    }
    let e = w
        .app
        .upload_recording(
            &user("cat"),
            header(&rid(), &ringing, "video/webm"),
            chunks(b"x", 1),
        )
        .await
        .expect_err("ringing");
    assert_eq!(
        (e.code(), reason(&e)),
        (ErrorCode::FailedPrecondition, "CALL_NOT_RECORDABLE")
    );
    nothing_stored(&w, &ringing).await;

    let w = World::new().await;
    let call2 = consented(&w).await;
    // Not a participant.
    let e = w
        .app
        .upload_recording(
            &user("eve"),
            header(&rid(), &call2, "video/webm"),
            chunks(b"x", 1),
        )
        .await
        .expect_err("eve");
    assert_eq!(
        (e.code(), reason(&e)),
        (ErrorCode::PermissionDenied, "NOT_A_PARTICIPANT")
    );
    // Bad input, named.
    for (content_type, call_id, expected) in [
        ("video/x-matroska", call2.id.to_string(), "content_type"),
        ("", call2.id.to_string(), "content_type"),
        ("video/webm", "not-a-uuid".to_owned(), "call_id"),
    ] {
        let e = w
            .app
            .upload_recording(
                &user("ann"),
                UploadHeader {
                    request_id: rid(),
                    call_id,
                    content_type: content_type.to_owned(),
                },
                chunks(b"x", 1),
            )
            .await
            .expect_err("invalid");
        assert_eq!(
            (e.code(), field(&e)),
            (ErrorCode::InvalidArgument, expected)
        );
    }
    let e = w
        .app
        .upload_recording(
            &user("ann"),
            header("", &call2, "video/webm"),
            chunks(b"x", 1),
        )
        .await
        .expect_err("no request id");
    assert_eq!(e.code(), ErrorCode::InvalidArgument);
    // A chunk over 1 MiB, and an upload without bytes.
    let e = w
        .app
        .upload_recording(
            &user("ann"),
            header(&rid(), &call2, "video/webm"),
            chunks(&body(MAX_CHUNK_BYTES + 1, 3), MAX_CHUNK_BYTES + 1),
        )
        .await
        .expect_err("big chunk");
    assert_eq!((e.code(), field(&e)), (ErrorCode::InvalidArgument, "data"));
    let e = w
        .app
        .upload_recording(
            &user("ann"),
            header(&rid(), &call2, "video/webm"),
            chunks(b"", 1),
        )
        .await
        .expect_err("empty");
    assert_eq!((e.code(), field(&e)), (ErrorCode::InvalidArgument, "data"));
    nothing_stored(&w, &call2).await;

    // The cell forbids recording.
    let mut off = settings();
    off.recording_allowed = false;
    let w = World::with(off).await;
    let call = w.active("ann", "bob").await;
    let e = w
        .app
        .upload_recording(
            &user("ann"),
            header(&rid(), &call, "video/webm"),
            chunks(b"x", 1),
        )
        .await
        .expect_err("off");
    assert_eq!(
        (e.code(), reason(&e)),
        (ErrorCode::FailedPrecondition, "RECORDING_NOT_ALLOWED")
    );
    nothing_stored(&w, &call).await;
}

#[tokio::test]
async fn the_size_cap_aborts_the_upload_below_and_above_the_multipart_threshold() {
    // A client that goes multipart above 1 MiB, so both paths of kit's put_stream run.
    let mut config = TestObjectStorage::new().config;
    config.multipart_threshold = 1 << 20;
    let objects = ObjectStorage::new(&config).expect("client");
    let mut capped = settings();
    capped.max_recording_bytes = 6 << 20;
    let w = World::with_objects(capped, objects).await;
    let call = consented(&w).await;

    // 6 MiB exactly: stored in parts, back byte for byte.
    let exact = body(6 << 20, 9);
    let stored = w
        .app
        .upload_recording(
            &user("ann"),
            header(&rid(), &call, "video/webm"),
            chunks(&exact, MAX_CHUNK_BYTES),
        )
        .await
        .expect("at the cap");
    assert_eq!(stored.bytes, 6 << 20);
    let back = w
        .objects
        .get(&ObjectKey::parse(&stored.key).expect("key"))
        .await
        .expect("object");
    assert_eq!(back.bytes.as_ref(), exact.as_slice());

    // One byte more, in parts or in one small request: refused naming the limit, nothing kept.
    let over = w.active("cat", "dan").await;
    for who in ["cat", "dan"] {
        w.app
            .consent(&user(who), &rid(), &over.id.to_string(), true)
            .await
            .expect("consent");
    }
    let e = w
        .app
        .upload_recording(
            &user("cat"),
            header(&rid(), &over, "video/webm"),
            chunks(&body((6 << 20) + 1, 4), MAX_CHUNK_BYTES),
        )
        .await
        .expect_err("too large");
    assert_eq!(
        (e.code(), reason(&e)),
        (ErrorCode::ResourceExhausted, "TOO_LARGE")
    );
    assert_eq!(
        e.to_string(),
        "a recording is at most 6291456 bytes (videocall.maxRecordingBytes); this one is larger"
    );
    nothing_stored(&w, &over).await;

    let mut small = settings();
    small.max_recording_bytes = 1 << 20;
    let w = World::with(small).await;
    let call = consented(&w).await;
    let e = w
        .app
        .upload_recording(
            &user("ann"),
            header(&rid(), &call, "video/webm"),
            chunks(&body((1 << 20) + 1, 5), 300_000),
        )
        .await
        .expect_err("too large");
    assert_eq!(reason(&e), "TOO_LARGE");
    nothing_stored(&w, &call).await;
}

#[tokio::test]
async fn consent_withdrawn_while_uploading_leaves_no_object() {
    let w = World::new().await;
    let call = consented(&w).await;
    let app = w.app.clone();
    let id = call.id.to_string();
    // Bob withdraws his consent once the first chunk went up.
    let withdrawing = chunks(&body(3_000, 6), 1_000)
        .enumerate()
        .then(move |(i, chunk)| {
            let (app, id) = (app.clone(), id.clone());
            async move {
                if i == 1 {
                    app.consent(&user("bob"), &rid(), &id, false)
                        .await
                        .expect("withdraw");
                }
                chunk
            }
        })
        .boxed();
    let e = w
        .app
        .upload_recording(
            &user("ann"),
            header(&rid(), &call, "video/webm"),
            withdrawing,
        )
        .await
        .expect_err("withdrawn");
    assert_eq!(reason(&e), "CONSENT_MISSING");
    nothing_stored(&w, &call).await;
}

#[tokio::test]
async fn a_call_holds_at_most_its_maximum_of_recordings() {
    let w = World::new().await;
    let call = consented(&w).await;
    for _ in 0..MAX_RECORDINGS_PER_CALL {
        w.app
            .upload_recording(
                &user("ann"),
                header(&rid(), &call, "audio/webm"),
                chunks(b"r", 1),
            )
            .await
            .expect("upload");
    }
    let e = w
        .app
        .upload_recording(
            &user("bob"),
            header(&rid(), &call, "audio/webm"),
            chunks(b"r", 1),
        )
        .await
        .expect_err("one too many");
    assert_eq!(
        (e.code(), reason(&e)),
        (ErrorCode::ResourceExhausted, "TOO_MANY_RECORDINGS")
    );
    assert_eq!(rows(&w, &call).await, i64::from(MAX_RECORDINGS_PER_CALL));
    assert_eq!(
        objects_of(&w.objects, &call).await.len(),
        MAX_RECORDINGS_PER_CALL as usize
    );
}

fn message(part: Part) -> pb::UploadRecordingRequest {
    pb::UploadRecordingRequest { part: Some(part) }
}

#[tokio::test]
async fn the_grpc_stream_starts_with_its_header_and_only_it() {
    use crate::signaling::{authed, config, token};

    let db = TestPostgres::new().await;
    let redis = TestRedis::new().await;
    let config = config(&db, &redis);
    titan_kit::runtime::migrate(&config, &[titan_videocall::service()])
        .await
        .expect("migrate");
    let served = titan_kit::testing::serve(config.clone(), vec![titan_videocall::service()]).await;
    let mut grpc = VideocallServiceClient::new(served.channel.clone());
    let (ann, bob) = (token(&config, "ann"), token(&config, "bob"));
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
    grpc.answer_call(authed(
        pb::AnswerCallRequest {
            request_id: rid(),
            call_id: call.id.clone(),
        },
        &bob,
    ))
    .await
    .expect("answer");
    for t in [&ann, &bob] {
        grpc.set_recording_consent(authed(
            pb::SetRecordingConsentRequest {
                request_id: rid(),
                call_id: call.id.clone(),
                consent: true,
            },
            t,
        ))
        .await
        .expect("consent");
    }
    let header = |request_id: String| {
        message(Part::Header(pb::RecordingHeader {
            request_id,
            call_id: call.id.clone(),
            content_type: "video/webm".into(),
        }))
    };
    let refused = |messages: Vec<pb::UploadRecordingRequest>| {
        let mut grpc = grpc.clone();
        let token = ann.clone();
        async move {
            let e = grpc
                .upload_recording(authed(stream::iter(messages), &token))
                .await
                .expect_err("refused");
            (e.code(), e.message().to_owned())
        }
    };
    // Data first, or a second header: InvalidArgument naming header.
    let (code, text) = refused(vec![message(Part::Data(b"x".to_vec()))]).await;
    assert_eq!(code, Code::InvalidArgument);
    assert!(text.starts_with("header: "), "{text}");
    let (code, text) = refused(vec![header(rid()), header(rid())]).await;
    assert_eq!(code, Code::InvalidArgument);
    assert!(text.starts_with("header: "), "{text}");

    let bytes = body(70_000, 8);
    let mut messages = vec![header(rid())];
    messages.extend(
        bytes
            .chunks(30_000)
            .map(|c| message(Part::Data(c.to_vec()))),
    );
    let stored = grpc
        .upload_recording(authed(stream::iter(messages), &ann))
        .await
        .expect("upload")
        .into_inner()
        .recording
        .expect("recording");
    assert_eq!(
        (stored.bytes, stored.sha256.clone(), stored.url.as_str()),
        (70_000, hex::encode(Sha256::digest(&bytes)), "")
    );
    let shown = grpc
        .get_call(authed(
            pb::GetCallRequest {
                call_id: call.id.clone(),
            },
            &bob,
        ))
        .await
        .expect("get")
        .into_inner()
        .call
        .expect("call");
    assert_eq!(shown.recordings.len(), 1);
    let got = reqwest::get(&shown.recordings[0].url).await.expect("GET");
    assert_eq!(got.bytes().await.expect("body").as_ref(), bytes.as_slice());
    served.stop.cancel();
}
