//! Process configuration: a YAML file (`--config`, rendered by the operator from the `Service`
//! resource) overlaid by `TITAN_*` environment variables, per field. The raw file shape is
//! parsed strictly, then turned into a validated [`Config`]; a bad setting fails at start with
//! its name.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::KitError;

/// The validated configuration of one `titan` process.
#[derive(Debug, Clone)]
pub struct Config {
    /// Name of the cell this process belongs to; stamped on every event.
    pub cell: String,
    pub listen: Listen,
    pub auth: AuthConfig,
    pub postgres: Option<PostgresConfig>,
    pub redis: Option<RedisConfig>,
    pub clickhouse: Option<ClickHouseConfig>,
    /// The cell's S3 bucket (`kit::objects`); `None` when no bucket is configured.
    pub object_storage: Option<ObjectStorageConfig>,
    pub events: EventsConfig,
    /// WebSockets: who may connect, liveness, back-pressure and limits (`kit::realtime`).
    pub realtime: RealtimeConfig,
    /// TLS of the gRPC and HTTP servers and of kit's clients (`kit::tls`).
    pub tls: TlsConfig,
    /// Distributed tracing: where spans are exported (`kit::telemetry`).
    pub tracing: TracingConfig,
    /// How long in-flight requests may take to finish after SIGTERM (the pre-stop delay
    /// included).
    pub shutdown_grace: Duration,
    /// After SIGTERM, how long the process keeps serving while not ready, so load balancers
    /// take it out before it stops accepting: no request is refused during a rollout.
    pub pre_stop_delay: Duration,
    /// gRPC calls served at once; more are refused at once with `ResourceExhausted` (load
    /// shedding) rather than queued behind the others until every deadline passes.
    pub max_concurrent_calls: usize,
    /// Longest a gRPC call may take (shorter when the client's `grpc-timeout` says so); then
    /// it is answered `DeadlineExceeded`.
    pub request_timeout: Duration,
    /// Each service's own section, parsed by that service into its typed config.
    pub services: BTreeMap<String, serde_yaml::Value>,
}

/// TLS of the gRPC and HTTP servers (the admin port stays plaintext: kubelet probes and
/// Prometheus scrapes reach it, and it serves no user data) and of kit's clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// The certificate chain and key the servers present; `None`: they serve plaintext.
    pub server: Option<ServerTlsFiles>,
    /// How often the files are read again, so a renewed certificate is served without a
    /// restart.
    pub reload: Duration,
    /// The CA that signs the cell's certificates, which kit's clients verify `https` URLs of
    /// other services against.
    pub ca_file: Option<PathBuf>,
}

/// The default of `tls.reloadSeconds`: a Secret's update reaches the pod within about a
/// minute (the kubelet's sync period), so this adds little to it.
pub const DEFAULT_TLS_RELOAD: Duration = Duration::from_secs(10);

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            server: None,
            reload: DEFAULT_TLS_RELOAD,
            ca_file: None,
        }
    }
}

/// Distributed tracing (`tracing:`): spans exported over OTLP/gRPC when an endpoint is set.
#[derive(Debug, Clone, PartialEq)]
pub struct TracingConfig {
    /// The OpenTelemetry collector's OTLP/gRPC endpoint (`http://collector:4317`); `None`: no
    /// exporter, and the request layers do nothing.
    pub otlp_endpoint: Option<String>,
    /// The share of new traces recorded, 0 to 1; a request that arrives with a `traceparent`
    /// follows its caller's decision instead.
    pub sample_ratio: f64,
}

impl Default for TracingConfig {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            sample_ratio: 1.0,
        }
    }
}

/// PEM files of a served certificate: the chain (leaf first) and its private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTlsFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// The three listening addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listen {
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    pub admin: SocketAddr,
}

/// How bearer tokens are verified (and, for local cells, minted).
#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub hs256_secret: Option<SecretString>,
    /// PEM-encoded RSA public keys; a token verifies if any of them accepts it.
    pub rs256_public_keys: Vec<String>,
    /// Clock skew tolerated on `exp` and `nbf`.
    pub leeway: Duration,
    /// The longest a token may still be valid for (`exp` − now, and `exp` − `iat` when
    /// present): a leaked long-lived token is refused rather than trusted for months.
    pub max_token_lifetime: Duration,
    /// Signing keys published by an identity provider (its `jwks_uri`), alongside the above.
    pub jwks: Option<JwksConfig>,
}

/// Where and how often the identity provider's key set (JWKS) is fetched (`kit::auth::jwks`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksConfig {
    /// An http(s) URL serving `{"keys": [...]}`.
    pub url: String,
    /// Period of the scheduled refresh when the response carries no `Cache-Control: max-age`.
    pub refresh: Duration,
    /// Bounds of a `max-age` honoured as the period: a provider saying `max-age=0` would
    /// otherwise be fetched in a loop, and one saying a day would keep a removed (revoked) key
    /// trusted for a day.
    pub min_refresh: Duration,
    /// See `min_refresh`.
    pub max_refresh: Duration,
    /// At most one fetch per this interval is made for tokens whose `kid` is unknown, so a
    /// stream of forged kids cannot turn each request into a request to the provider.
    pub unknown_kid_interval: Duration,
    /// Longest one fetch may take, connection included.
    pub fetch_timeout: Duration,
}

impl JwksConfig {
    /// The key set at `url` with the default periods.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            refresh: Duration::from_secs(300),
            min_refresh: Duration::from_secs(30),
            max_refresh: Duration::from_secs(3600),
            unknown_kid_interval: Duration::from_secs(10),
            fetch_timeout: Duration::from_secs(5),
        }
    }
}

/// Default of `auth.maxTokenLifetimeSeconds`: one day.
pub const DEFAULT_MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone)]
pub struct PostgresConfig {
    pub url: SecretString,
    pub max_connections: u32,
    /// Longest one statement may run before the server cancels it (`statement_timeout`);
    /// zero means no limit (what migrations use).
    pub statement_timeout: Duration,
    /// Longest a transaction may sit idle before the server ends its session
    /// (`idle_in_transaction_session_timeout`): a stuck caller cannot hold locks for ever.
    pub idle_in_transaction_timeout: Duration,
}

