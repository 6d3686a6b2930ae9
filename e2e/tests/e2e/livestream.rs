//! Livestream with the real tools: nginx with Debian's RTMP module started from the config the
//! operator renders for the production cell (`titan-operator render`; only its pod paths,
//! ports and the callback host are moved to the test's), `titan serve livestream`, `titan
//! recorder` on the test s3s-fs, and ffmpeg publishing a generated test pattern. With the
//! seller's key the stream goes LIVE, HLS segments appear under the stream's id and ffprobe
//! reads the playlist through nginx's HTTP port, a viewer's WebSocket gets the status, its
//! heartbeat counts and its comment comes back pushed; after the publish the stream is ENDED
//! with its recording in S3, which ffprobe reads through a presigned URL, and its analytics
//! (the viewer's minute, through the bus, analytics and ClickHouse) reach GetStreamAnalytics.
//! With a wrong key ffmpeg is refused and nothing is written.

use std::{
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use serde::Deserialize as _;
use serde_json::json;
use titan_e2e::{
    Cell, CellOptions, Process, authed, process::workspace_binary, seconds_from_now, titan_binary,
};
use titan_kit::{
    objects::ObjectKey,
    testing::{
        TestObjectStorage, eventually,
        ws::{Client, Event, next, send},
    },
};
use titan_proto::livestream::v1::{self as pb, livestream_service_client::LivestreamServiceClient};
use tokio_tungstenite::{
    connect_async,
    tungstenite::{client::IntoClientRequest, http::HeaderValue},
};
use tonic::transport::Channel;

pub(crate) type Grpc = LivestreamServiceClient<Channel>;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn program(name: &str) -> PathBuf {
    ["/usr/sbin", "/usr/bin"]
        .iter()
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("{name} is not installed: apt-get install -y nginx libnginx-mod-rtmp ffmpeg (or run `cargo xtask test`, which installs them)")
        })
}

fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

/// The nginx.conf the operator renders for the production cell (which records), as its
/// ConfigMap `rtmp-config` holds it.
fn rendered_nginx_conf() -> String {
    let operator = workspace_binary("titan-operator", "titan-operator", false);
    let out = Command::new(operator)
        .args(["render", "-f"])
        .arg(repo_path("manifests/examples/production-cell.yaml"))
        .output()
        .expect("run titan-operator render");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8");
    serde_yaml::Deserializer::from_str(&text)
        .filter_map(|doc| serde_yaml::Value::deserialize(doc).ok())
        .find(|o| o["kind"] == "ConfigMap" && o["metadata"]["name"].as_str() == Some("rtmp-config"))
        .and_then(|o| o["data"]["nginx.conf"].as_str().map(str::to_owned))
        .expect("the rtmp-config ConfigMap")
}

/// Replaces `from` (which must occur) with `to`.
fn moved(text: &str, from: &str, to: &str) -> String {
    assert!(
        text.contains(from),
        "the rendered config has no {from:?}:\n{text}"
    );
    text.replace(from, to)
}

async fn ws(http: SocketAddr, stream: &str, token: &str) -> Client {
    let mut request = format!("ws://{http}/v1/livestream/streams/{stream}/ws")
        .into_client_request()
        .expect("request");
    request.headers_mut().insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {token}")).expect("header"),
    );
    connect_async(request).await.expect("handshake").0
}

/// The next frame of `kind`, skipping others.
async fn frame(ws: &mut Client, kind: &str) -> serde_json::Value {
    loop {
        match next(ws).await {
            Event::Frame(f) if f["type"] == kind => return f,
            Event::Frame(_) => {}
            Event::Closed(code, reason) => panic!("closed {code} {reason}"),
        }
    }
}

/// ffmpeg publishing `seconds` of a test pattern with a tone to `url`.
fn ffmpeg(url: &str, seconds: u32) -> Command {
    let mut cmd = Command::new(program("ffmpeg"));
    cmd.args([
        "-hide_banner",
        "-loglevel",
        "error",
        "-re",
        "-f",
        "lavfi",
        "-i",
    ])
    .arg("testsrc=size=320x240:rate=25")
    .args(["-f", "lavfi", "-i", "sine=frequency=440", "-t"])
    .arg(seconds.to_string())
    .args([
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-g",
        "25",
        "-c:a",
        "aac",
        "-f",
        "flv",
    ])
    .arg(url)
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    cmd
}

/// ffprobe's stream types of `input` (empty when it cannot read it).
fn ffprobe(input: &str) -> Vec<String> {
    let out = Command::new(program("ffprobe"))
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_type",
            "-of",
            "csv=p=0",
        ])
        .arg(input)
        .output()
        .expect("run ffprobe");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect()
}

fn test_var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run with cargo xtask test"))
}

