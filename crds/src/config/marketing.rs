//! Config of the marketing and engagement services: flashsale, coupon, gamification, campaign
//! (defaults from `services/marketing.md` of the design).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ConfigError, TitanConfig, ensure, in_range, origins};
use crate::kind::ServiceKind;

/// Configuration of the flashsale service (the field names are those `services/flashsale`
/// reads).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct FlashsaleConfig {
    /// How long a reservation holds its units before they return to stock, in seconds.
    #[schemars(range(min = 1, max = 86400))]
    pub reservation_ttl_seconds: u64,
    /// Units one buyer may take of a sale that does not set its own limit.
    #[schemars(range(min = 1, max = 1000))]
    pub default_max_per_user: u32,
    /// Purchase attempts a buyer may make at once before being rate limited.
    #[schemars(range(min = 1, max = 10000))]
    pub rate_limit_burst: u32,
    /// After the burst, one attempt per this many milliseconds.
    #[schemars(range(min = 1, max = 3600000))]
    pub rate_limit_interval_ms: u64,
    /// How long an issued proof-of-work challenge may be answered, in seconds.
    #[schemars(range(min = 1, max = 3600))]
    pub challenge_ttl_seconds: u64,
    /// How long before its start a sale's stock is loaded into Redis, in seconds.
    #[schemars(range(min = 0, max = 86400))]
    pub warm_up_seconds: u64,
    /// How often expired reservations are swept back into stock, in milliseconds.
    #[schemars(range(min = 1, max = 600000))]
    pub sweep_interval_ms: u64,
    /// How often the Redis stock is compared with the PostgreSQL record, in seconds.
    #[schemars(range(min = 1, max = 86400))]
    pub reconcile_interval_seconds: u64,
    /// How often stock and countdown updates are pushed to watchers, in milliseconds.
    #[schemars(range(min = 100, max = 60000))]
    pub watch_interval_ms: u64,
    /// Origins (`scheme://host[:port]`) whose browser pages may open the sale watch
    /// WebSocket. Empty = no browser page; apps and servers, which send no `Origin`, connect
    /// with their token alone.
    pub allowed_origins: Vec<String>,
}

impl Default for FlashsaleConfig {
    fn default() -> Self {
        Self {
            reservation_ttl_seconds: 300,
            default_max_per_user: 5,
            rate_limit_burst: 10,
            rate_limit_interval_ms: 1000,
            challenge_ttl_seconds: 120,
            warm_up_seconds: 300,
            sweep_interval_ms: 500,
            reconcile_interval_seconds: 60,
            watch_interval_ms: 250,
            allowed_origins: Vec::new(),
        }
    }
}

impl TitanConfig for FlashsaleConfig {
    const SERVICE: ServiceKind = ServiceKind::Flashsale;

    fn validate(&self) -> Result<(), ConfigError> {
        let s = Self::SERVICE;
        in_range(
            s,
            "reservationTtlSeconds",
            self.reservation_ttl_seconds,
            1,
            86400,
        )?;
        in_range(s, "defaultMaxPerUser", self.default_max_per_user, 1, 1000)?;
        in_range(s, "rateLimitBurst", self.rate_limit_burst, 1, 10000)?;
        in_range(
            s,
            "rateLimitIntervalMs",
            self.rate_limit_interval_ms,
            1,
            3600000,
        )?;
        in_range(
            s,
            "challengeTtlSeconds",
            self.challenge_ttl_seconds,
            1,
            3600,
        )?;
        in_range(s, "warmUpSeconds", self.warm_up_seconds, 0, 86400)?;
        in_range(s, "sweepIntervalMs", self.sweep_interval_ms, 1, 600000)?;
        in_range(
            s,
            "reconcileIntervalSeconds",
            self.reconcile_interval_seconds,
            1,
            86400,
        )?;
        in_range(s, "watchIntervalMs", self.watch_interval_ms, 100, 60000)?;
        // A sweep slower than the TTL leaves expired units out of stock for longer than they
        // were ever reserved.
        ensure(
            self.sweep_interval_ms < self.reservation_ttl_seconds.saturating_mul(1000),
            s,
            "sweepIntervalMs",
            || {
                format!(
                    "{} ms is not shorter than the reservation TTL of {} s: sweep more often",
                    self.sweep_interval_ms, self.reservation_ttl_seconds
                )
            },
        )?;
        origins(s, "allowedOrigins", &self.allowed_origins)
    }
}

