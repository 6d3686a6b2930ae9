//! The router's use cases: look keys up in the current table, and replace the table when a
//! source ([`store`](crate::store)) reads a new one. A table that does not decode, or that
//! reuses the current version for another assignment, is refused: the router keeps serving
//! the table it has, and says so in the log and in `titan_router_table_reload_failures_total`.

use std::sync::{Arc, RwLock};

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};
use titan_kit::{ErrorCode, KitError, ServiceError, metrics::register};

use crate::domain::{CellName, KeyError, PartitionKey, Table, encoding};

/// The most keys one `LookupMany` may carry.
pub const MAX_BATCH: usize = 1_000;

#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    #[error("{field}: {source}")]
    Key {
        field: String,
        #[source]
        source: KeyError,
    },
    #[error("keys: {0} keys; 1 to {MAX_BATCH} are allowed per call")]
    BatchSize(usize),
    #[error("no routing table is loaded yet")]
    NoTable,
}

impl ServiceError for RouterError {
    fn code(&self) -> ErrorCode {
        match self {
            Self::Key { .. } | Self::BatchSize(_) => ErrorCode::InvalidArgument,
            Self::NoTable => ErrorCode::Unavailable,
        }
    }

    fn reason(&self) -> Option<&'static str> {
        Some(match self {
            Self::Key { .. } => "INVALID_KEY",
            Self::BatchSize(_) => "BATCH_SIZE",
            Self::NoTable => "NO_TABLE",
        })
    }
}

/// Why a table read from a source was not taken.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReloadError {
    #[error("table from {origin} is malformed: {source}")]
    Malformed {
        origin: String,
        #[source]
        source: encoding::DecodeError,
    },
    #[error("table from {origin} reuses version {version} for another assignment")]
    VersionReused { origin: String, version: u64 },
}

impl ReloadError {
    fn label(&self) -> &'static str {
        match self {
            Self::Malformed { .. } => "malformed",
            Self::VersionReused { .. } => "version_reused",
        }
    }
}

/// What a reload did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reloaded {
    /// The first table of this replica.
    First {
        version: u64,
    },
    Replaced {
        from: u64,
        to: u64,
    },
    /// The source said again what the router already serves.
    Unchanged {
        version: u64,
    },
}

/// A key's cell, as answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routed {
    pub cell: CellName,
    pub bucket: u32,
}

#[derive(Debug, Clone)]
struct Metrics {
    lookups: IntCounter,
    version: IntGauge,
    reloads: IntCounter,
    failures: IntCounterVec,
}

impl Metrics {
    fn new(registry: &Registry) -> Result<Self, KitError> {
        Ok(Self {
            lookups: register(
                registry,
                IntCounter::new(
                    "titan_router_lookups_total",
                    "keys routed (each key of a LookupMany counts)",
                )?,
            )?,
            version: register(
                registry,
                IntGauge::new(
                    "titan_router_table_version",
                    "version of the table being served (0 before the first)",
                )?,
            )?,
            reloads: register(
                registry,
                IntCounter::new(
                    "titan_router_table_reloads_total",
                    "tables taken from the source after the first",
                )?,
            )?,
            failures: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "titan_router_table_reload_failures_total",
                        "tables or reads refused, the previous table kept (reason: malformed, \
                         version_reused, source)",
                    ),
                    &["reason"],
                )?,
            )?,
        })
    }
}

/// The router of one replica: the table it serves and its counters.
#[derive(Debug)]
pub struct Router {
    table: RwLock<Option<Arc<Table>>>,
    metrics: Metrics,
}

impl Router {
    /// Tables or reads refused for `reason` (`malformed`, `version_reused`, `source`) since
    /// start, as `titan_router_table_reload_failures_total` reports them.
    pub fn reload_failures(&self, reason: &str) -> u64 {
        self.metrics.failures.with_label_values(&[reason]).get()
    }

    pub fn new(registry: &Registry) -> Result<Self, KitError> {
        Ok(Self {
            table: RwLock::new(None),
            metrics: Metrics::new(registry)?,
        })
    }

    /// The table being served.
    pub fn table(&self) -> Result<Arc<Table>, RouterError> {
        // A poisoned lock still holds a whole table: it is only ever replaced, never mutated.
        let guard = self.table.read().unwrap_or_else(|e| e.into_inner());
        guard.clone().ok_or(RouterError::NoTable)
    }

    /// The cell of `key`, with the version of the table that answered.
    pub fn lookup(&self, key: &str) -> Result<(Routed, u64), RouterError> {
        let key = PartitionKey::parse(key).map_err(|source| RouterError::Key {
            field: "key".into(),
            source,
        })?;
        let table = self.table()?;
        let route = table.route(key);
        self.metrics.lookups.inc();
        Ok((
            Routed {
                cell: route.cell.clone(),
                bucket: route.bucket,
            },
            table.version(),
        ))
    }

