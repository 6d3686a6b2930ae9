//! The livestream service: live video shopping. A seller schedules a stream and gets a secret
//! stream key (stored as its SHA-256); the cell's nginx-rtmp asks this service on every
//! publish (`http`), a valid key of a SCHEDULED stream takes it LIVE under its id and the end
//! of the publish ENDS it and revokes the key. Viewers watch HLS from the cell's media server,
//! heartbeat into Redis (concurrent, peak and unique viewers), like, share and comment; the
//! seller pins comments and features products, pushed to viewers over kit's WebSockets on
//! every replica; checkout records in-stream purchases, emitted as `livestream.purchased`.
//! Each viewer's minutes (`livestream.watched`) and the purchases reach ClickHouse through
//! analytics, where `GetStreamAnalytics` reads a stream's views, watch time and retention.
//! `titan recorder` ([`recorder`]) uploads nginx's finished recordings to the cell's bucket.
#![forbid(unsafe_code)]

pub mod app;
pub mod config;
pub mod domain;
pub mod grpc;
pub mod http;
pub mod metrics;
pub mod privacy;
pub mod recorder;
pub mod store;

use std::sync::Arc;

use futures::FutureExt;
use titan_crds::config::TitanConfig;
use titan_kit::{Datastore, KitError, Mounted, ServiceContext, ServiceDef};
use titan_proto::livestream::v1::livestream_service_server::LivestreamServiceServer;

use crate::{
    app::{Livestream, Parts},
    config::Settings,
    store::{clickhouse::ChAnalytics, pg::PgStreams, privacy::PersonalStore, redis::Live},
};

/// The `titan` binary's entry for this service.
pub fn service() -> ServiceDef {
    ServiceDef {
        name: domain::SERVICE,
        datastores: &[Datastore::Postgres, Datastore::Redis, Datastore::ClickHouse],
        // Admitting a publisher and every read need PostgreSQL; viewers and pushes need Redis.
        // Only GetStreamAnalytics reads ClickHouse: a live show goes on without it.
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
    let privacy = PersonalStore::new(ctx.postgres()?, Live::new(ctx.redis()?));
    let app = Arc::new(Livestream::new(
        PgStreams::new(ctx.postgres()?, ctx.config.cell.clone()),
        Parts {
            live: Live::new(ctx.redis()?),
            analytics: Arc::new(ChAnalytics::new(ctx.clickhouse()?)),
            realtime: ctx.realtime.clone(),
            settings,
            clock: Arc::new(chrono::Utc::now),
            metrics: metrics::Metrics::new(&ctx.registry)?,
        },
    ));
    let http = http::router(&ctx.realtime, app.clone());
    Ok(Mounted::new(&ctx)
        .grpc(LivestreamServiceServer::new(grpc::Grpc::new(app)))
        .http(http)
        .personal_data(privacy))
}
