//! The gamification service: points in a PostgreSQL ledger (race-free, never negative, each
//! award once per source), levels, badges, a rewards catalog, check-in streaks, missions, and
//! Redis leaderboards fed from the ledger. Purchases earn from `flashsale.purchased` and
//! `livestream.purchased` events.
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
    Datastore, KitError, Mounted, ServiceContext, ServiceDef, events::ConsumerOptions,
};
use titan_proto::gamification::v1::gamification_service_server::GamificationServiceServer;

use crate::{
    app::Gamification,
    config::Settings,
    store::{
        consumer::PurchaseHandler, feed::FedBoards, pg::PgLedger, privacy::PersonalStore,
        redis::RedisBoards,
    },
};

/// How often ledger rows not yet on the leaderboards are moved there: how far the boards lag.
const FEED_EVERY: Duration = Duration::from_millis(500);

/// The `titan` binary's entry for this service.
pub fn service() -> ServiceDef {
    ServiceDef {
        name: domain::SERVICE,
        datastores: &[Datastore::Postgres, Datastore::Redis],
        ready_on: &[Datastore::Postgres, Datastore::Redis],
        migrator: Some(|| sqlx::migrate!("./migrations")),
        clickhouse_migrations: &[],
        publishes_events: false,
        file_descriptor_set: titan_proto::FILE_DESCRIPTOR_SET,
        mount: |ctx| mount(ctx).boxed(),
    }
}

async fn mount(ctx: ServiceContext) -> Result<Mounted, KitError> {
    let settings = ctx.settings(Settings::from_yaml)?;
    let pool = ctx.postgres()?;
    let redis = ctx.redis()?;
    let metrics = metrics::Metrics::new(&ctx.registry)?;
    let app = Arc::new(Gamification::new(
        PgLedger::new(pool.clone()),
        FedBoards::new(pool.clone(), RedisBoards::new(redis.clone())),
        settings.clone(),
        Arc::new(chrono::Utc::now),
        metrics.clone(),
    ));
    let handler = PurchaseHandler::new(settings, metrics);
    let mut mounted = Mounted::new(&ctx)
        .grpc(GamificationServiceServer::new(grpc::Grpc::new(app.clone())))
        .personal_data(PersonalStore::new(
            pool.clone(),
            RedisBoards::new(redis.clone()),
        ));
    for source in store::consumer::SOURCES {
        mounted = mounted.consume(
            format!("gamification-{source}-purchases"),
            ConsumerOptions::new(source, domain::SERVICE, &ctx.instance(), &ctx.config.events),
            handler.clone(),
        );
    }
    Ok(
        mounted.every("gamification-leaderboards", FEED_EVERY, move || {
            let app = app.clone();
            async move { app.feed_all().await.map(drop) }
        }),
    )
}
