//! The media servers' rendered configs, run by the real programs from Debian: `nginx -t` with
//! the RTMP module loaded accepts the nginx config, and a real `turnserver` started on loopback
//! from the coturn config accepts an allocation with credentials minted the way the videocall
//! service mints them (`titan_kit::turn`) and refuses expired or wrong ones
//! (`turnutils_uclient`).
//!
//! nginx also starts from the dev cell's config and serves its health check and HLS location,
//! and, in a cell with TLS, carries the RTMP callbacks over TLS to an HTTPS stand-in for the
//! livestream service with a certificate from the cell's CA, and refuses one from another CA.
//!
//! `cargo xtask test` (`.ci/run`) installs the programs; a missing one fails the test with the
//! command that installs it, never skips it. Waiting is polling with a deadline, never a sleep
//! standing in for readiness.

use std::{
    net::{Ipv4Addr, TcpListener, TcpStream, UdpSocket},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant, SystemTime},
};

use kube::ResourceExt;
use titan_crds::Cell;
use titan_kit::turn;
use titan_operator::cell::{
    coturn, media,
    nginx::{self, NginxSettings},
};

use crate::support::{built, repo_path};

const INSTALL: &str = "apt-get install -y nginx libnginx-mod-rtmp coturn (or run `cargo xtask test`, which installs them)";

/// The path of `program`, or a failure that says how to install it.
pub(crate) fn program(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/bin".into()])
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| panic!("{name} is not installed: {INSTALL}"))
}

fn example(file: &str) -> Cell {
    let text = std::fs::read_to_string(repo_path(file)).expect("example");
    serde_yaml::from_str(&text).expect("a Cell")
}

/// The text of `key` in the built ConfigMap `name` of `cell`.
fn config_map_text(cell: &Cell, name: &str, key: &str) -> String {
    built(cell)
        .config_maps
        .into_iter()
        .find(|c| c.name_any() == name)
        .and_then(|c| c.data?.remove(key))
        .unwrap_or_else(|| panic!("no {key} in config map {name}"))
}

/// A process started by a test, killed by its pid when the test ends, however it ends.
pub(crate) struct Running {
    child: Child,
    name: &'static str,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Running {
    pub(crate) fn start(name: &'static str, command: &mut Command, log: &Path) -> Running {
        let log = std::fs::File::create(log).expect("log file");
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Running { child, name }
    }

    /// Fails at once if the process already exited (its log says why).
    pub(crate) fn alive(&mut self, log: &Path) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "{} exited with {status}:\n{}",
                self.name,
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
    }
}

/// Polls `ready` until it holds, failing after `limit`.
pub(crate) fn wait_until(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ready() {
        assert!(
            Instant::now() < deadline,
            "{what} not ready after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `command` to completion, killing it and failing after `limit`.
fn run(command: &mut Command, limit: Duration) -> (ExitStatus, String) {
    let output = tempfile::NamedTempFile::new().expect("output file");
    let mut child = Running::start("command", command, output.path());
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "{command:?} ran longer than {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    (
        status,
        std::fs::read_to_string(output.path()).unwrap_or_default(),
    )
}

/// A UDP port on loopback nothing uses now.
fn free_udp_port() -> u16 {
    UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|s| s.local_addr())
        .expect("free udp port")
        .port()
}

/// A port free on loopback for both TCP and UDP.
pub(crate) fn free_port() -> u16 {
    loop {
        let tcp = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("free tcp port");
        let port = tcp.local_addr().expect("address").port();
        if UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return port;
        }
    }
}

/// `count` consecutive UDP ports free on loopback now.
fn free_udp_range(count: u16) -> u16 {
    loop {
        let first = free_udp_port();
        let Some(last) = first.checked_add(count) else {
            continue;
        };
        let held: Vec<_> = (first..last)
            .map_while(|p| UdpSocket::bind((Ipv4Addr::LOCALHOST, p)).ok())
            .collect();
        if held.len() == usize::from(count) {
            return first;
        }
    }
}

