//! A running `titan serve` on private datastores (its own PostgreSQL database, Redis key prefix
//! and ClickHouse database on the test servers), as the tests and the load generator see it.

use std::{net::SocketAddr, process::Command, time::Duration};

use titan_kit::{
    auth::Authenticator,
    config::AuthConfig,
    testing::{TestClickHouse, TestPostgres, TestRedis},
};
use tonic::{Request, transport::Channel};

use crate::process::{Process, titan_binary};

pub const SECRET: &str = "e2e-secret-e2e-secret-e2e-secret-e2e";
pub const ISSUER: &str = "titan-e2e";

/// What to start.
#[derive(Debug, Clone)]
pub struct CellOptions {
    /// `titan serve` arguments: service names or `all`.
    pub services: Vec<String>,
    /// Extra YAML config (e.g. a service's section), written to a file passed with `--config`.
    pub config: Option<String>,
    pub release: bool,
}

impl Default for CellOptions {
    fn default() -> Self {
        Self {
            services: vec!["all".into()],
            config: None,
            release: false,
        }
    }
}

#[derive(Debug)]
pub struct Cell {
    pub process: Process,
    pub grpc: SocketAddr,
    /// The HTTP port: WebSocket routes.
    pub http: SocketAddr,
    pub admin: SocketAddr,
    pub db: TestPostgres,
    pub redis: TestRedis,
    pub clickhouse: TestClickHouse,
    auth: Authenticator,
    services: Vec<String>,
    release: bool,
    _config: Option<tempfile::NamedTempFile>,
}

/// Another `titan serve` process of a cell, on the same datastores: a second replica.
#[derive(Debug)]
pub struct Replica {
    pub process: Process,
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    pub admin: SocketAddr,
}

/// A gRPC channel to a replica's port.
async fn channel(grpc: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{grpc}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect grpc")
}

impl Replica {
    pub async fn channel(&self) -> Channel {
        channel(self.grpc).await
    }
}

impl Cell {
    fn env(cmd: &mut Command, db: &TestPostgres, redis: &TestRedis, ch: &TestClickHouse) {
        cmd.env("TITAN_CELL", "e2e")
            .env("TITAN_POSTGRES_URL", &db.url)
            .env("TITAN_REDIS_URL", &redis.url)
            .env("TITAN_REDIS_KEY_PREFIX", redis.handle.prefix())
            .env("TITAN_CLICKHOUSE_URL", &ch.config.url)
            .env("TITAN_CLICKHOUSE_DATABASE", &ch.config.database)
            .env("TITAN_AUTH_HS256_SECRET", SECRET)
            .env("TITAN_AUTH_ISSUER", ISSUER)
            .env("TITAN_GRPC_ADDR", "127.0.0.1:0")
            .env("TITAN_HTTP_ADDR", "127.0.0.1:0")
            .env("TITAN_ADMIN_ADDR", "127.0.0.1:0")
            .env("TITAN_LOG", "info");
        // A whole cell has object storage (driver's proofs of delivery): the test S3 server's
        // bucket, when the suite runs with one.
        for (test, titan) in [
            ("TITAN_TEST_S3_ENDPOINT", "TITAN_S3_ENDPOINT"),
            ("TITAN_TEST_S3_BUCKET", "TITAN_S3_BUCKET"),
            ("TITAN_TEST_S3_ACCESS_KEY_ID", "TITAN_S3_ACCESS_KEY_ID"),
            (
                "TITAN_TEST_S3_SECRET_ACCESS_KEY",
                "TITAN_S3_SECRET_ACCESS_KEY",
            ),
        ] {
            if let Ok(value) = std::env::var(test) {
                cmd.env(titan, value);
            }
        }
    }

    /// `titan serve all` (debug build).
    pub async fn start() -> Self {
        Self::start_with(CellOptions::default()).await
    }

    /// Migrates, starts `titan serve` and waits until it listens.
    pub async fn start_with(options: CellOptions) -> Self {
        Self::start_on(options, TestRedis::new().await).await
    }

