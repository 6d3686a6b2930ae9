//! The chat service: conversations between buyers, sellers and the cell's support agents
//! (DIRECT, GROUP, SUPPORT), messages of six types with receipts, typing and presence, over
//! gRPC and a WebSocket on any replica. PostgreSQL holds conversations and messages (a
//! conversation's messages are numbered under its row lock, so a subscriber that resumes
//! from its last id gets everything after it with no gap and no duplicate); Redis carries
//! live events between replicas (kit's hub), typing, presence and the send rate.
#![forbid(unsafe_code)]

pub mod app;
pub mod config;
pub mod domain;
pub mod feed;
pub mod grpc;
pub mod metrics;
pub mod privacy;
pub mod store;
pub mod ws;

use std::sync::Arc;

use futures::FutureExt;
use titan_crds::config::TitanConfig;
use titan_kit::{Datastore, KitError, Mounted, ServiceContext, ServiceDef};
use titan_proto::chat::v1::chat_service_server::ChatServiceServer;

use crate::{
    app::{Chat, Parts},
    config::Settings,
    store::{pg::PgChat, privacy::PersonalStore, redis::Live},
};

/// Largest gRPC request accepted: a message at the largest configurable size plus its fields.
const MAX_REQUEST_BYTES: usize = 2 * 1024 * 1024;

/// The `titan` binary's entry for this service.
pub fn service() -> ServiceDef {
    ServiceDef {
        name: domain::SERVICE,
        datastores: &[Datastore::Postgres, Datastore::Redis],
        // Sending, history and access checks all read PostgreSQL; live delivery needs Redis.
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
    let redis = ctx.redis()?;
    let privacy = PersonalStore::new(ctx.postgres()?, Live::new(redis.clone()));
    let app = Arc::new(Chat::new(
        PgChat::new(ctx.postgres()?, ctx.config.cell.clone()),
        Parts {
            live: Live::new(redis),
            realtime: ctx.realtime.clone(),
            settings,
            bucket: ctx.config.object_storage.as_ref().map(|o| o.bucket.clone()),
            instance: ctx.instance(),
            clock: Arc::new(chrono::Utc::now),
            metrics: metrics::Metrics::new(&ctx.registry)?,
        },
    )?);
    let ws = ws::router(&ctx.realtime, app.clone());
    Ok(Mounted::new(&ctx)
        .grpc(
            ChatServiceServer::new(grpc::Grpc::new(app, ctx.shutdown.clone()))
                .max_decoding_message_size(MAX_REQUEST_BYTES),
        )
        .http(ws)
        .personal_data(privacy))
}
