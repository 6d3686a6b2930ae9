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
    /// Carriers that post tracking events to `POST /webhooks/tracking/{carrier}`, each with
    /// the Secret that holds its signing key. A carrier not listed here is refused.
    #[schemars(length(max = 32))]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub webhooks: Vec<CarrierWebhook>,
}

impl Default for TrackingConfig {
    fn default() -> Self {
        Self {
            subscriber_buffer: 64,
            webhooks: Vec::new(),
        }
    }
}

/// A carrier allowed to post signed tracking events.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CarrierWebhook {
    /// The carrier's name, as shipping names it (`dhl-express`).
    #[schemars(length(min = 1, max = 63))]
    pub carrier: String,
    /// Secret in the cell's namespace whose `webhookSecret` key signs the carrier's calls
    /// (HMAC-SHA256, at least 32 bytes).
    pub secret: String,
}

/// The key of a [`CarrierWebhook`]'s Secret that holds the signing key.
pub const WEBHOOK_SECRET_KEY: &str = "webhookSecret";

impl CarrierWebhook {
    /// The variable the operator sets from the carrier's Secret and the tracking service
    /// reads the signing key from: see [`webhook_secret_env`].
    pub fn secret_env(&self) -> String {
        webhook_secret_env(&self.carrier)
    }
}

/// `TITAN_TRACKING_<CARRIER>_WEBHOOK_SECRET`, the name as [`env_name`] spells it.
pub fn webhook_secret_env(carrier: &str) -> String {
    format!("TITAN_TRACKING_{}_WEBHOOK_SECRET", env_name(carrier))
}

/// A carrier's name as part of an environment variable: upper case, `-` and `.` as `_`.
fn env_name(carrier: &str) -> String {
    carrier
        .chars()
        .map(|c| match c {
            '-' | '.' => '_',
            c => c.to_ascii_uppercase(),
        })
        .collect()
}

/// 1–63 lower-case letters, digits, `-` or `.`: what a carrier may be called, so that its
/// variables ([`env_name`]) stay distinct and valid.
fn is_carrier_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
}

impl TitanConfig for TrackingConfig {
    const SERVICE: ServiceKind = ServiceKind::Tracking;

    fn validate(&self) -> Result<(), ConfigError> {
        let s = Self::SERVICE;
        in_range(s, "subscriberBuffer", self.subscriber_buffer, 1, 10000)?;
        in_range(s, "webhooks", self.webhooks.len(), 0, 32)?;
        let mut carriers = std::collections::BTreeSet::new();
        for hook in &self.webhooks {
            ensure(
                is_carrier_name(&hook.carrier),
                s,
                "webhooks.carrier",
                || {
                    format!(
                        "{:?} is not a carrier name: 1-63 lower-case letters, digits, '-' or '.'",
                        hook.carrier
                    )
                },
            )?;
            ensure(
                carriers.insert(env_name(&hook.carrier)),
                s,
                "webhooks",
                || {
                    format!(
                        "carrier {:?} is listed twice (or shares its variable with another)",
                        hook.carrier
                    )
                },
            )?;
            ensure(!hook.secret.is_empty(), s, "webhooks.secret", || {
                format!("carrier {:?} names no Secret", hook.carrier)
            })?;
        }
        Ok(())
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
        f.validate_tables()?;
        let mut names = std::collections::BTreeSet::new();
        for carrier in &self.carriers {
            ensure(
                carrier.name != FLAT_RATE_NAME && is_carrier_name(&carrier.name),
                s,
                "carriers.name",
                || {
                    format!(
                        "{:?} is not a carrier name: 1-63 lower-case letters, digits, '-' or '.', not {FLAT_RATE_NAME:?}",
                        carrier.name
                    )
                },
            )?;
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

/// The name quotes and shipments of the built-in carrier carry; no HTTP carrier may take it.
pub const FLAT_RATE_NAME: &str = "flat-rate";

/// Heaviest weight band of a flat-rate table, in grams: the heaviest parcel shipping takes.
pub const MAX_BAND_GRAMS: u64 = 70_000;

/// The built-in flat-rate carrier. Without `zones` it charges `base + perKg × started kg`,
/// STANDARD, everywhere; with `zones` and `rates` it prices from those tables instead.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct FlatRateCarrier {
    /// Whether the flat-rate carrier quotes.
    pub enabled: bool,
    /// ISO 4217 currency of the amounts.
    pub currency: String,
    /// Price of any parcel, in minor units (the formula, without `zones`).
    pub base_minor: u64,
    /// Price per started kilogram, in minor units (the formula, without `zones`).
    pub per_kg_minor: u64,
    /// Days from pickup to delivery it promises (the formula, without `zones`).
    #[schemars(range(min = 1, max = 60))]
    pub delivery_days: u32,
    /// Charge dimensional weight: cm³ per kg (5000 is common); a parcel pays the greater of
    /// its actual and dimensional weight.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1000, max = 10000))]
    pub dim_divisor: Option<u32>,
    /// Destination zones, the first that matches wins (list specific zones first).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub zones: Vec<FlatRateZone>,
    /// Per zone and service level: delivery days and weight bands. Required with `zones`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rates: Vec<FlatRateRate>,
}

/// Where a destination falls: by country and postcode prefix (an empty list matches any).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FlatRateZone {
    /// Name the rates refer to.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// ISO 3166-1 alpha-2 codes (SG), upper case.
    #[serde(default)]
    pub countries: Vec<String>,
    /// Postcode prefixes (upper-case letters, digits, spaces, hyphens).
    #[serde(default)]
    pub postcode_prefixes: Vec<String>,
}

/// How fast a shipment travels.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ShippingLevel {
    /// The slowest and cheapest.
    Economy,
    /// The usual.
    Standard,
    /// Faster than standard.
    Express,
    /// The next day.
    Overnight,
}