/// `titan recorder` on `recordings`, reporting to the titan serving HTTP on `http`, storing in
/// the test bucket through `s3_endpoint` (the S3 server's, or a proxy in front of it).
pub(crate) fn recorder(recordings: &Path, http: SocketAddr, s3_endpoint: &str) -> Command {
    let mut cmd = Command::new(titan_binary(false));
    cmd.arg("recorder")
        .arg("--dir")
        .arg(recordings)
        .args(["--settle-seconds", "2", "--scan-seconds", "1", "--callback"])
        .arg(format!("http://{http}/rtmp/recorded"))
        .env("TITAN_S3_ENDPOINT", s3_endpoint)
        .env("TITAN_S3_BUCKET", test_var("TITAN_TEST_S3_BUCKET"))
        .env(
            "TITAN_S3_ACCESS_KEY_ID",
            test_var("TITAN_TEST_S3_ACCESS_KEY_ID"),
        )
        .env(
            "TITAN_S3_SECRET_ACCESS_KEY",
            test_var("TITAN_TEST_S3_SECRET_ACCESS_KEY"),
        )
        .env("TITAN_LOG", "info");
    cmd
}

pub(crate) async fn stream(grpc: &mut Grpc, id: &str) -> pb::Stream {
    grpc.get_stream(pb::GetStreamRequest {
        stream_id: id.into(),
    })
    .await
    .expect("get stream")
    .into_inner()
    .stream
    .expect("stream")
}

