//! `titan recorder` killed in the middle of a multipart upload and started again uploads the
//! file exactly once. The first recorder reaches the S3 server through a proxy of the test's
//! that forwards the first 12 MiB its clients send and then holds every connection: once the
//! proxy has seen the multipart upload created and its parts flowing and holds them, the
//! upload is in flight by construction (no timing involved), and the recorder is killed with
//! SIGKILL. The second recorder goes straight to the S3 server. Then the bucket holds one
//! object for the file, byte for byte, the stream's `recording_url` names it, livestream was
//! told once, and the local file is gone.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

use nix::sys::signal::Signal;
use titan_e2e::{Cell, CellOptions, Process, authed, seconds_from_now};
use titan_kit::{
    objects::ObjectKey,
    testing::{TestObjectStorage, eventually},
};
use titan_proto::livestream::v1::{self as pb, livestream_service_client::LivestreamServiceClient};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

use crate::livestream::{recorder, stream};

/// The recording: above the 16 MiB multipart threshold, five 8 MiB parts.
const FILE_BYTES: usize = 40 << 20;
/// What the proxy lets through before it holds every connection: the HEAD, the creation of
/// the multipart upload and 12 MiB of parts, so the upload has started and cannot finish.
const BUDGET: u64 = 12 << 20;

/// What the proxy saw of its clients' requests.
#[derive(Debug, Default)]
struct Seen {
    forwarded: AtomicU64,
    /// `POST …?uploads`: a multipart upload was created.
    created: AtomicBool,
    /// `PUT …?partNumber=…`: its parts are being sent.
    parts: AtomicBool,
}

impl Seen {
    fn in_flight(&self) -> bool {
        self.created.load(Ordering::SeqCst)
            && self.parts.load(Ordering::SeqCst)
            && self.forwarded.load(Ordering::SeqCst) >= BUDGET
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Forwards one client's bytes to the server until the budget is spent, then holds them.
async fn forward(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    seen: Arc<Seen>,
) {
    let mut buf = vec![0u8; 64 << 10];
    // The end of the previous read, so a request line cut in two is still recognised.
    let mut tail: Vec<u8> = Vec::new();
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let mut window = std::mem::take(&mut tail);
        window.extend_from_slice(&buf[..n]);
        if contains(&window, b"?uploads") {
            seen.created.store(true, Ordering::SeqCst);
        }
        if contains(&window, b"partNumber=") {
            seen.parts.store(true, Ordering::SeqCst);
        }
        tail = window[window.len().saturating_sub(32)..].to_vec();
        let before = seen.forwarded.fetch_add(n as u64, Ordering::SeqCst);
        let allowed = usize::try_from(BUDGET.saturating_sub(before))
            .unwrap_or(usize::MAX)
            .min(n);
        if to.write_all(&buf[..allowed]).await.is_err() {
            return;
        }
        if allowed < n {
            // Hold the connection open, sending nothing more, until the test ends.
            std::future::pending::<()>().await;
        }
    }
}

/// A TCP proxy to `upstream` that holds its clients after [`BUDGET`] bytes.
async fn holding_proxy(upstream: SocketAddr, seen: Arc<Seen>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
    let addr = listener.local_addr().expect("proxy address");
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(upstream).await else {
                    return;
                };
                let (client_read, mut client_write) = client.into_split();
                let (mut server_read, server_write) = server.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
                });
                forward(client_read, server_write, seen).await;
            });
        }
    });
    addr
}

/// Bytes that do not repeat within a part (xorshift), so a misplaced part would show.
fn recording_bytes() -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut out = Vec::with_capacity(FILE_BYTES);
    while out.len() < FILE_BYTES {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(FILE_BYTES);
    out
}

