//! TLS on the gRPC and HTTP servers: a client trusting the cell's CA gets through, a plaintext
//! one and one trusting another CA do not; a renewed certificate is served without a restart
//! while calls and connections opened before it carry on; a broken renewal is refused and the
//! served certificate kept; kit's client endpoint verifies `https` against `tls.caFile`; kit's
//! PostgreSQL, Redis (a server and a cluster) and ClickHouse clients verify the test servers
//! against their CAs.

use std::{collections::HashMap, path::Path};

use futures::FutureExt;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use titan_kit::{
    KitError, Mounted, ServiceContext, ServiceDef,
    config::{Config, TlsConfig},
    runtime::{self, Bound},
    testing::{Serving, eventually, metric, service, serving},
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

/// A certificate authority of its own, as the operator keeps one per cell.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let issuer =
            CertifiedIssuer::self_signed(params, KeyPair::generate().expect("ca key")).expect("ca");
        Self { issuer }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A server certificate for `localhost`: (certificate PEM, key PEM).
    fn issue(&self) -> (String, String) {
        let params = CertificateParams::new(vec!["localhost".to_owned()]).expect("leaf params");
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("signed");
        (cert.pem(), key.serialize_pem())
    }
}

/// Writes `contents` to `path` in one rename, as the kubelet swaps a Secret's files.
fn replace(path: &Path, contents: &str) {
    let staging = path.with_extension("staging");
    std::fs::write(&staging, contents).expect("write");
    std::fs::rename(&staging, path).expect("rename");
}

static SLOW_STARTED: Notify = Notify::const_new();
static SLOW_RELEASE: Notify = Notify::const_new();

/// HTTP routes: `/hello`, and `/slow`, which answers once the test releases it.
fn tls_probe() -> ServiceDef {
    service("tlsprobe", |ctx: ServiceContext| {
        async move {
            let routes = axum::Router::new()
                .route("/hello", axum::routing::get(|| async { "hello" }))
                .route(
                    "/slow",
                    axum::routing::get(|| async {
                        SLOW_STARTED.notify_one();
                        SLOW_RELEASE.notified().await;
                        "finished"
                    }),
                );
            Ok::<_, KitError>(Mounted::new(&ctx).http(routes))
        }
        .boxed()
    })
}

struct Running {
    bound: Bound,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), KitError>>,
    _dir: tempfile::TempDir,
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
}

/// A process serving `tls_probe` over TLS with `pair`, re-reading its files every second.
async fn serve(pair: &(String, String)) -> Running {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    replace(&cert, &pair.0);
    replace(&key, &pair.1);
    let vars = HashMap::from([
        ("TITAN_GRPC_ADDR", "127.0.0.1:0".to_owned()),
        ("TITAN_HTTP_ADDR", "127.0.0.1:0".to_owned()),
        ("TITAN_ADMIN_ADDR", "127.0.0.1:0".to_owned()),
        (
            "TITAN_AUTH_HS256_SECRET",
            "0123456789abcdef0123456789abcdef".to_owned(),
        ),
        ("TITAN_TLS_CERT_FILE", cert.display().to_string()),
        ("TITAN_TLS_KEY_FILE", key.display().to_string()),
    ]);
    let config = Config::from_sources(
        Some("preStopDelaySeconds: 0\ntls: { reloadSeconds: 1 }\n"),
        move |name| vars.get(name).cloned(),
    )
    .expect("config");
    let Serving { bound, stop, task } = serving(config, vec![tls_probe()]).await;
    Running {
        bound,
        stop,
        task,
        _dir: dir,
        cert,
        key,
    }
}

/// A gRPC channel to `bound` trusting `roots` (PEM), or plaintext when there are none.
async fn channel(bound: &Bound, roots: &[&str]) -> Result<Channel, tonic::transport::Error> {
    if roots.is_empty() {
        return Channel::from_shared(format!("http://{}", bound.grpc))
            .expect("url")
            .connect()
            .await;
    }
    let mut tls = ClientTlsConfig::new().domain_name("localhost");
    for root in roots {
        tls = tls.ca_certificate(Certificate::from_pem(root));
    }
    Channel::from_shared(format!("https://{}", bound.grpc))
        .expect("url")
        .tls_config(tls)
        .expect("tls config")
        .connect()
        .await
}

/// gRPC health through a fresh connection trusting `roots`: `Ok(status)` or the failure.
async fn health(bound: &Bound, roots: &[&str]) -> Result<i32, String> {
    let channel = channel(bound, roots).await.map_err(|e| format!("{e:?}"))?;
    check(channel).await
}

async fn check(channel: Channel) -> Result<i32, String> {
    HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .map(|r| r.into_inner().status)
        .map_err(|s| format!("{s:?}"))
}