/// Whether something has bound UDP `port` on loopback (read from the kernel's socket table, as
/// a UDP server cannot be "connected to").
fn udp_bound(port: u16) -> bool {
    let local = format!("0100007F:{port:04X}");
    std::fs::read_to_string("/proc/net/udp")
        .unwrap_or_default()
        .lines()
        .any(|line| line.split_whitespace().nth(1) == Some(local.as_str()))
}

fn nginx_test(cell: &Cell) {
    let nginx = program("nginx");
    let rtmp = media::enabled_rtmp(cell).expect("rtmp enabled");
    let settings = media::nginx_settings(cell, rtmp);
    assert_eq!(
        config_map_text(cell, "rtmp-config", "nginx.conf"),
        nginx::render(&cell.name_any(), &settings),
        "the test renders what the operator puts in the ConfigMap"
    );
    assert_eq!(
        settings.module_path.as_deref(),
        Some("/usr/lib/nginx/modules/ngx_rtmp_module.so")
    );

    // Only what depends on the pod changes: the media volume becomes a temporary directory,
    // and the livestream service's host (which nginx resolves at start and which only cluster
    // DNS knows) becomes loopback.
    let dir = tempfile::tempdir().expect("temp dir");
    let media_dir = dir.path().join("media");
    std::fs::create_dir(&media_dir).expect("media dir");
    let text = nginx::render(
        &cell.name_any(),
        &NginxSettings {
            media_dir: media_dir.display().to_string(),
            callback_base: format!("http://127.0.0.1:{}", free_port()),
            ..settings
        },
    );
    let config = dir.path().join("nginx.conf");
    std::fs::write(&config, &text).expect("write config");
    let prefix = format!("{}/", dir.path().display());
    let (status, output) = run(
        Command::new(nginx)
            .args(["-t", "-p", &prefix, "-e", "stderr", "-c"])
            .arg(&config),
        Duration::from_secs(30),
    );
    assert!(
        status.success(),
        "nginx -t refused the config:\n{output}\n{text}"
    );
    assert!(output.contains("test is successful"), "{output}");
    assert!(
        media_dir.join(nginx::HLS_DIR).is_dir(),
        "nginx prepared the HLS directory in the media volume"
    );
}

/// GET `path` on loopback `port` with a bare HTTP/1.0 request: the status line and the body.
fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).ok()?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response)
}

#[test]
fn nginx_serves_the_rendered_config_on_its_ports() {
    let nginx = program("nginx");
    let cell = example("manifests/examples/dev-cell.yaml");
    let rtmp = media::enabled_rtmp(&cell).expect("rtmp enabled");
    let dir = tempfile::tempdir().expect("temp dir");
    let media_dir = dir.path().join("media");
    std::fs::create_dir(&media_dir).expect("media dir");
    let (rtmp_port, http_port) = (free_port(), free_port());
    let text = nginx::render(
        &cell.name_any(),
        &NginxSettings {
            media_dir: media_dir.display().to_string(),
            callback_base: format!("http://127.0.0.1:{}", free_port()),
            rtmp_port: i32::from(rtmp_port),
            http_port: i32::from(http_port),
            ..media::nginx_settings(&cell, rtmp)
        },
    );
    let config = dir.path().join("nginx.conf");
    std::fs::write(&config, text).expect("write config");
    let log = dir.path().join("nginx.log");
    // One process (no master and workers), so killing its pid stops all of it.
    let mut server = Running::start(
        "nginx",
        Command::new(nginx)
            .arg("-p")
            .arg(format!("{}/", dir.path().display()))
            .args(["-e", "stderr", "-g", "master_process off;", "-c"])
            .arg(&config),
        &log,
    );
    let mut health = None;
    wait_until("nginx", Duration::from_secs(20), || {
        server.alive(&log);
        health = http_get(http_port, "/healthz");
        health.is_some()
    });
    let health = health.unwrap_or_default();
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(health.ends_with("ok\n"), "{health}");
    assert!(
        TcpStream::connect((Ipv4Addr::LOCALHOST, rtmp_port)).is_ok(),
        "RTMP ingest listens"
    );
    let missing = http_get(http_port, "/hls/none.m3u8").unwrap_or_default();
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
}