    /// As [`Cell::start_with`], with the cell's keys under `redis`: a prefix on the test Redis
    /// or, from `TestRedis::cluster()`, on the test Redis Cluster.
    pub async fn start_on(options: CellOptions, redis: TestRedis) -> Self {
        let db = TestPostgres::new().await;
        let clickhouse = TestClickHouse::new().await;
        let binary = titan_binary(options.release);
        let config = options.config.map(|yaml| {
            let mut file = tempfile::NamedTempFile::new().expect("config file");
            std::io::Write::write_all(&mut file, yaml.as_bytes()).expect("write config");
            file
        });

        let mut migrate = Command::new(&binary);
        migrate.arg("migrate").args(&options.services);
        Self::env(&mut migrate, &db, &redis, &clickhouse);
        let out = migrate.output().expect("run titan migrate");
        assert!(
            out.status.success(),
            "titan migrate failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );

        let replica = Self::serve(
            &binary,
            &options.services,
            config.as_ref(),
            (&db, &redis, &clickhouse),
            &[],
        );
        let auth = authenticator(SECRET);
        Self {
            process: replica.process,
            grpc: replica.grpc,
            http: replica.http,
            admin: replica.admin,
            db,
            redis,
            clickhouse,
            auth,
            services: options.services,
            release: options.release,
            _config: config,
        }
    }

    /// Starts `titan serve` and waits until it listens.
    fn serve(
        binary: &std::path::Path,
        services: &[String],
        config: Option<&tempfile::NamedTempFile>,
        (db, redis, clickhouse): (&TestPostgres, &TestRedis, &TestClickHouse),
        env: &[(&str, &str)],
    ) -> Replica {
        let mut serve = Command::new(binary);
        serve.arg("serve").args(services);
        if let Some(file) = config {
            serve.arg("--config").arg(file.path());
        }
        Self::env(&mut serve, db, redis, clickhouse);
        serve.envs(env.iter().copied());
        let mut process = Process::spawn(&mut serve);
        let (grpc, http, admin) = tokio::task::block_in_place(|| {
            process.log_line(|log| {
                (log["message"] == "listening").then(|| {
                    let addr = |k: &str| {
                        log[k]
                            .as_str()
                            .and_then(|a| a.parse::<SocketAddr>().ok())
                            .expect("address in log")
                    };
                    (addr("grpc"), addr("http"), addr("admin"))
                })
            })
        });
        process.drain_stderr();
        Replica {
            process,
            grpc,
            http,
            admin,
        }
    }

    /// A second replica: the same services and config on the same datastores (and Redis key
    /// prefix), so WebSocket fan-out and shared state cross processes as in a cluster.
    pub fn replica(&self) -> Replica {
        self.replica_with(&[])
    }

    /// A second replica with environment variables set over the cell's (e.g. `TITAN_LOG`).
    pub fn replica_with(&self, env: &[(&str, &str)]) -> Replica {
        Self::serve(
            &titan_binary(self.release),
            &self.services,
            self._config.as_ref(),
            (&self.db, &self.redis, &self.clickhouse),
            env,
        )
    }

    /// `titan serve <services>` in a process of its own, on the cell's datastores and config,
    /// after `titan migrate <services>`: a service that a test kills and restarts apart from
    /// the others.
    pub fn serve_apart(&self, services: &[&str]) -> Replica {
        let services: Vec<String> = services.iter().map(|s| (*s).to_owned()).collect();
        let binary = titan_binary(self.release);
        let mut migrate = Command::new(&binary);
        migrate.arg("migrate").args(&services);
        Self::env(&mut migrate, &self.db, &self.redis, &self.clickhouse);
        let out = migrate.output().expect("run titan migrate");
        assert!(
            out.status.success(),
            "titan migrate failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self::serve(
            &binary,
            &services,
            self._config.as_ref(),
            (&self.db, &self.redis, &self.clickhouse),
            &[],
        )
    }

    pub async fn channel(&self) -> Channel {
        channel(self.grpc).await
    }

    /// A token like [`Self::token`]'s but signed with `secret` instead of the cell's: what a
    /// forger without the key can make.
    pub fn token_signed_by(&self, secret: &str, subject: &str, roles: &[&str]) -> String {
        let roles: Vec<String> = roles.iter().map(|r| (*r).to_owned()).collect();
        authenticator(secret)
            .mint(subject, &roles, Duration::from_secs(3600))
            .expect("mint")
    }

    pub fn token(&self, subject: &str, roles: &[&str]) -> String {
        let roles: Vec<String> = roles.iter().map(|r| (*r).to_owned()).collect();
        self.auth
            .mint(subject, &roles, Duration::from_secs(3600))
            .expect("mint")
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        let response = reqwest::get(format!("http://{}{path}", self.admin))
            .await
            .expect("admin request");
        (
            response.status().as_u16(),
            response.text().await.expect("body"),
        )
    }
}

/// Mints and verifies tokens the way the cell is configured, with `secret` as its key.
fn authenticator(secret: &str) -> Authenticator {
    Authenticator::new(&AuthConfig {
        issuer: Some(ISSUER.into()),
        audience: None,
        hs256_secret: Some(secret.to_owned().into()),
        rs256_public_keys: vec![],
        leeway: Duration::ZERO,
        max_token_lifetime: titan_kit::config::DEFAULT_MAX_TOKEN_LIFETIME,
        jwks: None,
    })
    .expect("authenticator")
}

/// `message` with `authorization: Bearer <token>`, as every real client sends it.
pub fn authed<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    let value = format!("Bearer {token}")
        .parse()
        .expect("a JWT is a valid header value");
    request.metadata_mut().insert("authorization", value);
    request
}

/// A protobuf timestamp `offset_secs` from now (negative: in the past), for request fields.
pub fn seconds_from_now(offset_secs: i64) -> prost_types::Timestamp {
    titan_kit::wire::timestamp(chrono::Utc::now() + chrono::Duration::seconds(offset_secs))
}
