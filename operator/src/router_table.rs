//! The cell router's table: the operator keeps the ConfigMap that every `titan serve router`
//! replica watches (docs/router.md, docs/fleet.md), rebalanced from the Cells.
//!
//! `members` and `desired` are pure (Cells and the table as stored in, the next table out);
//! [`sync`] reads the stored table, writes the next one when its assignment changed, and
//! [`run`] calls it whenever a Cell changes. The stored table is the only memory: the operator
//! keeps no state of its own, so a new leader carries on from what the ConfigMap holds.
//!
//! Who is in the table:
//! - a cell enters once it is first Ready: a cell still starting must not get users whose
//!   requests it cannot serve yet;
//! - once in, it stays through a restart or an outage (moving its users elsewhere would strand
//!   their data), until its Cell is deleted (or being deleted);
//! - `spec.routing.weight` sets its share, `spec.routing.draining` freezes it (it keeps its
//!   users and takes no new ones).

use std::{collections::BTreeSet, time::Duration};

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{
    Api, Client, ResourceExt,
    api::{Patch, PatchParams},
    core::DeserializeGuard,
    runtime::{WatchStreamExt, reflector, watcher},
};
use titan_crds::{Cell, common::condition::READY};
use titan_router::{
    domain::{
        BucketCount, CellEntry, CellName, RebalanceError, Table, encoding, initial, rebalance,
    },
    store::configmap::{TABLE_KEY, configmap},
};
use tokio::sync::watch;

use crate::conditions;

/// Where the table lives and how many buckets a new one has.
#[derive(Debug, Clone)]
pub struct RouterTableOptions {
    /// Namespace of the ConfigMap: the router's.
    pub namespace: String,
    /// Name of the ConfigMap (`titan-router-table` unless the router is configured otherwise).
    pub name: String,
    /// Buckets of a first table. A stored table keeps its own count: changing it would move
    /// almost every user.
    pub buckets: BucketCount,
}

