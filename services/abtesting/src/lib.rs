//! The A/B testing service: experiments and feature flags assigned exactly as GrowthBook's SDKs
//! assign them, from an in-memory copy of the definitions PostgreSQL records; exposures logged
//! to ClickHouse in batches off the hot path; results (lift, confidence interval, p-value,
//! sample-ratio mismatch) aggregated in ClickHouse and computed by pure statistics.
#![forbid(unsafe_code)]

pub mod app;
pub mod config;
pub mod domain;
pub mod grpc;
pub mod metrics;
pub mod privacy;
pub mod store;

use std::sync::Arc;

use futures::FutureExt;
use titan_crds::config::TitanConfig;
use titan_kit::{Datastore, KitError, Mounted, ServiceContext, ServiceDef};
use titan_proto::abtesting::v1::ab_testing_service_server::AbTestingServiceServer;

use crate::{
    app::{Abtesting, REFRESH_INTERVAL},
    config::Settings,
    store::{
        clickhouse::{ChResults, Exposures, MIGRATIONS, exposures},
        pg::PgStore,
        privacy::PersonalStore,
    },
};

/// The service as the runtime runs it.
pub type App = Abtesting<PgStore, Exposures, ChResults>;

/// The `titan` binary's entry for this service.
pub fn service() -> ServiceDef {
    ServiceDef {
        name: domain::SERVICE,
        // Redis carries the privacy jobs' announcements (kit::privacy); assignment needs none
        // of the three (it serves from memory), so readiness waits for none.
        datastores: &[Datastore::Postgres, Datastore::ClickHouse, Datastore::Redis],
        ready_on: &[],
        migrator: Some(|| sqlx::migrate!("./migrations")),
        clickhouse_migrations: MIGRATIONS,
        publishes_events: false,
        file_descriptor_set: titan_proto::FILE_DESCRIPTOR_SET,
        mount: |ctx| mount(ctx).boxed(),
    }
}

async fn mount(ctx: ServiceContext) -> Result<Mounted, KitError> {
    let settings = ctx.settings(Settings::from_yaml)?;
    let clickhouse = ctx.clickhouse()?;
    let metrics = metrics::Metrics::new(&ctx.registry)?;
    let (sink, writer) = exposures(
        clickhouse.clone(),
        &settings,
        ctx.config.cell.clone(),
        metrics.clone(),
    );
    let privacy = PersonalStore::new(ctx.postgres()?, clickhouse.clone());
    let app = Arc::new(Abtesting::new(
        PgStore::new(ctx.postgres()?),
        sink,
        ChResults::new(clickhouse),
        settings,
        metrics,
        Arc::new(chrono::Utc::now),
    ));
    // Serving starts with the definitions loaded: an empty cache would answer NotFound.
    app.refresh()
        .await
        .map_err(|e| KitError::Other(format!("loading experiments and flags: {e}")))?;
    Ok(Mounted::new(&ctx)
        .grpc(
            AbTestingServiceServer::new(grpc::Grpc::new(app.clone()))
                .max_decoding_message_size(1024 * 1024),
        )
        .task("abtesting-exposures", writer.run(ctx.shutdown.clone()))
        .personal_data(privacy)
        .every("abtesting-refresh", REFRESH_INTERVAL, move || {
            let app = app.clone();
            async move { app.refresh().await.map(drop) }
        }))
}