#[test]
fn nginx_accepts_the_rendered_rtmp_config_of_the_dev_cell() {
    nginx_test(&example("manifests/examples/dev-cell.yaml"));
}

#[test]
fn nginx_accepts_the_rendered_rtmp_config_with_recording() {
    let cell = example("manifests/examples/production-cell.yaml");
    let rtmp = media::enabled_rtmp(&cell).expect("rtmp");
    assert!(media::nginx_settings(&cell, rtmp).record);
    nginx_test(&cell);
}

/// A `turnserver` on loopback from the rendered config of `cell` (its ports moved to free
/// ones), with `secret`; and a `turnutils_peer` to relay to.
struct TurnServer {
    port: u16,
    peer_port: u16,
    log: PathBuf,
    _server: Running,
    _peer: Running,
    _dir: tempfile::TempDir,
}

impl TurnServer {
    fn start(cell: &Cell, secret: &str) -> TurnServer {
        let (turnserver, peer) = (program("turnserver"), program("turnutils_peer"));
        let mut settings = media::enabled_turn(cell).expect("turn enabled").clone();
        assert_eq!(
            config_map_text(cell, "turn-config", "turnserver.conf"),
            coturn::render(&cell.name_any(), &settings),
            "the test renders what the operator puts in the ConfigMap"
        );
        let port = free_port();
        let relays = free_udp_range(11);
        settings.listening_port = i32::from(port);
        settings.min_port = i32::from(relays);
        settings.max_port = i32::from(relays) + 10;

        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("turnserver.conf");
        std::fs::write(&config, coturn::render(&cell.name_any(), &settings)).expect("config");
        let log = dir.path().join("turnserver.log");
        // The pod passes the secret the same way; loopback addresses and peers are what a
        // test on one machine needs and a pod must never allow.
        let mut server = Running::start(
            "turnserver",
            Command::new(turnserver)
                .arg("-c")
                .arg(&config)
                .arg(format!("--static-auth-secret={secret}"))
                .args([
                    "--listening-ip=127.0.0.1",
                    "--relay-ip=127.0.0.1",
                    "--allow-loopback-peers",
                ])
                .arg(format!(
                    "--pidfile={}",
                    dir.path().join("turn.pid").display()
                )),
            &log,
        );
        wait_until("turnserver", Duration::from_secs(20), || {
            server.alive(&log);
            TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok()
        });

        let peer_port = free_udp_port();
        let peer_log = dir.path().join("peer.log");
        let mut peer_process = Running::start(
            "turnutils_peer",
            Command::new(peer).args(["-L", "127.0.0.1", "-p", &peer_port.to_string()]),
            &peer_log,
        );
        wait_until("turnutils_peer", Duration::from_secs(20), || {
            peer_process.alive(&peer_log);
            udp_bound(peer_port)
        });
        TurnServer {
            port,
            peer_port,
            log,
            _server: server,
            _peer: peer_process,
            _dir: dir,
        }
    }

    /// Whether the server refused `credential` in its authentication check (rather than, say,
    /// never seeing the request).
    fn refused_by_auth(&self, credential: &turn::TurnCredential) -> bool {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .any(|l| l.contains("check_stun_auth") && l.contains(&credential.username))
    }

    /// `turnutils_uclient`'s exit status and output for an allocation with `credential`.
    fn allocate(&self, credential: &turn::TurnCredential) -> (ExitStatus, String) {
        run(
            Command::new(program("turnutils_uclient")).args([
                "-u",
                &credential.username,
                "-w",
                &credential.password,
                "-p",
                &self.port.to_string(),
                "-e",
                "127.0.0.1",
                "-r",
                &self.peer_port.to_string(),
                "-n",
                "5",
                "127.0.0.1",
            ]),
            Duration::from_secs(60),
        )
    }
}

