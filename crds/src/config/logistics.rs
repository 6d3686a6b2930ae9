//! Config of the logistics services: driver, tracking, warehouse, shipping (defaults from
//! `services/logistics.md` of the design).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ConfigError, TitanConfig, ensure, in_range};
use crate::kind::ServiceKind;

/// How distances between stops are measured.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum DistanceModel {
    /// Great-circle distance.
    Haversine,
}

/// Configuration of the driver service.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct DriverConfig {
    /// Time the route solver may spend improving a plan, in milliseconds.
    #[schemars(range(min = 10, max = 600000))]
    pub solver_time_budget_millis: u32,
    /// Distance model of the solver.
    pub distance: DistanceModel,
    /// Default radius of a nearby-drivers search, in meters.
    #[schemars(range(min = 1, max = 100000))]
    pub nearby_radius_meters: u32,
    /// Most drivers a nearby search returns.
    #[schemars(range(min = 1, max = 1000))]
    pub nearby_limit: u32,
    /// Mean road speed the haversine model turns distances into travel times with, in km/h.
    #[schemars(range(min = 1, max = 200))]
    pub average_speed_kph: u32,
    /// How long GPS history is kept before the pruning job deletes it, in hours.
    #[schemars(range(min = 1, max = 8760))]
    pub position_retention_hours: u32,
    /// Position updates buffered per WatchDriver stream before a slow watcher is dropped.
    #[schemars(range(min = 1, max = 10000))]
    pub watch_buffer: u32,
}

impl Default for DriverConfig {
    fn default() -> Self {
        Self {
            solver_time_budget_millis: 2000,
            distance: DistanceModel::Haversine,
            nearby_radius_meters: 5000,
            nearby_limit: 50,
            average_speed_kph: 30,
            position_retention_hours: 720,
            watch_buffer: 64,
        }
    }
}

impl TitanConfig for DriverConfig {
    const SERVICE: ServiceKind = ServiceKind::Driver;

    fn validate(&self) -> Result<(), ConfigError> {
        let s = Self::SERVICE;
        in_range(
            s,
            "solverTimeBudgetMillis",
            self.solver_time_budget_millis,
            10,
            600000,
        )?;
        in_range(
            s,
            "nearbyRadiusMeters",
            self.nearby_radius_meters,
            1,
            100000,
        )?;
        in_range(s, "nearbyLimit", self.nearby_limit, 1, 1000)?;
        in_range(s, "averageSpeedKph", self.average_speed_kph, 1, 200)?;
        in_range(
            s,
            "positionRetentionHours",
            self.position_retention_hours,
            1,
            8760,
        )?;
        in_range(s, "watchBuffer", self.watch_buffer, 1, 10000)
    }
}

/// Configuration of the tracking service.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct TrackingConfig {
    /// Events buffered per subscriber before a slow subscriber is dropped.
    #[schemars(range(min = 1, max = 10000))]
    pub subscriber_buffer: u32,
}

impl Default for TrackingConfig {
    fn default() -> Self {
        Self {
            subscriber_buffer: 64,
        }
    }
}

impl TitanConfig for TrackingConfig {
    const SERVICE: ServiceKind = ServiceKind::Tracking;

    fn validate(&self) -> Result<(), ConfigError> {
        in_range(
            Self::SERVICE,
            "subscriberBuffer",
            self.subscriber_buffer,
            1,
            10000,
        )
    }
}

/// Order in which warehouses are tried when an order is allocated.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum WarehouseAllocation {
    /// Nearest to the destination first, then by priority.
    NearestFirst,
    /// Highest priority first, then nearest.
    PriorityFirst,
}

/// Configuration of the warehouse service.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct WarehouseConfig {
    /// How an order's quantity is split across ACTIVE warehouses.
    pub allocation: WarehouseAllocation,
    /// Most lines on one picking list.
    #[schemars(range(min = 1, max = 10000))]
    pub picking_list_max_lines: u32,
}

impl Default for WarehouseConfig {
    fn default() -> Self {
        Self {
            allocation: WarehouseAllocation::NearestFirst,
            picking_list_max_lines: 200,
        }
    }
}