impl PostgresConfig {
    /// A pool configuration with the default limits.
    pub fn new(url: SecretString, max_connections: u32) -> Self {
        Self {
            url,
            max_connections,
            statement_timeout: Duration::from_secs(15),
            idle_in_transaction_timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `redis://`, `rediss://` (TLS), or a cluster's seeds: `redis+cluster://`,
    /// `rediss+cluster://` (TLS).
    pub url: SecretString,
    /// Prepended to every key this process touches, so cells and tests never collide.
    pub key_prefix: String,
    /// The CA a `rediss://` server's (or every `rediss+cluster://` node's) certificate is
    /// verified against; without it, the system's roots.
    pub ca_file: Option<PathBuf>,
    /// Multiplexed connections to a single server, taken in turn by concurrent requests
    /// (1–64; a Redis Cluster's connection keeps one per node instead).
    pub connections: u32,
}

/// The default of `redis.connections`. One connection carries many requests per write and
/// read, which is what a Redis near its single core's limit needs most: flash sale served
/// 19,571–21,641 attempts/s on one and 17,421–18,243/s on two (`docs/runtime.md`, Redis
/// connections).
pub const REDIS_CONNECTIONS: u32 = 1;

impl RedisConfig {
    /// `url` with `key_prefix`, verified against the system's roots when it is `rediss://`.
    pub fn new(url: impl Into<SecretString>, key_prefix: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            key_prefix: key_prefix.into(),
            ca_file: None,
            connections: REDIS_CONNECTIONS,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ClickHouseConfig {
    pub url: String,
    pub database: String,
    pub user: Option<String>,
    pub password: Option<SecretString>,
    /// Schema validation of rows; must be off against ClickHouse 18.16, on against current servers.
    pub validation: bool,
    /// Longest one query may run (`max_execution_time`).
    pub max_execution_time: Duration,
    /// Most memory one query may use (`max_memory_usage`), in bytes.
    pub max_memory_usage: u64,
    /// The CA an `https://` server's certificate is verified against; without it, the
    /// system's roots.
    pub ca_file: Option<PathBuf>,
}

impl ClickHouseConfig {
    /// A client configuration with the default limits and no credentials.
    pub fn new(url: String, database: String) -> Self {
        Self {
            url,
            database,
            user: None,
            password: None,
            validation: false,
            max_execution_time: Duration::from_secs(30),
            max_memory_usage: 4 << 30,
            ca_file: None,
        }
    }
}

/// The cell's object storage: one bucket on a server that speaks the S3 protocol (AWS, MinIO,
/// s3s-fs for local cells and tests).
#[derive(Debug, Clone)]
pub struct ObjectStorageConfig {
    /// URL of the S3 API; `None` means AWS's endpoint for `region`.
    pub endpoint: Option<String>,
    pub bucket: String,
    /// Used in request signatures; servers without regions accept `us-east-1`.
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: SecretString,
    /// Path-style addressing (`endpoint/bucket/key`) rather than virtual-hosted
    /// (`bucket.endpoint/key`). MinIO-like servers know no bucket host names, so this is the
    /// default whenever an endpoint is given.
    pub path_style: bool,
    /// Bodies larger than this many bytes are uploaded in parts (multipart upload).
    pub multipart_threshold: usize,
}

/// Default of `objectStorage.multipartThresholdBytes`: 16 MiB.
pub const DEFAULT_MULTIPART_THRESHOLD: usize = 16 << 20;
/// S3 refuses parts below 5 MiB (but the last), so no body below that is worth splitting.
pub const MIN_MULTIPART_THRESHOLD: usize = 5 << 20;

impl ObjectStorageConfig {
    /// A bucket at `endpoint` (path-style) with the default region and threshold.
    pub fn new(
        endpoint: String,
        bucket: String,
        access_key_id: String,
        secret_access_key: SecretString,
    ) -> Self {
        Self {
            endpoint: Some(endpoint),
            bucket,
            region: "us-east-1".to_owned(),
            access_key_id,
            secret_access_key,
            path_style: true,
            multipart_threshold: DEFAULT_MULTIPART_THRESHOLD,
        }
    }

    /// The bucket named by the `TITAN_S3_*` variables alone, for processes without a config
    /// file or token keys (`titan recorder`, a sidecar of the cell's media server); `None`
    /// when no bucket is named.
    pub fn from_env() -> Result<Option<Self>, KitError> {
        object_storage(RawObjectStorage::default(), &|var| std::env::var(var).ok())
    }
}

/// Tuning of the outbox relay and the consumers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventsConfig {
    /// Rows the relay moves per round trip.
    pub relay_batch: u32,
    /// Approximate length each stream is trimmed to once its consumer groups have read it;
    /// what a group still needs is kept up to ten times this.
    pub stream_max_len: u64,
    /// A message unacknowledged this long is claimed by another consumer.
    pub claim_idle: Duration,
    /// Failures after which a message goes to the dead-letter stream.
    pub max_deliveries: u32,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            relay_batch: 500,
            stream_max_len: 1_000_000,
            claim_idle: Duration::from_secs(30),
            max_deliveries: 5,
        }
    }
}

/// The WebSocket settings of a replica (`realtime:` in the file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealtimeConfig {
    /// Origins (`scheme://host[:port]`, lower case) whose pages may open a socket.
    pub allowed_origins: Vec<String>,
    /// Whether a handshake without `Origin` (never a browser: every browser sends one) is let
    /// in; for server-side clients and tests.
    pub allow_missing_origin: bool,
    /// How often the server pings each socket.
    pub ping_interval: Duration,
    /// Pings left unanswered after which a socket is closed.
    pub missed_pongs: u32,
    /// Frames queued for one socket; a reader that lets it fill is disconnected (4408).
    pub send_queue: usize,
    /// Largest client frame accepted, in bytes; a larger one closes the socket (4400).
    pub max_frame_bytes: usize,
    /// Sockets this replica holds at most; one more is refused with 503 before the upgrade.
    pub max_connections: usize,
    /// Sockets one user may hold on this replica; one more is refused with 429.
    pub max_connections_per_user: usize,
}

