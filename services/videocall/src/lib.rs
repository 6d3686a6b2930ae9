//! The videocall service: one-on-one support, sales and consultation calls. PostgreSQL holds
//! each call and its guarded state machine (every transition one UPDATE guarded by the status
//! it leaves; the ringing timeout driven from the store by a job on every replica, so a
//! restart while a call rings still ends it MISSED); the support queue hands SUPPORT calls to
//! agents first come first served; signaling frames travel between the two parties through
//! kit's WebSocket hub (Redis pub/sub), so they may sit on different replicas; ICE servers
//! come with TURN REST credentials from kit that never outlive the call; recordings the
//! parties upload (with both consents) stream to the cell's bucket through kit's objects.
#![forbid(unsafe_code)]

pub mod app;
pub mod config;
pub mod domain;
pub mod grpc;
pub mod metrics;
pub mod privacy;
pub mod store;
pub mod ws;

use std::{sync::Arc, time::Duration};

use futures::FutureExt;
use secrecy::SecretString;
use titan_crds::config::TitanConfig;
use titan_kit::{Datastore, KitError, Mounted, ServiceContext, ServiceDef};
use titan_proto::videocall::v1::videocall_service_server::VideocallServiceServer;

use crate::{
    app::{Parts, Videocall},
    config::{Settings, TURN_SECRET_ENV},
    store::{pg::PgCalls, privacy::PersonalStore},
};

/// How often each replica looks for calls past their ringing deadline or longest duration: a
/// call is missed at most this long after its deadline.
pub const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// The `titan` binary's entry for this service.
pub fn service() -> ServiceDef {
    ServiceDef {
        name: domain::SERVICE,
        datastores: &[
            Datastore::Postgres,
            Datastore::Redis,
            Datastore::ObjectStorage,
        ],
        // Calls live in PostgreSQL; signaling and call frames need Redis. Object storage is
        // needed only to upload recordings, so a blip in it does not stop calls.
        ready_on: &[Datastore::Postgres, Datastore::Redis],
        migrator: Some(|| sqlx::migrate!("./migrations")),
        clickhouse_migrations: &[],
        publishes_events: true,
        file_descriptor_set: titan_proto::FILE_DESCRIPTOR_SET,
        mount: |ctx| mount(ctx).boxed(),
    }
}

/// The TURN secret from the environment (the operator's Secret); empty counts as none.
fn turn_secret() -> Option<SecretString> {
    std::env::var(TURN_SECRET_ENV)
        .ok()
        .filter(|s| !s.is_empty())
        .map(SecretString::from)
}

async fn mount(ctx: ServiceContext) -> Result<Mounted, KitError> {
    let settings = ctx.settings(Settings::from_yaml)?;
    let privacy = PersonalStore::new(ctx.postgres()?, ctx.objects()?);
    let app = Arc::new(Videocall::new(
        PgCalls::new(ctx.postgres()?, ctx.config.cell.clone()),
        Parts {
            hub: ctx.realtime.hub(),
            settings,
            turn_secret: turn_secret(),
            objects: ctx.objects()?,
            clock: Arc::new(chrono::Utc::now),
            metrics: metrics::Metrics::new(&ctx.registry)?,
        },
    ));
    let ws = ws::router(&ctx.realtime, app.clone());
    let sweeper = app.clone();
    Ok(Mounted::new(&ctx)
        .grpc(VideocallServiceServer::new(grpc::Grpc::new(app)))
        .http(ws)
        .personal_data(privacy)
        .every("videocall-timeouts", SWEEP_EVERY, move || {
            let app = sweeper.clone();
            async move { app.sweep().await.map(drop) }
        }))
}