/// An HTTPS client trusting `roots`, reaching the server as `localhost`.
fn https(roots: &[&str]) -> reqwest::Client {
    roots
        .iter()
        .fold(reqwest::Client::builder(), |b, root| {
            b.add_root_certificate(reqwest::Certificate::from_pem(root.as_bytes()).expect("pem"))
        })
        .build()
        .expect("client")
}

#[tokio::test]
async fn servers_speak_tls_to_clients_of_the_cells_ca_only() {
    let (cell, other) = (Ca::new("cell ca"), Ca::new("another ca"));
    let running = serve(&cell.issue()).await;
    let bound = running.bound;

    assert_eq!(
        health(&bound, &[&cell.pem()]).await,
        Ok(ServingStatus::Serving as i32)
    );
    // Plaintext is not answered; a server certificate of a CA the client does not trust is
    // refused by the client.
    assert!(health(&bound, &[]).await.is_err(), "plaintext got through");
    let refused = health(&bound, &[&other.pem()])
        .await
        .expect_err("another CA accepted");
    assert!(refused.contains("UnknownIssuer"), "{refused}");
    // Both left the server before a session: one plaintext, one refused by its client.
    eventually("the failed handshakes to be counted", || async {
        (metric(
            bound.admin,
            r#"titan_tls_handshake_failures_total{server="grpc"}"#,
        )
        .await
            >= 2.0)
            .then_some(())
    })
    .await;

    let url = format!("https://localhost:{}/hello", bound.http.port());
    let answer = https(&[&cell.pem()]).get(&url).send().await.expect("https");
    assert_eq!(
        (answer.status().as_u16(), answer.text().await.expect("body")),
        (200, "hello".to_owned())
    );
    assert!(https(&[&other.pem()]).get(&url).send().await.is_err());
    assert!(
        reqwest::get(format!("http://localhost:{}/hello", bound.http.port()))
            .await
            .is_err(),
        "plaintext HTTP got through"
    );
    // The admin port stays plaintext for probes and scrapes.
    assert_eq!(
        reqwest::get(format!("http://{}/readyz", bound.admin))
            .await
            .expect("readyz")
            .status(),
        200
    );

    running.stop.cancel();
    running.task.await.expect("join").expect("clean stop");
}

#[tokio::test]
async fn a_renewed_certificate_is_served_without_dropping_calls() {
    let (old, new) = (Ca::new("old ca"), Ca::new("new ca"));
    let running = serve(&old.issue()).await;
    let bound = running.bound;
    // Opened before the renewal: a gRPC connection and an HTTPS request still in flight.
    let before = channel(&bound, &[&old.pem()]).await.expect("connect");
    assert_eq!(
        check(before.clone()).await,
        Ok(ServingStatus::Serving as i32)
    );
    let client = https(&[&old.pem(), &new.pem()]);
    let in_flight = tokio::spawn(
        client
            .get(format!("https://localhost:{}/slow", bound.http.port()))
            .send(),
    );
    SLOW_STARTED.notified().await;

    let renewed = new.issue();
    replace(&running.key, &renewed.1);
    replace(&running.cert, &renewed.0);
    eventually("the renewed certificate to be served", || async {
        health(&bound, &[&new.pem()]).await.ok()
    })
    .await;
    assert_eq!(
        metric(bound.admin, r#"titan_tls_reloads_total{outcome="ok"}"#).await,
        1.0
    );
    // A client of the old CA alone no longer gets in; the connection it opened before does.
    assert!(health(&bound, &[&old.pem()]).await.is_err());
    assert_eq!(check(before).await, Ok(ServingStatus::Serving as i32));
    SLOW_RELEASE.notify_one();
    let answer = in_flight.await.expect("join").expect("in-flight request");
    assert_eq!(
        (answer.status().as_u16(), answer.text().await.expect("body")),
        (200, "finished".to_owned())
    );

    // A key that is not the certificate's is refused; the served pair stays.
    replace(&running.key, &new.issue().1);
    eventually("the broken renewal to be refused", || async {
        (metric(bound.admin, r#"titan_tls_reloads_total{outcome="failed"}"#).await >= 1.0)
            .then_some(())
    })
    .await;
    assert_eq!(
        health(&bound, &[&new.pem()]).await,
        Ok(ServingStatus::Serving as i32)
    );

    running.stop.cancel();
    running.task.await.expect("join").expect("clean stop");
}

#[tokio::test]
async fn a_certificate_that_does_not_load_fails_the_start() {
    let ca = Ca::new("cell ca");
    let (cert, _) = ca.issue();
    let (_, other_key) = ca.issue();
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert_file, key_file) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    replace(&cert_file, &cert);
    replace(&key_file, &other_key);
    let vars = HashMap::from([
        (
            "TITAN_AUTH_HS256_SECRET",
            "0123456789abcdef0123456789abcdef".to_owned(),
        ),
        ("TITAN_TLS_CERT_FILE", cert_file.display().to_string()),
        ("TITAN_TLS_KEY_FILE", key_file.display().to_string()),
    ]);
    let config = Config::from_sources(None, move |name| vars.get(name).cloned()).expect("config");
    let err = runtime::serve(config, vec![tls_probe()], CancellationToken::new(), |_| {})
        .await
        .expect_err("mismatched pair");
    assert_eq!(
        err.to_string(),
        format!(
            "invalid setting tls: {}: the certificate is not the one of the private key in {}",
            cert_file.display(),
            key_file.display()
        )
    );
}

#[tokio::test]
async fn kit_clients_verify_https_against_the_configured_ca() {
    let ca = Ca::new("cell ca");
    let running = serve(&ca.issue()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_file = dir.path().join("ca.crt");
    replace(&ca_file, &ca.pem());
    let url = format!("https://localhost:{}", running.bound.grpc.port());

    let missing = titan_kit::tls::endpoint("abtestingUrl", &url, &TlsConfig::default())
        .expect_err("https without a CA");
    assert_eq!(
        missing.to_string(),
        format!(
            "invalid setting tls.caFile: {url} is https: set TITAN_TLS_CA_FILE (or tls.caFile) \
             to the CA that signs it"
        )
    );
    let tls = TlsConfig {
        ca_file: Some(ca_file),
        ..TlsConfig::default()
    };
    let channel = titan_kit::tls::endpoint("abtestingUrl", &url, &tls)
        .expect("endpoint")
        .connect()
        .await
        .expect("verified connection");
    assert_eq!(check(channel).await, Ok(ServingStatus::Serving as i32));

    running.stop.cancel();
    running.task.await.expect("join").expect("clean stop");
}

/// A variable `cargo xtask test` exports for the test servers' TLS.
fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: run the tests with `cargo xtask test` (see README.md), which \
             starts PostgreSQL, Redis and ClickHouse with TLS and exports it; or `eval \"$(cargo \
             xtask datastores env)\"` after `cargo xtask datastores start`"
        )
    })
}