impl Default for RealtimeConfig {
    fn default() -> Self {
        Self {
            allowed_origins: Vec::new(),
            allow_missing_origin: false,
            ping_interval: Duration::from_secs(20),
            missed_pongs: 2,
            send_queue: 256,
            max_frame_bytes: 64 * 1024,
            max_connections: 20_000,
            max_connections_per_user: 8,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawConfig {
    cell: Option<String>,
    #[serde(default)]
    listen: RawListen,
    #[serde(default)]
    auth: RawAuth,
    #[serde(default)]
    postgres: RawPostgres,
    #[serde(default)]
    redis: RawRedis,
    #[serde(default)]
    clickhouse: RawClickHouse,
    #[serde(default)]
    object_storage: RawObjectStorage,
    #[serde(default)]
    events: RawEvents,
    #[serde(default)]
    realtime: RawRealtime,
    #[serde(default)]
    tls: RawTls,
    #[serde(default)]
    tracing: RawTracing,
    shutdown_grace_seconds: Option<u64>,
    pre_stop_delay_seconds: Option<u64>,
    max_concurrent_calls: Option<usize>,
    request_timeout_seconds: Option<u64>,
    #[serde(default)]
    services: BTreeMap<String, serde_yaml::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawTracing {
    otlp_endpoint: Option<String>,
    sample_ratio: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawTls {
    cert_file: Option<String>,
    key_file: Option<String>,
    ca_file: Option<String>,
    reload_seconds: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListen {
    grpc: Option<String>,
    http: Option<String>,
    admin: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawAuth {
    issuer: Option<String>,
    audience: Option<String>,
    hs256_secret: Option<String>,
    #[serde(default)]
    rs256_public_keys: Vec<String>,
    #[serde(default)]
    rs256_public_key_files: Vec<String>,
    leeway_seconds: Option<u64>,
    max_token_lifetime_seconds: Option<u64>,
    jwks_url: Option<String>,
    jwks_refresh_seconds: Option<u64>,
    jwks_min_refresh_seconds: Option<u64>,
    jwks_max_refresh_seconds: Option<u64>,
    jwks_unknown_kid_interval_seconds: Option<u64>,
    jwks_fetch_timeout_seconds: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawPostgres {
    url: Option<String>,
    max_connections: Option<u32>,
    statement_timeout_seconds: Option<u64>,
    idle_in_transaction_timeout_seconds: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawRedis {
    url: Option<String>,
    key_prefix: Option<String>,
    ca_file: Option<String>,
    connections: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawClickHouse {
    url: Option<String>,
    database: Option<String>,
    user: Option<String>,
    password: Option<String>,
    validation: Option<bool>,
    max_execution_time_seconds: Option<u64>,
    max_memory_usage_bytes: Option<u64>,
    ca_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawObjectStorage {
    endpoint: Option<String>,
    bucket: Option<String>,
    region: Option<String>,
    access_key_id: Option<String>,
    secret_access_key: Option<String>,
    path_style: Option<bool>,
    multipart_threshold_bytes: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawEvents {
    relay_batch: Option<u32>,
    stream_max_len: Option<u64>,
    claim_idle_seconds: Option<u64>,
    max_deliveries: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawRealtime {
    allowed_origins: Option<Vec<String>>,
    allow_missing_origin: Option<bool>,
    ping_interval_seconds: Option<u64>,
    missed_pongs: Option<u32>,
    send_queue: Option<usize>,
    max_frame_bytes: Option<usize>,
    max_connections: Option<usize>,
    max_connections_per_user: Option<usize>,
}

/// Environment variables a deployment may set; each names the file field it overrides.
pub const ENV_VARS: &[(&str, &str)] = &[
    ("TITAN_CELL", "cell"),
    ("TITAN_GRPC_ADDR", "listen.grpc"),
    ("TITAN_HTTP_ADDR", "listen.http"),
    ("TITAN_ADMIN_ADDR", "listen.admin"),
    ("TITAN_AUTH_ISSUER", "auth.issuer"),
    ("TITAN_AUTH_AUDIENCE", "auth.audience"),
    ("TITAN_AUTH_HS256_SECRET", "auth.hs256Secret"),
    (
        "TITAN_AUTH_MAX_TOKEN_LIFETIME_SECONDS",
        "auth.maxTokenLifetimeSeconds",
    ),
    (
        "TITAN_AUTH_RS256_PUBLIC_KEY_FILES",
        "auth.rs256PublicKeyFiles",
    ),
    ("TITAN_AUTH_JWKS_URL", "auth.jwksUrl"),
    ("TITAN_AUTH_JWKS_REFRESH_SECONDS", "auth.jwksRefreshSeconds"),
    ("TITAN_POSTGRES_URL", "postgres.url"),
    ("TITAN_POSTGRES_MAX_CONNECTIONS", "postgres.maxConnections"),
    ("TITAN_REDIS_URL", "redis.url"),
    ("TITAN_REDIS_KEY_PREFIX", "redis.keyPrefix"),
    ("TITAN_REDIS_CONNECTIONS", "redis.connections"),
    ("TITAN_CLICKHOUSE_URL", "clickhouse.url"),
    ("TITAN_CLICKHOUSE_DATABASE", "clickhouse.database"),
    ("TITAN_CLICKHOUSE_USER", "clickhouse.user"),
    ("TITAN_CLICKHOUSE_PASSWORD", "clickhouse.password"),
    ("TITAN_S3_ENDPOINT", "objectStorage.endpoint"),
    ("TITAN_S3_BUCKET", "objectStorage.bucket"),
    ("TITAN_S3_REGION", "objectStorage.region"),
    ("TITAN_S3_ACCESS_KEY_ID", "objectStorage.accessKeyId"),
    (
        "TITAN_S3_SECRET_ACCESS_KEY",
        "objectStorage.secretAccessKey",
    ),
    ("TITAN_S3_PATH_STYLE", "objectStorage.pathStyle"),
    ("TITAN_REALTIME_ALLOWED_ORIGINS", "realtime.allowedOrigins"),
    (
        "TITAN_REALTIME_ALLOW_MISSING_ORIGIN",
        "realtime.allowMissingOrigin",
    ),
    ("TITAN_REALTIME_MAX_CONNECTIONS", "realtime.maxConnections"),
    (
        "TITAN_REALTIME_MAX_CONNECTIONS_PER_USER",
        "realtime.maxConnectionsPerUser",
    ),
];

impl Config {
    /// Loads the file at `path` (if any) and overlays the process environment.
    pub fn load(path: Option<&Path>) -> Result<Self, KitError> {
        let text = match path {
            Some(path) => Some(std::fs::read_to_string(path).map_err(|e| {
                KitError::config("--config", format!("cannot read {}: {e}", path.display()))
            })?),
            None => None,
        };
        Self::from_sources(text.as_deref(), |name| std::env::var(name).ok())
    }

    /// Builds the configuration from a file's text and an environment lookup; the seam tests use.
    pub fn from_sources(
        file: Option<&str>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, KitError> {
        let raw: RawConfig = match file {
            Some(text) if !text.trim().is_empty() => serde_yaml::from_str(text)
                .map_err(|e| KitError::config("--config", format!("invalid config file: {e}")))?,
            _ => RawConfig::default(),
        };
        let pick = |var: &str, file: Option<String>| env(var).filter(|v| !v.is_empty()).or(file);
        // A count from `var` (refused when it is not a whole number), else the file's, else
        // `default`.
        let whole = |var: &str, setting: &str, file: Option<u32>, default: u32| match env(var) {
            Some(v) => v
                .parse()
                .map_err(|_| KitError::config(setting, format!("{v:?} is not a whole number"))),
            None => Ok(file.unwrap_or(default)),
        };

        let cell = pick("TITAN_CELL", raw.cell).unwrap_or_else(|| "local".to_owned());
        if !is_dns_label(&cell) {
            return Err(KitError::config(
                "cell",
                format!(
                    "{cell:?} is not a DNS label (lower-case letters, digits and '-', at most 63)"
                ),
            ));
        }

        let listen = Listen {
            grpc: addr(
                "listen.grpc",
                pick("TITAN_GRPC_ADDR", raw.listen.grpc),
                "0.0.0.0:50051",
            )?,
            http: addr(
                "listen.http",
                pick("TITAN_HTTP_ADDR", raw.listen.http),
                "0.0.0.0:8080",
            )?,
            admin: addr(
                "listen.admin",
                pick("TITAN_ADMIN_ADDR", raw.listen.admin),
                "0.0.0.0:9090",
            )?,
        };

        let jwks = jwks(&raw.auth, &env)?;
        let mut rs256_public_keys = raw.auth.rs256_public_keys;
        let key_files = match env("TITAN_AUTH_RS256_PUBLIC_KEY_FILES").filter(|v| !v.is_empty()) {
            Some(list) => list.split(',').map(|s| s.trim().to_owned()).collect(),
            None => raw.auth.rs256_public_key_files,
        };
        for file in key_files {
            let pem = std::fs::read_to_string(&file).map_err(|e| {
                KitError::config(
                    "auth.rs256PublicKeyFiles",
                    format!("cannot read {file}: {e}"),
                )
            })?;
            rs256_public_keys.push(pem);
        }
        let auth = AuthConfig {
            issuer: pick("TITAN_AUTH_ISSUER", raw.auth.issuer),
            audience: pick("TITAN_AUTH_AUDIENCE", raw.auth.audience),
            hs256_secret: pick("TITAN_AUTH_HS256_SECRET", raw.auth.hs256_secret)
                .map(SecretString::from),
            rs256_public_keys,
            leeway: Duration::from_secs(raw.auth.leeway_seconds.unwrap_or(30)),
            max_token_lifetime: match env("TITAN_AUTH_MAX_TOKEN_LIFETIME_SECONDS") {
                Some(v) => Duration::from_secs(v.parse().map_err(|_| {
                    KitError::config(
                        "auth.maxTokenLifetimeSeconds",
                        format!("{v:?} is not a number of seconds"),
                    )
                })?),
                None => raw
                    .auth
                    .max_token_lifetime_seconds
                    .map_or(DEFAULT_MAX_TOKEN_LIFETIME, Duration::from_secs),
            },
            jwks,
        };
        if auth.max_token_lifetime.is_zero() {
            return Err(KitError::config(
                "auth.maxTokenLifetimeSeconds",
                "must be at least 1 second",
            ));
        }
        if auth.hs256_secret.is_none() && auth.rs256_public_keys.is_empty() && auth.jwks.is_none() {
            return Err(KitError::config(
                "auth",
                "no token key configured: set TITAN_AUTH_HS256_SECRET (or auth.hs256Secret), \
                 auth.rs256PublicKeys or TITAN_AUTH_JWKS_URL (or auth.jwksUrl)",
            ));
        }
        if let Some(secret) = &auth.hs256_secret
            && secret.expose_secret().len() < 32
        {
            return Err(KitError::config(
                "auth.hs256Secret",
                "the HS256 secret must be at least 32 bytes long",
            ));
        }

        let postgres = match pick("TITAN_POSTGRES_URL", raw.postgres.url) {
            Some(url) => {
                check_url("postgres.url", &url, &["postgres", "postgresql"])?;
                let max_connections = whole(
                    "TITAN_POSTGRES_MAX_CONNECTIONS",
                    "postgres.maxConnections",
                    raw.postgres.max_connections,
                    20,
                )?;
                if max_connections == 0 {
                    return Err(KitError::config(
                        "postgres.maxConnections",
                        "must be at least 1",
                    ));
                }
                let defaults = PostgresConfig::new(url.into(), max_connections);
                Some(PostgresConfig {
                    statement_timeout: raw
                        .postgres
                        .statement_timeout_seconds
                        .map_or(defaults.statement_timeout, Duration::from_secs),
                    idle_in_transaction_timeout: raw
                        .postgres
                        .idle_in_transaction_timeout_seconds
                        .map_or(defaults.idle_in_transaction_timeout, Duration::from_secs),
                    ..defaults
                })
            }
            None => None,
        };
        let redis = match pick("TITAN_REDIS_URL", raw.redis.url) {
            Some(url) => {
                check_url(
                    "redis.url",
                    &url,
                    &["redis", "rediss", "redis+cluster", "rediss+cluster"],
                )?;
                let key_prefix = pick("TITAN_REDIS_KEY_PREFIX", raw.redis.key_prefix)
                    .unwrap_or_else(|| format!("titan:{cell}:"));
                let connections = whole(
                    "TITAN_REDIS_CONNECTIONS",
                    "redis.connections",
                    raw.redis.connections,
                    REDIS_CONNECTIONS,
                )?;
                if !(1..=64).contains(&connections) {
                    return Err(KitError::config(
                        "redis.connections",
                        format!("{connections} is outside 1 to 64"),
                    ));
                }
                Some(RedisConfig {
                    ca_file: pick("TITAN_REDIS_CA_FILE", raw.redis.ca_file).map(PathBuf::from),
                    connections,
                    ..RedisConfig::new(url, key_prefix)
                })
            }
            None => None,
        };
        let clickhouse = match pick("TITAN_CLICKHOUSE_URL", raw.clickhouse.url) {
            Some(url) => {
                check_url("clickhouse.url", &url, &["http", "https"])?;
                let database = pick("TITAN_CLICKHOUSE_DATABASE", raw.clickhouse.database)
                    .unwrap_or_else(|| "default".to_owned());
                let defaults = ClickHouseConfig::new(url, database);
                Some(ClickHouseConfig {
                    user: pick("TITAN_CLICKHOUSE_USER", raw.clickhouse.user),
                    password: pick("TITAN_CLICKHOUSE_PASSWORD", raw.clickhouse.password)
                        .map(SecretString::from),
                    validation: raw.clickhouse.validation.unwrap_or(false),
                    max_execution_time: raw
                        .clickhouse
                        .max_execution_time_seconds
                        .map_or(defaults.max_execution_time, Duration::from_secs),
                    max_memory_usage: raw
                        .clickhouse
                        .max_memory_usage_bytes
                        .unwrap_or(defaults.max_memory_usage),
                    ca_file: pick("TITAN_CLICKHOUSE_CA_FILE", raw.clickhouse.ca_file)
                        .map(PathBuf::from),
                    ..defaults
                })
            }
            None => None,
        };

        let object_storage = object_storage(raw.object_storage, &env)?;

        let defaults = EventsConfig::default();
        let events = EventsConfig {
            relay_batch: raw.events.relay_batch.unwrap_or(defaults.relay_batch),
            stream_max_len: raw.events.stream_max_len.unwrap_or(defaults.stream_max_len),
            claim_idle: raw
                .events
                .claim_idle_seconds
                .map(Duration::from_secs)
                .unwrap_or(defaults.claim_idle),
            max_deliveries: raw.events.max_deliveries.unwrap_or(defaults.max_deliveries),
        };
        if events.relay_batch == 0 || events.max_deliveries == 0 || events.claim_idle.is_zero() {
            return Err(KitError::config(
                "events",
                "relayBatch, maxDeliveries and claimIdleSeconds must all be at least 1",
            ));
        }

        let realtime = realtime(raw.realtime, &env)?;
        let tls = tls(raw.tls, &env)?;
        let tracing = tracing(raw.tracing, &env)?;

        let shutdown_grace = Duration::from_secs(raw.shutdown_grace_seconds.unwrap_or(25));
        let pre_stop_delay = Duration::from_secs(raw.pre_stop_delay_seconds.unwrap_or(5));
        if pre_stop_delay >= shutdown_grace {
            return Err(KitError::config(
                "preStopDelaySeconds",
                format!(
                    "must be shorter than shutdownGraceSeconds ({} s), which it is part of",
                    shutdown_grace.as_secs()
                ),
            ));
        }

        Ok(Self {
            cell,
            listen,
            auth,
            postgres,
            redis,
            clickhouse,
            object_storage,
            events,
            realtime,
            tls,
            tracing,
            shutdown_grace,
            pre_stop_delay,
            max_concurrent_calls: match raw.max_concurrent_calls.unwrap_or(1024) {
                0 => {
                    return Err(KitError::config("maxConcurrentCalls", "must be at least 1"));
                }
                n => n,
            },
            request_timeout: match raw.request_timeout_seconds.unwrap_or(30) {
                0 => {
                    return Err(KitError::config(
                        "requestTimeoutSeconds",
                        "must be at least 1",
                    ));
                }
                n => Duration::from_secs(n),
            },
            services: raw.services,
        })
    }
}

/// `realtime:` with its environment overrides, each value checked.
/// `tracing:` with its environment overrides: `otlpEndpoint` (`TITAN_OTLP_ENDPOINT`) an
/// `http://` URL, `sampleRatio` (`TITAN_TRACE_SAMPLE_RATIO`) 0 to 1.
fn tracing(
    raw: RawTracing,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<TracingConfig, KitError> {
    let var = |name: &str| env(name).filter(|v| !v.is_empty());
    let otlp_endpoint = var("TITAN_OTLP_ENDPOINT").or(raw.otlp_endpoint);
    if let Some(url) = &otlp_endpoint {
        // The exporter speaks plaintext gRPC: a collector in the cell or beside the pod.
        let valid = url
            .strip_prefix("http://")
            .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'));
        if !valid {
            return Err(KitError::config(
                "tracing.otlpEndpoint",
                format!("{url:?} is not an http:// URL like http://collector:4317"),
            ));
        }
    }
    let sample_ratio = match var("TITAN_TRACE_SAMPLE_RATIO") {
        Some(text) => text.parse::<f64>().map_err(|_| {
            KitError::config(
                "tracing.sampleRatio",
                format!("{text:?} is not a number from 0 to 1"),
            )
        })?,
        None => raw.sample_ratio.unwrap_or(1.0),
    };
    if !(0.0..=1.0).contains(&sample_ratio) {
        return Err(KitError::config(
            "tracing.sampleRatio",
            format!("{sample_ratio} is not a number from 0 to 1"),
        ));
    }
    Ok(TracingConfig {
        otlp_endpoint,
        sample_ratio,
    })
}

/// `tls.certFile` and `tls.keyFile` (`TITAN_TLS_CERT_FILE`, `TITAN_TLS_KEY_FILE`) go together;
/// `tls.caFile` (`TITAN_TLS_CA_FILE`) stands alone; `tls.reloadSeconds` is 1 to 3,600.
fn tls(raw: RawTls, env: &impl Fn(&str) -> Option<String>) -> Result<TlsConfig, KitError> {
    let var = |name: &str| env(name).filter(|v| !v.is_empty());
    let cert = var("TITAN_TLS_CERT_FILE").or(raw.cert_file);
    let key = var("TITAN_TLS_KEY_FILE").or(raw.key_file);
    let server = match (cert, key) {
        (Some(cert), Some(key)) => Some(ServerTlsFiles {
            cert_file: cert.into(),
            key_file: key.into(),
        }),
        (None, None) => None,
        (Some(_), None) => {
            return Err(KitError::config(
                "tls.keyFile",
                "tls.certFile is set: set the key too (TITAN_TLS_KEY_FILE or tls.keyFile)",
            ));
        }
        (None, Some(_)) => {
            return Err(KitError::config(
                "tls.certFile",
                "tls.keyFile is set: set the certificate too (TITAN_TLS_CERT_FILE or \
                 tls.certFile)",
            ));
        }
    };
    let reload = match raw.reload_seconds {
        None => DEFAULT_TLS_RELOAD,
        Some(s @ 1..=3600) => Duration::from_secs(s),
        Some(s) => {
            return Err(KitError::config(
                "tls.reloadSeconds",
                format!("{s} is out of range: 1 to 3600 seconds"),
            ));
        }
    };
    Ok(TlsConfig {
        server,
        reload,
        ca_file: var("TITAN_TLS_CA_FILE").or(raw.ca_file).map(PathBuf::from),
    })
}

fn realtime(
    raw: RawRealtime,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<RealtimeConfig, KitError> {
    let defaults = RealtimeConfig::default();
    let var = |name: &str| env(name).filter(|v| !v.is_empty());
    let origins = match var("TITAN_REALTIME_ALLOWED_ORIGINS") {
        Some(list) => list.split(',').map(|o| o.trim().to_owned()).collect(),
        None => raw.allowed_origins.unwrap_or_default(),
    };
    let allowed_origins = origins
        .into_iter()
        .map(|o| origin("realtime.allowedOrigins", &o))
        .collect::<Result<Vec<_>, _>>()?;
    let allow_missing_origin = match var("TITAN_REALTIME_ALLOW_MISSING_ORIGIN") {
        Some(v) => v.parse().map_err(|_| {
            KitError::config(
                "realtime.allowMissingOrigin",
                format!("{v:?} is neither true nor false"),
            )
        })?,
        None => raw
            .allow_missing_origin
            .unwrap_or(defaults.allow_missing_origin),
    };
    let count = |setting: &str, var_name: Option<&str>, file: Option<usize>, default: usize| {
        let value = match var_name.and_then(var) {
            Some(v) => v
                .parse()
                .map_err(|_| KitError::config(setting, format!("{v:?} is not a whole number")))?,
            None => file.unwrap_or(default),
        };
        if value == 0 {
            return Err(KitError::config(setting, "must be at least 1"));
        }
        Ok(value)
    };
    let ping_interval = raw
        .ping_interval_seconds
        .map_or(defaults.ping_interval, Duration::from_secs);
    if ping_interval.is_zero() {
        return Err(KitError::config(
            "realtime.pingIntervalSeconds",
            "must be at least 1",
        ));
    }
    let missed_pongs = raw.missed_pongs.unwrap_or(defaults.missed_pongs);
    if missed_pongs == 0 {
        return Err(KitError::config(
            "realtime.missedPongs",
            "must be at least 1",
        ));
    }
    Ok(RealtimeConfig {
        allowed_origins,
        allow_missing_origin,
        ping_interval,
        missed_pongs,
        send_queue: count(
            "realtime.sendQueue",
            None,
            raw.send_queue,
            defaults.send_queue,
        )?,
        max_frame_bytes: count(
            "realtime.maxFrameBytes",
            None,
            raw.max_frame_bytes,
            defaults.max_frame_bytes,
        )?,
        max_connections: count(
            "realtime.maxConnections",
            Some("TITAN_REALTIME_MAX_CONNECTIONS"),
            raw.max_connections,
            defaults.max_connections,
        )?,
        max_connections_per_user: count(
            "realtime.maxConnectionsPerUser",
            Some("TITAN_REALTIME_MAX_CONNECTIONS_PER_USER"),
            raw.max_connections_per_user,
            defaults.max_connections_per_user,
        )?,
    })
}

/// An allowed origin as browsers send it: `scheme://host[:port]`, no path, compared in lower
/// case.
fn origin(setting: &str, value: &str) -> Result<String, KitError> {
    let lower = value.to_ascii_lowercase();
    let valid = lower.split_once("://").is_some_and(|(scheme, host)| {
        matches!(scheme, "http" | "https")
            && !host.is_empty()
            && !host.contains(['/', '?', '#', '@', ' '])
    });
    if valid {
        Ok(lower)
    } else {
        Err(KitError::config(
            setting,
            format!(
                "{value:?} is not an origin like https://shop.example or http://localhost:3000"
            ),
        ))
    }
}

/// `objectStorage:` with its `TITAN_S3_*` overrides. Configured when a bucket is named; any
/// other setting without one is refused rather than ignored, and so is a bucket without both
/// keys (kit never falls back to guessing credentials from the machine).
fn object_storage(
    raw: RawObjectStorage,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Option<ObjectStorageConfig>, KitError> {
    let pick = |var: &str, file: Option<String>| env(var).filter(|v| !v.is_empty()).or(file);
    let endpoint = pick("TITAN_S3_ENDPOINT", raw.endpoint);
    let region = pick("TITAN_S3_REGION", raw.region);
    let access_key_id = pick("TITAN_S3_ACCESS_KEY_ID", raw.access_key_id);
    let secret_access_key = pick("TITAN_S3_SECRET_ACCESS_KEY", raw.secret_access_key);
    let path_style = match env("TITAN_S3_PATH_STYLE").filter(|v| !v.is_empty()) {
        Some(v) => Some(v.parse().map_err(|_| {
            KitError::config(
                "objectStorage.pathStyle",
                format!("{v:?} is neither true nor false"),
            )
        })?),
        None => raw.path_style,
    };
    let Some(bucket) = pick("TITAN_S3_BUCKET", raw.bucket) else {
        let given = endpoint.is_some()
            || region.is_some()
            || access_key_id.is_some()
            || secret_access_key.is_some()
            || path_style.is_some()
            || raw.multipart_threshold_bytes.is_some();
        return if given {
            Err(KitError::config(
                "objectStorage.bucket",
                "required once any objectStorage setting is given: set TITAN_S3_BUCKET",
            ))
        } else {
            Ok(None)
        };
    };
    if !is_bucket_name(&bucket) {
        return Err(KitError::config(
            "objectStorage.bucket",
            format!(
                "{bucket:?} is not a bucket name (3 to 63 lower-case letters, digits, '.' and '-', \
                 starting and ending with a letter or digit)"
            ),
        ));
    }
    if let Some(url) = &endpoint {
        check_url("objectStorage.endpoint", url, &["http", "https"])?;
    }
    let access_key_id = access_key_id.ok_or_else(|| {
        KitError::config(
            "objectStorage.accessKeyId",
            "required with a bucket: set TITAN_S3_ACCESS_KEY_ID",
        )
    })?;
    let secret_access_key = secret_access_key.ok_or_else(|| {
        KitError::config(
            "objectStorage.secretAccessKey",
            "required with a bucket: set TITAN_S3_SECRET_ACCESS_KEY",
        )
    })?;
    let multipart_threshold = raw
        .multipart_threshold_bytes
        .unwrap_or(DEFAULT_MULTIPART_THRESHOLD);
    if multipart_threshold < MIN_MULTIPART_THRESHOLD {
        return Err(KitError::config(
            "objectStorage.multipartThresholdBytes",
            format!(
                "must be at least {MIN_MULTIPART_THRESHOLD} (5 MiB, the smallest part S3 accepts)"
            ),
        ));
    }
    Ok(Some(ObjectStorageConfig {
        path_style: path_style.unwrap_or(endpoint.is_some()),
        endpoint,
        bucket,
        region: region.unwrap_or_else(|| "us-east-1".to_owned()),
        access_key_id,
        secret_access_key: SecretString::from(secret_access_key),
        multipart_threshold,
    }))
}

/// The JWKS settings of `auth`, `None` without a URL; the periods are refused when they could
/// not work (zero, or bounds the wrong way round).
fn jwks(
    raw: &RawAuth,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Option<JwksConfig>, KitError> {
    let url = env("TITAN_AUTH_JWKS_URL")
        .filter(|v| !v.is_empty())
        .or_else(|| raw.jwks_url.clone());
    let Some(url) = url else {
        let given = [
            ("auth.jwksRefreshSeconds", raw.jwks_refresh_seconds),
            ("auth.jwksMinRefreshSeconds", raw.jwks_min_refresh_seconds),
            ("auth.jwksMaxRefreshSeconds", raw.jwks_max_refresh_seconds),
            (
                "auth.jwksUnknownKidIntervalSeconds",
                raw.jwks_unknown_kid_interval_seconds,
            ),
            (
                "auth.jwksFetchTimeoutSeconds",
                raw.jwks_fetch_timeout_seconds,
            ),
        ];
        // A period without a URL is a URL forgotten, not a setting to ignore.
        return match given.iter().find(|(_, v)| v.is_some()) {
            Some((setting, _)) => Err(KitError::config(
                *setting,
                "needs auth.jwksUrl (or TITAN_AUTH_JWKS_URL)",
            )),
            None => Ok(None),
        };
    };
    check_url("auth.jwksUrl", &url, &["http", "https"])?;
    let defaults = JwksConfig::new(url);
    let seconds = |setting: &str, value: Option<u64>, default: Duration| match value {
        Some(0) => Err(KitError::config(setting, "must be at least 1 second")),
        Some(s) => Ok(Duration::from_secs(s)),
        None => Ok(default),
    };
    let refresh = match env("TITAN_AUTH_JWKS_REFRESH_SECONDS").filter(|v| !v.is_empty()) {
        Some(v) => Some(v.parse().map_err(|_| {
            KitError::config(
                "auth.jwksRefreshSeconds",
                format!("{v:?} is not a number of seconds"),
            )
        })?),
        None => raw.jwks_refresh_seconds,
    };
    let config = JwksConfig {
        refresh: seconds("auth.jwksRefreshSeconds", refresh, defaults.refresh)?,
        min_refresh: seconds(
            "auth.jwksMinRefreshSeconds",
            raw.jwks_min_refresh_seconds,
            defaults.min_refresh,
        )?,
        max_refresh: seconds(
            "auth.jwksMaxRefreshSeconds",
            raw.jwks_max_refresh_seconds,
            defaults.max_refresh,
        )?,
        unknown_kid_interval: seconds(
            "auth.jwksUnknownKidIntervalSeconds",
            raw.jwks_unknown_kid_interval_seconds,
            defaults.unknown_kid_interval,
        )?,
        fetch_timeout: seconds(
            "auth.jwksFetchTimeoutSeconds",
            raw.jwks_fetch_timeout_seconds,
            defaults.fetch_timeout,
        )?,
        ..defaults
    };
    if !(config.min_refresh..=config.max_refresh).contains(&config.refresh) {
        return Err(KitError::config(
            "auth.jwksRefreshSeconds",
            format!(
                "{} s is outside auth.jwksMinRefreshSeconds..auth.jwksMaxRefreshSeconds ({}..{} s)",
                config.refresh.as_secs(),
                config.min_refresh.as_secs(),
                config.max_refresh.as_secs()
            ),
        ));
    }
    Ok(Some(config))
}

/// S3's bucket naming rules (the subset every S3-compatible server accepts).
fn is_bucket_name(s: &str) -> bool {
    let edge = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    (3..=63).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && edge(s.bytes().next())
        && edge(s.bytes().last())
        && !s.contains("..")
}

fn addr(setting: &str, value: Option<String>, default: &str) -> Result<SocketAddr, KitError> {
    let value = value.unwrap_or_else(|| default.to_owned());
    value.parse().map_err(|_| {
        KitError::config(
            setting,
            format!("{value:?} is not an address like 0.0.0.0:8080"),
        )
    })
}

fn check_url(setting: &str, url: &str, schemes: &[&str]) -> Result<(), KitError> {
    match url.split_once("://") {
        Some((scheme, rest)) if schemes.contains(&scheme) && !rest.is_empty() => Ok(()),
        _ => Err(KitError::config(
            setting,
            format!("expected a {} URL", schemes.join(" or ")),
        )),
    }
}

/// RFC 1123 label, as Kubernetes requires of names the cell ends up in.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    fn defaults_pre_stop() -> Duration {
        Config::from_sources(None, env(&[("TITAN_AUTH_HS256_SECRET", SECRET)]))
            .expect("valid")
            .pre_stop_delay
    }

    #[test]
    fn redis_connections_default_to_one_and_are_bounded() {
        let load = |file: &str, vars: &'static [(&'static str, &'static str)]| {
            Config::from_sources(Some(file), env(vars)).map(|c| c.redis.expect("redis").connections)
        };
        let secret = &[("TITAN_AUTH_HS256_SECRET", SECRET)];
        assert_eq!(
            load("redis: { url: redis://r:6379 }\n", secret).ok(),
            Some(1)
        );
        assert_eq!(
            load("redis: { url: redis://r:6379, connections: 8 }\n", secret).ok(),
            Some(8)
        );
        assert_eq!(
            load(
                "redis: { url: redis://r:6379, connections: 8 }\n",
                &[
                    ("TITAN_AUTH_HS256_SECRET", SECRET),
                    ("TITAN_REDIS_CONNECTIONS", "1")
                ]
            )
            .ok(),
            Some(1)
        );
        for (file, why) in [
            (
                "redis: { url: redis://r:6379, connections: 0 }\n",
                "0 is outside 1 to 64",
            ),
            (
                "redis: { url: redis://r:6379, connections: 65 }\n",
                "65 is outside 1 to 64",
            ),
        ] {
            let e = load(file, secret).expect_err("refused");
            assert!(
                e.to_string().contains("redis.connections") && e.to_string().contains(why),
                "{e}"
            );
        }
        let e = load(
            "redis: { url: redis://r:6379 }\n",
            &[
                ("TITAN_AUTH_HS256_SECRET", SECRET),
                ("TITAN_REDIS_CONNECTIONS", "two"),
            ],
        )
        .expect_err("refused");
        assert!(
            e.to_string().contains("\"two\" is not a whole number"),
            "{e}"
        );
    }

    #[test]
    fn limits_have_defaults_and_settings() {
        let defaults = Config::from_sources(
            Some("postgres: { url: postgres://p/db }\nclickhouse: { url: http://c:8123 }\n"),
            env(&[("TITAN_AUTH_HS256_SECRET", SECRET)]),
        )
        .expect("valid");
        let pg = defaults.postgres.expect("postgres");
        let ch = defaults.clickhouse.expect("clickhouse");
        assert_eq!(
            (
                pg.statement_timeout,
                pg.idle_in_transaction_timeout,
                ch.max_execution_time,
                ch.max_memory_usage,
                defaults.max_concurrent_calls,
                defaults.auth.max_token_lifetime,
                defaults.request_timeout,
            ),
            (
                Duration::from_secs(15),
                Duration::from_secs(30),
                Duration::from_secs(30),
                4 << 30,
                1024,
                DEFAULT_MAX_TOKEN_LIFETIME,
                Duration::from_secs(30),
            )
        );
        let file = "maxConcurrentCalls: 64\nrequestTimeoutSeconds: 3\n\
                    auth: { maxTokenLifetimeSeconds: 600 }\n\
                    postgres: { url: postgres://p/db, statementTimeoutSeconds: 2, idleInTransactionTimeoutSeconds: 5 }\n\
                    clickhouse: { url: http://c:8123, maxExecutionTimeSeconds: 9, maxMemoryUsageBytes: 1000 }\n";
        let set = Config::from_sources(Some(file), env(&[("TITAN_AUTH_HS256_SECRET", SECRET)]))
            .expect("valid");
        let pg = set.postgres.expect("postgres");
        let ch = set.clickhouse.expect("clickhouse");
        assert_eq!(
            (
                pg.statement_timeout,
                pg.idle_in_transaction_timeout,
                ch.max_execution_time,
                ch.max_memory_usage,
                set.max_concurrent_calls,
                set.auth.max_token_lifetime,
                set.request_timeout,
            ),
            (
                Duration::from_secs(2),
                Duration::from_secs(5),
                Duration::from_secs(9),
                1000,
                64,
                Duration::from_secs(600),
                Duration::from_secs(3),
            )
        );
        let err = Config::from_sources(
            Some("maxConcurrentCalls: 0\n"),
            env(&[("TITAN_AUTH_HS256_SECRET", SECRET)]),
        )
        .expect_err("zero");
        assert!(err.to_string().contains("maxConcurrentCalls"), "{err}");
        let err = Config::from_sources(
            Some("shutdownGraceSeconds: 5\npreStopDelaySeconds: 5\n"),
            env(&[("TITAN_AUTH_HS256_SECRET", SECRET)]),
        )
        .expect_err("the delay is part of the grace");
        assert!(err.to_string().contains("preStopDelaySeconds"), "{err}");
        assert_eq!(defaults_pre_stop(), Duration::from_secs(5));
    }

    #[test]
    fn tracing_exports_only_to_a_configured_http_endpoint() {
        let with = |file: &str, vars: &[(&str, &str)]| {
            let mut all = vec![("TITAN_AUTH_HS256_SECRET", SECRET)];
            all.extend_from_slice(vars);
            Config::from_sources(Some(file), |name| {
                all.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| (*v).to_owned())
            })
        };
        assert_eq!(
            with("", &[]).expect("valid").tracing,
            TracingConfig::default()
        );
        let file = "tracing: { otlpEndpoint: http://file:4317, sampleRatio: 0.5 }\n";
        assert_eq!(
            with(file, &[]).expect("valid").tracing,
            TracingConfig {
                otlp_endpoint: Some("http://file:4317".into()),
                sample_ratio: 0.5,
            }
        );
        assert_eq!(
            with(
                file,
                &[
                    ("TITAN_OTLP_ENDPOINT", "http://collector:4317"),
                    ("TITAN_TRACE_SAMPLE_RATIO", "0.1"),
                ]
            )
            .expect("valid")
            .tracing,
            TracingConfig {
                otlp_endpoint: Some("http://collector:4317".into()),
                sample_ratio: 0.1,
            }
        );
        let err = with("", &[("TITAN_OTLP_ENDPOINT", "collector:4317")]).expect_err("no scheme");
        assert_eq!(
            err.to_string(),
            "invalid setting tracing.otlpEndpoint: \"collector:4317\" is not an http:// URL like http://collector:4317"
        );
        let err = with("tracing: { sampleRatio: 1.5 }\n", &[]).expect_err("above 1");
        assert_eq!(
            err.to_string(),
            "invalid setting tracing.sampleRatio: 1.5 is not a number from 0 to 1"
        );
        let err = with("", &[("TITAN_TRACE_SAMPLE_RATIO", "all")]).expect_err("not a number");
        assert_eq!(
            err.to_string(),
            "invalid setting tracing.sampleRatio: \"all\" is not a number from 0 to 1"
        );
    }

    #[test]
    fn environment_overrides_file_per_field() {
        let file = "cell: sg-1\nlisten: { grpc: 127.0.0.1:1 }\nauth: { hs256Secret: x }\n";
        let cfg = Config::from_sources(
            Some(file),
            env(&[
                ("TITAN_AUTH_HS256_SECRET", SECRET),
                ("TITAN_REDIS_URL", "redis://r:6379"),
            ]),
        )
        .expect("valid");
        assert_eq!(cfg.cell, "sg-1");
        assert_eq!(cfg.listen.grpc.to_string(), "127.0.0.1:1");
        assert_eq!(cfg.listen.admin.to_string(), "0.0.0.0:9090");
        assert_eq!(
            cfg.auth
                .hs256_secret
                .as_ref()
                .map(|s| s.expose_secret().to_owned()),
            Some(SECRET.into())
        );
        assert_eq!(
            cfg.redis.as_ref().map(|r| r.key_prefix.as_str()),
            Some("titan:sg-1:")
        );
        assert!(cfg.postgres.is_none());
    }

    #[test]
    fn errors_name_the_setting() {
        let err = Config::from_sources(
            Some("listen: { http: nowhere }"),
            env(&[("TITAN_AUTH_HS256_SECRET", SECRET)]),
        )
        .expect_err("bad address");
        assert!(err.to_string().contains("listen.http"), "{err}");

        let err = Config::from_sources(None, env(&[])).expect_err("no key");
        assert!(err.to_string().contains("TITAN_AUTH_HS256_SECRET"), "{err}");

        let err = Config::from_sources(
            Some("colour: blue"),
            env(&[("TITAN_AUTH_HS256_SECRET", SECRET)]),
        )
        .expect_err("unknown field");
        assert!(err.to_string().contains("colour"), "{err}");

        let err = Config::from_sources(
            None,
            env(&[
                ("TITAN_AUTH_HS256_SECRET", SECRET),
                ("TITAN_POSTGRES_URL", "mysql://x"),
            ]),
        )
        .expect_err("wrong scheme");
        assert!(err.to_string().contains("postgres.url"), "{err}");

        let err = Config::from_sources(None, env(&[("TITAN_AUTH_HS256_SECRET", "short")]))
            .expect_err("short secret");
        assert!(err.to_string().contains("32 bytes"), "{err}");
    }

    #[test]
    fn realtime_has_defaults_settings_and_overrides() {
        let defaults =
            Config::from_sources(None, env(&[("TITAN_AUTH_HS256_SECRET", SECRET)])).expect("valid");
        assert_eq!(defaults.realtime, RealtimeConfig::default());
        let file = "realtime: { allowedOrigins: [\"https://Shop.Example\"], allowMissingOrigin: true, \
                    pingIntervalSeconds: 3, missedPongs: 4, sendQueue: 8, maxFrameBytes: 512, \
                    maxConnections: 10, maxConnectionsPerUser: 2 }\n";
        let set = Config::from_sources(Some(file), env(&[("TITAN_AUTH_HS256_SECRET", SECRET)]))
            .expect("valid");
        assert_eq!(
            set.realtime,
            RealtimeConfig {
                allowed_origins: vec!["https://shop.example".into()],
                allow_missing_origin: true,
                ping_interval: Duration::from_secs(3),
                missed_pongs: 4,
                send_queue: 8,
                max_frame_bytes: 512,
                max_connections: 10,
                max_connections_per_user: 2,
            }
        );
        let overridden = Config::from_sources(
            Some(file),
            env(&[
                ("TITAN_AUTH_HS256_SECRET", SECRET),
                (
                    "TITAN_REALTIME_ALLOWED_ORIGINS",
                    "https://a.example, http://localhost:3000",
                ),
                ("TITAN_REALTIME_ALLOW_MISSING_ORIGIN", "false"),
                ("TITAN_REALTIME_MAX_CONNECTIONS", "50000"),
                ("TITAN_REALTIME_MAX_CONNECTIONS_PER_USER", "3"),
            ]),
        )
        .expect("valid")
        .realtime;
        assert_eq!(
            (
                overridden.allowed_origins,
                overridden.allow_missing_origin,
                overridden.max_connections,
                overridden.max_connections_per_user
            ),
            (
                vec![
                    "https://a.example".to_owned(),
                    "http://localhost:3000".to_owned()
                ],
                false,
                50_000,
                3
            )
        );
        for (yaml, setting) in [
            ("realtime: { sendQueue: 0 }", "realtime.sendQueue"),
            ("realtime: { missedPongs: 0 }", "realtime.missedPongs"),
            (
                "realtime: { allowedOrigins: [\"https://a.example/path\"] }",
                "realtime.allowedOrigins",
            ),
            ("realtime: { colour: blue }", "colour"),
        ] {
            let err = Config::from_sources(Some(yaml), env(&[("TITAN_AUTH_HS256_SECRET", SECRET)]))
                .expect_err(yaml);
            assert!(err.to_string().contains(setting), "{yaml}: {err}");
        }
    }

    #[test]
    fn object_storage_from_the_operator_variables_and_the_file() {
        let none =
            Config::from_sources(None, env(&[("TITAN_AUTH_HS256_SECRET", SECRET)])).expect("valid");
        assert!(none.object_storage.is_none());
        // What the operator sets from a Cell's objectStorage.
        let operator = Config::from_sources(
            None,
            env(&[
                ("TITAN_AUTH_HS256_SECRET", SECRET),
                ("TITAN_S3_ENDPOINT", "http://minio.sg-1:9000"),
                ("TITAN_S3_BUCKET", "titan-sg-1"),
                ("TITAN_S3_REGION", "ap-southeast-1"),
                ("TITAN_S3_ACCESS_KEY_ID", "AKIA1"),
                ("TITAN_S3_SECRET_ACCESS_KEY", "s3cret"),
            ]),
        )
        .expect("valid");
        let s3 = operator.object_storage.expect("configured");
        assert_eq!(s3.endpoint.as_deref(), Some("http://minio.sg-1:9000"));
        assert_eq!(s3.bucket, "titan-sg-1");
        assert_eq!(s3.region, "ap-southeast-1");
        assert_eq!(s3.access_key_id, "AKIA1");
        assert_eq!(s3.secret_access_key.expose_secret(), "s3cret");
        assert!(s3.path_style, "an endpoint means path-style by default");
        assert_eq!(s3.multipart_threshold, DEFAULT_MULTIPART_THRESHOLD);
        assert!(
            !format!("{s3:?}").contains("s3cret"),
            "the secret never prints"
        );

        let file = "objectStorage: { bucket: media, accessKeyId: k, secretAccessKey: s, \
                    pathStyle: true, multipartThresholdBytes: 6291456 }\n";
        let aws = Config::from_sources(
            Some(file),
            env(&[
                ("TITAN_AUTH_HS256_SECRET", SECRET),
                ("TITAN_S3_PATH_STYLE", "false"),
            ]),
        )
        .expect("valid")
        .object_storage
        .expect("configured");
        assert_eq!(aws.endpoint, None);
        assert_eq!(aws.region, "us-east-1");
        assert!(!aws.path_style, "TITAN_S3_PATH_STYLE overrides the file");
        assert_eq!(aws.multipart_threshold, 6 << 20);
    }

    #[test]
    fn object_storage_errors_name_the_setting_and_the_variable() {
        for (yaml, message) in [
            (
                "objectStorage: { endpoint: http://s3:9000 }",
                "invalid setting objectStorage.bucket: required once any objectStorage setting \
                 is given: set TITAN_S3_BUCKET",
            ),
            (
                "objectStorage: { bucket: media, secretAccessKey: s }",
                "invalid setting objectStorage.accessKeyId: required with a bucket: set \
                 TITAN_S3_ACCESS_KEY_ID",
            ),
            (
                "objectStorage: { bucket: media, accessKeyId: k }",
                "invalid setting objectStorage.secretAccessKey: required with a bucket: set \
                 TITAN_S3_SECRET_ACCESS_KEY",
            ),
            (
                "objectStorage: { bucket: Media_1, accessKeyId: k, secretAccessKey: s }",
                "invalid setting objectStorage.bucket: \"Media_1\" is not a bucket name",
            ),
            (
                "objectStorage: { bucket: media, endpoint: s3.example, accessKeyId: k, secretAccessKey: s }",
                "invalid setting objectStorage.endpoint: expected a http or https URL",
            ),
            (
                "objectStorage: { bucket: media, accessKeyId: k, secretAccessKey: s, multipartThresholdBytes: 1024 }",
                "invalid setting objectStorage.multipartThresholdBytes: must be at least 5242880",
            ),
            (
                "objectStorage: { bucket: media, acessKeyId: k }",
                "unknown field `acessKeyId`",
            ),
        ] {
            let err = Config::from_sources(Some(yaml), env(&[("TITAN_AUTH_HS256_SECRET", SECRET)]))
                .expect_err(yaml);
            assert!(err.to_string().contains(message), "{yaml}: {err}");
        }
        let err = Config::from_sources(
            None,
            env(&[
                ("TITAN_AUTH_HS256_SECRET", SECRET),
                ("TITAN_S3_BUCKET", "media"),
                ("TITAN_S3_ACCESS_KEY_ID", "k"),
                ("TITAN_S3_SECRET_ACCESS_KEY", "s"),
                ("TITAN_S3_PATH_STYLE", "yes"),
            ]),
        )
        .expect_err("not a bool");
        assert_eq!(
            err.to_string(),
            "invalid setting objectStorage.pathStyle: \"yes\" is neither true nor false"
        );
    }

    #[test]
    fn tls_settings_pair_up_and_are_bounded() {
        let none =
            Config::from_sources(None, env(&[("TITAN_AUTH_HS256_SECRET", SECRET)])).expect("valid");
        assert_eq!(none.tls, TlsConfig::default());
        let file = "tls: { certFile: /f/tls.crt, keyFile: /f/tls.key, caFile: /f/ca.crt, reloadSeconds: 60 }\n";
        let set = Config::from_sources(
            Some(file),
            env(&[
                ("TITAN_AUTH_HS256_SECRET", SECRET),
                ("TITAN_TLS_CERT_FILE", "/secret/tls.crt"),
            ]),
        )
        .expect("valid");
        assert_eq!(
            set.tls,
            TlsConfig {
                server: Some(ServerTlsFiles {
                    cert_file: "/secret/tls.crt".into(),
                    key_file: "/f/tls.key".into(),
                }),
                reload: Duration::from_secs(60),
                ca_file: Some("/f/ca.crt".into()),
            }
        );
        let redis = Config::from_sources(
            Some("redis: { url: 'rediss://r:6380', caFile: /f/redis-ca.crt }\n"),
            env(&[("TITAN_AUTH_HS256_SECRET", SECRET)]),
        )
        .expect("valid")
        .redis
        .expect("redis");
        assert_eq!(redis.ca_file, Some(PathBuf::from("/f/redis-ca.crt")));
        let clickhouse = |vars: &'static [(&'static str, &'static str)]| {
            Config::from_sources(
                Some("clickhouse: { url: 'https://ch:8443', caFile: /f/ch-ca.crt }\n"),
                env(vars),
            )
            .expect("valid")
            .clickhouse
            .expect("clickhouse")
            .ca_file
        };
        assert_eq!(
            clickhouse(&[("TITAN_AUTH_HS256_SECRET", SECRET)]),
            Some(PathBuf::from("/f/ch-ca.crt"))
        );
        assert_eq!(
            clickhouse(&[
                ("TITAN_AUTH_HS256_SECRET", SECRET),
                ("TITAN_CLICKHOUSE_CA_FILE", "/secret/ca.crt")
            ]),
            Some(PathBuf::from("/secret/ca.crt"))
        );
        let refused = |file: &str, vars: &'static [(&'static str, &'static str)]| {
            Config::from_sources(Some(file), env(vars))
                .expect_err("refused")
                .to_string()
        };
        assert_eq!(
            refused(
                "",
                &[
                    ("TITAN_AUTH_HS256_SECRET", SECRET),
                    ("TITAN_TLS_CERT_FILE", "/c")
                ]
            ),
            "invalid setting tls.keyFile: tls.certFile is set: set the key too (TITAN_TLS_KEY_FILE or tls.keyFile)"
        );
        assert_eq!(
            refused(
                "tls: { keyFile: /k }\n",
                &[("TITAN_AUTH_HS256_SECRET", SECRET)]
            ),
            "invalid setting tls.certFile: tls.keyFile is set: set the certificate too (TITAN_TLS_CERT_FILE or tls.certFile)"
        );
        assert_eq!(
            refused(
                "tls: { reloadSeconds: 0 }\n",
                &[("TITAN_AUTH_HS256_SECRET", SECRET)]
            ),
            "invalid setting tls.reloadSeconds: 0 is out of range: 1 to 3600 seconds"
        );
    }

    #[test]
    fn jwks_settings_have_defaults_overrides_and_checks() {
        let none =
            Config::from_sources(None, env(&[("TITAN_AUTH_HS256_SECRET", SECRET)])).expect("valid");
        assert_eq!(none.auth.jwks, None);
        // A provider's key set alone is enough of a key.
        let only = Config::from_sources(
            None,
            env(&[("TITAN_AUTH_JWKS_URL", "https://idp.example/jwks")]),
        )
        .expect("valid");
        assert_eq!(
            only.auth.jwks,
            Some(JwksConfig::new("https://idp.example/jwks"))
        );
        let file = "auth: { jwksUrl: https://a.example/keys, jwksRefreshSeconds: 600, \
                    jwksMinRefreshSeconds: 60, jwksMaxRefreshSeconds: 7200, \
                    jwksUnknownKidIntervalSeconds: 30, jwksFetchTimeoutSeconds: 3 }\n";
        let set = Config::from_sources(
            Some(file),
            env(&[("TITAN_AUTH_JWKS_REFRESH_SECONDS", "900")]),
        )
        .expect("valid");
        assert_eq!(
            set.auth.jwks,
            Some(JwksConfig {
                url: "https://a.example/keys".into(),
                refresh: Duration::from_secs(900),
                min_refresh: Duration::from_secs(60),
                max_refresh: Duration::from_secs(7200),
                unknown_kid_interval: Duration::from_secs(30),
                fetch_timeout: Duration::from_secs(3),
            })
        );
        for (yaml, message) in [
            (
                "auth: { jwksUrl: ftp://idp.example/jwks }",
                "invalid setting auth.jwksUrl: expected a http or https URL",
            ),
            (
                "auth: { jwksUrl: https://x.example, jwksUnknownKidIntervalSeconds: 0 }",
                "invalid setting auth.jwksUnknownKidIntervalSeconds: must be at least 1 second",
            ),
            (
                "auth: { jwksUrl: https://x.example, jwksRefreshSeconds: 10 }",
                "invalid setting auth.jwksRefreshSeconds: 10 s is outside \
                 auth.jwksMinRefreshSeconds..auth.jwksMaxRefreshSeconds (30..3600 s)",
            ),
            (
                "auth: { jwksRefreshSeconds: 60 }",
                "invalid setting auth.jwksRefreshSeconds: needs auth.jwksUrl (or TITAN_AUTH_JWKS_URL)",
            ),
        ] {
            let err = Config::from_sources(Some(yaml), env(&[("TITAN_AUTH_HS256_SECRET", SECRET)]))
                .expect_err(yaml);
            assert_eq!(err.to_string(), message, "{yaml}");
        }
        let err = Config::from_sources(
            None,
            env(&[
                ("TITAN_AUTH_JWKS_URL", "https://idp.example/jwks"),
                ("TITAN_AUTH_JWKS_REFRESH_SECONDS", "soon"),
            ]),
        )
        .expect_err("not a number");
        assert_eq!(
            err.to_string(),
            "invalid setting auth.jwksRefreshSeconds: \"soon\" is not a number of seconds"
        );
    }

    #[test]
    fn bucket_names() {
        assert!(is_bucket_name("titan-sg-1"));
        assert!(is_bucket_name("a.b.c"));
        assert!(!is_bucket_name("ab"));
        assert!(!is_bucket_name("-ab"));
        assert!(!is_bucket_name("ab-"));
        assert!(!is_bucket_name("a..b"));
        assert!(!is_bucket_name("Abc"));
        assert!(!is_bucket_name(&"a".repeat(64)));
    }

    #[test]
    fn dns_labels() {
        assert!(is_dns_label("sg-1"));
        assert!(!is_dns_label("Sg"));
        assert!(!is_dns_label("-a"));
        assert!(!is_dns_label(""));
    }
}
