//! The coupon service: codes that take money off an order. Validation answers from Redis
//! without consuming; redemption takes uses in a Lua script over Redis counters and records
//! them in PostgreSQL with guards of its own, so the global and per-user limits hold under any
//! concurrency; a reconcile job lines Redis up with the record.
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
use titan_kit::{Datastore, KitError, Mounted, ServiceContext, ServiceDef};
use titan_proto::coupon::v1::coupon_service_server::CouponServiceServer;

use crate::{
    app::Coupons,
    config::Settings,
    store::{pg::PgCoupons, redis::RedisCoupons},
};

/// How often Redis's counters are compared with the record.
const RECONCILE_EVERY: Duration = Duration::from_secs(60);

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
    let settings = ctx.settings(Settings::from_yaml)?;
    let record = PgCoupons::new(ctx.postgres()?);
    let cache = RedisCoupons::new(ctx.redis()?, settings.cache_ttl_seconds);
    let personal_data = privacy::Privacy::new(record.clone(), cache.clone());
    let app = Arc::new(Coupons::new(
        record,
        cache,
        settings,
        ctx.config.cell.clone(),
        Arc::new(chrono::Utc::now),
        metrics::Metrics::new(&ctx.registry)?,
    ));
    Ok(Mounted::new(&ctx)
        .grpc(
            CouponServiceServer::new(grpc::Grpc::new(app.clone()))
                .max_decoding_message_size(1024 * 1024),
        )
        .personal_data(personal_data)
        .every("coupon-reconcile", RECONCILE_EVERY, move || {
            let app = app.clone();
            async move { app.reconcile().await.map(drop) }
        }))
}
