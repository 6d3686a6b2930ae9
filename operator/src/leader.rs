//! Leader election on a `coordination.k8s.io` Lease (kube-lease-manager), so two replicas of
//! the operator never reconcile at once.

use kube::Client;
use kube_lease_manager::{LeaseManagerBuilder, LeaseManagerError};
use tokio::{sync::watch, task::JoinHandle};

/// Name of the Lease the replicas compete for.
pub const LEASE_NAME: &str = "titan-operator";

/// A running election: `leader` turns true while this replica holds the lease.
#[derive(Debug)]
pub struct Election {
    /// True while this replica is the leader.
    pub leader: watch::Receiver<bool>,
    /// The task renewing the lease; it ends (releasing the lease) when `leader` is dropped.
    pub task: JoinHandle<Result<kube_lease_manager::LeaseManager, LeaseManagerError>>,
}

/// Starts competing for the lease in `namespace` as `identity`.
pub async fn elect(
    client: Client,
    namespace: &str,
    identity: &str,
) -> Result<Election, LeaseManagerError> {
    let manager = LeaseManagerBuilder::new(client, LEASE_NAME)
        .with_namespace(namespace)
        .with_identity(identity)
        .with_duration(15)
        .with_grace(5)
        // One field manager per replica: the lease is taken by a server-side apply, and only
        // distinct managers make a second replica's apply conflict instead of silently
        // overwriting the holder — with one shared manager two replicas starting together could
        // both believe they lead until the loser's first renewal.
        .with_field_manager(format!("{}-{identity}", crate::MANAGER))
        .build()
        .await?;
    let (leader, task) = manager.watch().await;
    Ok(Election { leader, task })
}
