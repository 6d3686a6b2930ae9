//! Shipping: carriers, rate shopping, shipments and their labels.
//!
//! [`domain`] holds the rules, pure and unit tested; [`carrier`] the carriers behind one
//! trait; [`label`] draws the PDF; [`app`] runs the use cases (who may do what, input parsed
//! before any I/O) over the [`store`] (PostgreSQL) and object storage; [`grpc`] is the edge.
#![forbid(unsafe_code)]

pub mod app;
pub mod carrier;
pub mod domain;
pub mod grpc;
pub mod label;
pub mod privacy;
pub mod store;

use std::sync::Arc;

use futures::FutureExt;
use titan_crds::config::{ShippingConfig, TitanConfig};
use titan_kit::{Datastore, KitError, Mounted, ServiceContext, ServiceDef};
use titan_proto::shipping::v1::shipping_service_server::ShippingServiceServer;

use crate::{
    app::{Parts, Settings, Shipping},
    store::{pg::PgShipments, privacy::PersonalStore},
};

/// The service's PostgreSQL migrations, embedded.
pub fn migrator() -> sqlx::migrate::Migrator {
    sqlx::migrate!("./migrations")
}

/// The use cases' settings from the typed config the operator renders.
pub fn settings(config: &ShippingConfig) -> Settings {
    Settings {
        strategy: config.rate_shopping.into(),
        currency: config.flat_rate.currency.clone(),
    }
}

/// The `titan` binary's entry for this service.
pub fn service() -> ServiceDef {
    ServiceDef {
        name: domain::SERVICE,
        // Redis carries the outbox relay's `shipping.*` events; labels go to object storage.
        datastores: &[
            Datastore::Postgres,
            Datastore::Redis,
            Datastore::ObjectStorage,
        ],
        // Shipments live in PostgreSQL. Object storage is needed only to book (reads sign
        // label URLs locally) and Redis only by the relay, so a blip in either does not take
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
    let config = ctx.settings(ShippingConfig::from_yaml)?;
    let carriers = carrier::from_config(&config, |name| std::env::var(name).ok())?;
    let (pool, objects) = (ctx.postgres()?, ctx.objects()?);
    let personal = PersonalStore::new(pool.clone(), objects.clone());
    let app = Arc::new(Shipping::new(
        PgShipments::new(pool, ctx.config.cell.clone()),
        Parts {
            carriers,
            objects,
            settings: settings(&config),
            clock: Arc::new(chrono::Utc::now),
        },
    ));
    Ok(Mounted::new(&ctx)
        .grpc(ShippingServiceServer::new(grpc::Grpc::new(app)))
        .personal_data(personal))
}
