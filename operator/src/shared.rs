//! What the Cell and Service builders share: the view of a cell that a service's objects depend
//! on ([`CellView`]), the names and keys of the cell's Secrets, the ports of every Titan service,
//! and the helpers that turn them into container variables. The Cell controller builds the
//! Secrets and network policies, the Service controller the pods that read and listen on them:
//! both take the names from here, so they cannot drift apart.

use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, SecretKeySelector};
use kube::ResourceExt;
use titan_crds::{
    Cell, DatastoreKind,
    cell::{CellAuth, CellTracing, ObjectStorage, PostgresProvider, Provider},
};

/// gRPC port of every Titan service.
pub const GRPC_PORT: i32 = 50051;
/// HTTP port (WebSocket endpoints, media callbacks).
pub const HTTP_PORT: i32 = 8080;
/// Admin port (`/metrics`, `/healthz`, `/readyz`).
pub const ADMIN_PORT: i32 = 9090;

/// What of the cell a service's objects depend on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellView {
    /// Name of the cell.
    pub name: String,
    /// The cell's release, for the version label when the image has no tag.
    pub version: String,
    /// `spec.operation.stopped`.
    pub stopped: bool,
    /// `spec.operation.reconciliationPaused`.
    pub paused: bool,
    /// The cell's object storage, passed to the services that record or upload.
    pub object_storage: Option<ObjectStorage>,
    /// Whether the cell runs a TURN server, whose secret the videocall service gets.
    pub turn: bool,
    /// `spec.auth`: the identity provider every Titan service verifies users' tokens with.
    pub auth: CellAuth,
    /// Whether the services serve TLS (`spec.tls`) with the certificate in
    /// [`CellView::tls_secret`].
    pub tls: bool,
    /// The datastores reached over TLS verified against the cell's CA bundle: the builtin
    /// ones, under TLS.
    pub tls_datastores: Vec<DatastoreKind>,
    /// `spec.tracing`: the collector every Titan service exports its traces to.
    pub tracing: Option<CellTracing>,
}

impl CellView {
    /// The parts of `cell` a service depends on.
    pub fn of(cell: &Cell) -> Self {
        Self {
            name: cell.name_any(),
            version: cell.spec.version.clone(),
            stopped: cell.spec.operation.stopped,
            paused: cell.spec.operation.reconciliation_paused,
            object_storage: cell.spec.datastores.object_storage.clone(),
            turn: cell.spec.media.turn.as_ref().is_some_and(|t| t.enabled),
            auth: cell.spec.auth.clone(),
            tls: cell.spec.tls.is_some(),
            tracing: cell.spec.tracing.clone(),
            tls_datastores: if cell.spec.tls.is_some() {
                let stores = &cell.spec.datastores;
                [
                    (
                        DatastoreKind::Postgres,
                        stores.postgres.provider == PostgresProvider::Builtin,
                    ),
                    (
                        DatastoreKind::Redis,
                        stores.redis.provider == Provider::Builtin,
                    ),
                    (
                        DatastoreKind::ClickHouse,
                        stores.clickhouse.provider == Provider::Builtin,
                    ),
                ]
                .into_iter()
                .filter_map(|(kind, builtin)| builtin.then_some(kind))
                .collect()
            } else {
                Vec::new()
            },
        }
    }

    /// Name of the Secret holding the datastore URLs of the cell.
    pub fn datastores_secret(&self) -> String {
        format!("{}-datastores", self.name)
    }

    /// Name of the Secret holding the cell's token key.
    pub fn auth_secret(&self) -> String {
        format!("{}-auth", self.name)
    }

    /// Name of the Secret holding the services' TLS certificate, its key and the CA bundle
    /// (the operator's or cert-manager's).
    pub fn tls_secret(&self) -> String {
        format!("{}-tls", self.name)
    }

    /// Name of the Secret holding the TURN server's shared secret.
    pub fn turn_secret(&self) -> String {
        format!("{}-turn", self.name)
    }
}

/// Where a Titan container finds Secret [`CellView::tls_secret`] (beside, not under, the config
/// mounted at `/etc/titan`: a mount point inside a read-only volume cannot be made).
pub const TLS_MOUNT: &str = "/etc/titan-tls";
/// Key of the CA bundle in [`CellView::tls_secret`] (as cert-manager writes it).
pub const TLS_CA_KEY: &str = "ca.crt";
/// Key of the services' certificate chain in [`CellView::tls_secret`].
pub const TLS_CERT_KEY: &str = "tls.crt";
/// Key of its private key in [`CellView::tls_secret`].
pub const TLS_KEY_KEY: &str = "tls.key";

