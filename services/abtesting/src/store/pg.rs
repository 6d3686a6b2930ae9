//! PostgreSQL: experiments and flags, each write in one transaction with its idempotency key.
//! A change reads the experiment under a row lock, so two admins cannot interleave updates.

use sqlx::{PgPool, Row, postgres::PgRow, types::Json};
use titan_kit::{
    KitError,
    idempotency::{self, Begin},
};

use crate::{
    app::{AbError, ExperimentStore, Result},
    domain::{Experiment, ExperimentSpec, FeatureFlag, Status},
};

#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

fn corrupt(what: &str) -> AbError {
    AbError::Kit(KitError::Other(format!(
        "abtesting row has an invalid {what}"
    )))
}

fn experiment_from_row(row: &PgRow) -> Result<Experiment> {
    let status: String = row.try_get("status")?;
    let Json(spec): Json<ExperimentSpec> = row.try_get("spec")?;
    Ok(Experiment {
        spec,
        status: Status::parse(&status).ok_or_else(|| corrupt("status"))?,
    })
}

fn replayed<T: serde::de::DeserializeOwned>(answer: &[u8]) -> Result<T> {
    serde_json::from_slice(answer).map_err(|_| corrupt("idempotent answer"))
}

fn answer<T: serde::Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| AbError::Kit(KitError::Other(e.to_string())))
}

impl ExperimentStore for PgStore {
    async fn create(&self, key: &idempotency::Key, experiment: &Experiment) -> Result<Experiment> {
        let mut tx = self.pool.begin().await?;
        if let Begin::Replay(answer) = idempotency::begin(&mut tx, key).await? {
            return replayed(&answer);
        }
        let inserted = sqlx::query(
            "INSERT INTO abtesting_experiments (key, status, spec) VALUES ($1, $2, $3)
             ON CONFLICT (key) DO NOTHING",
        )
        .bind(experiment.key())
        .bind(experiment.status.as_str())
        .bind(Json(&experiment.spec))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            return Err(AbError::ExperimentExists(experiment.key().to_owned()));
        }
        idempotency::finish(&mut tx, key, &answer(experiment)?).await?;
        tx.commit().await?;
        Ok(experiment.clone())
    }

    async fn change<F>(
        &self,
        key: &idempotency::Key,
        experiment_key: &str,
        change: F,
    ) -> Result<Experiment>
    where
        F: FnOnce(Experiment) -> Result<Experiment> + Send,
    {
        let mut tx = self.pool.begin().await?;
        if let Begin::Replay(answer) = idempotency::begin(&mut tx, key).await? {
            return replayed(&answer);
        }
        let row =
            sqlx::query("SELECT status, spec FROM abtesting_experiments WHERE key = $1 FOR UPDATE")
                .bind(experiment_key)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| AbError::ExperimentNotFound(experiment_key.to_owned()))?;
        let changed = change(experiment_from_row(&row)?)?;
        sqlx::query("UPDATE abtesting_experiments SET status = $2, spec = $3, updated_at = now() WHERE key = $1")
            .bind(experiment_key)
            .bind(changed.status.as_str())
            .bind(Json(&changed.spec))
            .execute(&mut *tx)
            .await?;
        idempotency::finish(&mut tx, key, &answer(&changed)?).await?;
        tx.commit().await?;
        Ok(changed)
    }

    async fn upsert_flag(&self, key: &idempotency::Key, flag: &FeatureFlag) -> Result<FeatureFlag> {
        let mut tx = self.pool.begin().await?;
        if let Begin::Replay(answer) = idempotency::begin(&mut tx, key).await? {
            return replayed(&answer);
        }
        sqlx::query(
            "INSERT INTO abtesting_flags (key, environment, definition) VALUES ($1, $2, $3)
             ON CONFLICT (key) DO UPDATE
             SET environment = EXCLUDED.environment, definition = EXCLUDED.definition, updated_at = now()",
        )
        .bind(&flag.key)
        .bind(&flag.environment)
        .bind(Json(flag))
        .execute(&mut *tx)
        .await?;
        idempotency::finish(&mut tx, key, &answer(flag)?).await?;
        tx.commit().await?;
        Ok(flag.clone())
    }

    async fn load(&self) -> Result<(Vec<Experiment>, Vec<FeatureFlag>)> {
        let experiments = sqlx::query("SELECT status, spec FROM abtesting_experiments")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(experiment_from_row)
            .collect::<Result<Vec<_>>>()?;
        let flags = sqlx::query("SELECT definition FROM abtesting_flags")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|row| Ok(row.try_get::<Json<FeatureFlag>, _>("definition")?.0))
            .collect::<Result<Vec<_>>>()?;
        Ok((experiments, flags))
    }
}