impl TitanConfig for WarehouseConfig {
    const SERVICE: ServiceKind = ServiceKind::Warehouse;

    fn validate(&self) -> Result<(), ConfigError> {
        in_range(
            Self::SERVICE,
            "pickingListMaxLines",
            self.picking_list_max_lines,
            1,
            10000,
        )
    }
}

/// Which quote rate shopping picks.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum RateShopping {
    /// The lowest cost.
    Cheapest,
    /// The earliest estimated delivery.
    Fastest,
}

/// Configuration of the shipping service.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct ShippingConfig {
    /// Which quote wins when a shipment does not name a carrier.
    pub rate_shopping: RateShopping,
    /// The built-in carrier that needs no external account.
    pub flat_rate: FlatRateCarrier,
    /// Real carriers reached over HTTP.
    pub carriers: Vec<HttpCarrier>,
}

impl Default for ShippingConfig {
    fn default() -> Self {
        Self {
            rate_shopping: RateShopping::Cheapest,
            flat_rate: FlatRateCarrier::default(),
            carriers: Vec::new(),
        }
    }
}

impl TitanConfig for ShippingConfig {
    const SERVICE: ServiceKind = ServiceKind::Shipping;

    fn validate(&self) -> Result<(), ConfigError> {
        let s = Self::SERVICE;
        let f = &self.flat_rate;
        ensure(
            f.currency.len() == 3 && f.currency.bytes().all(|b| b.is_ascii_uppercase()),
            s,
            "flatRate.currency",
            || format!("{:?} is not an upper-case ISO 4217 code", f.currency),
        )?;
        ensure(
            f.enabled || !self.carriers.is_empty(),
            s,
            "carriers",
            || "no carrier is enabled: enable flatRate or add a carrier".into(),
        )?;
        let mut names = std::collections::BTreeSet::new();
        for carrier in &self.carriers {
            ensure(names.insert(&carrier.name), s, "carriers", || {
                format!("carrier {:?} is listed twice", carrier.name)
            })?;
            ensure(
                carrier.base_url.starts_with("https://") || carrier.base_url.starts_with("http://"),
                s,
                "carriers.baseUrl",
                || format!("{:?} is not an http(s) URL", carrier.base_url),
            )?;
        }
        Ok(())
    }
}

/// The built-in flat-rate carrier: `base + perKg × weight`, in minor units.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct FlatRateCarrier {
    /// Whether the flat-rate carrier quotes.
    pub enabled: bool,
    /// ISO 4217 currency of the amounts.
    pub currency: String,
    /// Price of any parcel, in minor units.
    pub base_minor: u64,
    /// Price per started kilogram, in minor units.
    pub per_kg_minor: u64,
    /// Days from pickup to delivery it promises.
    #[schemars(range(min = 1, max = 60))]
    pub delivery_days: u32,
}

impl Default for FlatRateCarrier {
    fn default() -> Self {
        Self {
            enabled: true,
            currency: "USD".into(),
            base_minor: 500,
            per_kg_minor: 100,
            delivery_days: 3,
        }
    }
}

/// A carrier reached through its HTTP API.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpCarrier {
    /// Name quotes and shipments carry.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// Base URL of the carrier's API.
    pub base_url: String,
    /// Secret in the cell's namespace holding the API credentials (`apiKey`).
    pub credentials_secret: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipping_needs_a_carrier() {
        let mut c = ShippingConfig::default();
        assert_eq!(c.validate(), Ok(()));
        c.flat_rate.enabled = false;
        assert_eq!(
            c.validate().map_err(|e| e.to_string()),
            Err(
                "shipping.carriers: no carrier is enabled: enable flatRate or add a carrier".into()
            )
        );
    }

    #[test]
    fn carrier_names_are_unique() {
        let carrier = HttpCarrier {
            name: "dhl".into(),
            base_url: "https://api.dhl.example".into(),
            credentials_secret: "dhl".into(),
        };
        let c = ShippingConfig {
            carriers: vec![carrier.clone(), carrier],
            ..Default::default()
        };
        assert!(c.validate().is_err());
    }
}
