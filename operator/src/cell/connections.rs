//! Validate stage of the Cell controller for what the cell reads from Secrets it does not own:
//! where each datastore is reached, whichever its provider (builtin from the generated
//! credentials, cloudnative-pg from the Secret CloudNativePG creates, external from the Secret
//! the user names), and whether the object storage credentials are complete.
//!
//! Services read the result from one Secret (`<cell>-datastores`) with the same keys for every
//! provider, so a service never knows which provider it runs on.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use titan_crds::{
    Cell, DatastoreKind,
    cell::{PostgresProvider, Provider},
};

use super::{
    credentials::{Credentials, Key},
    datastores::CLICKHOUSE_HTTPS_PORT,
};
use crate::{
    cnpg,
    shared::{CLICKHOUSE_LOGIN_KEYS, OBJECT_STORAGE_KEYS, TLS_CA_KEY, TLS_MOUNT},
};

/// Key of the connection URL in an external datastore's Secret.
pub const EXTERNAL_URL_KEY: &str = "url";
/// Optional keys of an external ClickHouse's login.
const EXTERNAL_CLICKHOUSE_LOGIN: [&str; 2] = ["user", "password"];

/// Name of the CloudNativePG cluster (and of the builtin PostgreSQL).
pub const POSTGRES: &str = "postgres";
/// Name of the builtin Redis.
pub const REDIS: &str = "redis";
/// Name of the builtin ClickHouse.
pub const CLICKHOUSE: &str = "clickhouse";
/// Database and user of a builtin or CloudNativePG PostgreSQL, and user of a builtin ClickHouse.
pub const DATABASE_USER: &str = "titan";

/// What a Secret the cell reads has for one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The Secret does not exist.
    NoSecret,
    /// The Secret exists without the key.
    NoKey,
    /// The key's value.
    Value(String),
}

/// Where the values of Secrets the cell does not own come from.
pub trait SecretSource {
    /// The value of `key` in Secret `secret` of the cell's namespace.
    fn lookup(&self, secret: &str, key: &str) -> Lookup;
}

/// The Secrets read from the API server, by name.
impl SecretSource for BTreeMap<String, Secret> {
    fn lookup(&self, secret: &str, key: &str) -> Lookup {
        let Some(found) = self.get(secret) else {
            return Lookup::NoSecret;
        };
        match found.data.as_ref().and_then(|d| d.get(key)) {
            Some(value) => match String::from_utf8(value.0.clone()) {
                Ok(text) if !text.is_empty() => Lookup::Value(text),
                _ => Lookup::NoKey,
            },
            None => Lookup::NoKey,
        }
    }
}

/// No cluster (`titan-operator render`): every key is there, shown as where it will come from.
#[derive(Debug, Clone, Copy, Default)]
pub struct Offline;

impl SecretSource for Offline {
    fn lookup(&self, secret: &str, key: &str) -> Lookup {
        Lookup::Value(format!("<from secret {secret} key {key}>"))
    }
}

/// Why a datastore cannot be connected to yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unresolved {
    /// CamelCase reason for the status.
    pub reason: &'static str,
    /// What is missing, naming the Secret and keys.
    pub message: String,
    /// True when a person must act (a user's Secret is wrong); false while waiting for another
    /// operator (CloudNativePG) to create its Secret.
    pub needs_action: bool,
}

/// How one datastore is reached: the keys it puts in the datastores Secret.
pub type Resolution = Result<BTreeMap<String, String>, Unresolved>;

/// Every datastore's resolution, and the object storage's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connections {
    /// PostgreSQL.
    pub postgres: Resolution,
    /// Redis.
    pub redis: Resolution,
    /// ClickHouse.
    pub clickhouse: Resolution,
    /// Object storage credentials (`accessKeyId`, `secretAccessKey` → value), when the cell has
    /// object storage. Pods read them from the user's Secret; the values are kept only to hash
    /// them onto the pods that read them.
    pub object_storage: Option<Result<BTreeMap<String, String>, Unresolved>>,
}

impl Connections {
    /// The datastores Secret's data, once every datastore resolved.
    pub fn datastore_values(&self) -> Option<BTreeMap<String, String>> {
        [&self.postgres, &self.redis, &self.clickhouse]
            .into_iter()
            .try_fold(BTreeMap::new(), |mut values, resolution| {
                values.extend(resolution.as_ref().ok()?.clone());
                Some(values)
            })
    }
}

fn host(service: &str, namespace: &str) -> String {
    format!("{service}.{namespace}.svc")
}

/// Reads `keys` of a user's Secret; names every missing key at once so one edit fixes them.
fn read_keys(
    source: &dyn SecretSource,
    secret: &str,
    keys: &[&str],
    what: &str,
) -> Result<Vec<String>, Unresolved> {
    let mut values = Vec::new();
    let mut missing = Vec::new();
    for key in keys {
        match source.lookup(secret, key) {
            Lookup::Value(value) => values.push(value),
            Lookup::NoKey => missing.push(*key),
            Lookup::NoSecret => {
                return Err(Unresolved {
                    reason: "SecretNotFound",
                    message: format!("{what}: secret {secret} does not exist"),
                    needs_action: true,
                });
            }
        }
    }
    if missing.is_empty() {
        Ok(values)
    } else {
        Err(Unresolved {
            reason: "SecretKeysMissing",
            message: format!("{what}: secret {secret} lacks keys {}", missing.join(", ")),
            needs_action: true,
        })
    }
}