fn turn_test(cell: &Cell) {
    let secret = "a-cell-turn-secret";
    let server = TurnServer::start(cell, secret);
    let now = SystemTime::now();

    let good = turn::mint_for(secret.as_bytes(), "alice", now, Duration::from_secs(600));
    let (status, output) = server.allocate(&good);
    assert!(
        status.success(),
        "a fresh credential was refused ({status}):\n{output}"
    );

    let expired = turn::mint_for(
        secret.as_bytes(),
        "alice",
        now - Duration::from_secs(3_600),
        Duration::from_secs(600),
    );
    let (status, output) = server.allocate(&expired);
    assert!(
        !status.success(),
        "an expired credential was accepted:\n{output}"
    );
    assert!(server.refused_by_auth(&expired), "{output}");

    let wrong = turn::mint_for(b"another-secret", "alice", now, Duration::from_secs(600));
    let (status, output) = server.allocate(&wrong);
    assert!(
        !status.success(),
        "a credential of another secret was accepted:\n{output}"
    );
    assert!(server.refused_by_auth(&wrong), "{output}");
}

#[test]
fn coturn_from_the_rendered_config_admits_minted_credentials_and_refuses_others() {
    turn_test(&example("manifests/examples/dev-cell.yaml"));
}

#[test]
fn coturn_with_an_external_address_admits_minted_credentials_and_refuses_others() {
    let cell = example("manifests/examples/production-cell.yaml");
    assert!(
        media::enabled_turn(&cell)
            .and_then(|t| t.external_address.as_deref())
            .is_some()
    );
    turn_test(&cell);
}

/// An HTTPS server on loopback `port` (Python's, as a stand-in for the livestream service's
/// HTTP port) answering every POST with 200 `published`, with `cert` and `key` (PEM files).
fn https_backend(dir: &Path, port: u16, cert: &Path, key: &Path) -> Running {
    let script = dir.join("backend.py");
    std::fs::write(
        &script,
        r#"import http.server, ssl, sys

class Callback(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Length", "9")
        self.end_headers()
        self.wfile.write(b"published")

    def log_message(self, *args):
        pass

server = http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Callback)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(sys.argv[2], sys.argv[3])
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
"#,
    )
    .expect("backend script");
    let log = dir.join(format!("backend-{port}.log"));
    Running::start(
        "python3 https backend",
        Command::new(program("python3"))
            .arg(&script)
            .arg(port.to_string())
            .arg(cert)
            .arg(key),
        &log,
    )
}

/// POST an empty body to `path` on loopback `port` (as nginx-rtmp's `on_publish` does): the
/// whole response.
fn http_post(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).ok()?;
    stream
        .write_all(
            format!("POST {path} HTTP/1.0\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n")
                .as_bytes(),
        )
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response)
}

/// A certificate for `localhost` signed by the CA in `ca_secret` (a cell CA Secret's data):
/// (certificate, key) as PEM.
fn localhost_certificate(
    ca_secret: &std::collections::BTreeMap<String, String>,
) -> (String, String) {
    let issuer = rcgen::Issuer::from_ca_cert_pem(
        &ca_secret["ca.crt"],
        rcgen::KeyPair::from_pem(&ca_secret["ca.key"]).expect("ca key"),
    )
    .expect("ca");
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .expect("params")
        .signed_by(&key, &issuer)
        .expect("signed");
    (cert.pem(), key.serialize_pem())
}

