//! The commands against the API server: read what a report needs, check, apply, watch. Every
//! decision is made by the pure modules; this one only fetches and writes.

use std::{path::PathBuf, time::Duration};

use futures::StreamExt;
use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{Event, Secret},
};
use kube::{
    Api, Client, Config, ResourceExt,
    api::{ListParams, Patch, PatchParams},
    config::{KubeConfigOptions, Kubeconfig},
    runtime::{WatchStreamExt, watcher},
};
use titan_crds::{Cell, Service};

use crate::{
    Error,
    credentials::{CredentialsReport, secrets_used},
    ops::{self, MANAGER, Switch},
    status::{CellReport, CellRow},
    wait::{self, Progress, Target},
};

/// Where Events about cluster-scoped objects (Cells) are recorded.
const CLUSTER_EVENTS_NAMESPACE: &str = "default";

/// A connection to the cluster of the current (or given) kubeconfig context.
#[derive(Clone)]
pub struct Cluster {
    client: Client,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").finish_non_exhaustive()
    }
}

impl Cluster {
    /// Connects as kubectl would: `--kubeconfig`, else `KUBECONFIG` or `~/.kube/config` (or the
    /// in-cluster account), with `--context` when given.
    pub async fn connect(
        kubeconfig: Option<PathBuf>,
        context: Option<String>,
    ) -> Result<Self, Error> {
        let options = KubeConfigOptions {
            context,
            ..Default::default()
        };
        let failed = |e: &dyn std::fmt::Display| Error::Config(e.to_string());
        let config = match kubeconfig {
            Some(path) => {
                let file = Kubeconfig::read_from(&path)
                    .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
                Config::from_custom_kubeconfig(file, &options)
                    .await
                    .map_err(|e| failed(&e))?
            }
            None if options.context.is_some() => Config::from_kubeconfig(&options)
                .await
                .map_err(|e| failed(&e))?,
            None => Config::infer().await.map_err(|e| failed(&e))?,
        };
        let client = Client::try_from(config).map_err(|e| Error::Config(e.to_string()))?;
        Ok(Self { client })
    }

    fn cells(&self) -> Api<Cell> {
        Api::all(self.client.clone())
    }

    /// The cell, or the refusal that names it.
    pub async fn cell(&self, name: &str) -> Result<Cell, Error> {
        self.cells()
            .get_opt(name)
            .await?
            .ok_or_else(|| Error::NoCell(name.to_string()))
    }

    /// One row per cell, by name.
    pub async fn rows(&self) -> Result<Vec<CellRow>, Error> {
        let mut rows: Vec<CellRow> = self
            .cells()
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .map(CellRow::of)
            .collect();
        rows.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(rows)
    }

    /// Everything `status CELL` shows.
    pub async fn report(&self, name: &str) -> Result<CellReport, Error> {
        let cell = self.cell(name).await?;
        let namespace = cell.namespace_name();
        let services = self.services(&namespace, name).await?;
        let deployments = Api::<Deployment>::namespaced(self.client.clone(), &namespace)
            .list(&ListParams::default())
            .await?
            .items;
        // The Cell's own Events, and every Warning in its namespace (pods, Deployments, Jobs).
        let warning = "type=Warning";
        let mut events = Api::<Event>::namespaced(self.client.clone(), CLUSTER_EVENTS_NAMESPACE)
            .list(&ListParams::default().fields(&format!(
                "involvedObject.kind=Cell,involvedObject.name={name},{warning}"
            )))
            .await?
            .items;
        events.extend(
            Api::<Event>::namespaced(self.client.clone(), &namespace)
                .list(&ListParams::default().fields(warning))
                .await?
                .items,
        );
        Ok(CellReport::build(&cell, &services, &deployments, &events))
    }

    /// The Services of cell `cell` in `namespace`.
    async fn services(&self, namespace: &str, cell: &str) -> Result<Vec<Service>, Error> {
        Ok(Api::<Service>::namespaced(self.client.clone(), namespace)
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .filter(|s| s.spec.cell == cell)
            .collect())
    }

