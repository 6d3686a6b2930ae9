//! Driver: last-mile delivery drivers, their availability and positions, deliveries and the
//! routes that carry them, proofs of delivery, and each driver's performance and rating.
//!
//! [`domain`] holds the rules, pure and unit tested: registration, the driver, delivery and
//! route state machines with their guarded transitions, GPS validation, the performance
//! figures and route optimisation requests. [`app`] runs the use cases over the [`store`]
//! (PostgreSQL, and Redis for the nearby set, latest positions and their fan-out) and the
//! cell's object storage. The route plans themselves come from `titan-route`; [`config`] is
//! the cell's `services.driver` section.

#![forbid(unsafe_code)]

pub mod app;
pub mod config;
pub mod domain;
pub mod grpc;
pub mod privacy;
pub mod store;

use std::{sync::Arc, time::Duration};

use futures::FutureExt;
use titan_crds::config::TitanConfig;
use titan_kit::{Datastore, KitError, Mounted, ServiceContext, ServiceDef};
use titan_proto::driver::v1::driver_service_server::DriverServiceServer;

use crate::{
    app::{Drivers, Parts},
    config::Settings,
    store::{live::Live, pg::PgDrivers, privacy::PersonalStore},
};

/// Largest request the service decodes: a 10 MiB photo and a 1 MiB signature with room for
/// the rest (tonic's default of 4 MiB would refuse a photo the domain accepts).
const MAX_REQUEST_BYTES: usize = 12 * 1024 * 1024;
/// How often one replica prunes GPS history and rebuilds the nearby set from PostgreSQL:
/// also the longest a Redis write lost after a commit stays wrong.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// The service's PostgreSQL migrations, embedded.
pub fn migrator() -> sqlx::migrate::Migrator {
    sqlx::migrate!("./migrations")
}

/// The `titan` binary's entry for this service.
pub fn service() -> ServiceDef {
    ServiceDef {
        name: domain::SERVICE,
        // Redis carries the outbox relay's `driver.delivery_*` events, the nearby set, the
        // latest positions and their fan-out to WatchDriver streams.
        datastores: &[
            Datastore::Postgres,
            Datastore::Redis,
            Datastore::ObjectStorage,
        ],
        // Drivers, deliveries and routes live in PostgreSQL; object storage is needed only
        // to complete a delivery and Redis only by the relay, nearby searches and watches
        // (what it misses is rebuilt from PostgreSQL), so a blip in either does not take
        // every replica out.
        ready_on: &[Datastore::Postgres],
        migrator: Some(migrator),
        clickhouse_migrations: &[],
        publishes_events: true,
        file_descriptor_set: titan_proto::FILE_DESCRIPTOR_SET,
        mount: |ctx| mount(ctx).boxed(),
    }
}

async fn mount(ctx: ServiceContext) -> Result<Mounted, KitError> {
    let settings: Settings = ctx.settings(Settings::from_yaml)?;
    let (pool, objects) = (ctx.postgres()?, ctx.objects()?);
    let live = Live::new(ctx.redis()?, ctx.realtime.clone());
    let personal = PersonalStore::new(pool.clone(), live.clone(), objects.clone());
    let app = Arc::new(Drivers::new(
        PgDrivers::new(pool, ctx.config.cell.clone()),
        Parts {
            objects: Some(objects),
            live,
            settings,
            clock: Arc::new(chrono::Utc::now),
        },
    ));
    let sweeper = app.clone();
    Ok(Mounted::new(&ctx)
        .grpc(
            DriverServiceServer::new(grpc::Grpc::new(app, ctx.shutdown.clone()))
                .max_decoding_message_size(MAX_REQUEST_BYTES),
        )
        .personal_data(personal)
        .every("driver-sweep", SWEEP_EVERY, move || {
            let app = sweeper.clone();
            async move {
                if let Some(pruned) = app.sweep().await? {
                    tracing::info!(pruned, "driver sweep done");
                }
                Ok::<_, app::DriverError>(())
            }
        }))
}