#[test]
fn under_tls_nginx_carries_the_rtmp_callbacks_to_livestream_verified_against_the_cells_ca() {
    use k8s_openapi::jiff::Timestamp;
    use titan_operator::cell::certificates;

    let nginx = program("nginx");
    let mut cell = example("manifests/examples/dev-cell.yaml");
    cell.spec.tls = Some(Default::default());
    let rtmp = media::enabled_rtmp(&cell).expect("rtmp enabled");
    let settings = media::nginx_settings(&cell, rtmp);
    assert_eq!(
        settings.callback_base,
        format!("https://livestream.{}.svc:8080", cell.namespace_name())
    );
    let tls = settings.callback_tls.clone().expect("callbacks over tls");
    assert_eq!(
        (tls.ca_file.as_str(), tls.proxy_port),
        ("/etc/titan-tls/ca.crt", media::CALLBACK_PROXY_PORT)
    );

    // The cell's CA, and a livestream stand-in serving a certificate from it; another serving
    // one from a CA the cell does not trust.
    let now = Timestamp::now();
    let own = certificates::resolve(&cell, &Default::default(), &Default::default(), now)
        .expect("cell ca");
    let mut other_cell = cell.clone();
    other_cell.metadata.name = Some("other".into());
    let foreign = certificates::resolve(&other_cell, &Default::default(), &Default::default(), now)
        .expect("other ca");
    let dir = tempfile::tempdir().expect("temp dir");
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        path
    };
    let ca_file = write("ca.crt", own.bundle.as_deref().expect("bundle"));
    let (trusted_port, foreign_port) = (free_port(), free_port());
    let (cert, key) = localhost_certificate(own.ca_secret.as_ref().expect("ca secret"));
    let _trusted = https_backend(
        dir.path(),
        trusted_port,
        &write("trusted.crt", &cert),
        &write("trusted.key", &key),
    );
    let (cert, key) = localhost_certificate(foreign.ca_secret.as_ref().expect("ca secret"));
    let _foreign = https_backend(
        dir.path(),
        foreign_port,
        &write("foreign.crt", &cert),
        &write("foreign.key", &key),
    );

    // nginx from the rendered config, the livestream host moved to loopback.
    let run_nginx = |name: &str, backend: u16| {
        let prefix = dir.path().join(name);
        std::fs::create_dir_all(prefix.join("media")).expect("prefix");
        let (proxy_port, http_port) = (free_port(), free_port());
        let text = nginx::render(
            &cell.name_any(),
            &NginxSettings {
                media_dir: prefix.join("media").display().to_string(),
                callback_base: format!("https://localhost:{backend}"),
                callback_tls: Some(nginx::CallbackTls {
                    ca_file: ca_file.display().to_string(),
                    proxy_port: i32::from(proxy_port),
                }),
                rtmp_port: i32::from(free_port()),
                http_port: i32::from(http_port),
                ..settings.clone()
            },
        );
        assert!(text.contains(&format!(
            "on_publish http://127.0.0.1:{proxy_port}/rtmp/publish;"
        )));
        let config = prefix.join("nginx.conf");
        std::fs::write(&config, text).expect("write config");
        let log = prefix.join("nginx.log");
        let mut server = Running::start(
            "nginx",
            Command::new(&nginx)
                .arg("-p")
                .arg(format!("{}/", prefix.display()))
                .args(["-e", "stderr", "-g", "master_process off;", "-c"])
                .arg(&config),
            &log,
        );
        wait_until("nginx", Duration::from_secs(20), || {
            server.alive(&log);
            http_get(http_port, "/healthz").is_some()
        });
        (server, proxy_port)
    };

    // The backend certified by the cell's CA gets the callback and its answer comes back.
    let (_server, proxy_port) = run_nginx("trusted", trusted_port);
    let mut answer = None;
    wait_until("the trusted backend", Duration::from_secs(20), || {
        answer = http_post(proxy_port, nginx::ON_PUBLISH_PATH).filter(|a| !a.contains(" 502 "));
        answer.is_some()
    });
    let answer = answer.unwrap_or_default();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("published"), "{answer}");

    // One with a certificate from elsewhere never sees it: nginx refuses its certificate (once
    // it listens, so the refusal is not a connection refused).
    wait_until("the foreign backend", Duration::from_secs(20), || {
        TcpStream::connect((Ipv4Addr::LOCALHOST, foreign_port)).is_ok()
    });
    let (_server, proxy_port) = run_nginx("foreign", foreign_port);
    let refused = http_post(proxy_port, nginx::ON_PUBLISH_PATH).unwrap_or_default();
    assert!(refused.starts_with("HTTP/1.1 502"), "{refused}");
    let log = std::fs::read_to_string(dir.path().join("foreign/nginx.log")).unwrap_or_default();
    assert!(
        log.contains("upstream SSL certificate verify error"),
        "{log}"
    );
}
