//! A video call in a real browser: Debian's Chromium driven by playwright-core from npm
//! (`videocall_browser.js`, both installed by `cargo xtask test`), two pages of
//! `videocall_page.html`, each user's socket on a different `titan serve videocall` replica,
//! a local coturn with the cell's secret, `iceTransportPolicy: 'relay'` and fake cameras. The
//! call is placed, rung, answered, connects in both pages through relay candidates, decodes
//! more and more frames on both sides and ends ENDED with a duration; a page with an expired
//! TURN credential gets no relay candidate and coturn logs the 401.

use std::{
    net::{Ipv4Addr, TcpStream, UdpSocket},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant, SystemTime},
};

use serde_json::{Value, json};
use titan_e2e::{Cell, CellOptions, authed};
use titan_kit::turn;
use titan_proto::videocall::v1::{self as pb, videocall_service_client::VideocallServiceClient};

const TURN_SECRET: &str = "browser-e2e-turn-secret";
/// Far above the half minute the script takes; a script that never ends fails the test.
const NODE_DEADLINE: Duration = Duration::from_secs(150);

fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// coturn on loopback with the cell's shared secret (TURN REST credentials), relaying between
/// loopback peers — what a test on one machine needs and a pod must never allow. Stopped when
/// dropped.
struct Coturn {
    port: u16,
    log: PathBuf,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Coturn {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_tcp_port();
        // Relay ports next to a port the kernel just found free; coturn skips any in use.
        let relays = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|s| s.local_addr())
            .expect("free udp port")
            .port()
            .min(65_000);
        let log = dir.path().join("turnserver.log");
        let child = Command::new("turnserver")
            .args([
                "-n",
                "--no-cli",
                "--no-tls",
                "--no-dtls",
                "--simple-log",
                "--verbose",
            ])
            .args(["--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1"])
            .arg(format!("--listening-port={port}"))
            .arg(format!("--min-port={relays}"))
            .arg(format!("--max-port={}", relays + 30))
            .args([
                "--use-auth-secret",
                "--realm=titan.test",
                "--allow-loopback-peers",
            ])
            .arg(format!("--static-auth-secret={TURN_SECRET}"))
            .arg(format!("--log-file={}", log.display()))
            .arg(format!(
                "--pidfile={}",
                dir.path().join("turn.pid").display()
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("turnserver (coturn) is installed by cargo xtask test");
        let started = Instant::now();
        while TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "turnserver did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            port,
            log,
            child,
            _dir: dir,
        }
    }

    fn log(&self) -> String {
        // coturn names its log file after the one given, adding the date.
        let dir = self.log.parent().expect("log dir");
        std::fs::read_dir(dir)
            .expect("log dir")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("turnserver"))
            })
            .map(|p| std::fs::read_to_string(p).unwrap_or_default())
            .collect()
    }
}

fn chromium() -> PathBuf {
    let path = Path::new("/usr/bin/chromium");
    assert!(
        path.is_file(),
        "{} is missing: `cargo xtask test` installs Debian's chromium package",
        path.display()
    );
    path.to_path_buf()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_video_call_between_two_browsers_through_turn() {
    let modules = std::env::var("TITAN_E2E_NODE_MODULES").unwrap_or_else(|_| {
        panic!(
            "TITAN_E2E_NODE_MODULES is not set: run the suite with `cargo xtask test`, which installs playwright-core from npm"
        )
    });
    let coturn = Coturn::start();
    let page_port = free_tcp_port();
    // The page's origin as the operator writes it into the service's realtime section.
    let config = format!(
        "realtime: {{ allowedOrigins: [\"http://127.0.0.1:{page_port}\"] }}\nservices:\n  videocall: {{ turn: {{ uris: [\"turn:127.0.0.1:{}?transport=udp\"] }} }}\n",
        coturn.port
    );
    let cell = Cell::start_with(CellOptions {
        services: vec!["videocall".into()],
        config: Some(config),
        ..CellOptions::default()
    })
    .await;
    let secret = [("TITAN_TURN_SECRET", TURN_SECRET)];
    let (a, b) = (cell.replica_with(&secret), cell.replica_with(&secret));
    let (ann, bob) = (cell.token("ann", &[]), cell.token("bob", &[]));
    let expired = turn::mint_for(
        TURN_SECRET.as_bytes(),
        "ann",
        SystemTime::now() - Duration::from_secs(7_200),
        Duration::from_secs(3_600),
    );
    let expired_ice = json!([{
        "urls": [format!("turn:127.0.0.1:{}?transport=udp", coturn.port)],
        "username": expired.username,
        "credential": expired.password,
    }]);
    let page = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/videocall_page.html");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/videocall_browser.js");

    let output = tokio::task::block_in_place(|| {
        titan_e2e::process::output_within(
            Command::new("node")
                .arg(&script)
                .env("NODE_PATH", &modules)
                .env("CHROMIUM", chromium())
                .env("PAGE", &page)
                .env("PAGE_PORT", page_port.to_string())
                .env("WS_A", format!("ws://{}/v1/videocall/ws", a.http))
                .env("WS_B", format!("ws://{}/v1/videocall/ws", b.http))
                .env("ANN", &ann)
                .env("BOB", &bob)
                .env("EXPIRED_ICE", expired_ice.to_string()),
            NODE_DEADLINE,
        )
    });
    assert!(
        output.status.success(),
        "node failed: {}\ncoturn:\n{}",
        String::from_utf8_lossy(&output.stderr),
        coturn.log()
    );
    let mut report: Value = serde_json::from_slice(&output.stdout).expect("json report");
    let call_id = report["callId"].as_str().expect("call id").to_owned();
    report["callId"] = json!("<id>");
    assert_eq!(
        report,
        json!({
            "callId": "<id>",
            "ann": {"connection": "connected", "localCandidate": "relay", "framesIncreased": true},
            "bob": {"connection": "connected", "localCandidate": "relay", "framesIncreased": true},
            "ended": {"status": "ENDED", "endReason": "HANGUP"},
            "expired": {"iceErrors": [401], "relayCandidates": 0},
        })
    );
    // coturn refused the stale credential in its authentication check.
    let log = coturn.log();
    assert!(
        log.lines()
            .any(|l| l.contains(&expired.username) && l.contains("401")),
        "coturn's log shows no 401 for {}:\n{log}",
        expired.username
    );

    let call = VideocallServiceClient::new(a.channel().await)
        .get_call(authed(pb::GetCallRequest { call_id }, &ann))
        .await
        .expect("get call")
        .into_inner()
        .call
        .expect("call");
    assert_eq!(call.status, pb::CallStatus::Ended as i32);
    let (answered, ended) = (
        call.answered_at.expect("answered at"),
        call.ended_at.expect("ended at"),
    );
    assert!(
        ended.seconds >= answered.seconds,
        "{answered:?} .. {ended:?}"
    );
}
