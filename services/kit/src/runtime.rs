//! The process runtime behind `titan serve`: starts the admin server (`/metrics`, `/healthz`,
//! `/readyz`) first, connects the datastores the chosen services need (waiting for them while
//! they start, not ready meanwhile), mounts the services, runs their background work on the
//! background runtime ([`crate::background`]) with clients of its own, and runs the gRPC server
//! (with health and reflection) and the HTTP server until SIGTERM, then drains in-flight
//! requests (and WebSockets, closed with 1001) within the grace period. Also `migrate`, shared
//! with `titan migrate`.

use std::{
    collections::BTreeSet,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use axum::{Router, extract::State, http::StatusCode, routing::get, serve::ListenerExt};
use futures::future::BoxFuture;
use prometheus::Registry;
use sqlx::PgPool;
use tokio::{net::TcpListener, sync::watch, task::JoinSet};
use tokio_stream::{
    StreamExt,
    wrappers::{ReceiverStream, TcpListenerStream},
};
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tonic_health::{ServingStatus, server::HealthReporter};

use crate::{
    KitError,
    auth::Authenticator,
    background::BackgroundRuntime,
    config::{Config, PostgresConfig},
    datastores::{clickhouse, postgres, redis::RedisHandle},
    deadline::DeadlineLayer,
    events::relay::{BusMetrics, Relay},
    housekeeping,
    load_shed::ConcurrencyLimitLayer,
    metrics::{GrpcMetrics, GrpcMetricsLayer},
    objects::ObjectStorage,
    service::{Datastore, ReadinessGate, ServiceContext, ServiceDef},
    tls::{self, Certificates, TlsListener},
};

/// How often readiness is re-checked to update the gRPC health status.
const HEALTH_INTERVAL: Duration = Duration::from_secs(5);
/// The first pause before connecting the datastores again; it doubles up to the maximum.
const CONNECT_RETRY_FIRST: Duration = Duration::from_millis(500);
/// The longest pause between attempts at connecting the datastores.
const CONNECT_RETRY_MAX: Duration = Duration::from_secs(10);
/// PostgreSQL connections of the background runtime's pool at most (`postgres.maxConnections`
/// if lower): its tasks (a relay per service, event consumers, housekeeping, the services'
/// own) each hold one briefly, and waiting for one costs no caller anything.
const BACKGROUND_POSTGRES_CONNECTIONS: u32 = 4;
/// What PostgreSQL's `pg_stat_activity` shows for the background runtime's connections.
pub const BACKGROUND_APPLICATION: &str = "titan-background";

/// Where the process is with its datastores, as the admin server reports it.
#[derive(Debug, Clone)]
enum Connection {
    /// Not connected yet: why.
    Waiting(String),
    /// Connected: readiness is what these clients answer.
    Connected(Box<Clients>),
}

/// The datastore clients of a process, connected once and shared by its services.
#[derive(Debug, Clone, Default)]
struct Clients {
    postgres: Option<PgPool>,
    redis: Option<RedisHandle>,
    clickhouse: Option<::clickhouse::Client>,
    objects: Option<ObjectStorage>,
    /// What readiness checks: the `ready_on` datastores of the services served...
    ready_on: BTreeSet<Datastore>,
    /// ...and the services' own conditions (`Mounted::ready_when`), set once they are mounted.
    gates: Vec<ReadinessGate>,
}

impl Clients {
    /// The datastores `services` need, each checked to be configured (the first that is not
    /// is named: no waiting can fix a missing setting).
    fn needed(config: &Config, services: &[ServiceDef]) -> Result<BTreeSet<Datastore>, KitError> {
        let needed: BTreeSet<Datastore> = services
            .iter()
            .flat_map(|s| s.datastores.iter().copied())
            .collect();
        for &d in &needed {
            let configured = match d {
                Datastore::Postgres => config.postgres.is_some(),
                Datastore::Redis => config.redis.is_some(),
                Datastore::ClickHouse => config.clickhouse.is_some(),
                Datastore::ObjectStorage => config.object_storage.is_some(),
            };
            if !configured {
                let service = services
                    .iter()
                    .find(|s| s.datastores.contains(&d))
                    .map_or("?", |s| s.name);
                return Err(KitError::MissingDatastore {
                    service: service.to_owned(),
                    datastore: d.name(),
                    hint: d.hint(),
                });
            }
        }
        Ok(needed)
    }

    /// One attempt at connecting every datastore of `needed`, PostgreSQL as `application`.
    async fn connect(
        config: &Config,
        needed: &BTreeSet<Datastore>,
        ready_on: &BTreeSet<Datastore>,
        application: &str,
    ) -> Result<Self, KitError> {
        let mut clients = Self {
            ready_on: ready_on.clone(),
            ..Self::default()
        };
        for d in needed {
            match (d, &config.postgres, &config.redis, &config.clickhouse) {
                (Datastore::Postgres, Some(cfg), _, _) => {
                    clients.postgres = Some(postgres::connect(cfg, application).await?);
                }
                (Datastore::Redis, _, Some(cfg), _) => {
                    clients.redis = Some(RedisHandle::connect(cfg).await?);
                }
                (Datastore::ClickHouse, _, _, Some(cfg)) => {
                    clients.clickhouse = Some(clickhouse::connect(cfg)?);
                }
                (Datastore::ObjectStorage, ..) => {
                    if let Some(cfg) = &config.object_storage {
                        clients.objects = Some(ObjectStorage::new(cfg)?);
                    }
                }
                // `needed` checked that each is configured.
                _ => {}
            }
        }
        Ok(clients)
    }

    /// Connects the datastores `services` need, trying again while they do not answer (a
    /// datastore may still be starting, as PostgreSQL does through initdb) and publishing why
    /// on `waiting`, so the admin server can say so meanwhile. `None` when `shutdown` comes
    /// first; a setting that is missing or invalid fails at once.
    async fn connect_patiently(
        config: &Config,
        services: &[ServiceDef],
        shutdown: &CancellationToken,
        waiting: &watch::Sender<Connection>,
    ) -> Result<Option<Self>, KitError> {
        let needed = Self::needed(config, services)?;
        let ready_on: BTreeSet<Datastore> = services
            .iter()
            .flat_map(|s| s.ready_on.iter().copied())
            .collect();
        let mut pause = CONNECT_RETRY_FIRST;
        loop {
            match Self::connect(config, &needed, &ready_on, "titan").await {
                Ok(clients) => return Ok(Some(clients)),
                Err(e @ KitError::Config { .. }) => return Err(e),
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?pause, "cannot connect the datastores yet");
                    waiting.send_replace(Connection::Waiting(format!(
                        "waiting for the datastores: {e}"
                    )));
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return Ok(None),
                () = tokio::time::sleep(pause) => {}
            }
            pause = (pause * 2).min(CONNECT_RETRY_MAX);
        }
    }

    /// The background runtime's own clients, connected on it (see [`crate::background`]): at
    /// most [`BACKGROUND_POSTGRES_CONNECTIONS`] to PostgreSQL, one to Redis. Called once the
    /// process's own clients connected, so one attempt: a failure fails the start.
    async fn connect_background(
        config: &Config,
        services: &[ServiceDef],
        runtime: &BackgroundRuntime,
    ) -> Result<Self, KitError> {
        let needed = Self::needed(config, services)?;
        let mut config = config.clone();
        if let Some(pg) = &mut config.postgres {
            pg.max_connections = pg.max_connections.min(BACKGROUND_POSTGRES_CONNECTIONS);
        }
        if let Some(redis) = &mut config.redis {
            redis.connections = 1;
        }
        runtime
            .handle()
            .spawn(async move {
                Self::connect(&config, &needed, &BTreeSet::new(), BACKGROUND_APPLICATION).await
            })
            .await
            .map_err(|e| KitError::Other(format!("connecting the background runtime: {e}")))?
    }

    /// `ctx` over these clients.
    fn context(&self, ctx: ServiceContext) -> ServiceContext {
        ServiceContext {
            postgres: self.postgres.clone(),
            redis: self.redis.clone(),
            clickhouse: self.clickhouse.clone(),
            objects: self.objects.clone(),
            ..ctx
        }
    }

    /// Every datastore readiness depends on answers; the first that does not is named.
    async fn check(&self) -> Result<(), String> {
        let timeout = Duration::from_secs(2);
        let within =
            |what: &'static str, r: Result<Result<(), KitError>, tokio::time::error::Elapsed>| {
                match r {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(format!("{what}: {e}")),
                    Err(_) => Err(format!("{what}: no answer within {timeout:?}")),
                }
            };
        let checked = |d: Datastore| self.ready_on.contains(&d);
        if let Some(pool) = self
            .postgres
            .as_ref()
            .filter(|_| checked(Datastore::Postgres))
        {
            within(
                "postgres",
                tokio::time::timeout(timeout, postgres::ping(pool)).await,
            )?;
        }
        if let Some(redis) = self.redis.as_ref().filter(|_| checked(Datastore::Redis)) {
            within("redis", tokio::time::timeout(timeout, redis.ping()).await)?;
        }
        if let Some(ch) = self
            .clickhouse
            .as_ref()
            .filter(|_| checked(Datastore::ClickHouse))
        {
            within(
                "clickhouse",
                tokio::time::timeout(timeout, clickhouse::ping(ch)).await,
            )?;
        }
        if let Some(objects) = self
            .objects
            .as_ref()
            .filter(|_| checked(Datastore::ObjectStorage))
        {
            within(
                "object storage",
                tokio::time::timeout(timeout, async {
                    objects.ping().await.map_err(KitError::from)
                })
                .await,
            )?;
        }
        self.gates.iter().try_for_each(ReadinessGate::check)
    }
}

