//! The pricing service: rules per product or category (DYNAMIC, COMPETITIVE, TIME_BASED,
//! SEGMENTED, PENETRATION, FIXED) turn demand from ClickHouse's `analytics_events`, competitor
//! prices and the clock into prices clamped to each rule's bounds, written to PostgreSQL with
//! their history and a `pricing.changed` event. Re-optimisation runs on a schedule on one
//! replica at a time and on demand; reads come from a per-replica cache. Elasticity is
//! estimated by log-log least squares with its uncertainty, and drives revenue-impact
//! estimates.
#![forbid(unsafe_code)]

pub mod app;
pub mod config;
pub mod domain;
pub mod grpc;
pub mod metrics;
pub mod store;

use std::{sync::Arc, time::Duration};

use futures::FutureExt;
use titan_crds::config::TitanConfig;
use titan_kit::{Datastore, KitError, Mounted, ServiceContext, ServiceDef};
use titan_proto::pricing::v1::pricing_service_server::PricingServiceServer;

use crate::{
    app::Pricing,
    config::Settings,
    store::{demand::ChDemand, pg::PgPricing},
};

/// How often each replica reads the prices other replicas wrote into its cache: the longest a
/// price read on one replica lags a change made on another.
pub const CACHE_REFRESH: Duration = Duration::from_secs(1);
/// How often each replica asks whether the scheduled round is due (a one-row UPDATE).
pub const SCHEDULE_POLL: Duration = Duration::from_secs(5);
/// Largest gRPC request: 10,000 observations of an elasticity estimate with their periods.
const MAX_REQUEST_BYTES: usize = 2 * 1024 * 1024;

/// The `titan` binary's entry for this service.
pub fn service() -> ServiceDef {
    ServiceDef {
        name: domain::SERVICE,
        // Redis carries `pricing.changed` from the outbox to the bus.
        datastores: &[Datastore::Postgres, Datastore::Redis, Datastore::ClickHouse],
        // Prices are read from memory; every change and the cache refresh need PostgreSQL.
        // ClickHouse only feeds demand to rounds, which retry next period.
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
    let app = Arc::new(Pricing::new(
        PgPricing::new(ctx.postgres()?, ctx.config.cell.clone()),
        ChDemand::new(ctx.clickhouse()?),
        settings,
        Arc::new(chrono::Utc::now),
        metrics::Metrics::new(&ctx.registry)?,
        ctx.instance(),
    ));
    // Serve from a full cache: the first refresh reads every price.
    app.refresh()
        .await
        .map_err(|e| KitError::Other(format!("loading the price cache: {e}")))?;
    let (refresher, scheduler) = (app.clone(), app.clone());
    Ok(Mounted::new(&ctx)
        .grpc(
            PricingServiceServer::new(grpc::Grpc::new(app))
                .max_decoding_message_size(MAX_REQUEST_BYTES),
        )
        .every("pricing-cache", CACHE_REFRESH, move || {
            let app = refresher.clone();
            async move { app.refresh().await.map(|_| ()) }
        })
        .every("pricing-reoptimize", SCHEDULE_POLL, move || {
            let app = scheduler.clone();
            async move { app.scheduled_round().await.map(|_| ()) }
        }))
}