    /// The cells of `keys`, in order, all from one table (whose version comes back with them).
    pub fn lookup_many<K: AsRef<str>>(
        &self,
        keys: &[K],
    ) -> Result<(Vec<Routed>, u64), RouterError> {
        if keys.is_empty() || keys.len() > MAX_BATCH {
            return Err(RouterError::BatchSize(keys.len()));
        }
        let keys = keys
            .iter()
            .enumerate()
            .map(|(i, key)| {
                PartitionKey::parse(key.as_ref()).map_err(|source| RouterError::Key {
                    field: format!("keys[{i}]"),
                    source,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let table = self.table()?;
        let routes = keys
            .into_iter()
            .map(|key| {
                let route = table.route(key);
                Routed {
                    cell: route.cell.clone(),
                    bucket: route.bucket,
                }
            })
            .collect::<Vec<_>>();
        self.metrics.lookups.inc_by(routes.len() as u64);
        Ok((routes, table.version()))
    }

    /// Takes the table `text` encodes, read from `origin` (a file or ConfigMap, for the log),
    /// unless it is malformed or reuses the served version for another assignment. A lower
    /// version is taken (a table restored from a backup) with a warning.
    pub fn reload(&self, text: &str, origin: &str) -> Result<Reloaded, ReloadError> {
        let outcome = self.replace(text, origin);
        match &outcome {
            Ok(Reloaded::First { version }) => {
                tracing::info!(%origin, version, "routing table loaded");
            }
            Ok(Reloaded::Replaced { from, to }) => {
                self.metrics.reloads.inc();
                if to < from {
                    tracing::warn!(%origin, from, to, "routing table replaced by an older version");
                } else {
                    tracing::info!(%origin, from, to, "routing table replaced");
                }
            }
            Ok(Reloaded::Unchanged { .. }) => {}
            Err(e) => self.refused(e.label(), e),
        }
        outcome
    }

    fn replace(&self, text: &str, origin: &str) -> Result<Reloaded, ReloadError> {
        let next = encoding::decode(text).map_err(|source| ReloadError::Malformed {
            origin: origin.to_owned(),
            source,
        })?;
        let mut guard = self.table.write().unwrap_or_else(|e| e.into_inner());
        let outcome = match guard.as_deref() {
            None => Reloaded::First {
                version: next.version(),
            },
            Some(current) if current.version() == next.version() => {
                return if current.same_assignment(&next) {
                    Ok(Reloaded::Unchanged {
                        version: next.version(),
                    })
                } else {
                    Err(ReloadError::VersionReused {
                        origin: origin.to_owned(),
                        version: next.version(),
                    })
                };
            }
            Some(current) => Reloaded::Replaced {
                from: current.version(),
                to: next.version(),
            },
        };
        // Versions stay far below i64::MAX: one per change of the fleet.
        self.metrics
            .version
            .set(i64::try_from(next.version()).unwrap_or(i64::MAX));
        *guard = Some(Arc::new(next));
        Ok(outcome)
    }

    /// Counts and logs a read or a table the router could not use; the served table stays.
    pub fn refused(&self, reason: &'static str, error: &dyn std::error::Error) {
        self.metrics.failures.with_label_values(&[reason]).inc();
        let version = self.table().map(|t| t.version()).unwrap_or(0);
        tracing::warn!(reason, error = %error, serving = version, "routing table not reloaded; the served table stays");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{BucketCount, CellEntry, encoding::encode, initial, rebalance};

    fn cells(names: &[&str]) -> Vec<CellEntry> {
        names
            .iter()
            .map(|n| CellEntry::new(CellName::parse(n).expect("valid")))
            .collect()
    }

    #[test]
    fn lookups_wait_for_a_table_and_validate_keys() {
        let router = Router::new(&Registry::new()).expect("metrics");
        assert!(matches!(router.lookup("u"), Err(RouterError::NoTable)));
        let err = router.lookup("").expect_err("empty");
        assert_eq!(err.to_string(), "key: key is empty");
        let err = router
            .lookup_many(&["a", &"x".repeat(257)])
            .expect_err("too long");
        assert_eq!(
            err.to_string(),
            "keys[1]: key has 257 bytes; at most 256 are allowed"
        );
        let too_many = vec!["k"; MAX_BATCH + 1];
        assert_eq!(
            router
                .lookup_many(&too_many)
                .expect_err("too many")
                .to_string(),
            "keys: 1001 keys; 1 to 1000 are allowed per call"
        );
        assert!(matches!(
            router.lookup_many::<&str>(&[]),
            Err(RouterError::BatchSize(0))
        ));
    }

    #[test]
    fn a_bad_table_is_refused_and_the_served_one_stays() {
        let registry = Registry::new();
        let router = Router::new(&registry).expect("metrics");
        let v1 = initial(BucketCount::default(), &cells(&["a", "b"])).expect("cells");
        assert_eq!(
            router.reload(&encode(&v1), "test"),
            Ok(Reloaded::First { version: 1 })
        );
        assert_eq!(
            router.reload(&encode(&v1), "test"),
            Ok(Reloaded::Unchanged { version: 1 })
        );
        assert!(matches!(
            router.reload("{not json", "test"),
            Err(ReloadError::Malformed { .. })
        ));
        // Version 1 again, but with a third cell: refused.
        let other = initial(BucketCount::default(), &cells(&["a", "b", "c"])).expect("cells");
        assert!(matches!(
            router.reload(&encode(&other), "test"),
            Err(ReloadError::VersionReused { version: 1, .. })
        ));
        assert_eq!(router.table().expect("loaded").as_ref(), &v1);
        assert_eq!(router.reload_failures("malformed"), 1);
        assert_eq!(router.reload_failures("version_reused"), 1);
        let v2 = rebalance(&v1, &cells(&["a", "b", "c"])).expect("cells");
        assert_eq!(
            router.reload(&encode(&v2), "test"),
            Ok(Reloaded::Replaced { from: 1, to: 2 })
        );
        let (routed, version) = router.lookup("user-1").expect("routed");
        assert_eq!(version, 2);
        assert_eq!(Some(&routed.cell), v2.owner(routed.bucket));
    }
}
