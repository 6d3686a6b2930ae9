//! Apply stage of the Service controller: the built objects in order (the config before the
//! migration Job, the Job before the Deployment that waits for it), each kind pruned of what the
//! service no longer wants (the autoscaler once autoscaling is removed or the cell stops, the
//! Jobs of earlier images).

use k8s_openapi::api::{apps::v1::Deployment, batch::v1::Job};
use kube::ResourceExt;

use super::{
    build::ServiceObjects,
    dereference::Live,
    migration::{self, Migration, MigrationJob},
};
use crate::{Context, Error, apply};

/// What the apply stage left in place, for the status stage.
#[derive(Debug)]
pub struct Applied {
    /// The Deployment as the server now has it (the old one while migrations run).
    pub deployment: Option<Deployment>,
    /// Where the migrations stand.
    pub migration: Migration,
}

/// Applies `objects` in `namespace` and prunes the rest of `live`. The Deployment is created,
/// or changed, only once the migration Job of its spec succeeded; until then the live one (the
/// old pods) is left as it is.
pub async fn apply_all(
    ctx: &Context,
    namespace: &str,
    objects: ServiceObjects,
    live: &Live,
) -> Result<Applied, Error> {
    let client = &ctx.client;
    let ServiceObjects {
        config_map,
        core_service,
        deployment,
        pdb,
        hpa,
        migration: job,
    } = objects;
    apply::sync(client, namespace, vec![config_map], &live.config_maps, &[]).await?;
    apply::sync(
        client,
        namespace,
        core_service.into_iter().collect(),
        &live.core_services,
        &[],
    )
    .await?;
    let migration = match job {
        MigrationJob::NotNeeded => Migration::NotNeeded,
        MigrationJob::Stopped => Migration::NotStarted("the cell is stopped".into()),
        MigrationJob::Run(job) => {
            let name = job.name_any();
            let applied: Vec<Job> =
                apply::sync(client, namespace, vec![*job], &live.jobs, &[]).await?;
            migration::observe(&name, applied.first(), &live.migration_pods)
        }
    };
    let deployment_name = deployment.name_any();
    // A Deployment scaled to zero (a stopped cell) starts nothing that would need migrating.
    let (desired, also_keep) = if migration.done() || scaled_to_zero(&deployment) {
        (vec![deployment], Vec::new())
    } else {
        (Vec::new(), vec![deployment_name.clone()])
    };
    let deployment = match apply::sync(client, namespace, desired, &live.deployments, &also_keep)
        .await?
        .pop()
    {
        Some(applied) => Some(applied),
        None => live
            .deployments
            .iter()
            .find(|d| d.name_any() == deployment_name)
            .cloned(),
    };
    apply::sync(client, namespace, vec![pdb], &live.pdbs, &[]).await?;
    apply::sync(
        client,
        namespace,
        hpa.into_iter().collect(),
        &live.hpas,
        &[],
    )
    .await?;
    Ok(Applied {
        deployment,
        migration,
    })
}

fn scaled_to_zero(deployment: &Deployment) -> bool {
    deployment.spec.as_ref().and_then(|s| s.replicas) == Some(0)
}
