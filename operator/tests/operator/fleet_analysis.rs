//! A Fleet's `spec.analysis` against a real Prometheus (Debian's `prometheus`): the test starts
//! one on a free loopback port with its own config and TSDB, scraping every second a metrics
//! server the test runs, whose `titan_grpc_requests_total` comes from kit's own gRPC metrics
//! layer driven with calls of chosen codes; the scrape config adds the cell's `namespace`
//! label, as the chart's PodMonitor does. The operator's observe stage queries it with the
//! default query, and the planner decides from the answers.
//!
//! `cargo xtask test` (`.ci/run`) installs `prometheus`; when it is missing the test fails with
//! the command that installs it, never skips, as the media servers' tests do. Waiting is
//! polling with a deadline, never a sleep standing in for readiness.

use std::{
    convert::Infallible,
    net::{Ipv4Addr, SocketAddr, TcpListener},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use titan_crds::fleet::HALTED;
use titan_kit::metrics::{GrpcMetrics, GrpcMetricsLayer};
use titan_operator::fleet::{
    observe::{self, Member},
    prometheus::Answer,
};
use tower::{Layer, ServiceExt};

use crate::fleet::{
    RESUME, condition, fleet, halt_of, member, message, released, round, t, take, v,
};

const INSTALL: &str = "apt-get install -y --no-install-recommends prometheus (or run `cargo xtask \
                       test`, which installs it)";

/// How long Prometheus may take to start, and a query to show what the test waits for.
const PATIENCE: Duration = Duration::from_secs(60);

/// The path of `prometheus`, or a failure that says how to install it.
fn program() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/bin".into()])
        .map(|dir| dir.join("prometheus"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| panic!("prometheus is not installed: {INSTALL}"))
}

/// gRPC status codes by number, as a trailers-only response carries them.
const OK: u8 = 0;
const CANCELED: u8 = 1;
const INVALID_ARGUMENT: u8 = 3;
const NOT_FOUND: u8 = 5;
const FAILED_PRECONDITION: u8 = 9;
const INTERNAL: u8 = 13;
const UNAVAILABLE: u8 = 14;

/// One cell's gRPC metrics as kit records them, served at `/metrics` on loopback.
struct Traffic {
    layer: GrpcMetricsLayer,
    addr: SocketAddr,
    server: tokio::task::JoinHandle<()>,
}

impl Traffic {
    async fn start() -> Traffic {
        let registry = prometheus::Registry::new();
        let layer = GrpcMetricsLayer::new(GrpcMetrics::new(&registry).expect("kit's metrics"));
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let registry = registry.clone();
                async move { titan_kit::metrics::render(&registry) }
            }),
        );
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("metrics listener");
        let addr = listener.local_addr().expect("address");
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("metrics server");
        });
        Traffic {
            layer,
            addr,
            server,
        }
    }

    /// `count` unary calls answered with gRPC status `code`, through kit's metrics layer.
    async fn calls(&self, code: u8, count: usize) {
        for _ in 0..count {
            let handler = tower::service_fn(move |_: http::Request<()>| async move {
                Ok::<_, Infallible>(
                    http::Response::builder()
                        .header("grpc-status", code.to_string())
                        .body(())
                        .expect("response"),
                )
            });
            let request = http::Request::builder()
                .uri("/titan.ping.v1.PingService/Ping")
                .body(())
                .expect("request");
            self.layer
                .layer(handler)
                .oneshot(request)
                .await
                .expect("call");
        }
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A `prometheus` on a free loopback port scraping `target` every second, with the labels of
/// cell `canary` in namespace `titan-canary`; killed by its pid when dropped.
struct TestPrometheus {
    child: Child,
    url: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl TestPrometheus {
    async fn start(target: SocketAddr) -> TestPrometheus {
        let program = program();
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: titan
    static_configs:
      - targets: ['{target}']
        labels:
          namespace: titan-canary
          cell: canary
"
            ),
        )
        .expect("config");
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let log = dir.path().join("prometheus.log");
        let out = std::fs::File::create(&log).expect("log file");
        let child = Command::new(program)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log handle"))
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start prometheus: {e}"));
        let mut started = TestPrometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
            _dir: dir,
        };
        let ready = format!("{}/-/ready", started.url);
        let deadline = Instant::now() + PATIENCE;
        loop {
            started.alive();
            if reqwest::get(&ready)
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return started;
            }
            assert!(
                Instant::now() < deadline,
                "prometheus not ready after {PATIENCE:?}:\n{}",
                started.logged()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn logged(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Fails at once if prometheus exited (its log says why).
    fn alive(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("prometheus exited with {status}:\n{}", self.logged());
        }
    }
}

impl Drop for TestPrometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the analysis of `fleet` over `members` until `done` holds for the canary's answer,
/// moving the cell's counters with `traffic` before each try; fails after [`PATIENCE`].
async fn analyse_until(
    fleet: &titan_crds::Fleet,
    members: &mut [Member],
    traffic: impl AsyncFn(),
    done: impl Fn(&Result<Answer, String>) -> bool,
) -> Result<Answer, String> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        traffic().await;
        observe::analyse(fleet, members).await;
        let answer = members[0].analysis.clone().expect("the canary is watched");
        if done(&answer) {
            return answer;
        }
        assert!(
            Instant::now() < deadline,
            "the canary's analysis still answers {answer:?} after {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_judges_each_cell_and_an_error_rate_above_max_halts_the_wave() {
    let cell = Traffic::start().await;
    let mut prometheus = TestPrometheus::start(cell.addr).await;
    // The default query: kit's failure ratio over 5 minutes in the cell's namespace.
    let mut fleet = fleet(&format!(
        "  analysis:\n    prometheus: {}\n    max: \"0.05\"\n    interval: 10s\n",
        prometheus.url
    ));
    // canary and quiet in wave 0 (quiet's namespace has no traffic at all), eu-1 in wave 1.
    let mut members = vec![
        member("canary", 0, "1.0", true),
        member("quiet", 0, "1.0", true),
        member("eu-1", 1, "1.0", true),
    ];
    round(&mut fleet, &members, t(0));
    take(&mut members, 0, "1.1");

    // Successes and client-caused codes only: exactly no failure, once Prometheus has two
    // scrapes of moving counters.
    let healthy = analyse_until(
        &fleet,
        &mut members,
        async || {
            cell.calls(OK, 20).await;
            for code in [CANCELED, INVALID_ARGUMENT, NOT_FOUND, FAILED_PRECONDITION] {
                cell.calls(code, 5).await;
            }
        },
        |answer| matches!(answer, Ok(Answer::Value(_))),
    )
    .await;
    prometheus.alive();
    assert_eq!(healthy, Ok(Answer::Value(0.0)));
    assert_eq!(members[1].analysis, Some(Ok(Answer::NoData)));
    assert_eq!(
        members[2].analysis, None,
        "wave 1 is not released: not asked"
    );
    let baking = round(&mut fleet, &members, t(10));
    assert_eq!(baking.events, []);
    assert_eq!(
        condition(&fleet, HALTED),
        ("False".into(), "NotHalted".into())
    );

    // Server failures: the ratio climbs above 5%.
    let failing = analyse_until(
        &fleet,
        &mut members,
        async || {
            cell.calls(OK, 10).await;
            cell.calls(INTERNAL, 5).await;
            cell.calls(UNAVAILABLE, 5).await;
        },
        |answer| matches!(answer, Ok(Answer::Value(v)) if *v > 0.05),
    )
    .await;
    let Ok(Answer::Value(rate)) = failing else {
        panic!("not a value: {failing:?}")
    };
    assert!(rate < 1.0, "{rate}: the successes count too");
    round(&mut fleet, &members, t(20));
    let halt = halt_of(&fleet, "halted");
    assert_eq!(
        (halt.cell.as_str(), halt.reason.as_str()),
        ("canary", "ErrorRate")
    );
    assert_eq!(
        halt.message,
        format!(
            "cell canary (wave 0) runs 1.1 with an error rate of {rate} (spec.analysis.query), \
             above spec.analysis.max 0.05; {RESUME}"
        )
    );
    round(&mut fleet, &members, t(1_000));
    assert_eq!(released(&fleet), [(0, v("1.1")), (1, None)]);

    // Queries Prometheus refuses, or whose answer is not one number, hold the wave with
    // Prometheus' own words.
    let query_url = format!("{}/api/v1/query", prometheus.url);
    let mut unhalted = fleet.clone();
    if let Some(status) = unhalted.status.as_mut() {
        status.halt = None;
    }
    let mut answer_to = async |query: &str| {
        let mut asked = unhalted.clone();
        if let Some(analysis) = asked.spec.analysis.as_mut() {
            analysis.query = query.into();
        }
        observe::analyse(&asked, &mut members).await;
        members[0].analysis.clone().expect("the canary is watched")
    };
    let broken = answer_to("sum(rate(titan_grpc_requests_total[5m])").await;
    let refused = format!("prometheus at {query_url} refused the query (400, bad_data): ");
    assert!(
        broken
            .as_ref()
            .is_err_and(|e| e.starts_with(&refused) && e.contains("parse error")),
        "{broken:?}"
    );
    let several = answer_to("sum by (grpc_code) (titan_grpc_requests_total)").await;
    assert!(
        several.as_ref().is_err_and(|e| e
            .starts_with("the query must answer a scalar or one series, and answered ")
            && e.ends_with(" series (aggregate it, e.g. with sum(...))")),
        "{several:?}"
    );

    // Prometheus down: the planner holds the wave, and says so.
    drop(prometheus);
    let down = answer_to(titan_crds::fleet::KIT_ERROR_RATIO).await;
    let error = down.expect_err("prometheus is down");
    assert!(
        error.starts_with(&format!("prometheus at {query_url} did not answer: ")),
        "{error}"
    );
    round(&mut unhalted, &members, t(2_000));
    assert_eq!(
        condition(&unhalted, "Progressing"),
        ("False".into(), "AnalysisFailed".into())
    );
    assert!(
        message(&unhalted, "Progressing").starts_with(&format!(
            "spec.analysis could not judge cell canary (wave 0) running 1.1 (and for 1 more \
             cell): {error}; wave 0 holds"
        )),
        "{}",
        message(&unhalted, "Progressing")
    );
    assert_eq!(released(&unhalted), [(0, v("1.1")), (1, None)]);
}
