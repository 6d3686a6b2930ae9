//! The runtime serves health, reflection-free admin endpoints and a service's HTTP routes, reports
//! readiness from its datastores, and stops cleanly when cancelled.

use std::collections::HashMap;

use futures::FutureExt;

use titan_kit::testing::{Serving, eventually, serving};
use titan_kit::{
    Datastore, KitError, Mounted, ServiceContext, ServiceDef, auth::Caller, config::Config,
    runtime, testing::TestPostgres,
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

fn probe() -> ServiceDef {
    ServiceDef {
        datastores: &[Datastore::Postgres],
        ready_on: &[Datastore::Postgres],
        ..titan_kit::testing::service("probe", |ctx: ServiceContext| {
            async move {
                ctx.postgres()?;
                let routes = axum::Router::new()
                    .route("/probe", axum::routing::get(|| async { "probed" }))
                    .route("/slow", axum::routing::get(slow))
                    .route(
                        "/me",
                        axum::routing::get(|caller: Caller| async move { caller.user_id }),
                    )
                    .with_state(ctx.auth.clone());
                Ok::<_, KitError>(Mounted::new(&ctx).http(routes))
            }
            .boxed()
        })
    }
}

/// A request in flight across the shutdown: it starts, then waits for the test to release it.
static SLOW_STARTED: Notify = Notify::const_new();
static SLOW_RELEASE: Notify = Notify::const_new();

async fn slow() -> &'static str {
    SLOW_STARTED.notify_one();
    SLOW_RELEASE.notified().await;
    "finished"
}

/// A config from `vars`; shutdown without a pre-stop delay unless a test wants one.
fn config(vars: HashMap<&'static str, String>) -> Result<Config, KitError> {
    config_with("preStopDelaySeconds: 0\n", vars)
}

fn config_with(file: &str, vars: HashMap<&'static str, String>) -> Result<Config, KitError> {
    Config::from_sources(Some(file), move |name| vars.get(name).cloned())
}

fn base_vars() -> HashMap<&'static str, String> {
    HashMap::from([
        ("TITAN_GRPC_ADDR", "127.0.0.1:0".to_owned()),
        ("TITAN_HTTP_ADDR", "127.0.0.1:0".to_owned()),
        ("TITAN_ADMIN_ADDR", "127.0.0.1:0".to_owned()),
        (
            "TITAN_AUTH_HS256_SECRET",
            "0123456789abcdef0123456789abcdef".to_owned(),
        ),
    ])
}

