//! How a service plugs into the `titan` binary: a [`ServiceDef`] (one line in the binary's
//! table) whose `mount` receives a [`ServiceContext`] with the datastores it declared and
//! returns what to serve ([`Mounted`]): gRPC services (behind token verification), HTTP
//! routes, background tasks and readiness conditions of its own.

use std::{sync::Arc, time::Duration};

use futures::future::BoxFuture;
use prometheus::Registry;
use sqlx::{PgPool, migrate::Migrator};
use tokio_util::sync::CancellationToken;
use tonic::{body::Body, server::NamedService, service::Routes};

use crate::{
    KitError,
    auth::{Authenticated, Authenticator},
    config::Config,
    datastores::redis::RedisHandle,
    events::{Consumer, ConsumerOptions, Handler},
    objects::ObjectStorage,
};

/// A condition of a service's own that readiness waits for besides its datastores (the router's
/// first table): `Err` says, in words for `/readyz`, what it still waits for.
#[derive(Clone)]
pub(crate) struct ReadinessGate {
    pub(crate) name: String,
    check: Arc<dyn Fn() -> Result<(), String> + Send + Sync>,
}

impl ReadinessGate {
    /// `Err("<name>: <why>")` while the service is not ready to serve.
    pub(crate) fn check(&self) -> Result<(), String> {
        (self.check)().map_err(|why| format!("{}: {why}", self.name))
    }
}

impl std::fmt::Debug for ReadinessGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadinessGate")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// A datastore a service needs before it can serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Datastore {
    Postgres,
    Redis,
    ClickHouse,
    /// The cell's S3 bucket (`kit::objects`).
    ObjectStorage,
}

impl Datastore {
    pub fn name(self) -> &'static str {
        match self {
            Self::Postgres => "postgres",
            Self::Redis => "redis",
            Self::ClickHouse => "clickhouse",
            Self::ObjectStorage => "object storage",
        }
    }

    /// The setting that supplies it, for error messages.
    pub fn hint(self) -> &'static str {
        match self {
            Self::Postgres => "TITAN_POSTGRES_URL (or postgres.url)",
            Self::Redis => "TITAN_REDIS_URL (or redis.url)",
            Self::ClickHouse => "TITAN_CLICKHOUSE_URL (or clickhouse.url)",
            Self::ObjectStorage => {
                "TITAN_S3_BUCKET, TITAN_S3_ACCESS_KEY_ID and TITAN_S3_SECRET_ACCESS_KEY (or objectStorage)"
            }
        }
    }
}

/// One Titan service, as the binary's registry lists it.
#[derive(Debug, Clone, Copy)]
pub struct ServiceDef {
    /// `titan serve <name>`; also the owner of its migrations and the name of its event stream.
    pub name: &'static str,
    pub datastores: &'static [Datastore],
    /// Those of `datastores` its main path cannot serve without; readiness checks only these,
    /// so a blip of another (PostgreSQL for flash-sale buying, which runs on Redis) does not
    /// take every replica out of the load balancer at once.
    pub ready_on: &'static [Datastore],
    /// Its PostgreSQL migrations, embedded with `sqlx::migrate!`.
    pub migrator: Option<fn() -> Migrator>,
    /// Its ClickHouse tables, applied by `titan migrate` like the PostgreSQL ones.
    pub clickhouse_migrations: &'static [crate::datastores::clickhouse::Migration],
    /// Whether it writes events to the outbox; the runtime then runs its relay.
    pub publishes_events: bool,
    /// Its encoded `FileDescriptorSet`, served by reflection.
    pub file_descriptor_set: &'static [u8],
    pub mount: fn(ServiceContext) -> BoxFuture<'static, Result<Mounted, KitError>>,
}

/// Everything a service gets from the runtime.
#[derive(Debug, Clone)]
pub struct ServiceContext {
    pub name: &'static str,
    pub config: Arc<Config>,
    /// Register the service's own metrics here.
    pub registry: Registry,
    pub auth: Authenticator,
    /// Cancelled on shutdown; background tasks return when it is.
    pub shutdown: CancellationToken,
    /// The process's WebSockets: routes for [`Mounted::http`], topics across replicas.
    pub realtime: crate::realtime::Realtime,
    pub(crate) postgres: Option<PgPool>,
    pub(crate) redis: Option<RedisHandle>,
    pub(crate) clickhouse: Option<clickhouse::Client>,
    pub(crate) objects: Option<ObjectStorage>,
}

