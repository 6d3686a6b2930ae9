//! The secrets a cell generates for itself (datastore passwords, the token key, the TURN shared
//! secret): created once into the `<cell>-credentials` Secret and read back every round, so a
//! re-reconcile or an operator restart never changes a password that is already in use.

use std::collections::BTreeMap;

use k8s_openapi::{ByteString, api::core::v1::Secret};
use kube::ResourceExt;
use rand::{Rng, distr::Alphanumeric};
use titan_crds::{
    Cell,
    cell::{PostgresProvider, Provider},
};

/// One generated secret of a cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Key {
    /// Password of the builtin PostgreSQL's `titan` user.
    PostgresPassword,
    /// Password of the builtin Redis.
    RedisPassword,
    /// Password of the builtin ClickHouse's `titan` user.
    ClickHousePassword,
    /// HS256 key the services verify tokens with.
    AuthSecret,
    /// coturn's `static-auth-secret`, shared with the videocall service.
    TurnSecret,
}

impl Key {
    /// Every key, in the order they appear in the Secret.
    pub const ALL: [Key; 5] = [
        Key::PostgresPassword,
        Key::RedisPassword,
        Key::ClickHousePassword,
        Key::AuthSecret,
        Key::TurnSecret,
    ];

    /// The key's name in the credentials Secret.
    pub fn as_str(self) -> &'static str {
        match self {
            Key::PostgresPassword => "postgres-password",
            Key::RedisPassword => "redis-password",
            Key::ClickHousePassword => "clickhouse-password",
            Key::AuthSecret => "auth-hs256-secret",
            Key::TurnSecret => "turn-secret",
        }
    }
}

/// Length of a generated secret: 32 of 62 symbols is about 190 bits, the runtime wants a token
/// key of at least 32 bytes, and alphanumerics need no escaping in the connection URLs they end
/// up in.
const LENGTH: usize = 32;

/// Name of a cell's credentials Secret.
pub fn secret_name(cell: &str) -> String {
    format!("{cell}-credentials")
}

/// Why a cell whose credentials Secret is missing must not mint new ones: its builtin
/// datastores still hold data (`data_volumes`, the cell's PersistentVolumeClaims), initialised
/// with the old passwords, which new ones would not open. None when there is nothing to lose.
pub fn lost(cell: &Cell, data_volumes: &[String]) -> Option<String> {
    let stores = &cell.spec.datastores;
    let builtin = stores.postgres.provider == PostgresProvider::Builtin
        || stores.redis.provider == Provider::Builtin
        || stores.clickhouse.provider == Provider::Builtin;
    if !builtin || data_volumes.is_empty() {
        return None;
    }
    let secret = secret_name(&cell.name_any());
    Some(format!(
        "secret {secret} is missing while the builtin datastores keep their data in {}: new passwords would not open those databases, so none are generated; restore {secret} from a backup, or delete those PersistentVolumeClaims to start the datastores empty",
        data_volumes.join(", ")
    ))
}

/// A cell's generated secrets.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    values: BTreeMap<Key, String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Passwords never reach a log line.
        f.debug_struct("Credentials")
            .field("keys", &self.values.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// The values of `existing` (the live credentials Secret), with any key it lacks made by
    /// `generate`; a key that is present is never replaced.
    pub fn resolve(existing: Option<&Secret>, mut generate: impl FnMut() -> String) -> Self {
        let data = existing.and_then(|s| s.data.as_ref());
        let values = Key::ALL
            .into_iter()
            .map(|key| {
                let kept = data
                    .and_then(|d| d.get(key.as_str()))
                    .and_then(|v| String::from_utf8(v.0.clone()).ok())
                    .filter(|v| !v.is_empty());
                (key, kept.unwrap_or_else(&mut generate))
            })
            .collect();
        Self { values }
    }

    /// Stand-ins for `titan-operator render`, which has no cluster to read the real values
    /// from and must not invent passwords that would never be used.
    pub fn placeholders() -> Self {
        Self {
            values: Key::ALL
                .into_iter()
                .map(|key| (key, format!("<generated:{}>", key.as_str())))
                .collect(),
        }
    }

    /// The value of `key`.
    pub fn get(&self, key: Key) -> &str {
        self.values
            .get(&key)
            .map(String::as_str)
            .unwrap_or_default()
    }

    /// The Secret's data.
    pub fn data(&self) -> BTreeMap<String, ByteString> {
        self.values
            .iter()
            .map(|(key, value)| {
                (
                    key.as_str().to_string(),
                    ByteString(value.as_bytes().to_vec()),
                )
            })
            .collect()
    }
}

/// A strong random secret from the thread's OS-seeded CSPRNG.
pub fn generate() -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(LENGTH)
        .map(char::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn present_keys_are_kept_and_only_missing_ones_generated() {
        let existing = Secret {
            data: Some(BTreeMap::from([(
                "redis-password".to_string(),
                ByteString(b"kept".to_vec()),
            )])),
            ..Default::default()
        };
        let mut n = 0;
        let credentials = Credentials::resolve(Some(&existing), || {
            n += 1;
            format!("new-{n}")
        });
        assert_eq!(credentials.get(Key::RedisPassword), "kept");
        assert_eq!(credentials.get(Key::PostgresPassword), "new-1");
        assert_eq!(n, 4);
        assert!(!format!("{credentials:?}").contains("kept"));
    }

    #[test]
    fn generated_secrets_are_long_alphanumeric_and_distinct() {
        let (a, b) = (generate(), generate());
        assert_eq!(a.len(), LENGTH);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
    }
}