/// An error and its causes, outermost first: a refused handshake is named only by a cause.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text = format!("{text}: {c}");
        cause = c.source();
    }
    text
}

/// kit's PostgreSQL pool follows its URL: `sslmode=verify-full` against the server's CA connects
/// encrypted, against another CA it is refused, and `sslmode=disable` stays plaintext (the test
/// server, which `cargo xtask test` starts, serves both, its certificate from a CA of its own).
#[tokio::test]
async fn postgres_urls_choose_tls_and_verify_full_checks_the_server() {
    let (url, ca) = (
        var("TITAN_TEST_POSTGRES_URL"),
        var("TITAN_TEST_POSTGRES_CA"),
    );
    let connect = |query: String| {
        let url = format!("{url}?{query}");
        async move {
            let config =
                titan_kit::config::PostgresConfig::new(secrecy::SecretString::from(url), 1);
            let pool = titan_kit::datastores::postgres::connect(&config, "titan-tls-test")
                .await
                .map_err(|e| e.to_string())?;
            sqlx::query_scalar::<_, bool>(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            )
            .fetch_one(&pool)
            .await
            .map_err(|e| e.to_string())
        }
    };
    assert_eq!(
        connect(format!("sslmode=verify-full&sslrootcert={ca}")).await,
        Ok(true)
    );
    assert_eq!(connect("sslmode=disable".to_owned()).await, Ok(false));

    let dir = tempfile::tempdir().expect("tempdir");
    let other = dir.path().join("other-ca.crt");
    replace(&other, &Ca::new("another ca").pem());
    let refused = connect(format!(
        "sslmode=verify-full&sslrootcert={}",
        other.display()
    ))
    .await
    .expect_err("a server signed by another CA");
    assert!(refused.contains("UnknownIssuer"), "{refused}");
}

/// kit's Redis over `rediss://`: verified against `redis.caFile` it answers; a server signed by
/// another CA is refused; a CA file beside a plaintext URL is refused before connecting.
#[tokio::test]
async fn redis_over_tls_verifies_against_the_configured_ca() {
    let (url, ca) = (var("TITAN_TEST_REDIS_TLS_URL"), var("TITAN_TEST_REDIS_CA"));
    let handle = redis_with_ca(url.clone(), Path::new(&ca), "t:tls:")
        .await
        .expect("a server of the configured CA");
    handle.ping().await.expect("ping over TLS");
    redis_refuses_another_ca_and_a_plaintext_url(
        url,
        var("TITAN_TEST_REDIS_URL"),
        Path::new(&ca),
        "t:tls:",
    )
    .await;
}