/// One service level's price list in one zone.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FlatRateRate {
    /// The zone's name.
    pub zone: String,
    /// The level it prices.
    pub service_level: ShippingLevel,
    /// Days from pickup to delivery it promises.
    #[schemars(range(min = 1, max = 60))]
    pub days: u32,
    /// A parcel pays the band with the smallest `maxGrams` that holds its chargeable weight.
    #[schemars(length(min = 1))]
    pub bands: Vec<WeightBand>,
}

/// A parcel up to `maxGrams` chargeable grams costs `priceMinor`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WeightBand {
    /// Heaviest chargeable weight the band holds, in grams.
    #[schemars(range(min = 1, max = 70000))]
    pub max_grams: u64,
    /// Price of a parcel in the band, in minor units.
    pub price_minor: u64,
}

impl FlatRateCarrier {
    /// The zone and rate tables: named, matched and referenced consistently.
    fn validate_tables(&self) -> Result<(), ConfigError> {
        let s = ServiceKind::Shipping;
        if let Some(d) = self.dim_divisor {
            in_range(s, "flatRate.dimDivisor", d, 1000, 10000)?;
        }
        ensure(
            self.zones.is_empty() == self.rates.is_empty(),
            s,
            "flatRate.rates",
            || "zones and rates go together: set both or neither".into(),
        )?;
        let mut zones = std::collections::BTreeSet::new();
        for z in &self.zones {
            ensure(
                !z.name.is_empty() && z.name.len() <= 63 && zones.insert(z.name.as_str()),
                s,
                "flatRate.zones.name",
                || format!("zone {:?} is empty, too long or listed twice", z.name),
            )?;
            for c in &z.countries {
                ensure(
                    c.len() == 2 && c.bytes().all(|b| b.is_ascii_uppercase()),
                    s,
                    "flatRate.zones.countries",
                    || {
                        format!(
                            "{c:?} in zone {:?} is not an upper-case ISO 3166-1 alpha-2 code",
                            z.name
                        )
                    },
                )?;
            }
            for p in &z.postcode_prefixes {
                ensure(
                    !p.is_empty()
                        && p.len() <= 12
                        && p.bytes().all(|b| {
                            b.is_ascii_uppercase() || b.is_ascii_digit() || b == b' ' || b == b'-'
                        }),
                    s,
                    "flatRate.zones.postcodePrefixes",
                    || {
                        format!(
                            "{p:?} in zone {:?} is not 1-12 upper-case letters, digits, spaces or hyphens",
                            z.name
                        )
                    },
                )?;
            }
        }
        let mut priced = std::collections::BTreeSet::new();
        for r in &self.rates {
            ensure(
                zones.contains(r.zone.as_str()),
                s,
                "flatRate.rates.zone",
                || format!("{:?} is not a zone of flatRate.zones", r.zone),
            )?;
            ensure(
                priced.insert((r.zone.as_str(), r.service_level as u8)),
                s,
                "flatRate.rates",
                || format!("zone {:?} prices {:?} twice", r.zone, r.service_level),
            )?;
            in_range(s, "flatRate.rates.days", r.days, 1, 60)?;
            ensure(!r.bands.is_empty(), s, "flatRate.rates.bands", || {
                format!("zone {:?} {:?} has no weight band", r.zone, r.service_level)
            })?;
            for b in &r.bands {
                in_range(
                    s,
                    "flatRate.rates.bands.maxGrams",
                    b.max_grams,
                    1,
                    MAX_BAND_GRAMS,
                )?;
            }
        }
        Ok(())
    }
}

