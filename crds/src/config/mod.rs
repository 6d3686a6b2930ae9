//! Typed configuration of every Titan service: the `config` of a service in a `Cell` or a
//! `Service`, and the `services.<name>` section of the file the operator renders for the pod.
//!
//! Each type has the defaults of the service's design page, refuses unknown fields, and has a
//! `validate()` for the rules a schema cannot say (orderings, sums); the services parse their
//! section with [`TitanConfig::from_yaml`] so they run exactly what the operator checked.

mod communication;
mod intelligence;
mod logistics;
mod marketing;
mod privacy;

use std::fmt::Display;

use serde::{Serialize, de::DeserializeOwned};

pub use communication::{ChatConfig, LivestreamConfig, TurnCredentials, VideocallConfig};
pub use intelligence::{
    AbtestingConfig, AnalyticsConfig, FraudConfig, FraudDecision, FraudDecisions, FraudKnownBad,
    FraudThresholds, FraudVelocity, FraudVelocityLimit, FraudWeights, PricingConfig,
    PricingMultipliers,
};
pub use logistics::{
    CARRIER_API_KEY, CarrierWebhook, DistanceModel, DriverConfig, FLAT_RATE_NAME, FlatRateCarrier,
    FlatRateRate, FlatRateZone, HttpCarrier, RateShopping, ShippingConfig, ShippingLevel,
    TrackingConfig, WEBHOOK_SECRET_KEY, WarehouseAllocation, WarehouseConfig, WeightBand,
    webhook_secret_env,
};
pub use marketing::{
    AttributionModel, BadgeRules, CampaignConfig, CouponConfig, FlashsaleConfig,
    GamificationConfig, PUSH_TOKEN_ENV, PointsRules, SMS_TOKEN_ENV, SMTP_PASSWORD_ENV,
    SMTP_USERNAME_ENV, SmtpConfig,
};
pub use privacy::PrivacyConfig;

use crate::kind::ServiceKind;

/// Why a service's configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The section does not have the shape of the service's config (unknown field, wrong type).
    #[error("invalid {service} config: {message}")]
    Parse {
        /// The service whose section was being parsed.
        service: ServiceKind,
        /// The parser's message, which names the field.
        message: String,
    },
    /// A number is outside the range the service accepts.
    #[error("{service}.{field}: {value} is outside {min}..={max}")]
    OutOfRange {
        /// The service the field belongs to.
        service: ServiceKind,
        /// The field, as written in YAML (`rateLimit.burst`).
        field: &'static str,
        /// The value given.
        value: String,
        /// The smallest value accepted.
        min: String,
        /// The largest value accepted.
        max: String,
    },
    /// A value breaks a rule that involves more than its own range.
    #[error("{service}.{field}: {reason}")]
    Invalid {
        /// The service the field belongs to.
        service: ServiceKind,
        /// The field, as written in YAML.
        field: &'static str,
        /// What is wrong, in words a person can act on.
        reason: String,
    },
    /// A `Service` of kind `custom` has no typed config to parse.
    #[error("a custom service has no typed config")]
    Custom,
}

/// What every service's config type offers.
pub trait TitanConfig: Serialize + DeserializeOwned + Default + Clone + PartialEq {
    /// The service this config belongs to.
    const SERVICE: ServiceKind;

    /// Checks the rules the schema cannot express; the message names the field.
    fn validate(&self) -> Result<(), ConfigError>;

    /// Parses and validates a service's section of the config file (absent = all defaults).
    fn from_yaml(section: Option<serde_yaml::Value>) -> Result<Self, ConfigError> {
        let config: Self = match section {
            None | Some(serde_yaml::Value::Null) => Self::default(),
            Some(value) => serde_yaml::from_value(value).map_err(|e| ConfigError::Parse {
                service: Self::SERVICE,
                message: e.to_string(),
            })?,
        };
        config.validate()?;
        Ok(config)
    }

    /// Parses and validates a config given as JSON, as it appears in a `Service` resource.
    fn from_json(value: Option<&serde_json::Value>) -> Result<Self, ConfigError> {
        let config: Self = match value {
            None | Some(serde_json::Value::Null) => Self::default(),
            Some(value) => Self::deserialize(value).map_err(|e| ConfigError::Parse {
                service: Self::SERVICE,
                message: e.to_string(),
            })?,
        };
        config.validate()?;
        Ok(config)
    }
}

/// The parsed, validated config of one Titan service.
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)]
pub enum ServiceConfig {
    Flashsale(FlashsaleConfig),
    Coupon(CouponConfig),
    Gamification(GamificationConfig),
    Campaign(CampaignConfig),
    Abtesting(AbtestingConfig),
    Fraud(FraudConfig),
    Pricing(PricingConfig),
    Analytics(AnalyticsConfig),
    Chat(ChatConfig),
    Livestream(LivestreamConfig),
    Videocall(VideocallConfig),
    Driver(DriverConfig),
    Tracking(TrackingConfig),
    Warehouse(WarehouseConfig),
    Shipping(ShippingConfig),
    Privacy(PrivacyConfig),
}

