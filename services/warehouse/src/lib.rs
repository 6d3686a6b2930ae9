//! Warehouse: warehouses with zones and bins, a stock ledger per (warehouse, product, bin)
//! where every change is a movement row written in the same transaction and neither
//! `available` nor `reserved` ever goes below zero, reservations for orders (reserve, pick,
//! ship, or release; expired ones released by a periodic job), allocation of an order across
//! ACTIVE warehouses, putaway suggestions and pick lists in bin walk order.
//!
//! [`domain`] holds the rules, pure and unit tested; [`app`] runs the use cases (who may do
//! what, input parsed before any I/O) over the [`store`] (PostgreSQL); [`grpc`] is the edge.

#![forbid(unsafe_code)]

pub mod app;
pub mod domain;
pub mod grpc;
pub mod privacy;
pub mod store;

use std::{sync::Arc, time::Duration};

use futures::FutureExt;
use titan_crds::config::{TitanConfig, WarehouseAllocation, WarehouseConfig};
use titan_kit::{Datastore, KitError, Mounted, ServiceContext, ServiceDef};
use titan_proto::warehouse::v1::warehouse_service_server::WarehouseServiceServer;

use crate::{
    app::{Settings, Warehouses},
    domain::Preference,
    store::{pg::PgWarehouses, privacy::PersonalStore},
};

/// How often expired reservations are looked for: a reservation outlives its time by at
/// most this much.
const EXPIRE_EVERY: Duration = Duration::from_secs(15);

/// The service's PostgreSQL migrations, embedded.
pub fn migrator() -> sqlx::migrate::Migrator {
    sqlx::migrate!("./migrations")
}

/// The use cases' settings from the typed config the operator renders.
pub fn settings(config: &WarehouseConfig) -> Settings {
    Settings {
        preference: match config.allocation {
            WarehouseAllocation::NearestFirst => Preference::NearestFirst,
            WarehouseAllocation::PriorityFirst => Preference::PriorityFirst,
        },
        picking_list_max_lines: config.picking_list_max_lines,
    }
}

/// The `titan` binary's entry for this service.
pub fn service() -> ServiceDef {
    ServiceDef {
        name: domain::SERVICE,
        // Redis carries the outbox relay's `warehouse.*` events.
        datastores: &[Datastore::Postgres, Datastore::Redis],
        // Stock and reservations live in PostgreSQL; Redis only feeds the relay, so a blip
        // there does not take replicas out.
        ready_on: &[Datastore::Postgres],
        migrator: Some(migrator),
        clickhouse_migrations: &[],
        publishes_events: true,
        file_descriptor_set: titan_proto::FILE_DESCRIPTOR_SET,
        mount: |ctx| mount(ctx).boxed(),
    }
}

async fn mount(ctx: ServiceContext) -> Result<Mounted, KitError> {
    let config = ctx.settings(WarehouseConfig::from_yaml)?;
    let pool = ctx.postgres()?;
    let personal = PersonalStore::new(pool.clone());
    let app = Arc::new(Warehouses::new(
        PgWarehouses::new(pool, ctx.config.cell.clone()),
        settings(&config),
        Arc::new(chrono::Utc::now),
    ));
    Ok(Mounted::new(&ctx)
        .grpc(WarehouseServiceServer::new(grpc::Grpc::new(app.clone())))
        .personal_data(personal)
        .every("warehouse-expiry", EXPIRE_EVERY, move || {
            let app = app.clone();
            async move { app.expire().await.map(drop) }
        }))
}