/// Applies kit's and then each service's PostgreSQL migrations, then their ClickHouse ones.
pub async fn migrate(config: &Config, services: &[ServiceDef]) -> Result<(), KitError> {
    // Kit's tables (the outbox, idempotency keys, privacy jobs) serve every service that uses
    // PostgreSQL, with migrations of its own or not.
    let with_postgres: Vec<&ServiceDef> = services
        .iter()
        .filter(|s| s.migrator.is_some() || s.datastores.contains(&Datastore::Postgres))
        .collect();
    if let Some(first) = with_postgres.first() {
        let cfg = config.postgres.as_ref().ok_or(KitError::MissingDatastore {
            service: first.name.to_owned(),
            datastore: "postgres",
            hint: Datastore::Postgres.hint(),
        })?;
        // A migration may rightly take longer than any request (an index build): no limit.
        let unlimited = PostgresConfig {
            statement_timeout: Duration::ZERO,
            ..cfg.clone()
        };
        let pool = postgres::connect(&unlimited, "titan-migrate").await?;
        postgres::migrate(&pool, "kit", postgres::kit_migrator()).await?;
        for service in with_postgres {
            if let Some(migrator) = service.migrator {
                postgres::migrate(&pool, service.name, migrator()).await?;
            }
        }
        pool.close().await;
    }
    let with_clickhouse: Vec<&ServiceDef> = services
        .iter()
        .filter(|s| !s.clickhouse_migrations.is_empty())
        .collect();
    if let Some(first) = with_clickhouse.first() {
        let cfg = config
            .clickhouse
            .as_ref()
            .ok_or(KitError::MissingDatastore {
                service: first.name.to_owned(),
                datastore: "clickhouse",
                hint: Datastore::ClickHouse.hint(),
            })?;
        let client = clickhouse::connect(cfg)?;
        for service in with_clickhouse {
            clickhouse::migrate(&client, service.name, service.clickhouse_migrations).await?;
        }
    }
    Ok(())
}

