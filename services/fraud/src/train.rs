//! `titan fraud train`: fits a new model version from the labelled decisions in PostgreSQL
//! (chargebacks and FRAUD verdicts are fraud, LEGITIMATE verdicts and approved decisions that
//! settled without a chargeback are not), on four fifths of them split by transaction id,
//! reports AUC and calibration on the held-out fifth, and stores the version inactive until
//! an admin promotes it (`PromoteModel`).

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use titan_kit::{Datastore, KitError, config::Config, datastores::postgres};

use crate::{
    app::FraudError,
    domain::{
        SERVICE, Signal,
        model::{self, Bin, FitOptions, held_out},
    },
    store::pg::{NewModel, PgFraud},
};

/// Most labelled examples read for one fit.
pub const MAX_EXAMPLES: i64 = 2_000_000;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Fit(#[from] model::FitError),
    #[error("the held-out fifth has {0} examples of one class only; label more cases")]
    NoHoldout(usize),
    #[error(transparent)]
    Store(#[from] FraudError),
    #[error(transparent)]
    Kit(#[from] KitError),
}

/// What a fit produced, printed as JSON.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub version: i64,
    pub intercept: f64,
    pub weights: Vec<(&'static str, f64)>,
    pub train_examples: usize,
    pub test_examples: usize,
    pub auc: f64,
    pub brier: f64,
    pub calibration: Vec<Bin>,
    pub active: bool,
}

/// Fits and stores a model version from the labels in `pool`; decisions approved before
/// `settled` without a chargeback count as legitimate.
pub async fn train(
    pool: &PgPool,
    settled: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Report, TrainError> {
    let store = PgFraud::new(pool.clone(), String::new());
    let examples = store.labelled(settled, MAX_EXAMPLES).await?;
    let (mut train_x, mut train_y, mut test_x, mut test_y) = (vec![], vec![], vec![], vec![]);
    for (id, x, fraud) in examples {
        if held_out(&id) {
            test_x.push(x);
            test_y.push(fraud);
        } else {
            train_x.push(x);
            train_y.push(if fraud { 1.0 } else { 0.0 });
        }
    }
    let fitted = model::fit(&train_x, &train_y, FitOptions::default())?;
    let scores: Vec<f64> = test_x.iter().map(|x| fitted.predict(x)).collect();
    let auc = model::auc(&scores, &test_y).ok_or(TrainError::NoHoldout(test_y.len()))?;
    let (calibration, brier) = model::calibration(&scores, &test_y);
    let stored = store
        .insert_model(&NewModel {
            model: &fitted,
            auc,
            brier,
            calibration: serde_json::to_value(&calibration)
                .map_err(|e| KitError::Other(format!("calibration: {e}")))?,
            train_examples: i64::try_from(train_x.len()).unwrap_or(i64::MAX),
            test_examples: i64::try_from(test_x.len()).unwrap_or(i64::MAX),
            at: now,
        })
        .await?;
    Ok(Report {
        version: stored.version,
        intercept: fitted.intercept,
        weights: Signal::ALL
            .iter()
            .map(|s| s.as_str())
            .zip(fitted.weights.iter().copied())
            .collect(),
        train_examples: train_x.len(),
        test_examples: test_x.len(),
        auc,
        brier,
        calibration,
        active: stored.active,
    })
}

/// `titan fraud train`: connects with the config's PostgreSQL settings and trains; decisions
/// approved more than `settle_days` ago without a chargeback are labelled legitimate.
pub async fn run(config: &Config, settle_days: u32) -> Result<Report, TrainError> {
    let cfg = config.postgres.as_ref().ok_or(KitError::MissingDatastore {
        service: SERVICE.to_owned(),
        datastore: Datastore::Postgres.name(),
        hint: Datastore::Postgres.hint(),
    })?;
    let pool = postgres::connect(cfg, "titan-fraud-train").await?;
    let now = Utc::now();
    let report = train(
        &pool,
        now - chrono::Duration::days(i64::from(settle_days)),
        now,
    )
    .await;
    pool.close().await;
    report
}
