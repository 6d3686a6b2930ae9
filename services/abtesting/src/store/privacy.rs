//! A user's records for the privacy jobs (`crate::privacy`): their exposures in ClickHouse and
//! the flag rules in PostgreSQL that name them; their export, and their erasure.
//!
//! An erasure keeps the exposures under the user's pseudonym, so every experiment's results
//! keep their counts (the analytics service moves the user's events to the same pseudonym, so
//! conversions still join). `user_id` is in the table's sorting key, which a mutation cannot
//! change: the exposures are copied under the pseudonym (those without a copy yet, found by
//! experiment, variant and time) and the originals that have a copy are deleted
//! (`ALTER TABLE … DELETE`, waited for in `system.mutations`), so a crash between the two steps
//! is finished by the next run. The copies' `bucket` is zeroed: it is an unkeyed hash of the
//! user id that anyone could recompute from a guessed id, and no result reads it. Flag rules
//! that target the user are changed as [`FeatureFlag::forget`] says; the replicas' caches pick
//! the change up on their next refresh.

use std::time::Duration;

use chrono::{DateTime, Utc};
use clickhouse::{Client, Row};
use serde::{Deserialize, Serialize};
use sqlx::{PgPool, types::Json};
use titan_kit::{KitError, datastores::clickhouse::mutate};

use crate::{
    app::Result,
    domain::{FeatureFlag, flag::Mention},
};

/// How long an erasure's mutation may take (`titan_kit::datastores::clickhouse::mutate`).
const MUTATION_DEADLINE: Duration = Duration::from_secs(600);

/// Rounds of an erasure: each one takes the exposures logged during the one before; more than
/// this means they keep coming.
const ROUNDS: u32 = 5;

#[derive(Debug, Clone, Row, Deserialize)]
struct StoredExposure {
    experiment_key: String,
    variation_index: u32,
    variation_key: String,
    hash_attribute: String,
    bucket: f64,
    time: u32,
    time_ms: u16,
    cell: String,
}

/// One exposure as exported.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExposureRecord {
    pub experiment_key: String,
    pub variation_index: u32,
    pub variation_key: String,
    /// The attribute whose value (the user id) was hashed.
    pub hash_attribute: String,
    pub bucket: f64,
    pub time: DateTime<Utc>,
    pub cell: String,
}

impl From<StoredExposure> for ExposureRecord {
    fn from(e: StoredExposure) -> Self {
        Self {
            time: DateTime::from_timestamp_millis(i64::from(e.time) * 1000 + i64::from(e.time_ms))
                .unwrap_or_default(),
            experiment_key: e.experiment_key,
            variation_index: e.variation_index,
            variation_key: e.variation_key,
            hash_attribute: e.hash_attribute,
            bucket: e.bucket,
            cell: e.cell,
        }
    }
}

/// A flag rule's condition that names the user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TargetingRecord {
    pub flag: String,
    pub environment: String,
    #[serde(flatten)]
    pub mention: Mention,
}

/// What an erasure did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Erased {
    /// Exposure rows moved to the pseudonym.
    pub exposures: u64,
    /// Conditions of flag rules that named the user.
    pub flag_targeting: u64,
}

#[derive(Debug, Clone)]
pub struct PersonalStore {
    pool: PgPool,
    client: Client,
}

impl PersonalStore {
    pub fn new(pool: PgPool, client: Client) -> Self {
        Self { pool, client }
    }

    /// Every exposure of `user`, by experiment, oldest first.
    pub async fn exposures(&self, user: &str) -> Result<Vec<ExposureRecord>> {
        let rows: Vec<StoredExposure> = self
            .client
            .query(
                "SELECT experiment_key, variation_index, variation_key, hash_attribute, bucket,
                        time, time_ms, cell
                 FROM abtesting_exposures WHERE user_id = ?
                 ORDER BY experiment_key, time, time_ms, variation_index",
            )
            .bind(user)
            .fetch_all()
            .await?;
        Ok(rows.into_iter().map(ExposureRecord::from).collect())
    }