/// Why the table cannot be kept.
#[derive(Debug, thiserror::Error)]
pub enum RouterTableError {
    #[error(
        "the stored router table {namespace}/{name} does not decode ({reason}); fix or delete it: writing a new one would move every user"
    )]
    Stored {
        namespace: String,
        name: String,
        reason: String,
    },
    #[error("cell {0:?} cannot be in the router table: its name is not a DNS label")]
    CellName(String),
    #[error("cannot rebalance the router table: {0}")]
    Rebalance(#[from] RebalanceError),
    #[error("cannot read or write the router table: {0}")]
    Kube(#[from] kube::Error),
}

/// Whether the Cell's Ready condition is True for its current generation.
fn ready(cell: &Cell) -> bool {
    cell.status.as_ref().is_some_and(|status| {
        conditions::current(&status.conditions, READY, cell.metadata.generation)
            .is_some_and(|c| c.status == "True")
    })
}

/// The router entries of `cells`, in name order: the cells not being deleted that are in
/// `previous` already or are Ready now.
pub fn members(
    cells: &[Cell],
    previous: Option<&Table>,
) -> Result<Vec<CellEntry>, RouterTableError> {
    let listed: BTreeSet<&str> = previous
        .map(|t| t.cells().iter().map(CellName::as_str).collect())
        .unwrap_or_default();
    let mut entries = Vec::new();
    for cell in cells {
        let name = cell.name_any();
        if cell.metadata.deletion_timestamp.is_some()
            || !(listed.contains(name.as_str()) || ready(cell))
        {
            continue;
        }
        let parsed = CellName::parse(&name).map_err(|_| RouterTableError::CellName(name))?;
        entries.push(CellEntry {
            name: parsed,
            weight: cell.spec.routing.weight.max(1),
            draining: cell.spec.routing.draining,
        });
    }
    entries.sort_by(|a, b| a.name.as_str().cmp(b.name.as_str()));
    Ok(entries)
}

/// The table to store, or `None` when there is nothing to change: the same assignment as
/// `previous`, or no cell to route to (an empty fleet keeps the last table rather than routing
/// nobody anywhere).
pub fn desired(
    previous: Option<&Table>,
    cells: &[Cell],
    buckets: BucketCount,
) -> Result<Option<Table>, RouterTableError> {
    let entries = members(cells, previous)?;
    if entries.is_empty() {
        return Ok(None);
    }
    let next = match previous {
        Some(previous) => rebalance(previous, &entries)?,
        None => initial(buckets, &entries)?,
    };
    Ok(match previous {
        Some(previous) if previous.same_assignment(&next) => None,
        _ => Some(next),
    })
}

/// Reads the stored table, writes the next one if the Cells changed it, and returns the table
/// in force afterwards (`None`: none stored and no cell Ready yet).
pub async fn sync(
    client: &Client,
    options: &RouterTableOptions,
    cells: &[Cell],
) -> Result<Option<Table>, RouterTableError> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &options.namespace);
    let stored = match api.get_opt(&options.name).await? {
        Some(cm) => {
            let text = cm
                .data
                .as_ref()
                .and_then(|d| d.get(TABLE_KEY))
                .ok_or_else(|| RouterTableError::Stored {
                    namespace: options.namespace.clone(),
                    name: options.name.clone(),
                    reason: format!("no key {TABLE_KEY}"),
                })?;
            Some(
                encoding::decode(text).map_err(|e| RouterTableError::Stored {
                    namespace: options.namespace.clone(),
                    name: options.name.clone(),
                    reason: e.to_string(),
                })?,
            )
        }
        None => None,
    };
    let Some(next) = desired(stored.as_ref(), cells, options.buckets)? else {
        return Ok(stored);
    };
    // Written only when the assignment changed (above), so no applied-hash is needed to skip
    // unchanged writes as the cell's children have.
    api.patch(
        &options.name,
        &PatchParams::apply(crate::MANAGER).force(),
        &Patch::Apply(&configmap(&options.name, &options.namespace, &next)),
    )
    .await?;
    tracing::info!(
        version = next.version(),
        cells = next.cells().len(),
        "router table written"
    );
    Ok(Some(next))
}

/// How long changes are collected before the table is computed: a burst of Cell status
/// updates makes one write.
const SETTLE: Duration = Duration::from_secs(1);
/// When a sync failed, the next try (a watch event may not come for a long time).
const RETRY: Duration = Duration::from_secs(10);

/// Keeps the table until `stop` turns true: a sync once the Cells are listed, after every
/// change of a Cell (settled), and every [`RETRY`] while the last sync failed.
pub async fn run(client: Client, options: RouterTableOptions, mut stop: watch::Receiver<bool>) {
    let (reader, writer) = reflector::store::<DeserializeGuard<Cell>>();
    // Every watch event counts as a change, the end of the initial list included: only from
    // then on does the store hold every Cell, so no sync runs before it.
    let mut events = reflector(
        writer,
        watcher(
            Api::<DeserializeGuard<Cell>>::all(client.clone()),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .boxed();
    let mut retry = tokio::time::interval(RETRY);
    let mut pending = false;
    loop {
        tokio::select! {
            event = events.next() => match event {
                Some(_) => pending = true,
                None => return,
            },
            _ = retry.tick() => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
        if !pending || reader.wait_until_ready().now_or_never().is_none() {
            continue;
        }
        tokio::time::sleep(SETTLE).await;
        // A Cell that does not deserialize is left out: it cannot be routed to, and the cell
        // controller reports it on the Cell.
        let cells: Vec<Cell> = reader
            .state()
            .iter()
            .filter_map(|c| c.0.as_ref().ok().cloned())
            .collect();
        pending = match sync(&client, &options, &cells).await {
            Ok(_) => false,
            Err(error) => {
                tracing::warn!(%error, "cannot keep the router table; trying again");
                true
            }
        };
    }
}
