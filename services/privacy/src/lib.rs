//! The privacy service (`titan.privacy.v1`): a person's data across the cell. `RequestExport`
//! and `RequestErasure` record a job with a task for every service that holds personal data
//! (those registered through `kit::privacy`) and announce it on the bus; each service answers
//! its task, and this service completes the job once all have: an export's parts joined into
//! one JSON object in the cell's bucket behind a presigned URL that expires, an erasure's job
//! records left with the pseudonym only.
#![forbid(unsafe_code)]

pub mod app;
pub mod config;
pub mod domain;
pub mod grpc;
pub mod store;

use std::{sync::Arc, time::Duration};

use futures::FutureExt;
use titan_crds::config::TitanConfig;
use titan_kit::{Datastore, KitError, Mounted, ServiceContext, ServiceDef};

/// The `titan` binary's entry for this service.
pub fn service() -> ServiceDef {
    ServiceDef {
        name: domain::SERVICE,
        datastores: &[
            Datastore::Postgres,
            Datastore::Redis,
            Datastore::ObjectStorage,
        ],
        // Starting and reading jobs need PostgreSQL only; the bucket is written when an export
        // completes, and the finisher retries then.
        ready_on: &[Datastore::Postgres],
        migrator: None,
        clickhouse_migrations: &[],
        publishes_events: true,
        file_descriptor_set: titan_proto::FILE_DESCRIPTOR_SET,
        mount: |ctx| mount(ctx).boxed(),
    }
}

/// How often the finisher looks for answered jobs and due exports.
const FINISH_EVERY: Duration = Duration::from_secs(1);

async fn mount(ctx: ServiceContext) -> Result<Mounted, KitError> {
    let settings = ctx.settings(config::Settings::from_yaml)?;
    let app = app::Privacy::new(
        store::PgPrivacy::new(ctx.postgres()?),
        ctx.objects()?,
        ctx.config.cell.clone(),
        Duration::from_secs(settings.export_ttl_seconds),
        Arc::new(chrono::Utc::now),
        &ctx.registry,
    )?;
    let finisher = app.clone();
    Ok(Mounted::new(&ctx).grpc(grpc::server(app)).every(
        "privacy-finisher",
        FINISH_EVERY,
        move || {
            let app = finisher.clone();
            async move { app.finish().await.map(drop) }
        },
    ))
}