/// The addresses the servers actually bound (port 0 in the config picks a free one).
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    pub admin: SocketAddr,
}

#[derive(Clone)]
struct AdminState {
    registry: Registry,
    connection: watch::Receiver<Connection>,
    draining: Arc<AtomicBool>,
}

/// Serves `services` until `shutdown` is cancelled (the binary cancels it on SIGTERM/SIGINT).
/// `on_bound` learns the bound addresses once every server listens.
pub async fn serve(
    config: Config,
    services: Vec<ServiceDef>,
    shutdown: CancellationToken,
    on_bound: impl FnOnce(Bound),
) -> Result<(), KitError> {
    let config = Arc::new(config);
    let registry = Registry::new();
    let grpc_metrics = GrpcMetrics::new(&registry)?;
    let bus_metrics = BusMetrics::new(&registry)?;
    let auth = Authenticator::new(&config.auth)?;
    auth.register(&registry)?;
    // A certificate that does not load fails the start, naming its file.
    let certificates = match &config.tls.server {
        Some(files) => Some(Certificates::load(
            &files.cert_file,
            &files.key_file,
            &registry,
        )?),
        None => None,
    };
    // The admin server answers before the datastores are connected: `/healthz` says the
    // process lives and `/readyz` why it is not ready yet, so start-up probes wait for a
    // datastore that is still starting instead of killing the pod.
    let admin_listener = bind(config.listen.admin, "listen.admin").await?;
    let admin_addr = local_addr(&admin_listener)?;
    let (connection_tx, connection) =
        watch::channel(Connection::Waiting("connecting to the datastores".into()));
    let draining = Arc::new(AtomicBool::new(false));
    let admin_state = AdminState {
        registry: registry.clone(),
        connection,
        draining: draining.clone(),
    };
    let admin = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz_handler))
        .with_state(admin_state);
    let admin_stop = CancellationToken::new();
    // Whichever way `serve` returns, the admin server stops with it.
    let _admin_stops = admin_stop.clone().drop_guard();
    let admin_server = {
        let stop = admin_stop.clone();
        tokio::spawn(async move {
            axum::serve(admin_listener, admin)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
                .map_err(|e| KitError::Io {
                    what: "admin server".into(),
                    source: e,
                })
        })
    };
    let connected = Clients::connect_patiently(&config, &services, &shutdown, &connection_tx).await;
    let mut clients = match connected {
        Ok(Some(clients)) => clients,
        outcome => {
            admin_stop.cancel();
            let _ = admin_server.await;
            return outcome.map(drop);
        }
    };
    let background_runtime = BackgroundRuntime::start()?;
    let background_clients =
        Clients::connect_background(&config, &services, &background_runtime).await?;
    let tasks_stop = CancellationToken::new();
    let realtime = crate::realtime::Realtime::new(
        config.realtime.clone(),
        auth.clone(),
        &registry,
        clients.redis.clone(),
    )?;

    let mut routes = Routes::default();
    let mut http = Router::new();
    let mut grpc_names = Vec::new();
    let mut tasks: Vec<(String, crate::service::Task)> = Vec::new();
    // Run on the background runtime, from its own clients.
    let mut background_tasks: Vec<(String, crate::service::Task)> = Vec::new();
    let mut reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET);
    let mut reflection_alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET);
    for def in &services {
        let ctx = ServiceContext {
            name: def.name,
            config: config.clone(),
            registry: registry.clone(),
            auth: auth.clone(),
            shutdown: tasks_stop.clone(),
            realtime: realtime.clone(),
            postgres: None,
            redis: None,
            clickhouse: None,
            objects: None,
        };
        let background = background_clients.context(ctx.clone());
        let ctx = clients.context(ctx);
        let mounted = (def.mount)(ctx.clone()).await?;
        for add in mounted.grpc {
            routes = add(routes);
        }
        http = http.merge(mounted.http);
        tasks.extend(mounted.tasks);
        for (name, build) in mounted.background {
            let background = background.clone();
            // Built where it runs: whatever the builder opens or spawns is the background
            // runtime's.
            background_tasks.push((name, Box::pin(async move { build(background).await })));
        }
        clients.gates.extend(mounted.readiness);
        if let Some(handler) = mounted.personal_data {
            let pool = ctx.postgres()?;
            crate::privacy::register(&pool, def.name).await?;
            // On the main runtime: the service's handler holds the mount's clients.
            let participant = crate::privacy::Participant::new(
                def.name,
                pool,
                ctx.redis()?,
                handler,
                &ctx.instance(),
                &config.events,
            )
            .publishing(def.publishes_events);
            tasks.push((
                format!("{}-privacy", def.name),
                Box::pin(participant.run(tasks_stop.clone())),
            ));
        }
        if def.publishes_events {
            let relay = Relay::new(
                background.postgres()?,
                background.redis()?,
                def.name,
                &config.events,
            )
            .with_metrics(bus_metrics.clone());
            background_tasks.push((
                format!("{}-outbox-relay", def.name),
                Box::pin(relay.run(tasks_stop.clone())),
            ));
        }
        reflection = reflection.register_encoded_file_descriptor_set(def.file_descriptor_set);
        reflection_alpha =
            reflection_alpha.register_encoded_file_descriptor_set(def.file_descriptor_set);
        for name in &mounted.grpc_names {
            reflection = reflection.with_service_name(*name);
            reflection_alpha = reflection_alpha.with_service_name(*name);
        }
        grpc_names.extend(mounted.grpc_names);
    }
    if let Some(refresher) = auth.jwks_refresher(tasks_stop.clone()) {
        tasks.push(("auth-jwks-refresh".into(), Box::pin(refresher)));
    }
    if let Some(certificates) = &certificates {
        let watch = certificates
            .clone()
            .watch(config.tls.reload, tasks_stop.clone());
        tasks.push((
            "tls-reload".into(),
            Box::pin(async move {
                watch.await;
                Ok(())
            }),
        ));
    }
    if let Some(pool) = &background_clients.postgres {
        background_tasks.push((
            "housekeeping".into(),
            Box::pin(housekeeping::run(pool.clone(), tasks_stop.clone())),
        ));
    }
    reflection = reflection.with_service_name("grpc.health.v1.Health");
    reflection_alpha = reflection_alpha.with_service_name("grpc.health.v1.Health");

    let (health, health_service) = tonic_health::server::health_reporter();
    let ready = clients.check().await.is_ok();
    set_health(&health, &grpc_names, ready).await;

    let reflection_v1 = reflection
        .build_v1()
        .map_err(|e| KitError::Other(format!("reflection: {e}")))?;
    let reflection_v1alpha = reflection_alpha
        .build_v1alpha()
        .map_err(|e| KitError::Other(format!("reflection: {e}")))?;
    let routes = routes
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha);

    let grpc_listener = bind(config.listen.grpc, "listen.grpc").await?;
    let http_listener = bind(config.listen.http, "listen.http").await?;
    let bound = Bound {
        grpc: local_addr(&grpc_listener)?,
        http: local_addr(&http_listener)?,
        admin: admin_addr,
    };
    tracing::info!(grpc = %bound.grpc, http = %bound.http, admin = %bound.admin, services = ?services.iter().map(|s| s.name).collect::<Vec<_>>(), "listening");
    on_bound(bound);

    // Without an exporter the trace layers are left out: no span, no header read per request.
    let traced = config.tracing.otlp_endpoint.is_some();
    if traced {
        http = http.layer(crate::telemetry::TraceContextLayer::http());
    }
    // Servers stop on `drain`, after readiness has gone false.
    let drain = CancellationToken::new();
    let mut servers = JoinSet::new();
    {
        let drain = drain.clone();
        let layer = GrpcMetricsLayer::new(grpc_metrics);
        // Inside the metrics layer, so shed and timed-out calls are counted with their code;
        // the deadline inside the limit, so a call past its deadline gives its permit back.
        let limit = ConcurrencyLimitLayer::new(config.max_concurrent_calls);
        let deadline = DeadlineLayer::new(config.request_timeout);
        let router = tonic::transport::Server::builder()
            .layer(tower::util::option_layer(
                traced.then(crate::telemetry::TraceContextLayer::grpc),
            ))
            .layer(layer)
            .layer(limit)
            .layer(deadline)
            .add_routes(routes);
        let serving: BoxFuture<'static, Result<(), tonic::transport::Error>> = match &certificates {
            Some(certificates) => {
                let accepted = tls::accept(
                    grpc_listener,
                    certificates.server_config(&[b"h2"])?,
                    certificates,
                    "grpc",
                    drain.clone(),
                );
                Box::pin(
                    router.serve_with_incoming_shutdown(
                        ReceiverStream::new(accepted)
                            .map(|(stream, _)| Ok::<_, std::io::Error>(stream)),
                        drain.cancelled_owned(),
                    ),
                )
            }
            None => Box::pin(router.serve_with_incoming_shutdown(
                // Without TCP_NODELAY an answer's last small write waits for the client's
                // delayed ACK: 40 ms added to every unary call (seen by titan-bench chat).
                TcpListenerStream::new(grpc_listener).map(|accepted| {
                    accepted.and_then(|stream| stream.set_nodelay(true).map(|()| stream))
                }),
                drain.cancelled_owned(),
            )),
        };
        servers.spawn(async move {
            serving
                .await
                .map_err(|e| KitError::Other(format!("grpc server: {e}")))
        });
    }
    {
        // Routes may read the peer address (`ConnectInfo<SocketAddr>`): livestream's RTMP
        // callbacks accept only the cell's media server.
        let app = http.into_make_service_with_connect_info::<SocketAddr>();
        let stop = drain.clone().cancelled_owned();
        let serving: BoxFuture<'static, std::io::Result<()>> = match &certificates {
            Some(certificates) => {
                let local = local_addr(&http_listener)?;
                let accepted = tls::accept(
                    http_listener,
                    certificates.server_config(&[b"h2", b"http/1.1"])?,
                    certificates,
                    "http",
                    drain.clone(),
                );
                // Tapped with nothing: axum gives `ConnectInfo<SocketAddr>` to any tapped
                // listener, and only to its own untapped ones.
                let listener = TlsListener::new(accepted, local).tap_io(|_| {});
                Box::pin(
                    axum::serve(listener, app)
                        .with_graceful_shutdown(stop)
                        .into_future(),
                )
            }
            None => Box::pin(
                // WebSocket frames are small single writes: Nagle would hold each behind the last.
                axum::serve(
                    http_listener.tap_io(|stream| {
                        if let Err(e) = stream.set_nodelay(true) {
                            tracing::warn!(error = %e, "cannot set TCP_NODELAY on an http connection");
                        }
                    }),
                    app,
                )
                .with_graceful_shutdown(stop)
                .into_future(),
            ),
        };
        servers.spawn(async move {
            serving.await.map_err(|e| KitError::Io {
                what: "http server".into(),
                source: e,
            })
        });
    }
    connection_tx.send_replace(Connection::Connected(Box::new(clients.clone())));

    let mut running = JoinSet::new();
    for (name, task) in tasks {
        running.spawn(async move { (name, task.await) });
    }
    for (name, task) in background_tasks {
        running.spawn_on(
            async move { (name, task.await) },
            background_runtime.handle(),
        );
    }
    let health_loop = {
        let (health, names, clients, stop) = (
            health.clone(),
            grpc_names.clone(),
            clients.clone(),
            tasks_stop.clone(),
        );
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(HEALTH_INTERVAL) => {}
                }
                let result = clients.check().await;
                if let Err(e) = &result {
                    tracing::warn!(error = %e, "not ready");
                }
                set_health(&health, &names, result.is_ok()).await;
            }
        })
    };

    // Run until asked to stop, or until a server or task fails (then exit non-zero, so that
    // Kubernetes restarts the pod rather than leaving it half-working).
    let mut failure = None;
    tokio::select! {
        () = shutdown.cancelled() => tracing::info!("shutting down"),
        Some(done) = servers.join_next() => failure = Some(joined(done).err().unwrap_or_else(|| KitError::Other("a server stopped unexpectedly".into()))),
        Some(done) = running.join_next() => {
            let (name, result) = done.map_err(|e| KitError::Other(format!("task panicked: {e}")))?;
            failure = Some(result.err().unwrap_or_else(|| KitError::Other(format!("task {name} stopped unexpectedly"))));
        }
    }

    // Drain: stop being ready first and keep serving while load balancers notice (unless a
    // server already failed), then stop accepting, end streams and background tasks, and let
    // in-flight calls finish within what is left of the grace period.
    draining.store(true, Ordering::SeqCst);
    set_health(&health, &grpc_names, false).await;
    if failure.is_none() {
        tokio::time::sleep(config.pre_stop_delay).await;
    }
    drain.cancel();
    tasks_stop.cancel();
    // WebSockets get 1001 once their queues are flushed; upgraded connections are no longer
    // the HTTP server's, so they are waited for here.
    realtime.drain();
    let grace = config.shutdown_grace.saturating_sub(config.pre_stop_delay);
    let finished = tokio::time::timeout(grace, async {
        realtime.drained().await;
        while let Some(done) = servers.join_next().await {
            if let Err(e) = joined(done) {
                tracing::error!(error = %e, "server failed while draining");
            }
        }
        while let Some(done) = running.join_next().await {
            if let Ok((name, Err(e))) = done {
                tracing::error!(task = %name, error = %e, "task failed while stopping");
            }
        }
    })
    .await;
    if finished.is_err() {
        tracing::warn!(?grace, "grace period over; abandoning unfinished requests");
    }
    health_loop.abort();
    admin_stop.cancel();
    let _ = admin_server.await;
    for pool in [&clients.postgres, &background_clients.postgres]
        .into_iter()
        .flatten()
    {
        pool.close().await;
    }
    drop(background_runtime);
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn joined(done: Result<Result<(), KitError>, tokio::task::JoinError>) -> Result<(), KitError> {
    done.map_err(|e| KitError::Other(format!("server task panicked: {e}")))?
}