/// kit's Redis connection to `url` verified against `ca`, or why it failed.
async fn redis_with_ca(
    url: String,
    ca: &Path,
    prefix: &str,
) -> Result<titan_kit::datastores::redis::RedisHandle, String> {
    let config = titan_kit::config::RedisConfig {
        ca_file: Some(ca.to_owned()),
        ..titan_kit::config::RedisConfig::new(url, prefix)
    };
    titan_kit::datastores::redis::RedisHandle::connect(&config)
        .await
        .map_err(|e| e.to_string())
}

/// A Redis (or Redis Cluster) at `url` is refused when verified against another CA, and `ca`
/// beside the plaintext URL `plaintext` is refused with its message, before connecting.
async fn redis_refuses_another_ca_and_a_plaintext_url(
    url: String,
    plaintext: String,
    ca: &Path,
    prefix: &str,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let other = dir.path().join("other-ca.crt");
    replace(&other, &Ca::new("another ca").pem());
    let refused = redis_with_ca(url, &other, prefix)
        .await
        .expect_err("a server signed by another CA");
    assert!(refused.contains("UnknownIssuer"), "{refused}");
    assert_eq!(
        redis_with_ca(plaintext, ca, prefix)
            .await
            .expect_err("plaintext with a CA"),
        "invalid setting redis.caFile: is set but redis.url is not rediss:// (or \
         rediss+cluster://): the connection would be plaintext"
    );
}

/// kit's Redis Cluster over `rediss+cluster://`: verified against `redis.caFile`, a script
/// call and keys on every master work (the nodes found through the seeds are verified too); a
/// cluster signed by another CA is refused; a CA file beside a plaintext cluster URL is refused.
#[tokio::test]
async fn redis_cluster_over_tls_verifies_against_the_configured_ca() {
    use redis::AsyncCommands;
    let (url, ca) = (
        var("TITAN_TEST_REDIS_CLUSTER_TLS_URL"),
        var("TITAN_TEST_REDIS_CLUSTER_CA"),
    );
    let prefix = format!("t:tls:{}:", uuid::Uuid::new_v4().simple());
    let handle = redis_with_ca(url.clone(), Path::new(&ca), &prefix)
        .await
        .expect("a cluster of the configured CA");
    assert!(handle.is_cluster());
    let mut conn = handle.conn.clone();
    // Keys in many slots, so every master is reached through the slot map.
    for n in 0..32 {
        let () = conn
            .set(handle.key(&format!("k{n}")), n)
            .await
            .expect("set over TLS");
    }
    for n in 0..32 {
        let value: u32 = conn
            .get(handle.key(&format!("k{n}")))
            .await
            .expect("get over TLS");
        assert_eq!(value, n);
    }
    let mut subscriber = handle.pubsub().await.expect("pub/sub over TLS");
    subscriber
        .subscribe(handle.key("channel"))
        .await
        .expect("subscribe");
    let mut dedicated = handle
        .dedicated(std::time::Duration::from_secs(5))
        .await
        .expect("a dedicated cluster connection over TLS");
    let () = dedicated.del(handle.key("k0")).await.expect("del over TLS");

    redis_refuses_another_ca_and_a_plaintext_url(
        url,
        var("TITAN_TEST_REDIS_CLUSTER_URL"),
        Path::new(&ca),
        &prefix,
    )
    .await;
}

/// kit's ClickHouse client over `https://`: verified against `clickhouse.caFile` a query
/// answers; a server signed by another CA is refused; a CA file beside an `http://` URL is
/// refused before any request.
#[tokio::test]
async fn clickhouse_over_https_verifies_against_the_configured_ca() {
    use titan_kit::{config::ClickHouseConfig, datastores::clickhouse};
    let (url, ca) = (
        var("TITAN_TEST_CLICKHOUSE_TLS_URL"),
        var("TITAN_TEST_CLICKHOUSE_CA"),
    );
    let client = |url: &str, ca: &Path| {
        clickhouse::connect(&ClickHouseConfig {
            ca_file: Some(ca.to_owned()),
            ..ClickHouseConfig::new(url.to_owned(), "default".to_owned())
        })
    };
    let verified = client(&url, Path::new(&ca)).expect("a client of the configured CA");
    assert_eq!(
        verified
            .query("SELECT 40 + 2")
            .fetch_one::<u16>()
            .await
            .expect("a query over https"),
        42
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let other = dir.path().join("other-ca.crt");
    replace(&other, &Ca::new("another ca").pem());
    let refused = clickhouse::ping(&client(&url, &other).expect("a client of another CA"))
        .await
        .expect_err("a server signed by another CA");
    let refused = chain(&refused);
    assert!(refused.contains("UnknownIssuer"), "{refused}");
    assert_eq!(
        client(&var("TITAN_TEST_CLICKHOUSE_URL"), Path::new(&ca))
            .expect_err("plaintext with a CA")
            .to_string(),
        "invalid setting clickhouse.caFile: is set but clickhouse.url is not https://: the \
         connection would be plaintext"
    );
}