impl Default for FlatRateCarrier {
    fn default() -> Self {
        Self {
            enabled: true,
            currency: "USD".into(),
            base_minor: 500,
            per_kg_minor: 100,
            delivery_days: 3,
            dim_divisor: None,
            zones: Vec::new(),
            rates: Vec::new(),
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

/// The key of `credentialsSecret` that holds a carrier's API key.
pub const CARRIER_API_KEY: &str = "apiKey";

impl HttpCarrier {
    /// The variable the operator sets from the carrier's secret and the shipping service
    /// reads its API key from: `TITAN_SHIPPING_<NAME>_API_KEY`, the name upper-cased with `-`
    /// and `.` as `_`.
    pub fn api_key_env(&self) -> String {
        format!("TITAN_SHIPPING_{}_API_KEY", env_name(&self.name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracking_webhooks_name_valid_distinct_carriers_and_their_secrets() {
        let hook = |carrier: &str, secret: &str| CarrierWebhook {
            carrier: carrier.into(),
            secret: secret.into(),
        };
        let mut c = TrackingConfig {
            webhooks: vec![
                hook("dhl-express.asia", "dhl-hooks"),
                hook("ninjavan", "nv"),
            ],
            ..TrackingConfig::default()
        };
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(
            c.webhooks[0].secret_env(),
            "TITAN_TRACKING_DHL_EXPRESS_ASIA_WEBHOOK_SECRET"
        );
        assert_eq!(
            webhook_secret_env("flat-rate"),
            "TITAN_TRACKING_FLAT_RATE_WEBHOOK_SECRET"
        );
        let refusal = |c: &TrackingConfig| match c.validate() {
            Err(ConfigError::Invalid { field, reason, .. }) => format!("{field}: {reason}"),
            other => panic!("expected a refusal, got {other:?}"),
        };
        // Two names that would share one variable are refused like a repeat.
        c.webhooks.push(hook("dhl.express-asia", "other"));
        assert_eq!(
            refusal(&c),
            "webhooks: carrier \"dhl.express-asia\" is listed twice (or shares its variable with another)"
        );
        c.webhooks.pop();
        c.webhooks.push(hook("DHL", "x"));
        assert_eq!(
            refusal(&c),
            "webhooks.carrier: \"DHL\" is not a carrier name: 1-63 lower-case letters, digits, '-' or '.'"
        );
        c.webhooks.pop();
        c.webhooks.push(hook("ups", ""));
        assert_eq!(
            refusal(&c),
            "webhooks.secret: carrier \"ups\" names no Secret"
        );
    }

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

    fn tables() -> FlatRateCarrier {
        let band = |max_grams, price_minor| WeightBand {
            max_grams,
            price_minor,
        };
        FlatRateCarrier {
            currency: "SGD".into(),
            dim_divisor: Some(5000),
            zones: vec![
                FlatRateZone {
                    name: "central".into(),
                    countries: vec!["SG".into()],
                    postcode_prefixes: vec!["01".into(), "09".into()],
                },
                FlatRateZone {
                    name: "sg".into(),
                    countries: vec!["SG".into()],
                    postcode_prefixes: Vec::new(),
                },
            ],
            rates: vec![
                FlatRateRate {
                    zone: "central".into(),
                    service_level: ShippingLevel::Standard,
                    days: 1,
                    bands: vec![band(1_000, 300), band(5_000, 600)],
                },
                FlatRateRate {
                    zone: "sg".into(),
                    service_level: ShippingLevel::Express,
                    days: 1,
                    bands: vec![band(2_000, 1_200)],
                },
            ],
            ..FlatRateCarrier::default()
        }
    }

    #[test]
    fn zone_tables_are_checked() {
        let valid = |f: FlatRateCarrier| {
            ShippingConfig {
                flat_rate: f,
                ..Default::default()
            }
            .validate()
            .map_err(|e| e.to_string())
        };
        assert_eq!(valid(tables()), Ok(()));
        let yaml = "flatRate:\n  currency: SGD\n  dimDivisor: 5000\n  zones: [{name: sg, countries: [SG]}]\n  rates: [{zone: sg, serviceLevel: EXPRESS, days: 1, bands: [{maxGrams: 2000, priceMinor: 1200}]}]\n";
        let parsed = ShippingConfig::from_yaml(Some(serde_yaml::from_str(yaml).expect("yaml")))
            .expect("parses");
        assert_eq!(
            parsed.flat_rate.rates[0].service_level,
            ShippingLevel::Express
        );
        assert_eq!(
            parsed.flat_rate.zones[0].postcode_prefixes,
            Vec::<String>::new()
        );

        let mut f = tables();
        f.rates.clear();
        assert_eq!(
            valid(f),
            Err("shipping.flatRate.rates: zones and rates go together: set both or neither".into())
        );
        let mut f = tables();
        f.rates[1].zone = "my".into();
        assert_eq!(
            valid(f),
            Err("shipping.flatRate.rates.zone: \"my\" is not a zone of flatRate.zones".into())
        );
        let mut f = tables();
        f.rates[1].zone = "central".into();
        f.rates[1].service_level = ShippingLevel::Standard;
        assert_eq!(
            valid(f),
            Err("shipping.flatRate.rates: zone \"central\" prices Standard twice".into())
        );
        let mut f = tables();
        f.zones[1].countries = vec!["sg".into()];
        assert!(valid(f).is_err_and(|e| e.starts_with("shipping.flatRate.zones.countries:")));
        let mut f = tables();
        f.zones[0].postcode_prefixes = vec!["0_1".into()];
        assert!(
            valid(f).is_err_and(|e| e.starts_with("shipping.flatRate.zones.postcodePrefixes:"))
        );
        let mut f = tables();
        f.zones[1].name = "central".into();
        assert!(valid(f).is_err_and(|e| e.starts_with("shipping.flatRate.zones.name:")));
        let mut f = tables();
        f.rates[0].bands[1].max_grams = MAX_BAND_GRAMS + 1;
        assert!(valid(f).is_err_and(|e| e.starts_with("shipping.flatRate.rates.bands.maxGrams:")));
        let mut f = tables();
        f.rates[0].bands.clear();
        assert!(valid(f).is_err_and(|e| e.starts_with("shipping.flatRate.rates.bands:")));
        let mut f = tables();
        f.dim_divisor = Some(10);
        assert!(valid(f).is_err_and(|e| e.starts_with("shipping.flatRate.dimDivisor:")));
        // The simple form renders as before: no table fields.
        let rendered = serde_yaml::to_string(&FlatRateCarrier::default()).expect("yaml");
        assert!(
            !rendered.contains("zones") && !rendered.contains("dimDivisor"),
            "{rendered}"
        );
    }

    #[test]
    fn carrier_names_make_variables() {
        let mut carrier = HttpCarrier {
            name: "dhl-express.asia".into(),
            base_url: "https://api.dhl.example".into(),
            credentials_secret: "dhl".into(),
        };
        assert_eq!(
            carrier.api_key_env(),
            "TITAN_SHIPPING_DHL_EXPRESS_ASIA_API_KEY"
        );
        for bad in ["DHL", "flat-rate", "", "d h l"] {
            carrier.name = bad.into();
            let c = ShippingConfig {
                carriers: vec![carrier.clone()],
                ..Default::default()
            };
            assert!(
                c.validate()
                    .is_err_and(|e| e.to_string().starts_with("shipping.carriers.name:")),
                "{bad:?}"
            );
        }
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