/// Configuration of the coupon service.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct CouponConfig {
    /// How long a coupon stays in the Redis lookup cache, in seconds.
    #[schemars(range(min = 1, max = 86400))]
    pub cache_ttl_seconds: u32,
    /// Longest coupon code accepted, in characters (after trimming).
    #[schemars(range(min = 4, max = 64))]
    pub max_code_length: u32,
    /// Coupons one order may combine (at most one per type; exclusive coupons stand alone).
    #[schemars(range(min = 1, max = 4))]
    pub max_coupons_per_order: u32,
}

impl Default for CouponConfig {
    fn default() -> Self {
        Self {
            cache_ttl_seconds: 300,
            max_code_length: 32,
            max_coupons_per_order: 4,
        }
    }
}

impl TitanConfig for CouponConfig {
    const SERVICE: ServiceKind = ServiceKind::Coupon;

    fn validate(&self) -> Result<(), ConfigError> {
        let s = Self::SERVICE;
        in_range(s, "cacheTtlSeconds", self.cache_ttl_seconds, 1, 86400)?;
        in_range(s, "maxCodeLength", self.max_code_length, 4, 64)?;
        // Four coupon types exist and at most one of each applies to an order.
        in_range(s, "maxCouponsPerOrder", self.max_coupons_per_order, 1, 4)
    }
}

/// Configuration of the gamification service.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct GamificationConfig {
    /// Points awarded per action.
    pub points: PointsRules,
    /// Lifetime points at which each level starts: the first is level 1 and must be 0, and each
    /// threshold is higher than the one before.
    #[schemars(length(min = 1, max = 100))]
    pub level_thresholds: Vec<u64>,
    /// Counters at which the built-in badges are awarded.
    pub badges: BadgeRules,
    /// Entries per leaderboard page.
    #[schemars(range(min = 1, max = 500))]
    pub leaderboard_page_size: u32,
}

impl Default for GamificationConfig {
    fn default() -> Self {
        Self {
            points: PointsRules::default(),
            level_thresholds: vec![
                0, 500, 2000, 5000, 10000, 25000, 50000, 100000, 250000, 500000,
            ],
            badges: BadgeRules::default(),
            leaderboard_page_size: 50,
        }
    }
}

impl TitanConfig for GamificationConfig {
    const SERVICE: ServiceKind = ServiceKind::Gamification;

    fn validate(&self) -> Result<(), ConfigError> {
        let s = Self::SERVICE;
        ensure(
            self.level_thresholds.first() == Some(&0),
            s,
            "levelThresholds",
            || "the first threshold (level 1) must be 0".to_string(),
        )?;
        ensure(
            self.level_thresholds.windows(2).all(|w| w[0] < w[1]),
            s,
            "levelThresholds",
            || "thresholds must increase strictly".to_string(),
        )?;
        let levels = u32::try_from(self.level_thresholds.len()).unwrap_or(u32::MAX);
        ensure(
            self.badges.vip_level <= levels,
            s,
            "badges.vipLevel",
            || {
                format!(
                    "level {} does not exist: there are {levels} levels",
                    self.badges.vip_level
                )
            },
        )?;
        in_range(s, "leaderboardPageSize", self.leaderboard_page_size, 1, 500)
    }
}

/// Points awarded per action; each award is idempotent by its source event.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct PointsRules {
    /// Points per whole unit of currency spent (floor of the amount).
    pub per_currency_unit: u32,
    /// Points for a review.
    pub review: u32,
    /// Points for a referral.
    pub referral: u32,
    /// Points for the first login of a calendar day in the user's time zone.
    pub daily_login: u32,
    /// Points for a social share.
    pub social_share: u32,
}

impl Default for PointsRules {
    fn default() -> Self {
        Self {
            per_currency_unit: 1,
            review: 50,
            referral: 500,
            daily_login: 10,
            social_share: 25,
        }
    }
}

