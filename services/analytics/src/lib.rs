//! The analytics service: every client event (`TrackEvent(s)`) and every domain event on the
//! bus into ClickHouse through a bounded, batching buffer, and the reports computed by
//! ClickHouse over them (KPIs, real-time dashboard, product performance, funnels, cohort
//! retention, user behaviour, custom metrics). Its tables are the contract of
//! docs/analytics.md that other services read.
#![forbid(unsafe_code)]

pub mod app;
pub mod config;
pub mod domain;
pub mod grpc;
pub mod metrics;
pub mod privacy;
pub mod store;

use std::{sync::Arc, time::Duration};

use futures::FutureExt;
use titan_crds::config::TitanConfig;
use titan_kit::{
    Datastore, KitError, Mounted, ServiceContext, ServiceDef,
    events::{ConsumerOptions, StreamReader},
};
use titan_proto::analytics::v1::analytics_service_server::AnalyticsServiceServer;

use crate::{
    app::{Analytics, IngestOptions, Ingestor},
    config::Settings,
    store::{EVENTS, METRICS, TableSink, privacy::PersonalEvents, queries::ClickHouseWarehouse},
};

/// Events read from a stream per batch.
const BUS_BATCH: usize = 500;
/// A batch insert that takes longer than this is reported as failed to its callers.
const INSERT_TIMEOUT: Duration = Duration::from_secs(30);

/// The `titan` binary's entry for this service.
pub fn service() -> ServiceDef {
    ServiceDef {
        name: domain::SERVICE,
        // PostgreSQL and Redis hold the privacy jobs (kit::privacy); ingestion and reports need
        // neither, so readiness waits for ClickHouse alone.
        datastores: &[Datastore::ClickHouse, Datastore::Redis, Datastore::Postgres],
        ready_on: &[Datastore::ClickHouse],
        migrator: None,
        clickhouse_migrations: store::MIGRATIONS,
        publishes_events: false,
        file_descriptor_set: titan_proto::FILE_DESCRIPTOR_SET,
        mount: |ctx| mount(ctx).boxed(),
    }
}

/// Buffer options from the settings.
pub fn ingest_options(settings: &Settings) -> IngestOptions {
    IngestOptions {
        batch_rows: settings.ingest_batch_size as usize,
        flush_every: Duration::from_millis(u64::from(settings.flush_interval_millis)),
        capacity: settings.buffer_events,
        insert_timeout: INSERT_TIMEOUT,
    }
}

async fn mount(ctx: ServiceContext) -> Result<Mounted, KitError> {
    let settings = ctx.settings(Settings::from_yaml)?;
    let clickhouse = ctx.clickhouse()?;
    let redis = ctx.redis()?;
    let metrics = metrics::Metrics::new(&ctx.registry)?;
    let options = ingest_options(&settings);
    let (events, events_flusher) = Ingestor::new(
        EVENTS,
        TableSink::new(clickhouse.clone(), EVENTS),
        options,
        metrics.clone(),
        ctx.shutdown.clone(),
    );
    let (points, points_flusher) = Ingestor::new(
        METRICS,
        TableSink::new(clickhouse.clone(), METRICS),
        options,
        metrics.clone(),
        ctx.shutdown.clone(),
    );
    let mut readers = Vec::with_capacity(settings.sources.len());
    for source in &settings.sources {
        let mut consumer =
            ConsumerOptions::new(source, domain::SERVICE, &ctx.instance(), &ctx.config.events);
        consumer.batch = BUS_BATCH;
        readers.push((
            source.clone(),
            StreamReader::new(redis.clone(), consumer).await?,
        ));
    }
    let privacy = PersonalEvents::new(clickhouse.clone());
    let app = Arc::new(Analytics::new(
        ClickHouseWarehouse::new(clickhouse),
        events.clone(),
        points,
        settings,
        ctx.config.cell.clone(),
        Arc::new(chrono::Utc::now),
        metrics,
    ));
    let mut mounted = Mounted::new(&ctx)
        .grpc(AnalyticsServiceServer::new(grpc::Grpc::new(app)).max_decoding_message_size(8 << 20))
        .task("analytics-events-flusher", events_flusher)
        .task("analytics-metrics-flusher", points_flusher)
        .personal_data(privacy);
    for (source, reader) in readers {
        mounted = mounted.task(
            format!("analytics-bus-{source}"),
            app::bus::ingest(reader, events.clone(), ctx.shutdown.clone()),
        );
    }
    Ok(mounted)
}