#[tokio::test]
async fn serves_health_metrics_and_routes_then_stops_on_cancel() {
    let db = TestPostgres::new().await;
    let mut vars = base_vars();
    vars.insert("TITAN_POSTGRES_URL", db.url.clone());
    let Serving {
        bound,
        stop: shutdown,
        task: server,
    } = serving(
        // Far longer than the two requests made in it take.
        config_with("preStopDelaySeconds: 3\n", vars).expect("config"),
        vec![probe()],
    )
    .await;

    let http = reqwest::Client::new();
    let get = |url: String| {
        let http = http.clone();
        async move {
            let r = http.get(url).send().await.expect("request");
            (r.status().as_u16(), r.text().await.expect("body"))
        }
    };
    assert_eq!(
        get(format!("http://{}/readyz", bound.admin)).await,
        (200, "ready".to_owned())
    );
    assert_eq!(get(format!("http://{}/healthz", bound.admin)).await.0, 200);
    assert_eq!(
        get(format!("http://{}/probe", bound.http)).await,
        (200, "probed".to_owned())
    );

    let channel = tonic::transport::Channel::from_shared(format!("http://{}", bound.grpc))
        .expect("uri")
        .connect()
        .await
        .expect("grpc");
    let mut health = HealthClient::new(channel);
    let status = health
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("check")
        .into_inner()
        .status;
    assert_eq!(status, ServingStatus::Serving as i32);

    let (code, metrics) = get(format!("http://{}/metrics", bound.admin)).await;
    assert_eq!(code, 200);
    assert!(
        metrics.contains(r#"titan_grpc_requests_total{grpc_code="OK",grpc_method="Check",grpc_service="grpc.health.v1.Health"} 1"#),
        "{metrics}"
    );

    // Shutdown drains: a request in flight when it starts still gets its answer.
    let in_flight = tokio::spawn(get(format!("http://{}/slow", bound.http)));
    SLOW_STARTED.notified().await;
    shutdown.cancel();
    let ready_while_draining = eventually("readiness to drop", || async move {
        let (code, body) = get(format!("http://{}/readyz", bound.admin)).await;
        (code == 503).then_some(body)
    })
    .await;
    assert_eq!(ready_while_draining, "shutting down");
    // Not ready, but still serving new requests until the pre-stop delay is over: load
    // balancers take a moment to notice.
    assert_eq!(
        get(format!("http://{}/probe", bound.http)).await,
        (200, "probed".to_owned())
    );
    SLOW_RELEASE.notify_one();
    assert_eq!(in_flight.await.expect("join"), (200, "finished".to_owned()));
    server.await.expect("join").expect("clean stop");
    assert!(
        http.get(format!("http://{}/healthz", bound.admin))
            .send()
            .await
            .is_err(),
        "admin port closed"
    );
}

#[tokio::test]
async fn a_missing_datastore_is_named_at_start() {
    let err = runtime::serve(
        config(base_vars()).expect("config"),
        vec![probe()],
        CancellationToken::new(),
        |_| {},
    )
    .await
    .expect_err("no postgres configured");
    assert_eq!(
        err.to_string(),
        "service probe needs postgres: set TITAN_POSTGRES_URL (or postgres.url)"
    );
}

/// A port nothing listens on (bound once by the OS, then released).
fn unused_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// The admin server answers before the datastores do, so a start-up probe waits for a datastore
/// that is still starting instead of restarting the pod: `/healthz` is live, `/readyz` says what
/// it waits for, and a shutdown meanwhile is clean.
#[tokio::test]
async fn the_admin_port_answers_while_a_datastore_is_unreachable() {
    let admin = format!("127.0.0.1:{}", unused_port());
    let mut vars = base_vars();
    vars.insert("TITAN_ADMIN_ADDR", admin.clone());
    vars.insert(
        "TITAN_POSTGRES_URL",
        format!("postgres://titan:titan@127.0.0.1:{}/titan", unused_port()),
    );
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(runtime::serve(
        config(vars).expect("config"),
        vec![probe()],
        shutdown.clone(),
        |_| panic!("the servers must not be bound without the datastores"),
    ));
    let get = |path: &'static str| {
        let url = format!("http://{admin}{path}");
        async move {
            let r = reqwest::get(url).await.ok()?;
            Some((r.status().as_u16(), r.text().await.ok()?))
        }
    };
    assert_eq!(
        eventually("the admin server", || get("/healthz")).await,
        (200, "ok".to_owned())
    );
    let (code, why) = eventually("a reason to wait", || async {
        get("/readyz")
            .await
            .filter(|(_, body)| body != "connecting to the datastores")
    })
    .await;
    assert_eq!(code, 503);
    assert!(why.starts_with("waiting for the datastores: "), "{why}");
    assert!(!server.is_finished(), "serve gave up on the datastore");

    shutdown.cancel();
    server
        .await
        .expect("join")
        .expect("clean stop while waiting");
    assert!(get("/healthz").await.is_none(), "admin port closed");
}

/// Serves `services` on `db` and returns the admin address and the stop handle.
async fn serve_on(
    db: &TestPostgres,
    services: Vec<ServiceDef>,
) -> (
    std::net::SocketAddr,
    CancellationToken,
    tokio::task::JoinHandle<Result<(), KitError>>,
) {
    let mut vars = base_vars();
    vars.insert("TITAN_POSTGRES_URL", db.url.clone());
    let serving = serving(config(vars).expect("config"), services).await;
    (serving.bound.admin, serving.stop, serving.task)
}

