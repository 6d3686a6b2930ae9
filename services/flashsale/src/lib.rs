//! The flash-sale service: limited stock at a discount for a limited time, sold at 10,000+
//! attempts per second without ever overselling. Stock lives in Redis and changes only in Lua
//! scripts; PostgreSQL records sales and orders and is the truth Redis is rebuilt from: a
//! sweeper returns expired reservations (never a paid one), and a reconcile job repairs drift
//! between the two by re-warming the sale from PostgreSQL.
#![forbid(unsafe_code)]

pub mod app;
pub mod config;
pub mod domain;
pub mod grpc;
pub mod metrics;
pub mod privacy;
pub mod store;
pub mod watch;
pub mod ws;

use std::{sync::Arc, time::Duration};

use futures::FutureExt;
use titan_crds::config::TitanConfig;
use titan_kit::{Datastore, KitError, Mounted, ServiceContext, ServiceDef};
use titan_proto::flashsale::v1::flash_sale_service_server::FlashSaleServiceServer;

use crate::{
    app::FlashSales,
    config::Settings,
    store::{pg::PgSales, redis::RedisStock},
};

/// The `titan` binary's entry for this service.
pub fn service() -> ServiceDef {
    ServiceDef {
        name: domain::SERVICE,
        datastores: &[Datastore::Postgres, Datastore::Redis],
        ready_on: &[Datastore::Redis],
        migrator: Some(|| sqlx::migrate!("./migrations")),
        clickhouse_migrations: &[],
        publishes_events: true,
        file_descriptor_set: titan_proto::FILE_DESCRIPTOR_SET,
        mount: |ctx| mount(ctx).boxed(),
    }
}

async fn mount(ctx: ServiceContext) -> Result<Mounted, KitError> {
    let settings = ctx.settings(Settings::from_yaml)?;
    let sales = PgSales::new(ctx.postgres()?);
    let stock = RedisStock::new(ctx.redis()?);
    let personal_data = privacy::Privacy::new(sales.clone(), stock.clone());
    let app = Arc::new(FlashSales::new(
        sales,
        stock,
        settings.clone(),
        ctx.config.cell.clone(),
        Arc::new(chrono::Utc::now),
        metrics::Metrics::new(&ctx.registry)?,
    ));
    let sweep_every = Duration::from_millis(settings.sweep_interval_ms);
    let reconcile_every = Duration::from_secs(settings.reconcile_interval_seconds);
    let grpc = grpc::Grpc::new(app.clone(), ctx.shutdown.clone());
    // The WebSocket mirror of `WatchSale` shares the gRPC edge's pollers: one per sale.
    let watch = ws::router(&ctx.realtime, app.clone(), grpc.pollers().clone());
    Ok(Mounted::new(&ctx)
        .grpc(FlashSaleServiceServer::new(grpc).max_decoding_message_size(64 * 1024))
        .http(watch)
        .personal_data(personal_data)
        .every("flashsale-sweeper", sweep_every, {
            let app = app.clone();
            move || {
                let app = app.clone();
                async move {
                    app.warm_due().await?;
                    app.sweep().await.map(drop)
                }
            }
        })
        .every("flashsale-reconcile", reconcile_every, move || {
            let app = app.clone();
            async move { app.reconcile().await.map(drop) }
        }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Buying runs on Redis alone (one script, no PostgreSQL), so readiness follows Redis
    /// alone: a PostgreSQL blip must not take every replica out of the load balancer.
    #[test]
    fn readiness_follows_the_buying_path_alone() {
        assert_eq!(service().ready_on, [Datastore::Redis]);
    }
}