/// When the built-in badges are awarded (each once).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct BadgeRules {
    /// Purchases for the Loyal badge.
    pub loyal_purchases: u32,
    /// Purchases for the Shopaholic badge.
    pub shopaholic_purchases: u32,
    /// Reviews for the Super Reviewer badge.
    pub super_reviewer_reviews: u32,
    /// Level (1-based) from which a user has the VIP badge.
    #[schemars(range(min = 1))]
    pub vip_level: u32,
}

impl Default for BadgeRules {
    fn default() -> Self {
        Self {
            loyal_purchases: 10,
            shopaholic_purchases: 100,
            super_reviewer_reviews: 50,
            vip_level: 8,
        }
    }
}

/// How a conversion is credited to the campaigns that touched the user.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum AttributionModel {
    /// All credit to the last campaign before the conversion.
    LastTouch,
    /// All credit to the first campaign.
    FirstTouch,
    /// Equal credit to every campaign.
    Linear,
    /// More credit to recent campaigns, halving every `timeDecayHalfLifeHours`.
    TimeDecay,
}

/// Configuration of the campaign service.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct CampaignConfig {
    /// Attribution model used when a report does not name one.
    pub attribution: AttributionModel,
    /// How far back a touch may be credited for a conversion, in days.
    #[schemars(range(min = 1, max = 90))]
    pub attribution_window_days: u32,
    /// Half-life of the time-decay model, in hours.
    #[schemars(range(min = 1, max = 2160))]
    pub time_decay_half_life_hours: u32,
    /// Messages sent per batch to a channel provider.
    #[schemars(range(min = 1, max = 10000))]
    pub send_batch_size: u32,
    /// Email delivery over SMTP; absent = the email channel is off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub smtp: Option<SmtpConfig>,
    /// URL of the HTTP push provider; absent = the push channel is off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub push_provider_url: Option<String>,
    /// URL of the HTTP SMS provider; absent = the SMS channel is off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sms_provider_url: Option<String>,
    /// Secret in the cell's namespace holding the providers' API tokens: key `push` for the
    /// push provider, key `sms` for the SMS provider, each sent as `Authorization: Bearer`;
    /// a missing key (or no Secret) = that provider is called without a token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider_tokens_secret: Option<String>,
    /// Where the cell's HTTP port is reached from outside: the open pixel, click and
    /// unsubscribe links in messages start with it.
    pub public_base_url: String,
    /// The abtesting service's gRPC endpoint, for campaigns with variants (each recipient's
    /// variant comes from its `Assign`); the default is the abtesting Service of the cell's
    /// namespace.
    pub abtesting_url: String,
    /// Messages handed to providers per second across all replicas (counted in PostgreSQL);
    /// 0 = no limit.
    #[schemars(range(max = 1000000))]
    pub send_rate_per_second: u32,
}

impl Default for CampaignConfig {
    fn default() -> Self {
        Self {
            attribution: AttributionModel::LastTouch,
            attribution_window_days: 7,
            time_decay_half_life_hours: 168,
            send_batch_size: 500,
            smtp: None,
            push_provider_url: None,
            sms_provider_url: None,
            provider_tokens_secret: None,
            public_base_url: "http://localhost:8080".into(),
            abtesting_url: "http://abtesting:50051".into(),
            send_rate_per_second: 0,
        }
    }
}

impl TitanConfig for CampaignConfig {
    const SERVICE: ServiceKind = ServiceKind::Campaign;

    fn validate(&self) -> Result<(), ConfigError> {
        let s = Self::SERVICE;
        in_range(
            s,
            "attributionWindowDays",
            self.attribution_window_days,
            1,
            90,
        )?;
        in_range(
            s,
            "timeDecayHalfLifeHours",
            self.time_decay_half_life_hours,
            1,
            2160,
        )?;
        in_range(s, "sendBatchSize", self.send_batch_size, 1, 10000)?;
        ensure(
            (self.public_base_url.starts_with("https://")
                || self.public_base_url.starts_with("http://"))
                && !self.public_base_url.ends_with('/'),
            s,
            "publicBaseUrl",
            || {
                format!(
                    "{:?} is not an http(s) URL without a trailing slash",
                    self.public_base_url
                )
            },
        )?;
        in_range(
            s,
            "sendRatePerSecond",
            self.send_rate_per_second,
            0,
            1_000_000,
        )?;
        ensure(
            self.abtesting_url.starts_with("https://") || self.abtesting_url.starts_with("http://"),
            s,
            "abtestingUrl",
            || format!("{:?} is not an http(s) URL", self.abtesting_url),
        )?;
        for (field, url) in [
            ("pushProviderUrl", &self.push_provider_url),
            ("smsProviderUrl", &self.sms_provider_url),
        ] {
            if let Some(url) = url {
                ensure(
                    url.starts_with("https://") || url.starts_with("http://"),
                    s,
                    field,
                    || format!("{url:?} is not an http(s) URL"),
                )?;
            }
        }
        if let Some(smtp) = &self.smtp {
            ensure(!smtp.host.is_empty(), s, "smtp.host", || {
                "must not be empty".into()
            })?;
            ensure(smtp.from.contains('@'), s, "smtp.from", || {
                format!("{:?} is not an email address", smtp.from)
            })?;
            in_range(s, "smtp.port", smtp.port, 1, 65535)?;
        }
        Ok(())
    }
}