    /// The conditions of flag rules that name `user`, by flag.
    pub async fn targeting(&self, user: &str) -> Result<Vec<TargetingRecord>> {
        let flags: Vec<Json<FeatureFlag>> =
            sqlx::query_scalar("SELECT definition FROM abtesting_flags ORDER BY key")
                .fetch_all(&self.pool)
                .await?;
        Ok(flags
            .into_iter()
            .flat_map(|Json(flag)| {
                flag.mentions(user)
                    .into_iter()
                    .map(move |mention| TargetingRecord {
                        flag: flag.key.clone(),
                        environment: flag.environment.clone(),
                        mention,
                    })
            })
            .collect())
    }

    /// Erases `user` (see the module's documentation). Idempotent: a run that finds nothing of
    /// them reports zeros.
    pub async fn erase(&self, user: &str, pseudonym: &str) -> Result<Erased> {
        Ok(Erased {
            flag_targeting: self.forget_in_flags(user).await?,
            exposures: self.move_exposures(user, pseudonym).await?,
        })
    }

    /// Takes `user` out of every flag's rules, each flag under its row lock.
    async fn forget_in_flags(&self, user: &str) -> Result<u64> {
        let mut tx = self.pool.begin().await?;
        let flags: Vec<Json<FeatureFlag>> =
            sqlx::query_scalar("SELECT definition FROM abtesting_flags ORDER BY key FOR UPDATE")
                .fetch_all(&mut *tx)
                .await?;
        let mut forgotten = 0;
        for Json(mut flag) in flags {
            let n = flag.forget(user);
            if n == 0 {
                continue;
            }
            forgotten += n;
            sqlx::query(
                "UPDATE abtesting_flags SET definition = $2, updated_at = now() WHERE key = $1",
            )
            .bind(&flag.key)
            .bind(Json(&flag))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(forgotten)
    }

    /// Moves `user`'s exposures to `pseudonym`; returns the rows moved.
    async fn move_exposures(&self, user: &str, pseudonym: &str) -> Result<u64> {
        let mut moved = 0;
        for _ in 0..ROUNDS {
            let rows: u64 = self
                .client
                .query("SELECT count() FROM abtesting_exposures WHERE user_id = ?")
                .bind(user)
                .fetch_one()
                .await?;
            if rows == 0 {
                return Ok(moved);
            }
            // The aliases differ from the columns: ClickHouse would read an alias named
            // user_id in the WHERE clause.
            self.client
                .query(
                    "INSERT INTO abtesting_exposures (experiment_key, variation_index,
                         variation_key, hash_attribute, user_id, bucket, time, time_ms, date, cell)
                     SELECT experiment_key, variation_index, variation_key, hash_attribute,
                            ? AS kept_user, toFloat64(0) AS cleared_bucket, time, time_ms, date, cell
                     FROM abtesting_exposures
                     WHERE user_id = ?
                       AND (experiment_key, variation_index, time, time_ms) NOT IN (
                           SELECT experiment_key, variation_index, time, time_ms
                           FROM abtesting_exposures WHERE user_id = ?)",
                )
                .bind(pseudonym)
                .bind(user)
                .bind(pseudonym)
                .execute()
                .await?;
            mutate(
                &self.client,
                "abtesting_exposures",
                self.client
                    .query(
                        "ALTER TABLE abtesting_exposures DELETE WHERE user_id = ?
                           AND (experiment_key, variation_index, time, time_ms) IN (
                               SELECT experiment_key, variation_index, time, time_ms
                               FROM abtesting_exposures WHERE user_id = ?)",
                    )
                    .bind(user)
                    .bind(pseudonym),
                MUTATION_DEADLINE,
            )
            .await?;
            moved += rows;
        }
        Err(KitError::Other(format!(
            "exposures of the erased user still arrive after {ROUNDS} rounds of erasure"
        ))
        .into())
    }
}
