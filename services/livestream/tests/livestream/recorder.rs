//! `titan recorder` against the test s3s-fs and livestream's callback route on a real socket:
//! only a finished file is uploaded, then reported (the stream gets its recording_url) and
//! deleted; a file a previous run already stored is not uploaded again; a report livestream
//! refuses keeps the file.

use std::{
    net::SocketAddr,
    path::Path,
    time::{Duration, Instant, SystemTime},
};

use titan_kit::testing::TestObjectStorage;
use titan_livestream::{
    domain::Status,
    http::callbacks,
    recorder::{Options, Outcome, Recorder},
};

use crate::World;

/// Serves the callback routes on a loopback port, as the runtime does.
async fn serve(w: &World) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let router = callbacks(w.app.clone());
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .expect("serve");
    });
    format!("http://{addr}/rtmp/recorded")
}

/// Writes `bytes` to `path`, last modified `age` ago.
fn write(path: &Path, bytes: &[u8], age: Duration) {
    std::fs::write(path, bytes).expect("write");
    let file = std::fs::File::options()
        .write(true)
        .open(path)
        .expect("open");
    file.set_modified(SystemTime::now() - age).expect("mtime");
}

fn recorder(s3: &TestObjectStorage, dir: &Path, callback: String) -> Recorder {
    Recorder::new(
        Options {
            dir: dir.to_owned(),
            callback,
            settle: Duration::from_secs(600),
        },
        s3.storage.clone(),
    )
    .expect("recorder")
}

const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test]
async fn a_finished_recording_is_uploaded_reported_and_deleted() {
    let w = World::new().await;
    let s3 = TestObjectStorage::new();
    let dir = tempfile::tempdir().expect("dir");
    let stream = w.live("sam").await;
    let name = format!("{}-1765000000.flv", stream.id);
    let file = dir.path().join(&name);
    let mut rec = recorder(&s3, dir.path(), serve(&w).await);
    let t0 = Instant::now();

    write(&file, b"FLV part one", HOUR);
    std::fs::write(dir.path().join("notes.txt"), b"not a recording").expect("write");
    // Seen for the first time: not settled yet.
    assert_eq!(rec.scan(t0).await.expect("scan"), []);
    // Still being written: it grew, so it settles again from now.
    write(&file, b"FLV part one, part two", HOUR);
    assert_eq!(rec.scan(t0 + HOUR).await.expect("scan"), []);
    // Written just now: the clock of the file says it is not finished either.
    write(&file, b"FLV part one, part two", Duration::ZERO);
    assert_eq!(rec.scan(t0 + 2 * HOUR).await.expect("scan"), []);
    write(&file, b"FLV part one, part two", HOUR);
    assert_eq!(rec.scan(t0 + 3 * HOUR).await.expect("scan"), []);

    let key = format!("recordings/{}/{name}", stream.id);
    assert_eq!(
        rec.scan(t0 + 4 * HOUR).await.expect("scan"),
        [Outcome::Uploaded {
            file: name.clone(),
            key: key.clone()
        }]
    );
    assert!(!file.exists(), "the uploaded file is deleted");
    assert!(dir.path().join("notes.txt").exists());
    let object = s3
        .storage
        .get(&titan_kit::objects::ObjectKey::parse(&key).expect("key"))
        .await
        .expect("stored");
    assert_eq!(object.bytes.as_ref(), b"FLV part one, part two");
    assert_eq!(object.info.content_type.as_deref(), Some("video/x-flv"));
    let s = w.app.get(&stream.id.to_string()).await.expect("get");
    assert_eq!(s.recording_url.as_deref(), Some(key.as_str()));
    assert_eq!(s.status, Status::Live);
    // Nothing left to do.
    assert_eq!(rec.scan(t0 + 5 * HOUR).await.expect("scan"), []);
}

#[tokio::test]
async fn a_restarted_recorder_does_not_upload_a_stored_file_again() {
    let w = World::new().await;
    let s3 = TestObjectStorage::new();
    let dir = tempfile::tempdir().expect("dir");
    let stream = w.live("sam").await;
    let name = format!("{}-1765000001.flv", stream.id);
    let file = dir.path().join(&name);
    write(&file, b"FLV whole recording", HOUR);
    // A previous run stored it and died before reporting and deleting.
    let key = format!("recordings/{}/{name}", stream.id);
    let object_key = titan_kit::objects::ObjectKey::parse(&key).expect("key");
    let first = s3
        .storage
        .put_file(&object_key, "video/x-flv", &file)
        .await
        .expect("first upload");

    let mut rec = recorder(&s3, dir.path(), serve(&w).await);
    let t0 = Instant::now();
    assert_eq!(rec.scan(t0).await.expect("scan"), []);
    assert_eq!(
        rec.scan(t0 + HOUR).await.expect("scan"),
        [Outcome::AlreadyStored {
            file: name.clone(),
            key: key.clone()
        }]
    );
    assert!(!file.exists());
    let head = s3.storage.head(&object_key).await.expect("head");
    assert_eq!(head.e_tag, first.e_tag);
    assert_eq!(
        w.app
            .get(&stream.id.to_string())
            .await
            .expect("get")
            .recording_url
            .as_deref(),
        Some(key.as_str())
    );
}

#[tokio::test]
async fn a_refused_report_keeps_the_file_and_a_stale_object_is_replaced() {
    let w = World::new().await;
    let s3 = TestObjectStorage::new();
    let dir = tempfile::tempdir().expect("dir");
    // A recording of a stream livestream does not know.
    let unknown = titan_livestream::domain::StreamId::generate();
    let name = format!("{unknown}-1765000002.flv");
    let file = dir.path().join(&name);
    write(&file, b"FLV orphan", HOUR);
    let mut rec = recorder(&s3, dir.path(), serve(&w).await);
    let t0 = Instant::now();
    rec.scan(t0).await.expect("scan");
    let outcomes = rec.scan(t0 + HOUR).await.expect("scan");
    let [Outcome::Kept { file: kept, reason }] = outcomes.as_slice() else {
        panic!("{outcomes:?}");
    };
    assert_eq!(kept, &name);
    assert!(
        reason.starts_with("livestream refused the report (404 Not Found)"),
        "{reason}"
    );
    assert!(file.exists(), "a refused file stays for an operator");
    assert_eq!(rec.scan(t0 + 2 * HOUR).await.expect("scan"), []);

    // The object of a file that changed since it was stored is replaced by the whole file.
    let stream = w.live("sam").await;
    let name = format!("{}-1765000003.flv", stream.id);
    let file = dir.path().join(&name);
    let key = titan_kit::objects::ObjectKey::parse(&format!("recordings/{}/{name}", stream.id))
        .expect("key");
    write(&file, b"FLV short", HOUR);
    s3.storage
        .put_file(&key, "video/x-flv", &file)
        .await
        .expect("stale");
    write(&file, b"FLV short and then longer", HOUR);
    rec.scan(t0 + 3 * HOUR).await.expect("scan");
    let outcomes = rec.scan(t0 + 4 * HOUR).await.expect("scan");
    assert!(
        matches!(outcomes.as_slice(), [Outcome::Uploaded { .. }]),
        "{outcomes:?}"
    );
    assert_eq!(
        s3.storage.get(&key).await.expect("get").bytes.as_ref(),
        b"FLV short and then longer"
    );
}
