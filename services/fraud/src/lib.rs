//! The fraud service: risk of a transaction on the checkout path from weighted signals
//! (first-seen devices and IPs, countries, velocity in Redis, amount anomaly against the user's
//! own history, failed payments, account age, known-bad lists, chargebacks), declarative rules
//! and a logistic model; every decision logged in Redis before the answer, stored from that log
//! in PostgreSQL and published as `fraud.decided`, HIGH and above opened as review cases for
//! analysts. `titan fraud train` fits new model versions
//! (`train`).
#![forbid(unsafe_code)]

pub mod app;
pub mod config;
pub mod domain;
pub mod grpc;
pub mod metrics;
pub mod privacy;
pub mod store;
pub mod train;

use std::sync::Arc;

use futures::FutureExt;
use titan_crds::config::TitanConfig;
use titan_kit::{
    Datastore, KitError, Mounted, ServiceContext, ServiceDef, events::ConsumerOptions,
};
use titan_proto::fraud::v1::fraud_service_server::FraudServiceServer;

use crate::{
    app::{Fraud, RELOAD_EVERY},
    config::Settings,
    store::{consumer::PurchaseHandler, log::DecisionSink, pg::PgFraud, redis::RedisHot},
};

/// The `titan` binary's entry for this service.
pub fn service() -> ServiceDef {
    ServiceDef {
        name: domain::SERVICE,
        datastores: &[Datastore::Postgres, Datastore::Redis],
        // A check needs PostgreSQL; without Redis it still answers, degraded, so a Redis
        // outage must not take replicas out of the load balancer.
        ready_on: &[Datastore::Postgres],
        migrator: Some(|| sqlx::migrate!("./migrations")),
        clickhouse_migrations: &[],
        publishes_events: true,
        file_descriptor_set: titan_proto::FILE_DESCRIPTOR_SET,
        mount: |ctx| mount(ctx).boxed(),
    }
}

async fn mount(ctx: ServiceContext) -> Result<Mounted, KitError> {
    let settings = ctx.settings(Settings::from_yaml)?;
    let pool = ctx.postgres()?;
    let hot = RedisHot::new(ctx.redis()?, ctx.config.cell.clone());
    let personal = privacy::Privacy::new(pool.clone(), hot.clone());
    let metrics = metrics::Metrics::new(&ctx.registry)?;
    let app = Arc::new(Fraud::new(
        PgFraud::new(pool, ctx.config.cell.clone()),
        hot,
        settings.clone(),
        Arc::new(chrono::Utc::now),
        metrics.clone(),
    ));
    app.reload()
        .await
        .map_err(|e| KitError::Other(format!("fraud: cannot load rules and model: {e}")))?;
    let options = ConsumerOptions::new(
        store::consumer::SOURCE,
        domain::SERVICE,
        &ctx.instance(),
        &ctx.config.events,
    );
    Ok(Mounted::new(&ctx)
        .grpc(FraudServiceServer::new(grpc::Grpc::new(app.clone())))
        .personal_data(personal)
        // The decision log's sink and the purchases consumer store what checks already
        // answered: no caller waits on them, so they run at the background runtime's priority
        // (at 2,000 checks/s the sink's batches had delayed checks' Redis replies).
        .background("fraud-decision-log", {
            let (settings, metrics, options) = (settings.clone(), metrics.clone(), options.clone());
            move |bg| async move {
                let sink = DecisionSink::new(stores(&bg, settings, metrics)?, bg.redis()?, options);
                sink.await?.run(bg.shutdown.clone()).await
            }
        })
        .consume_with("fraud-purchases", options, move |bg| {
            Ok(PurchaseHandler::new(stores(bg, settings, metrics)?))
        })
        .every("fraud-rules", RELOAD_EVERY, move || {
            let app = app.clone();
            async move { app.reload().await }
        }))
}

/// An app over the background runtime's clients (`bg`), for the tasks that store and count what
/// checks decided. It never loads rules: none of them scores.
fn stores(
    bg: &ServiceContext,
    settings: Settings,
    metrics: metrics::Metrics,
) -> Result<Arc<Fraud<PgFraud, RedisHot>>, KitError> {
    let cell = bg.config.cell.clone();
    Ok(Arc::new(Fraud::new(
        PgFraud::new(bg.postgres()?, cell.clone()),
        RedisHot::new(bg.redis()?, cell),
        settings,
        Arc::new(chrono::Utc::now),
        metrics,
    )))
}
