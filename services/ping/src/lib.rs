//! The ping service: a cell's smoke test. `Ping` proves a caller's token reaches a handler;
//! `Emit` proves a mutation commits with its idempotency key and its outbox event. It has no
//! business rules, which makes it the cheapest way to check a cell end to end. Its WebSocket
//! (`ws`) does the same for `kit::realtime`: echo, and topics across replicas.
#![forbid(unsafe_code)]

pub mod app;
pub mod domain;
pub mod grpc;
pub mod store;
pub mod ws;

use futures::FutureExt;
use titan_kit::{Datastore, KitError, Mounted, ServiceContext, ServiceDef};

/// The `titan` binary's entry for this service.
pub fn service() -> ServiceDef {
    ServiceDef {
        name: domain::SERVICE,
        datastores: &[Datastore::Postgres, Datastore::Redis],
        ready_on: &[Datastore::Postgres, Datastore::Redis],
        migrator: Some(|| sqlx::migrate!("./migrations")),
        clickhouse_migrations: &[],
        publishes_events: true,
        file_descriptor_set: titan_proto::FILE_DESCRIPTOR_SET,
        mount: |ctx| mount(ctx).boxed(),
    }
}

async fn mount(ctx: ServiceContext) -> Result<Mounted, KitError> {
    let store = store::PgPingStore::new(ctx.postgres()?);
    let app = app::Pinger::new(store, ctx.config.cell.clone(), &ctx.registry)?;
    Ok(Mounted::new(&ctx)
        .grpc(grpc::server(app))
        .http(ws::router(&ctx.realtime)))
}