impl ServiceContext {
    pub fn postgres(&self) -> Result<PgPool, KitError> {
        self.postgres
            .clone()
            .ok_or_else(|| self.missing(Datastore::Postgres))
    }

    pub fn redis(&self) -> Result<RedisHandle, KitError> {
        self.redis
            .clone()
            .ok_or_else(|| self.missing(Datastore::Redis))
    }

    pub fn clickhouse(&self) -> Result<clickhouse::Client, KitError> {
        self.clickhouse
            .clone()
            .ok_or_else(|| self.missing(Datastore::ClickHouse))
    }

    /// The cell's bucket, for a service that declared [`Datastore::ObjectStorage`].
    pub fn objects(&self) -> Result<ObjectStorage, KitError> {
        self.objects
            .clone()
            .ok_or_else(|| self.missing(Datastore::ObjectStorage))
    }

    fn missing(&self, datastore: Datastore) -> KitError {
        KitError::MissingDatastore {
            service: self.name.to_owned(),
            datastore: datastore.name(),
            hint: datastore.hint(),
        }
    }

    /// The service's own section of the config file (`services.<name>`), for its typed config
    /// (in the `crds` crate) to parse.
    pub fn section(&self) -> Option<serde_yaml::Value> {
        self.config.services.get(self.name).cloned()
    }

    /// The service's section parsed by `parse` (its typed config's `from_yaml`); a refusal
    /// names the section, so start-up fails with `invalid setting services.<name>: …`.
    pub fn settings<T, E: std::fmt::Display>(
        &self,
        parse: impl FnOnce(Option<serde_yaml::Value>) -> Result<T, E>,
    ) -> Result<T, KitError> {
        parse(self.section())
            .map_err(|e| KitError::config(format!("services.{}", self.name), e.to_string()))
    }

    /// This replica's name among consumers: the pod name in a cluster, host and pid elsewhere.
    pub fn instance(&self) -> String {
        std::env::var("POD_NAME")
            .or_else(|_| std::env::var("HOSTNAME"))
            .map(|host| format!("{host}-{}", std::process::id()))
            .unwrap_or_else(|_| format!("pid-{}", std::process::id()))
    }
}

/// A background task the runtime runs until shutdown.
pub type Task = BoxFuture<'static, Result<(), KitError>>;

/// A task of the background runtime, built there from the context of its own clients
/// ([`Mounted::background`]).
pub type BackgroundTask = Box<dyn FnOnce(ServiceContext) -> Task + Send>;

/// What a service serves.
pub struct Mounted {
    /// Each adds one gRPC service to the process's routes (tonic routers cannot be merged).
    pub(crate) grpc: Vec<Box<dyn FnOnce(Routes) -> Routes + Send>>,
    pub(crate) grpc_names: Vec<&'static str>,
    pub(crate) http: axum::Router,
    pub(crate) tasks: Vec<(String, Task)>,
    pub(crate) background: Vec<(String, BackgroundTask)>,
    pub(crate) readiness: Vec<ReadinessGate>,
    pub(crate) personal_data: Option<crate::privacy::Handler>,
    auth: Authenticator,
    shutdown: CancellationToken,
}

