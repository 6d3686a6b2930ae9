//! The closed sets the resources refer to: which Titan service a `Service` runs and which
//! datastores a service connects to.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Which Titan service a `Service` resource runs, or `custom` for a worker with its own image.
#[derive(
    Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord,
)]
#[serde(rename_all = "lowercase")]
pub enum ServiceKind {
    /// High-concurrency limited-time sales.
    Flashsale,
    /// Discounts and vouchers.
    Coupon,
    /// Points, levels, badges and rewards.
    Gamification,
    /// Multi-channel marketing campaigns.
    Campaign,
    /// Experiments and feature flags.
    Abtesting,
    /// Real-time transaction risk scoring.
    Fraud,
    /// Dynamic pricing engine.
    Pricing,
    /// Events, dashboards, funnels and cohorts.
    Analytics,
    /// Buyer and seller chat.
    Chat,
    /// Live video shopping.
    Livestream,
    /// One-on-one support video calls.
    Videocall,
    /// Last-mile delivery drivers and routes.
    Driver,
    /// Real-time package tracking.
    Tracking,
    /// Inventory locations and stock movements.
    Warehouse,
    /// Carriers, rates and labels.
    Shipping,
    /// A person's data across the cell: exports and erasures every service answers.
    Privacy,
    /// A worker that is not a Titan service: its image, command and arguments are its own.
    Custom,
}

impl ServiceKind {
    /// Every Titan service, in the order the operator creates them.
    pub const TITAN: [ServiceKind; 16] = [
        ServiceKind::Flashsale,
        ServiceKind::Coupon,
        ServiceKind::Gamification,
        ServiceKind::Campaign,
        ServiceKind::Abtesting,
        ServiceKind::Fraud,
        ServiceKind::Pricing,
        ServiceKind::Analytics,
        ServiceKind::Chat,
        ServiceKind::Livestream,
        ServiceKind::Videocall,
        ServiceKind::Driver,
        ServiceKind::Tracking,
        ServiceKind::Warehouse,
        ServiceKind::Shipping,
        ServiceKind::Privacy,
    ];

    /// The name used in `titan serve`, in config sections and as the `Service` object's name.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceKind::Flashsale => "flashsale",
            ServiceKind::Coupon => "coupon",
            ServiceKind::Gamification => "gamification",
            ServiceKind::Campaign => "campaign",
            ServiceKind::Abtesting => "abtesting",
            ServiceKind::Fraud => "fraud",
            ServiceKind::Pricing => "pricing",
            ServiceKind::Analytics => "analytics",
            ServiceKind::Chat => "chat",
            ServiceKind::Livestream => "livestream",
            ServiceKind::Videocall => "videocall",
            ServiceKind::Driver => "driver",
            ServiceKind::Tracking => "tracking",
            ServiceKind::Warehouse => "warehouse",
            ServiceKind::Shipping => "shipping",
            ServiceKind::Privacy => "privacy",
            ServiceKind::Custom => "custom",
        }
    }

    /// Whether the service writes to the cell's object storage: recordings (livestream,
    /// videocall), shipping labels and proofs of delivery (shipping, driver), a person's
    /// exported data (privacy).
    pub fn uses_object_storage(self) -> bool {
        matches!(
            self,
            ServiceKind::Livestream
                | ServiceKind::Videocall
                | ServiceKind::Driver
                | ServiceKind::Shipping
                | ServiceKind::Privacy
        )
    }

    /// The datastores a service connects to unless its `Service` says otherwise.
    ///
    /// Every Titan service gets PostgreSQL and Redis even where its own data lives elsewhere:
    /// the event outbox is a PostgreSQL table and the event bus is Redis Streams.
    pub fn default_datastores(self) -> Vec<DatastoreKind> {
        use DatastoreKind::{ClickHouse, Postgres, Redis};
        match self {
            ServiceKind::Campaign
            | ServiceKind::Abtesting
            | ServiceKind::Fraud
            | ServiceKind::Pricing
            | ServiceKind::Analytics
            | ServiceKind::Livestream => vec![Postgres, Redis, ClickHouse],
            ServiceKind::Custom => Vec::new(),
            _ => vec![Postgres, Redis],
        }
    }
}

impl fmt::Display for ServiceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A datastore of the cell a service may connect to.
#[derive(
    Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord,
)]
#[serde(rename_all = "lowercase")]
pub enum DatastoreKind {
    /// The cell's PostgreSQL (`TITAN_POSTGRES_URL`).
    Postgres,
    /// The cell's Redis (`TITAN_REDIS_URL`).
    Redis,
    /// The cell's ClickHouse (`TITAN_CLICKHOUSE_URL`).
    #[serde(rename = "clickhouse")]
    ClickHouse,
}

impl DatastoreKind {
    /// The environment variable the `titan` binary reads the connection URL from; it is also the
    /// key of that URL in the cell's connection Secret.
    pub fn env_var(self) -> &'static str {
        match self {
            DatastoreKind::Postgres => "TITAN_POSTGRES_URL",
            DatastoreKind::Redis => "TITAN_REDIS_URL",
            DatastoreKind::ClickHouse => "TITAN_CLICKHOUSE_URL",
        }
    }
}