/// The variables the operator sets from `smtp.credentialsSecret` (its keys `username` and
/// `password`) and the campaign service logs in to the relay with.
pub const SMTP_USERNAME_ENV: &str = "TITAN_CAMPAIGN_SMTP_USERNAME";
pub const SMTP_PASSWORD_ENV: &str = "TITAN_CAMPAIGN_SMTP_PASSWORD";

/// The variables the operator sets from `providerTokensSecret` (its keys `push` and `sms`,
/// each optional) and the campaign service sends to its HTTP providers as bearer tokens.
pub const PUSH_TOKEN_ENV: &str = "TITAN_CAMPAIGN_PUSH_TOKEN";
pub const SMS_TOKEN_ENV: &str = "TITAN_CAMPAIGN_SMS_TOKEN";

/// An SMTP relay for the email channel.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SmtpConfig {
    /// Host name of the relay.
    #[schemars(length(min = 1))]
    pub host: String,
    /// Port of the relay (587 = submission with STARTTLS).
    #[serde(default = "default_smtp_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: u32,
    /// Sender address of every email.
    pub from: String,
    /// Secret in the cell's namespace with keys `username` and `password` (the service logs in
    /// with them, over STARTTLS except on port 25 or a loopback relay); absent = no login.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<String>,
}

fn default_smtp_port() -> u32 {
    587
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flashsale_defaults_follow_the_design() {
        let c = FlashsaleConfig::default();
        assert_eq!(c.reservation_ttl_seconds, 300);
        assert_eq!(c.default_max_per_user, 5);
        assert_eq!((c.rate_limit_burst, c.rate_limit_interval_ms), (10, 1000));
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn a_zero_ttl_is_refused_with_the_field_and_range() {
        let c = FlashsaleConfig {
            reservation_ttl_seconds: 0,
            ..Default::default()
        };
        assert_eq!(
            c.validate().map_err(|e| e.to_string()),
            Err("flashsale.reservationTtlSeconds: 0 is outside 1..=86400".to_string())
        );
    }

    #[test]
    fn the_sweep_must_be_faster_than_the_ttl() {
        let c = FlashsaleConfig {
            reservation_ttl_seconds: 1,
            sweep_interval_ms: 5000,
            ..Default::default()
        };
        assert_eq!(
            c.validate().map_err(|e| e.to_string()),
            Err("flashsale.sweepIntervalMs: 5000 ms is not shorter than the reservation TTL of 1 s: sweep more often".to_string())
        );
    }

    #[test]
    fn level_thresholds_must_start_at_zero_and_increase() {
        let mut c = GamificationConfig {
            level_thresholds: vec![0, 10, 10],
            ..Default::default()
        };
        assert_eq!(
            c.validate().map_err(|e| e.to_string()),
            Err("gamification.levelThresholds: thresholds must increase strictly".to_string())
        );
        c.level_thresholds = vec![5, 10];
        assert!(c.validate().is_err());
    }

    #[test]
    fn campaign_provider_urls_must_be_http() {
        let c = CampaignConfig {
            push_provider_url: Some("ftp://push".into()),
            ..Default::default()
        };
        assert_eq!(
            c.validate().map_err(|e| e.to_string()),
            Err("campaign.pushProviderUrl: \"ftp://push\" is not an http(s) URL".to_string())
        );
    }
}
