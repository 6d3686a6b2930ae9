//! Tracking: a shipment's tracking record (its tracking number with the carrier) and the
//! events that move it, appended and never rewritten, from shipping's and drivers' events on
//! the bus and from carriers' signed webhooks; the status recomputed from every event in time
//! order; `Subscribe` streams of a record's events across replicas.
//!
//! [`domain`] holds the rules, pure and tested: the statuses and their guarded machine, the
//! fold of events into a status, input checks and webhook signatures. [`app`] runs the use
//! cases over the [`store`] (PostgreSQL, Redis pub/sub for subscribers, the bus consumers);
//! [`grpc`] and [`web`] (the webhooks) are the edges; [`config`] is `services.tracking`.

#![forbid(unsafe_code)]

pub mod app;
pub mod config;
pub mod domain;
pub mod grpc;
pub mod privacy;
pub mod store;
pub mod web;

use std::sync::Arc;

use futures::FutureExt;
use titan_crds::config::TitanConfig;
use titan_kit::{
    Datastore, KitError, Mounted, ServiceContext, ServiceDef,
    events::{Consumer, ConsumerOptions},
};
use titan_proto::tracking::v1::tracking_service_server::TrackingServiceServer;

use crate::{
    app::Tracking,
    config::Settings,
    store::{consumer::EventHandler, live::Live, pg::PgTracking, privacy::PersonalStore},
};

/// The service's PostgreSQL migrations, embedded.
pub fn migrator() -> sqlx::migrate::Migrator {
    sqlx::migrate!("./migrations")
}

/// The `titan` binary's entry for this service.
pub fn service() -> ServiceDef {
    ServiceDef {
        name: domain::SERVICE,
        // Redis carries the bus tracking consumes and the fan-out to Subscribe streams.
        datastores: &[Datastore::Postgres, Datastore::Redis],
        // Records and events live in PostgreSQL; without Redis lookups still answer (the bus
        // waits, subscribers reconnect), so a Redis blip does not take replicas out.
        ready_on: &[Datastore::Postgres],
        migrator: Some(migrator),
        clickhouse_migrations: &[],
        publishes_events: false,
        file_descriptor_set: titan_proto::FILE_DESCRIPTOR_SET,
        mount: |ctx| mount(ctx).boxed(),
    }
}

async fn mount(ctx: ServiceContext) -> Result<Mounted, KitError> {
    let settings: Settings = ctx.settings(Settings::from_yaml)?;
    let pool = ctx.postgres()?;
    let redis = ctx.redis()?;
    let clock: titan_kit::Clock = Arc::new(chrono::Utc::now);
    let app = Arc::new(Tracking::new(
        PgTracking::new(pool.clone(), clock.clone()),
        Live::new(ctx.realtime.clone()),
        settings,
        clock,
    ));
    let mut mounted = Mounted::new(&ctx)
        .grpc(TrackingServiceServer::new(grpc::Grpc::new(
            app.clone(),
            ctx.shutdown.clone(),
        )))
        .http(web::router(app.clone(), web::env_secrets()))
        .personal_data(PersonalStore::new(pool.clone()));
    let handler = EventHandler::new(app);
    for source in store::consumer::SOURCES {
        let consumer = Consumer::new(
            pool.clone(),
            redis.clone(),
            ConsumerOptions::new(source, domain::SERVICE, &ctx.instance(), &ctx.config.events),
            handler.clone(),
        )
        .await?;
        mounted = mounted.task(
            format!("tracking-{source}-events"),
            consumer.run(ctx.shutdown.clone()),
        );
    }
    Ok(mounted)
}