/// The variables that make kit serve the cell's certificate and verify other services with its
/// CA bundle, files of [`TLS_MOUNT`].
pub fn tls_env() -> Vec<EnvVar> {
    [
        ("TITAN_TLS_CERT_FILE", TLS_CERT_KEY),
        ("TITAN_TLS_KEY_FILE", TLS_KEY_KEY),
        ("TITAN_TLS_CA_FILE", TLS_CA_KEY),
    ]
    .into_iter()
    .map(|(variable, file)| value_env(variable, format!("{TLS_MOUNT}/{file}")))
    .collect()
}

/// kit's variable naming the CA file a TLS connection to `store` is verified against, for the
/// stores that take it apart from their URL (PostgreSQL's URL names it: `sslrootcert`).
pub fn datastore_tls_env(store: DatastoreKind) -> Option<EnvVar> {
    let variable = match store {
        DatastoreKind::Redis => "TITAN_REDIS_CA_FILE",
        DatastoreKind::ClickHouse => "TITAN_CLICKHOUSE_CA_FILE",
        DatastoreKind::Postgres => return None,
    };
    Some(value_env(variable, format!("{TLS_MOUNT}/{TLS_CA_KEY}")))
}

/// Key (and variable) of the TURN shared secret in [`CellView::turn_secret`].
pub const TURN_SECRET_KEY: &str = "TITAN_TURN_SECRET";
/// Keys (and variables) of the ClickHouse login in the datastores Secret: optional, because an
/// external ClickHouse may not need one.
pub const CLICKHOUSE_LOGIN_KEYS: [&str; 2] = ["TITAN_CLICKHOUSE_USER", "TITAN_CLICKHOUSE_PASSWORD"];
/// Keys of the object storage credentials Secret.
pub const OBJECT_STORAGE_KEYS: [&str; 2] = ["accessKeyId", "secretAccessKey"];

/// A variable read from a Secret's key; the pod does not start without it.
pub fn secret_env(variable: &str, secret: &str, key: &str) -> EnvVar {
    secret_key_env(variable, secret, key, false)
}

/// A variable read from a Secret's key, left unset when the key is absent.
pub fn optional_secret_env(variable: &str, secret: &str, key: &str) -> EnvVar {
    secret_key_env(variable, secret, key, true)
}

fn secret_key_env(variable: &str, secret: &str, key: &str, optional: bool) -> EnvVar {
    EnvVar {
        name: variable.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.into(),
                key: key.into(),
                optional: Some(optional),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A variable with a literal value.
pub fn value_env(variable: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: variable.into(),
        value: Some(value.into()),
        ..Default::default()
    }
}

/// The variables of `spec.auth` (kit's `TITAN_AUTH_*`), for every Titan process of the cell:
/// an unset field sets nothing, so kit's defaults (no issuer or audience required, no JWKS)
/// hold.
pub fn auth_env(auth: &CellAuth) -> Vec<EnvVar> {
    [
        ("TITAN_AUTH_JWKS_URL", &auth.jwks_url),
        ("TITAN_AUTH_ISSUER", &auth.issuer),
        ("TITAN_AUTH_AUDIENCE", &auth.audience),
    ]
    .into_iter()
    .filter_map(|(variable, value)| value.as_ref().map(|v| value_env(variable, v)))
    .collect()
}

/// The variables of `spec.tracing` (kit's `TITAN_OTLP_ENDPOINT`, `TITAN_TRACE_SAMPLE_RATIO`),
/// for every Titan process of the cell; none without it, so kit exports nothing.
pub fn tracing_env(tracing: Option<&CellTracing>) -> Vec<EnvVar> {
    let Some(tracing) = tracing else {
        return Vec::new();
    };
    std::iter::once(value_env("TITAN_OTLP_ENDPOINT", &tracing.otlp_endpoint))
        .chain(
            tracing
                .sample_ratio
                .as_ref()
                .map(|ratio| value_env("TITAN_TRACE_SAMPLE_RATIO", ratio)),
        )
        .collect()
}

/// The variables that point a process at the cell's object storage; the services that upload
/// and the RTMP server's recorder get the same ones.
pub fn object_storage_env(storage: &ObjectStorage) -> Vec<EnvVar> {
    let [access_key, secret_key] = OBJECT_STORAGE_KEYS;
    vec![
        value_env("TITAN_S3_ENDPOINT", &storage.endpoint),
        value_env("TITAN_S3_BUCKET", &storage.bucket),
        value_env(
            "TITAN_S3_REGION",
            storage.region.as_deref().unwrap_or("us-east-1"),
        ),
        secret_env(
            "TITAN_S3_ACCESS_KEY_ID",
            &storage.credentials_secret,
            access_key,
        ),
        secret_env(
            "TITAN_S3_SECRET_ACCESS_KEY",
            &storage.credentials_secret,
            secret_key,
        ),
    ]
}