/// The `recorded` callbacks livestream counted, from its metrics.
async fn recorded_reports(cell: &Cell) -> u64 {
    let (_, metrics) = cell.get("/metrics").await;
    metrics
        .lines()
        .find(|l| l.starts_with("titan_livestream_rtmp_callbacks_total{outcome=\"recorded\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_recorder_killed_mid_upload_and_restarted_uploads_the_file_once() {
    let cell = Cell::start_with(CellOptions {
        services: vec!["livestream".into()],
        ..CellOptions::default()
    })
    .await;
    let mut grpc = LivestreamServiceClient::new(cell.channel().await);

    // A stream that went LIVE and ENDED through the callbacks, as nginx posts them.
    let scheduled = grpc
        .schedule_stream(authed(
            pb::ScheduleStreamRequest {
                request_id: "e2e-recorder-1".into(),
                title: "Recorded drop".into(),
                scheduled_at: Some(seconds_from_now(0)),
            },
            &cell.token("sam", &["seller"]),
        ))
        .await
        .expect("schedule")
        .into_inner();
    let id = scheduled.stream.expect("stream").id;
    let nginx = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let callback = |path: &str, name: &str| {
        nginx
            .post(format!("http://{}/rtmp/{path}", cell.http))
            .form(&[
                ("call", path.replace('-', "_")),
                ("app", "live".into()),
                ("name", name.to_owned()),
                ("addr", "127.0.0.1".into()),
            ])
            .send()
    };
    let admitted = callback("publish", &scheduled.stream_key)
        .await
        .expect("publish");
    assert_eq!(admitted.status().as_u16(), 302);
    let ended = callback("publish-done", &id).await.expect("publish done");
    assert_eq!(ended.status().as_u16(), 200);

    // nginx's finished recording, named after the stream.
    let dir = tempfile::tempdir().expect("dir");
    let file = format!("{id}-1765000000.flv");
    let path = dir.path().join(&file);
    let bytes = recording_bytes();
    std::fs::write(&path, &bytes).expect("write the recording");

    // The first recorder, through the proxy: killed once its upload is in flight.
    let s3 = TestObjectStorage::new();
    let endpoint = std::env::var("TITAN_TEST_S3_ENDPOINT").expect("TITAN_TEST_S3_ENDPOINT");
    let upstream: SocketAddr = endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .expect("the S3 endpoint is host:port");
    let seen = Arc::new(Seen::default());
    let proxy = holding_proxy(upstream, seen.clone()).await;
    let mut first = Process::spawn(&mut recorder(
        dir.path(),
        cell.http,
        &format!("http://{proxy}"),
    ));
    first.drain_stderr();
    eventually(
        "the first recorder's multipart upload to be in flight",
        || {
            let seen = seen.clone();
            async move { seen.in_flight().then_some(()) }
        },
    )
    .await;
    first.signal(Signal::SIGKILL);
    first.wait_exit(std::time::Duration::from_secs(10));

    // Killed mid-upload: no object, the file still there, nothing reported.
    let prefix = ObjectKey::new(["recordings", id.as_str()]).expect("prefix");
    let listed = s3.storage.list(&prefix, 10, None).await.expect("list");
    assert_eq!(listed.objects, vec![]);
    assert!(path.exists());
    assert_eq!(stream(&mut grpc, &id).await.recording_url, "");
    assert_eq!(recorded_reports(&cell).await, 0);

    // The second recorder, straight to the S3 server: the whole file, once.
    let mut second = Process::spawn(&mut recorder(dir.path(), cell.http, &endpoint));
    second.drain_stderr();
    eventually("the recording to be stored and deleted locally", || {
        let path = path.clone();
        async move { (!path.exists()).then_some(()) }
    })
    .await;
    let key = format!("recordings/{id}/{file}");
    let listed = s3.storage.list(&prefix, 10, None).await.expect("list");
    let keys: Vec<(String, u64)> = listed
        .objects
        .iter()
        .map(|o| (o.key.clone(), o.size))
        .collect();
    assert_eq!(keys, vec![(key.clone(), FILE_BYTES as u64)]);
    let stored = s3
        .storage
        .get(&ObjectKey::parse(&key).expect("key"))
        .await
        .expect("get the recording");
    assert!(
        stored.bytes == bytes,
        "the stored recording differs from the file"
    );
    assert_eq!(stream(&mut grpc, &id).await.recording_url, key);
    assert_eq!(recorded_reports(&cell).await, 1);
    drop(second);
}