/// Readiness checks only what a service's main path needs: with PostgreSQL unreachable, a
/// replica that needs it turns unready, one whose main path runs without it (flash-sale
/// buying runs on Redis) stays in the load balancer.
#[tokio::test]
async fn readiness_checks_only_the_main_path_datastores() {
    let db = TestPostgres::new().await;
    let (needs_pg, stop_a, a) = serve_on(&db, vec![probe()]).await;
    let (without_pg, stop_b, b) = serve_on(
        &db,
        vec![ServiceDef {
            ready_on: &[],
            ..probe()
        }],
    )
    .await;
    let ready = |admin: std::net::SocketAddr| async move {
        reqwest::get(format!("http://{admin}/readyz"))
            .await
            .expect("readyz")
            .status()
            .as_u16()
    };
    assert_eq!((ready(needs_pg).await, ready(without_pg).await), (200, 200));

    // PostgreSQL goes away for this database: no new connections, the open ones ended.
    let admin = sqlx::PgPool::connect(&titan_kit::testing::server_url("TITAN_TEST_POSTGRES_URL"))
        .await
        .expect("admin");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "ALTER DATABASE {} WITH ALLOW_CONNECTIONS false",
        db.database
    )))
    .execute(&admin)
    .await
    .expect("refuse connections");
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
        .bind(&db.database)
        .execute(&admin)
        .await
        .expect("terminate");
    eventually(
        "the replica that needs postgres to turn unready",
        || async { (ready(needs_pg).await == 503).then_some(()) },
    )
    .await;
    assert_eq!(ready(without_pg).await, 200, "still serving its main path");

    sqlx::query(sqlx::AssertSqlSafe(format!(
        "ALTER DATABASE {} WITH ALLOW_CONNECTIONS true",
        db.database
    )))
    .execute(&admin)
    .await
    .expect("allow connections");
    stop_a.cancel();
    stop_b.cancel();
    a.await.expect("join").expect("stop a");
    b.await.expect("join").expect("stop b");
}

/// Whether [`gated`]'s own condition holds; only `a_service_gate_holds_readiness` moves it.
static GATE_OPEN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// A service without datastores that is ready only once [`GATE_OPEN`] is set, as the router is
/// only once it has a table.
fn gated() -> ServiceDef {
    titan_kit::testing::service("gated", |ctx: ServiceContext| {
        async move {
            Ok::<_, KitError>(Mounted::new(&ctx).ready_when("first table", || {
                if GATE_OPEN.load(std::sync::atomic::Ordering::SeqCst) {
                    Ok(())
                } else {
                    Err("none loaded yet".into())
                }
            }))
        }
        .boxed()
    })
}