impl std::fmt::Debug for Mounted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mounted")
            .field("grpc", &self.grpc_names)
            .field("personal_data", &self.personal_data.is_some())
            .field(
                "tasks",
                &self.tasks.iter().map(|t| &t.0).collect::<Vec<_>>(),
            )
            .field(
                "background",
                &self.background.iter().map(|t| &t.0).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Mounted {
    pub fn new(ctx: &ServiceContext) -> Self {
        Self {
            grpc: Vec::new(),
            grpc_names: Vec::new(),
            http: axum::Router::new(),
            tasks: Vec::new(),
            background: Vec::new(),
            readiness: Vec::new(),
            personal_data: None,
            auth: ctx.auth.clone(),
            shutdown: ctx.shutdown.clone(),
        }
    }

    /// Serves a tonic service behind token verification ([`Authenticated`]).
    pub fn grpc<S>(mut self, svc: S) -> Self
    where
        S: tower_service::Service<
                http::Request<Body>,
                Response = http::Response<Body>,
                Error = std::convert::Infallible,
            > + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        self.grpc_names.push(S::NAME);
        let svc = Authenticated::new(svc, self.auth.clone());
        self.grpc
            .push(Box::new(move |routes: Routes| routes.add_service(svc)));
        self
    }

    /// Serves HTTP routes (WebSockets, callbacks) on the HTTP port.
    pub fn http(mut self, router: axum::Router) -> Self {
        self.http = std::mem::take(&mut self.http).merge(router);
        self
    }

    /// Keeps the process not ready (`/readyz` 503 with the reason, gRPC health NOT_SERVING)
    /// while `check` answers `Err(why)`, on top of the datastores of `ready_on`: for state a
    /// service must have before any call can succeed, so that load balancers send nothing to a
    /// replica that would refuse everything. Checked on every `/readyz` and health round, so it
    /// must be cheap and must not block.
    pub fn ready_when(
        mut self,
        name: impl Into<String>,
        check: impl Fn() -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        self.readiness.push(ReadinessGate {
            name: name.into(),
            check: Arc::new(check),
        });
        self
    }

    /// Declares that the service holds personal data: the runtime registers it with the privacy
    /// jobs and runs `handler` for each export and erasure (`kit::privacy`). The service must
    /// declare PostgreSQL and Redis, where the jobs and their announcements live.
    pub fn personal_data(mut self, handler: impl crate::privacy::PersonalData) -> Self {
        self.personal_data = Some(crate::privacy::Handler::new(handler));
        self
    }

    /// Runs `task` until shutdown, on the main runtime with the requests' clients; work no
    /// caller waits on that can take its clients from the background runtime belongs in
    /// [`Mounted::background`].
    pub fn task(
        mut self,
        name: impl Into<String>,
        task: impl Future<Output = Result<(), KitError>> + Send + 'static,
    ) -> Self {
        self.tasks.push((name.into(), Box::pin(task)));
        self
    }

    /// Runs the task `build` makes until shutdown, on the background runtime
    /// ([`crate::background`]): at a lower priority than requests, with datastore clients of
    /// its own. For work no caller waits on (sinks, relays, sweeps). `build` gets the service's
    /// context with those clients and must take its datastores from it, not from the mount's:
    /// a connection opened from the background runtime is driven by its threads.
    pub fn background<F, Fut>(mut self, name: impl Into<String>, build: F) -> Self
    where
        F: FnOnce(ServiceContext) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), KitError>> + Send + 'static,
    {
        self.background.push((
            name.into(),
            Box::new(move |ctx: ServiceContext| -> Task { Box::pin(build(ctx)) }),
        ));
        self
    }

    /// Consumes the event stream `options.source` with `handler` until shutdown, as the
    /// background task `name`: the consumer reads and records over the background runtime's
    /// clients, so `handler` must not hold the mount's. Its group is created as the task starts
    /// (from the start of the stream: nothing published before is lost).
    pub fn consume<H: Handler>(
        self,
        name: impl Into<String>,
        options: ConsumerOptions,
        handler: H,
    ) -> Self {
        self.consume_with(name, options, move |_| Ok(handler))
    }

    /// [`Mounted::consume`] with a handler that needs datastores: `handler` builds it from the
    /// background runtime's context as the task starts.
    pub fn consume_with<H, F>(
        self,
        name: impl Into<String>,
        options: ConsumerOptions,
        handler: F,
    ) -> Self
    where
        H: Handler,
        F: FnOnce(&ServiceContext) -> Result<H, KitError> + Send + 'static,
    {
        self.background(name, move |bg: ServiceContext| async move {
            let handler = handler(&bg)?;
            let consumer = Consumer::new(bg.postgres()?, bg.redis()?, options, handler).await?;
            consumer.run(bg.shutdown.clone()).await
        })
    }

    /// Runs `job` at once and then every `period` until shutdown, as the task `name`. A failed
    /// run is logged and the job runs again next period: periodic jobs (reconciles, cache
    /// reloads, sweeps) repair what a failure left, so one failure must not stop them.
    pub fn every<F, Fut, E>(self, name: impl Into<String>, period: Duration, mut job: F) -> Self
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: std::fmt::Display,
    {
        let name = name.into();
        let label = name.clone();
        let shutdown = self.shutdown.clone();
        self.task(name, async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return Ok(()),
                    _ = tick.tick() => {}
                }
                if let Err(e) = job().await {
                    tracing::warn!(task = %label, error = %e, "periodic job failed; it runs again next period");
                }
            }
        })
    }
}