    /// Sets one of the cell's switches; what it did.
    pub async fn switch(&self, name: &str, switch: Switch, force: bool) -> Result<String, Error> {
        let cell = self.cell(name).await?;
        let config = ops::switch_config(&cell, switch, force)?;
        // Manifests were checked above; the remaining owners are imperative writers and
        // defaults, which a switch takes over (module `ops`).
        let applied = self
            .cells()
            .patch(
                name,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&config),
            )
            .await?;
        Ok(switch.done(&applied))
    }

    /// Sets a service's replicas; what it did.
    pub async fn scale(&self, name: &str, service: &str, replicas: i32) -> Result<String, Error> {
        let cell = self.cell(name).await?;
        let namespace = cell.namespace_name();
        let services = self.services(&namespace, name).await?;
        let Some(target) = services.iter().find(|s| s.name_any() == service) else {
            let mut known: Vec<String> = services.iter().map(|s| s.name_any()).collect();
            known.sort();
            return Err(Error::NoService {
                cell: name.to_string(),
                service: service.to_string(),
                known: known.join(", "),
            });
        };
        let config = ops::scale_config(&cell, target, replicas)?;
        // Replicas the Cell leaves alone belong to whoever scales last, as with `kubectl scale`:
        // taking them over from an earlier scaler is the point, so conflicts are forced.
        Api::<Service>::namespaced(self.client.clone(), &namespace)
            .patch(
                service,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&config),
            )
            .await?;
        let mut done = format!(
            "service {service} of cell {name} scaled to {replicas} (spec.replicas, field manager {MANAGER})"
        );
        if cell.spec.operation.stopped || cell.spec.operation.reconciliation_paused {
            done.push_str(&format!(
                "\nnote: cell {name} is {}: its Deployment keeps its replicas until `kubectl titan {}`",
                if cell.spec.operation.stopped { "stopped" } else { "paused" },
                if cell.spec.operation.stopped { format!("start {name}") } else { format!("resume {name}") },
            ));
        }
        Ok(done)
    }

    /// The Secrets the cell uses.
    pub async fn credentials(&self, name: &str, reveal: bool) -> Result<CredentialsReport, Error> {
        let cell = self.cell(name).await?;
        let secrets = Api::<Secret>::namespaced(self.client.clone(), &cell.namespace_name());
        let mut live = Vec::new();
        for used in secrets_used(&cell) {
            live.extend(secrets.get_opt(&used.name).await?);
        }
        Ok(CredentialsReport::build(&cell, &live, reveal))
    }

    /// Watches the cell until it reaches `target`, calling `progress` with each new line;
    /// what was reached, or the timeout with the last line.
    pub async fn wait(
        &self,
        name: &str,
        target: &Target,
        timeout: Duration,
        mut progress: impl FnMut(&str),
    ) -> Result<String, Error> {
        let cell = self.cell(name).await?;
        let mut last = match wait::check(&cell, target) {
            Progress::Done(done) => return Ok(done),
            Progress::Waiting(line) => line,
        };
        progress(&last);
        let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let mut changes = watcher(self.cells(), config)
            .default_backoff()
            .applied_objects()
            .boxed();
        let watched = tokio::time::timeout(timeout, async {
            while let Some(change) = changes.next().await {
                // A failed watch request is retried with backoff by the watcher; the deadline
                // still holds, and its error reports where the cell stood.
                let Ok(cell) = change else { continue };
                match wait::check(&cell, target) {
                    Progress::Done(done) => return Ok(done),
                    Progress::Waiting(line) if line != last => {
                        progress(&line);
                        last = line;
                    }
                    Progress::Waiting(_) => {}
                }
            }
            Err(Error::Watch("the watch ended".to_string()))
        })
        .await;
        match watched {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout {
                cell: name.to_string(),
                target: target.to_string(),
                timeout,
                last: self.cell(name).await.map_or_else(
                    |e| e.to_string(),
                    |c| match wait::check(&c, target) {
                        Progress::Done(done) => done,
                        Progress::Waiting(line) => line,
                    },
                ),
            }),
        }
    }
}