/// `Mounted::ready_when`: `/readyz` and gRPC health say not ready, with the service's reason,
/// until its own condition holds; the process serves meanwhile.
#[tokio::test]
async fn a_service_gate_holds_readiness() {
    let Serving {
        bound,
        stop: shutdown,
        task: server,
    } = serving(config(base_vars()).expect("config"), vec![gated()]).await;
    let readyz = || async move {
        let r = reqwest::get(format!("http://{}/readyz", bound.admin))
            .await
            .expect("readyz");
        (r.status().as_u16(), r.text().await.expect("body"))
    };
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", bound.grpc))
        .expect("uri")
        .connect()
        .await
        .expect("grpc");
    let health = || {
        let mut health = HealthClient::new(channel.clone());
        async move {
            health
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await
                .expect("check")
                .into_inner()
                .status
        }
    };

    assert_eq!(
        readyz().await,
        (503, "first table: none loaded yet".to_owned())
    );
    assert_eq!(health().await, ServingStatus::NotServing as i32);

    GATE_OPEN.store(true, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(readyz().await, (200, "ready".to_owned()));
    // gRPC health follows on its next round.
    eventually("gRPC health to serve", || async {
        (health().await == ServingStatus::Serving as i32).then_some(())
    })
    .await;

    shutdown.cancel();
    server.await.expect("join").expect("clean stop");
}

/// Where [`split`]'s background task found itself: its thread's name and nice value, its
/// PostgreSQL connection's application name and its Redis connection's `CLIENT ID`.
static BACKGROUND_SEEN: std::sync::OnceLock<(Option<String>, i32, String, i64)> =
    std::sync::OnceLock::new();

async fn application_name(pool: &sqlx::PgPool) -> Result<String, KitError> {
    Ok(
        sqlx::query_scalar("SELECT current_setting('application_name')")
            .fetch_one(pool)
            .await?,
    )
}

async fn client_id(redis: &titan_kit::datastores::redis::RedisHandle) -> Result<i64, KitError> {
    Ok(redis::cmd("CLIENT")
        .arg("ID")
        .query_async(&mut redis.conn.clone())
        .await?)
}

/// A service whose `/where` route answers its request path's application name and Redis
/// `CLIENT ID`, and whose background task records its own in [`BACKGROUND_SEEN`].
fn split() -> ServiceDef {
    ServiceDef {
        datastores: &[Datastore::Postgres, Datastore::Redis],
        ..titan_kit::testing::service("split", |ctx: ServiceContext| {
            async move {
                let (pool, redis) = (ctx.postgres()?, ctx.redis()?);
                let route = axum::routing::get(move || async move {
                    let app = application_name(&pool).await.expect("application name");
                    let id = client_id(&redis).await.expect("client id");
                    format!("{app} {id}")
                });
                Ok::<_, KitError>(
                    Mounted::new(&ctx)
                        .http(axum::Router::new().route("/where", route))
                        .background("split-where", |bg: ServiceContext| async move {
                            let seen = (
                                std::thread::current().name().map(str::to_owned),
                                rustix::process::getpriority_process(None)
                                    .map_err(|e| KitError::Other(e.to_string()))?,
                                application_name(&bg.postgres()?).await?,
                                client_id(&bg.redis()?).await?,
                            );
                            let _ = BACKGROUND_SEEN.set(seen);
                            bg.shutdown.cancelled().await;
                            Ok(())
                        }),
                )
            }
            .boxed()
        })
    }
}

/// `Mounted::background`: the task runs on the background runtime's threads, named and at a
/// priority ten steps lower, over PostgreSQL and Redis connections of its own; requests keep
/// theirs. It ends with the process.
#[tokio::test]
async fn background_work_runs_on_low_priority_threads_with_its_own_connections() {
    let db = TestPostgres::new().await;
    let redis = titan_kit::testing::TestRedis::new().await;
    let mut vars = base_vars();
    vars.insert("TITAN_POSTGRES_URL", db.url.clone());
    vars.insert("TITAN_REDIS_URL", redis.url.clone());
    vars.insert("TITAN_REDIS_KEY_PREFIX", redis.config.key_prefix.clone());
    let Serving {
        bound,
        stop: shutdown,
        task: server,
    } = serving(config(vars).expect("config"), vec![split()]).await;
    let own = rustix::process::getpriority_process(None).expect("own priority");

    let (thread, nice, background_app, background_id) =
        eventually("the background task to record where it runs", || async {
            BACKGROUND_SEEN.get().cloned()
        })
        .await;
    assert_eq!(
        (thread.as_deref(), nice, background_app.as_str()),
        (
            Some(titan_kit::background::THREAD_NAME),
            (own + titan_kit::background::NICENESS).min(19),
            runtime::BACKGROUND_APPLICATION,
        )
    );
    let answer = reqwest::get(format!("http://{}/where", bound.http))
        .await
        .expect("where")
        .text()
        .await
        .expect("body");
    let (request_app, request_id) = answer.split_once(' ').expect("two words");
    assert_eq!(request_app, "titan");
    assert_ne!(
        request_id.parse::<i64>().expect("client id"),
        background_id,
        "the request path's Redis connection is not the background runtime's"
    );

    shutdown.cancel();
    server.await.expect("join").expect("clean stop");
}