impl ServiceConfig {
    /// Parses and validates the config of a service of `kind` (absent = all defaults).
    pub fn parse(
        kind: ServiceKind,
        value: Option<&serde_json::Value>,
    ) -> Result<Self, ConfigError> {
        Ok(match kind {
            ServiceKind::Flashsale => Self::Flashsale(TitanConfig::from_json(value)?),
            ServiceKind::Coupon => Self::Coupon(TitanConfig::from_json(value)?),
            ServiceKind::Gamification => Self::Gamification(TitanConfig::from_json(value)?),
            ServiceKind::Campaign => Self::Campaign(TitanConfig::from_json(value)?),
            ServiceKind::Abtesting => Self::Abtesting(TitanConfig::from_json(value)?),
            ServiceKind::Fraud => Self::Fraud(TitanConfig::from_json(value)?),
            ServiceKind::Pricing => Self::Pricing(TitanConfig::from_json(value)?),
            ServiceKind::Analytics => Self::Analytics(TitanConfig::from_json(value)?),
            ServiceKind::Chat => Self::Chat(TitanConfig::from_json(value)?),
            ServiceKind::Livestream => Self::Livestream(TitanConfig::from_json(value)?),
            ServiceKind::Videocall => Self::Videocall(TitanConfig::from_json(value)?),
            ServiceKind::Driver => Self::Driver(TitanConfig::from_json(value)?),
            ServiceKind::Tracking => Self::Tracking(TitanConfig::from_json(value)?),
            ServiceKind::Warehouse => Self::Warehouse(TitanConfig::from_json(value)?),
            ServiceKind::Shipping => Self::Shipping(TitanConfig::from_json(value)?),
            ServiceKind::Privacy => Self::Privacy(TitanConfig::from_json(value)?),
            ServiceKind::Custom => return Err(ConfigError::Custom),
        })
    }

    /// The config as the JSON the service will read, every default written out.
    pub fn to_json(&self) -> serde_json::Value {
        let value = match self {
            Self::Flashsale(c) => serde_json::to_value(c),
            Self::Coupon(c) => serde_json::to_value(c),
            Self::Gamification(c) => serde_json::to_value(c),
            Self::Campaign(c) => serde_json::to_value(c),
            Self::Abtesting(c) => serde_json::to_value(c),
            Self::Fraud(c) => serde_json::to_value(c),
            Self::Pricing(c) => serde_json::to_value(c),
            Self::Analytics(c) => serde_json::to_value(c),
            Self::Chat(c) => serde_json::to_value(c),
            Self::Livestream(c) => serde_json::to_value(c),
            Self::Videocall(c) => serde_json::to_value(c),
            Self::Driver(c) => serde_json::to_value(c),
            Self::Tracking(c) => serde_json::to_value(c),
            Self::Warehouse(c) => serde_json::to_value(c),
            Self::Shipping(c) => serde_json::to_value(c),
            Self::Privacy(c) => serde_json::to_value(c),
        };
        // Plain structs of numbers, strings and lists always serialize.
        value.unwrap_or(serde_json::Value::Null)
    }

    /// The origins whose browser pages may open the service's WebSockets: kit reads them as
    /// `realtime.allowedOrigins`, so the operator writes them there. Services without a
    /// setting of their own admit no browser page.
    pub fn websocket_origins(&self) -> &[String] {
        match self {
            Self::Chat(c) => &c.allowed_origins,
            Self::Flashsale(c) => &c.allowed_origins,
            Self::Livestream(c) => &c.allowed_origins,
            Self::Videocall(c) => &c.allowed_origins,
            _ => &[],
        }
    }
}

/// Refuses a value outside `min..=max`.
pub(crate) fn in_range<T: PartialOrd + Display>(
    service: ServiceKind,
    field: &'static str,
    value: T,
    min: T,
    max: T,
) -> Result<(), ConfigError> {
    if value < min || value > max {
        return Err(ConfigError::OutOfRange {
            service,
            field,
            value: value.to_string(),
            min: min.to_string(),
            max: max.to_string(),
        });
    }
    Ok(())
}

/// Refuses with a reason when `ok` is false.
pub(crate) fn ensure(
    ok: bool,
    service: ServiceKind,
    field: &'static str,
    reason: impl FnOnce() -> String,
) -> Result<(), ConfigError> {
    if ok {
        Ok(())
    } else {
        Err(ConfigError::Invalid {
            service,
            field,
            reason: reason(),
        })
    }
}

/// Refuses a list of origins that are not `http(s)://host[:port]`.
pub(crate) fn origins(
    service: ServiceKind,
    field: &'static str,
    origins: &[String],
) -> Result<(), ConfigError> {
    for origin in origins {
        let rest = origin
            .strip_prefix("https://")
            .or_else(|| origin.strip_prefix("http://"));
        ensure(
            rest.is_some_and(|r| !r.is_empty() && !r.contains('/')),
            service,
            field,
            || format!("{origin:?} is not an origin like https://shop.example"),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_titan_service_parses_an_absent_config_into_its_defaults() {
        for kind in ServiceKind::TITAN {
            let config = ServiceConfig::parse(kind, None).expect("defaults are valid");
            let again = ServiceConfig::parse(kind, Some(&config.to_json()))
                .expect("written-out defaults parse");
            assert_eq!(config, again, "{kind}");
        }
    }

    #[test]
    fn unknown_fields_are_refused_with_their_name() {
        let err = ServiceConfig::parse(
            ServiceKind::Flashsale,
            Some(&serde_json::json!({"reservationTtlSecs": 5})),
        )
        .expect_err("unknown field");
        let text = err.to_string();
        assert!(
            text.starts_with("invalid flashsale config: unknown field `reservationTtlSecs`"),
            "{text}"
        );
    }

    #[test]
    fn custom_services_have_no_typed_config() {
        assert_eq!(
            ServiceConfig::parse(ServiceKind::Custom, None),
            Err(ConfigError::Custom)
        );
    }

    #[test]
    fn from_yaml_reads_a_section_of_the_config_file() {
        let section: serde_yaml::Value =
            serde_yaml::from_str("reservationTtlSeconds: 600").expect("yaml");
        let config = FlashsaleConfig::from_yaml(Some(section)).expect("valid");
        assert_eq!(config.reservation_ttl_seconds, 600);
        assert_eq!(config.default_max_per_user, 5);
    }
}