fn external(source: &dyn SecretSource, store: DatastoreKind, secret: Option<&str>) -> Resolution {
    let what = format!("external {}", store_name(store));
    // The CRD's CEL rule makes secretName required for external; an old object may predate it.
    let secret = secret.ok_or_else(|| Unresolved {
        reason: "SecretNotNamed",
        message: format!("{what}: set secretName"),
        needs_action: true,
    })?;
    let url = read_keys(source, secret, &[EXTERNAL_URL_KEY], &what)?.remove(0);
    let mut keys = BTreeMap::from([(store.env_var().to_string(), url)]);
    if store == DatastoreKind::ClickHouse {
        for (from, to) in EXTERNAL_CLICKHOUSE_LOGIN.iter().zip(CLICKHOUSE_LOGIN_KEYS) {
            if let Lookup::Value(value) = source.lookup(secret, from) {
                keys.insert(to.to_string(), value);
            }
        }
    }
    Ok(keys)
}

fn store_name(store: DatastoreKind) -> &'static str {
    match store {
        DatastoreKind::Postgres => POSTGRES,
        DatastoreKind::Redis => REDIS,
        DatastoreKind::ClickHouse => CLICKHOUSE,
    }
}

/// Resolves every datastore of `cell` and checks its object storage credentials.
pub fn resolve(cell: &Cell, credentials: &Credentials, source: &dyn SecretSource) -> Connections {
    let namespace = cell.namespace_name();
    let stores = &cell.spec.datastores;
    // Under TLS the builtin servers serve the cell's certificate: their URLs ask for TLS and
    // the services verify it against the CA bundle they mount (the URL names it for
    // PostgreSQL; kit's `redis.caFile` and `clickhouse.caFile` for the others, see
    // `shared::datastore_tls_env`).
    let tls = cell.spec.tls.is_some();

    let postgres = match stores.postgres.provider {
        PostgresProvider::Builtin => Ok(BTreeMap::from([(
            DatastoreKind::Postgres.env_var().to_string(),
            format!(
                "postgres://{DATABASE_USER}:{}@{}:5432/{DATABASE_USER}{}",
                credentials.get(Key::PostgresPassword),
                host(POSTGRES, &namespace),
                if tls {
                    format!("?sslmode=verify-full&sslrootcert={TLS_MOUNT}/{TLS_CA_KEY}")
                } else {
                    String::new()
                }
            ),
        )])),
        PostgresProvider::CloudnativePg => {
            let secret = format!("{POSTGRES}{}", cnpg::APP_SECRET_SUFFIX);
            match source.lookup(&secret, cnpg::APP_SECRET_URI_KEY) {
                Lookup::Value(uri) => Ok(BTreeMap::from([(
                    DatastoreKind::Postgres.env_var().to_string(),
                    uri,
                )])),
                Lookup::NoSecret | Lookup::NoKey => Err(Unresolved {
                    reason: "WaitingForCloudNativePG",
                    message: format!(
                        "cloudnative-pg postgres: waiting for CloudNativePG to create secret {secret} with key {}",
                        cnpg::APP_SECRET_URI_KEY
                    ),
                    needs_action: false,
                }),
            }
        }
        PostgresProvider::External => external(
            source,
            DatastoreKind::Postgres,
            stores.postgres.secret_name.as_deref(),
        ),
    };

    let redis = match stores.redis.provider {
        Provider::Builtin => Ok(BTreeMap::from([(
            DatastoreKind::Redis.env_var().to_string(),
            format!(
                "{}://:{}@{}:6379",
                if tls { "rediss" } else { "redis" },
                credentials.get(Key::RedisPassword),
                host(REDIS, &namespace)
            ),
        )])),
        Provider::External => external(
            source,
            DatastoreKind::Redis,
            stores.redis.secret_name.as_deref(),
        ),
    };

    let clickhouse = match stores.clickhouse.provider {
        Provider::Builtin => {
            let [user, password] = CLICKHOUSE_LOGIN_KEYS;
            Ok(BTreeMap::from([
                (
                    DatastoreKind::ClickHouse.env_var().to_string(),
                    if tls {
                        format!(
                            "https://{}:{CLICKHOUSE_HTTPS_PORT}",
                            host(CLICKHOUSE, &namespace)
                        )
                    } else {
                        format!("http://{}:8123", host(CLICKHOUSE, &namespace))
                    },
                ),
                (user.to_string(), DATABASE_USER.to_string()),
                (
                    password.to_string(),
                    credentials.get(Key::ClickHousePassword).to_string(),
                ),
            ]))
        }
        Provider::External => external(
            source,
            DatastoreKind::ClickHouse,
            stores.clickhouse.secret_name.as_deref(),
        ),
    };

    let object_storage = stores.object_storage.as_ref().map(|storage| {
        read_keys(
            source,
            &storage.credentials_secret,
            &OBJECT_STORAGE_KEYS,
            "object storage",
        )
        .map(|values| {
            OBJECT_STORAGE_KEYS
                .iter()
                .map(|key| key.to_string())
                .zip(values)
                .collect()
        })
    });

    Connections {
        postgres,
        redis,
        clickhouse,
        object_storage,
    }
}
