//! The cell router: answers "which cell serves this key?" over gRPC (`titan.router.v1`) and
//! HTTP (`GET /v1/route`), from a versioned table of buckets that the operator maintains in a
//! ConfigMap (or, on a laptop, a file). It runs outside the cells, one Deployment per fleet,
//! needs no datastore and keeps its table in memory: `domain` holds the table, the hash and
//! the rebalancing the operator uses to write it; `app` the lookups and reloads; `store` the
//! sources; `grpc` and `http` the edges. See docs/router.md.
#![forbid(unsafe_code)]

pub mod app;
pub mod config;
pub mod domain;
pub mod grpc;
pub mod http;
pub mod store;

use std::sync::Arc;

use futures::FutureExt;
use titan_kit::{KitError, Mounted, ServiceContext, ServiceDef};

use crate::{
    config::{Settings, Source},
    store::{configmap::ConfigMapSource, file::FileSource},
};

/// The `titan` binary's entry for this service.
pub fn service() -> ServiceDef {
    ServiceDef {
        name: domain::SERVICE,
        datastores: &[],
        ready_on: &[],
        migrator: None,
        clickhouse_migrations: &[],
        publishes_events: false,
        file_descriptor_set: titan_proto::FILE_DESCRIPTOR_SET,
        mount: |ctx| mount(ctx).boxed(),
    }
}

async fn mount(ctx: ServiceContext) -> Result<Mounted, KitError> {
    let Settings { source } = ctx.settings(Settings::from_yaml)?;
    let router = Arc::new(app::Router::new(&ctx.registry)?);
    let table = router.clone();
    let mounted = Mounted::new(&ctx)
        .grpc(grpc::server(router.clone()))
        .http(http::routes(router.clone()))
        // Until the first table every lookup fails: keep the replica out of its Service.
        .ready_when("router table", move || {
            table.table().map(drop).map_err(|e| e.to_string())
        });
    Ok(match source {
        Source::File { path, poll } => {
            let mut file = FileSource::new(path, router);
            // Serving starts with the table when the file is there.
            file.poll().await;
            mounted.task("router-table-file", file.run(poll, ctx.shutdown.clone()))
        }
        Source::ConfigMap { namespace, name } => {
            let client = store::configmap::client().await?;
            let source = ConfigMapSource::new(client, namespace.as_deref(), &name, router);
            mounted.task("router-table-configmap", source.run(ctx.shutdown.clone()))
        }
    })
}