async fn bind(addr: SocketAddr, setting: &str) -> Result<TcpListener, KitError> {
    TcpListener::bind(addr).await.map_err(|e| KitError::Io {
        what: format!("cannot listen on {addr} ({setting})"),
        source: e,
    })
}

fn local_addr(listener: &TcpListener) -> Result<SocketAddr, KitError> {
    listener.local_addr().map_err(|e| KitError::Io {
        what: "local address".into(),
        source: e,
    })
}

async fn set_health(health: &HealthReporter, names: &[&'static str], ready: bool) {
    let status = if ready {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    };
    health.set_service_status("", status).await;
    for name in names {
        health.set_service_status(*name, status).await;
    }
}

async fn metrics_handler(
    State(state): State<AdminState>,
) -> ([(&'static str, &'static str); 1], String) {
    (
        [("content-type", "text/plain; version=0.0.4")],
        crate::metrics::render(&state.registry),
    )
}

async fn readyz_handler(State(state): State<AdminState>) -> (StatusCode, String) {
    if state.draining.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down".into());
    }
    let connection = state.connection.borrow().clone();
    match connection {
        Connection::Waiting(why) => (StatusCode::SERVICE_UNAVAILABLE, why),
        Connection::Connected(clients) => match clients.check().await {
            Ok(()) => (StatusCode::OK, "ready".into()),
            Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e),
        },
    }
}