#[tokio::test(flavor = "multi_thread")]
async fn ffmpeg_publishes_through_the_rendered_nginx_to_hls_viewers_and_a_recording() {
    let (rtmp_port, hls_port) = (free_port(), free_port());
    let cell = Cell::start_with(CellOptions {
        services: vec!["livestream".into(), "analytics".into()],
        config: Some(format!(
            "realtime: {{ allowMissingOrigin: true }}\nservices:\n  livestream: {{ hlsBaseUrl: \"http://127.0.0.1:{hls_port}/hls\" }}\n"
        )),
        ..CellOptions::default()
    })
    .await;
    let mut grpc = LivestreamServiceClient::new(cell.channel().await);

    // nginx from the operator's config: only the pod's paths, ports and service host move.
    let dir = tempfile::tempdir().expect("dir");
    let media = dir.path().join("media");
    let recordings = media.join("recordings");
    std::fs::create_dir_all(&recordings).expect("media dirs");
    let mut conf = rendered_nginx_conf();
    conf = moved(&conf, "/var/lib/titan-media", &media.display().to_string());
    conf = moved(&conf, "listen 1935;", &format!("listen {rtmp_port};"));
    conf = moved(
        &conf,
        "rtmp://127.0.0.1:1935/",
        &format!("rtmp://127.0.0.1:{rtmp_port}/"),
    );
    conf = moved(&conf, "listen 8080;", &format!("listen {hls_port};"));
    conf = moved(
        &conf,
        "http://livestream.titan-sg-1.svc:8080",
        &format!("http://{}", cell.http),
    );
    let conf_path = dir.path().join("nginx.conf");
    std::fs::write(&conf_path, &conf).expect("write nginx.conf");
    let nginx = Process::spawn(
        Command::new(program("nginx"))
            .arg("-p")
            .arg(format!("{}/", dir.path().display()))
            .args(["-e", "stderr", "-g", "master_process off;", "-c"])
            .arg(&conf_path),
    );

    // The recorder on the test bucket, reporting to this titan.
    let recorder = Process::spawn(&mut recorder(
        &recordings,
        cell.http,
        &test_var("TITAN_TEST_S3_ENDPOINT"),
    ));

    let seller = cell.token("sam", &["seller"]);
    let scheduled = grpc
        .schedule_stream(authed(
            pb::ScheduleStreamRequest {
                request_id: "e2e-stream-1".into(),
                title: "Spring drop".into(),
                scheduled_at: Some(seconds_from_now(0)),
            },
            &seller,
        ))
        .await
        .expect("schedule")
        .into_inner();
    let id = scheduled.stream.expect("stream").id;
    let key = scheduled.stream_key;
    assert!(key.starts_with("lsk_"), "{key}");

    // A wrong key: ffmpeg is refused and nginx writes nothing.
    let mut wrong = ffmpeg(
        &format!("rtmp://127.0.0.1:{rtmp_port}/live/lsk_00ff00ff00ff00ff00ff00ff00ff00ff"),
        3,
    )
    .spawn()
    .expect("ffmpeg");
    let status = tokio::task::block_in_place(|| wrong.wait()).expect("ffmpeg exit");
    assert!(!status.success(), "ffmpeg with a wrong key was admitted");
    let hls = media.join("hls");
    let listed = |d: &Path| -> Vec<String> {
        std::fs::read_dir(d)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(listed(&hls), Vec::<String>::new());
    assert_eq!(listed(&recordings), Vec::<String>::new());

    // A viewer is on the stream before it starts.
    let viewer = cell.token("ann", &[]);
    let mut socket = ws(cell.http, &id, &viewer).await;
    let first = frame(&mut socket, "stream").await;
    assert_eq!(first["payload"]["status"], "SCHEDULED");

    let mut publisher = ffmpeg(&format!("rtmp://127.0.0.1:{rtmp_port}/live/{key}"), 10)
        .spawn()
        .expect("ffmpeg");
    let live = frame(&mut socket, "status").await;
    assert_eq!(live["payload"], json!({"streamId": id, "status": "LIVE"}));
    let s = stream(&mut grpc, &id).await;
    assert_eq!(s.status, pb::StreamStatus::Live as i32);
    let playlist = format!("http://127.0.0.1:{hls_port}/hls/{id}.m3u8");
    assert_eq!(s.hls_url, playlist);

    // HLS under the stream's id, never its key; ffprobe reads it through nginx.
    let streams = eventually("ffprobe to read the HLS playlist", || {
        let playlist = playlist.clone();
        async move {
            let types = tokio::task::spawn_blocking(move || ffprobe(&playlist))
                .await
                .expect("ffprobe");
            types.contains(&"video".to_owned()).then_some(types)
        }
    })
    .await;
    assert!(streams.contains(&"audio".to_owned()), "{streams:?}");
    assert!(
        listed(&hls).iter().all(|f| f.starts_with(&id)),
        "{:?}",
        listed(&hls)
    );
    assert!(listed(&hls).iter().all(|f| !f.contains(&key)));

    // The viewer counts, and its comment comes back pushed.
    send(
        &mut socket,
        json!({"type": "heartbeat", "id": 1, "payload": {}}),
    )
    .await;
    let ack = frame(&mut socket, "ack").await;
    assert_eq!(
        (ack["id"].clone(), ack["payload"]["concurrent"].clone()),
        (json!(1), json!(1))
    );
    send(
        &mut socket,
        json!({"type": "comment", "id": 2, "payload": {"requestId": "c-1", "text": "love it"}}),
    )
    .await;
    let pushed = frame(&mut socket, "comment").await;
    assert_eq!(pushed["payload"]["text"], "love it");
    assert_eq!(pushed["payload"]["userId"], "ann");

    // The publish ends: ENDED, then the recording in S3.
    let status = tokio::task::block_in_place(|| publisher.wait()).expect("ffmpeg exit");
    assert!(status.success(), "ffmpeg failed to publish");
    let ended = frame(&mut socket, "status").await;
    assert_eq!(ended["payload"]["status"], "ENDED");
    let recording_url = eventually("the recording to be stored", || {
        let mut grpc = grpc.clone();
        let id = id.clone();
        async move {
            let s = stream(&mut grpc, &id).await;
            (s.status == pb::StreamStatus::Ended as i32 && !s.recording_url.is_empty())
                .then_some(s.recording_url)
        }
    })
    .await;
    assert!(
        recording_url.starts_with(&format!("recordings/{id}/{id}-")),
        "{recording_url}"
    );
    assert!(recording_url.ends_with(".flv"));
    let s3 = TestObjectStorage::new();
    let url = s3
        .storage
        .presigned_get(
            &ObjectKey::parse(&recording_url).expect("key"),
            Duration::from_secs(600),
        )
        .await
        .expect("presign");
    let types = tokio::task::spawn_blocking(move || ffprobe(&url))
        .await
        .expect("ffprobe");
    assert!(
        types.contains(&"video".to_owned()) && types.contains(&"audio".to_owned()),
        "{types:?}"
    );
    // Uploaded, so gone from the pod's disk.
    eventually("the local recording to be deleted", || {
        let recordings = recordings.clone();
        async move { listed(&recordings).is_empty().then_some(()) }
    })
    .await;

    // ann's heartbeat was her first minute: livestream.watched went through the bus into
    // analytics_events, where the seller's GetStreamAnalytics reads it.
    let analytics = eventually("the stream's analytics to count the viewer", || {
        let mut grpc = grpc.clone();
        let request = authed(
            pb::GetStreamAnalyticsRequest {
                stream_id: id.clone(),
            },
            &seller,
        );
        async move {
            let a = grpc
                .get_stream_analytics(request)
                .await
                .expect("analytics")
                .into_inner()
                .analytics
                .expect("analytics");
            (a.unique_viewers > 0).then_some(a)
        }
    })
    .await;
    assert_eq!(
        (
            analytics.views,
            analytics.unique_viewers,
            analytics.watch_minutes,
            analytics.peak_viewers
        ),
        (1, 1, 1, 1)
    );
    // One point per minute up to hers (minute 0 unless the machine took a minute to get
    // there): only the last has a viewer.
    let (last, before) = analytics.retention.split_last().expect("a retention curve");
    assert_eq!((last.viewers, last.share), (1, 1.0));
    assert!(before.iter().all(|p| p.viewers == 0), "{before:?}");
    let refused = grpc
        .get_stream_analytics(authed(
            pb::GetStreamAnalyticsRequest {
                stream_id: id.clone(),
            },
            &viewer,
        ))
        .await
        .expect_err("a viewer is refused");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    drop((nginx, recorder));
}
