//! Config of the intelligence and analytics services: abtesting, fraud, pricing, analytics
//! (defaults from `services/intelligence.md` of the design).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ConfigError, TitanConfig, ensure, in_range};
use crate::kind::ServiceKind;

/// Configuration of the abtesting service.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct AbtestingConfig {
    /// GrowthBook hashing version for experiments that do not name one (1 or 2).
    #[schemars(range(min = 1, max = 2))]
    pub default_hash_version: u32,
    /// Confidence level of the intervals reported for lifts (0.8 to 0.999).
    #[schemars(range(min = 0.8, max = 0.999))]
    pub confidence_level: f64,
    /// p-value below which a sample ratio mismatch is flagged.
    #[schemars(range(min = 0.0000001, max = 0.05))]
    pub srm_p_value_threshold: f64,
    /// Whether reports include a Bayesian chance to beat control.
    pub bayesian: bool,
    /// Exposures written to ClickHouse per batch.
    #[schemars(range(min = 1, max = 100000))]
    pub exposure_batch_size: u32,
    /// Longest wait before a partial batch of exposures is written, in milliseconds.
    #[schemars(range(min = 10, max = 60000))]
    pub exposure_flush_millis: u32,
    /// Exposures a replica holds for ClickHouse before it drops new ones (counted in
    /// `titan_abtesting_exposures_dropped_total`). Each takes about 250 bytes while queued: the
    /// default, 524,288, is at most ~128 MiB, about two seconds of a 2-core replica's peak
    /// assignment rate with ClickHouse taking nothing. Size it to the pod's memory limit.
    #[schemars(range(min = 1024, max = 16777216))]
    pub exposure_queue_rows: u32,
}

impl Default for AbtestingConfig {
    fn default() -> Self {
        Self {
            default_hash_version: 2,
            confidence_level: 0.95,
            srm_p_value_threshold: 0.001,
            bayesian: false,
            exposure_batch_size: 1000,
            exposure_flush_millis: 1000,
            exposure_queue_rows: 1 << 19,
        }
    }
}

impl TitanConfig for AbtestingConfig {
    const SERVICE: ServiceKind = ServiceKind::Abtesting;

    fn validate(&self) -> Result<(), ConfigError> {
        let s = Self::SERVICE;
        in_range(s, "defaultHashVersion", self.default_hash_version, 1, 2)?;
        in_range(s, "confidenceLevel", self.confidence_level, 0.8, 0.999)?;
        in_range(
            s,
            "srmPValueThreshold",
            self.srm_p_value_threshold,
            0.0000001,
            0.05,
        )?;
        in_range(s, "exposureBatchSize", self.exposure_batch_size, 1, 100000)?;
        in_range(
            s,
            "exposureFlushMillis",
            self.exposure_flush_millis,
            10,
            60000,
        )?;
        in_range(
            s,
            "exposureQueueRows",
            self.exposure_queue_rows,
            1024,
            16_777_216,
        )
    }
}

/// What happens to a transaction at a risk level.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum FraudDecision {
    /// Let it through.
    Approve,
    /// Let it through and open it for manual review.
    Review,
    /// Refuse it.
    Reject,
}

/// Configuration of the fraud service.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct FraudConfig {
    /// Scores at which the levels MEDIUM, HIGH and CRITICAL start (LOW starts at 0).
    pub thresholds: FraudThresholds,
    /// The decision taken at each level.
    pub decisions: FraudDecisions,
    /// Weight of each signal in the score (the score is capped at 1.0).
    pub weights: FraudWeights,
    /// ISO 3166-1 alpha-2 codes of countries that raise the score.
    pub high_risk_countries: Vec<String>,
    /// Failed payments in 7 days above which the failed-payments signal fires.
    pub failed_payments_threshold: u32,
    /// Accounts younger than this many days fire the new-account signal.
    pub new_account_days: u32,
    /// Share of the final score taken from the offline-trained model (0 = rules only).
    #[schemars(range(min = 0.0, max = 1.0))]
    pub model_blend: f64,
    /// Transactions and amounts per user, card, device and IP above which velocity rises.
    pub velocity: FraudVelocity,
    /// Devices, IPs and e-mail domains known to be used for fraud.
    pub known_bad: FraudKnownBad,
    /// The least decision of a check answered without Redis (velocity unknown).
    pub degraded_decision: FraudDecision,
    /// Longest wait for Redis in one check before it answers degraded, in milliseconds.
    #[schemars(range(min = 1, max = 1000))]
    pub redis_budget_millis: u32,
}

impl Default for FraudConfig {
    fn default() -> Self {
        Self {
            thresholds: FraudThresholds::default(),
            decisions: FraudDecisions::default(),
            weights: FraudWeights::default(),
            high_risk_countries: Vec::new(),
            failed_payments_threshold: 2,
            new_account_days: 7,
            model_blend: 0.0,
            velocity: FraudVelocity::default(),
            known_bad: FraudKnownBad::default(),
            degraded_decision: FraudDecision::Review,
            redis_budget_millis: 50,
        }
    }
}

impl TitanConfig for FraudConfig {
    const SERVICE: ServiceKind = ServiceKind::Fraud;

    fn validate(&self) -> Result<(), ConfigError> {
        let s = Self::SERVICE;
        let t = &self.thresholds;
        ensure(
            0.0 < t.medium && t.medium < t.high && t.high < t.critical && t.critical <= 1.0,
            s,
            "thresholds",
            || {
                format!(
                    "need 0 < medium < high < critical <= 1, got {} {} {}",
                    t.medium, t.high, t.critical
                )
            },
        )?;
        let w = &self.weights;
        for (field, weight) in [
            ("weights.newDevice", w.new_device),
            ("weights.newIp", w.new_ip),
            ("weights.highRiskCountry", w.high_risk_country),
            ("weights.countryMismatch", w.country_mismatch),
            ("weights.velocity", w.velocity),
            ("weights.amountAnomaly", w.amount_anomaly),
            ("weights.failedPayments", w.failed_payments),
            ("weights.newAccount", w.new_account),
            ("weights.knownBad", w.known_bad),
            ("weights.chargebacks", w.chargebacks),
        ] {
            in_range(s, field, weight, 0.0, 1.0)?;
        }
        for code in &self.high_risk_countries {
            ensure(
                code.len() == 2 && code.bytes().all(|b| b.is_ascii_uppercase()),
                s,
                "highRiskCountries",
                || format!("{code:?} is not an upper-case ISO 3166-1 alpha-2 code"),
            )?;
        }
        in_range(s, "modelBlend", self.model_blend, 0.0, 1.0)?;
        let v = &self.velocity;
        for (field, limit) in [
            ("velocity.hour", &v.hour),
            ("velocity.day", &v.day),
            ("velocity.week", &v.week),
        ] {
            ensure(limit.count >= 1 && limit.amount >= 1, s, field, || {
                format!(
                    "count and amount must be at least 1, got {} and {}",
                    limit.count, limit.amount
                )
            })?;
        }
        for (field, list) in [
            ("knownBad.devices", &self.known_bad.devices),
            ("knownBad.ips", &self.known_bad.ips),
            ("knownBad.emailDomains", &self.known_bad.email_domains),
        ] {
            ensure(list.iter().all(|e| !e.is_empty()), s, field, || {
                "entries must not be empty".to_owned()
            })?;
        }
        in_range(s, "redisBudgetMillis", self.redis_budget_millis, 1, 1000)
    }
}

/// Score thresholds of the risk levels.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct FraudThresholds {
    /// Lowest score of MEDIUM.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub medium: f64,
    /// Lowest score of HIGH.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub high: f64,
    /// Lowest score of CRITICAL.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub critical: f64,
}

impl Default for FraudThresholds {
    fn default() -> Self {
        Self {
            medium: 0.3,
            high: 0.6,
            critical: 0.8,
        }
    }
}

/// Decision per risk level.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct FraudDecisions {
    /// Decision at LOW.
    pub low: FraudDecision,
    /// Decision at MEDIUM.
    pub medium: FraudDecision,
    /// Decision at HIGH (HIGH and above also open a case).
    pub high: FraudDecision,
    /// Decision at CRITICAL.
    pub critical: FraudDecision,
}

impl Default for FraudDecisions {
    fn default() -> Self {
        Self {
            low: FraudDecision::Approve,
            medium: FraudDecision::Review,
            high: FraudDecision::Review,
            critical: FraudDecision::Reject,
        }
    }
}

/// Weight of each risk signal.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct FraudWeights {
    /// A device never seen for this user.
    pub new_device: f64,
    /// An IP address never seen for this user.
    pub new_ip: f64,
    /// The IP's country is in `highRiskCountries`.
    pub high_risk_country: f64,
    /// IP, billing and shipping countries disagree.
    pub country_mismatch: f64,
    /// Multiplied by the velocity signal (0..1).
    pub velocity: f64,
    /// Multiplied by sigmoid(z - 2) of the amount's deviation from the user's history.
    pub amount_anomaly: f64,
    /// More failed payments in 7 days than `failedPaymentsThreshold`.
    pub failed_payments: f64,
    /// The account is younger than `newAccountDays`.
    pub new_account: f64,
    /// The device, IP or e-mail domain is on a `knownBad` list.
    pub known_bad: f64,
    /// The user has had a chargeback.
    pub chargebacks: f64,
}

impl Default for FraudWeights {
    fn default() -> Self {
        Self {
            new_device: 0.15,
            new_ip: 0.10,
            high_risk_country: 0.20,
            country_mismatch: 0.15,
            velocity: 0.20,
            amount_anomaly: 0.10,
            failed_payments: 0.05,
            new_account: 0.05,
            known_bad: 0.5,
            chargebacks: 0.25,
        }
    }
}

/// Velocity limits of the fraud service per window, for each of user, card, device and IP.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct FraudVelocity {
    /// The last hour.
    pub hour: FraudVelocityLimit,
    /// The last 24 hours.
    pub day: FraudVelocityLimit,
    /// The last 7 days.
    pub week: FraudVelocityLimit,
}

impl Default for FraudVelocity {
    fn default() -> Self {
        Self {
            hour: FraudVelocityLimit {
                count: 5,
                amount: 200_000,
            },
            day: FraudVelocityLimit {
                count: 20,
                amount: 1_000_000,
            },
            week: FraudVelocityLimit {
                count: 50,
                amount: 3_000_000,
            },
        }
    }
}

/// What is normal in one velocity window: velocity is 0 up to the limit and reaches 1 at twice it.
/// Both fields are required when a window is given: no default could satisfy the minimum of 1
/// and still mean something in every window.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FraudVelocityLimit {
    /// Transactions in the window.
    #[schemars(range(min = 1))]
    pub count: u32,
    /// Sum of amounts in the window, in minor units of any currency.
    #[schemars(range(min = 1))]
    pub amount: i64,
}

/// Lists of identifiers known to be used for fraud.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct FraudKnownBad {
    /// Device fingerprints.
    pub devices: Vec<String>,
    /// IP addresses.
    pub ips: Vec<String>,
    /// E-mail domains (lower-case, e.g. `mailinator.com`).
    pub email_domains: Vec<String>,
}

/// Configuration of the pricing service.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct PricingConfig {
    /// How often prices are re-optimized, in seconds.
    #[schemars(range(min = 10, max = 86400))]
    pub reoptimize_interval_seconds: u32,
    /// Price multipliers of the DYNAMIC strategy at demand 0 and 100.
    pub dynamic_multiplier: PricingMultipliers,
    /// Fewest (price, sales) observations before an elasticity is estimated.
    #[schemars(range(min = 3, max = 100000))]
    pub elasticity_min_samples: u32,
}

impl Default for PricingConfig {
    fn default() -> Self {
        Self {
            reoptimize_interval_seconds: 300,
            dynamic_multiplier: PricingMultipliers::default(),
            elasticity_min_samples: 10,
        }
    }
}

impl TitanConfig for PricingConfig {
    const SERVICE: ServiceKind = ServiceKind::Pricing;

    fn validate(&self) -> Result<(), ConfigError> {
        let s = Self::SERVICE;
        in_range(
            s,
            "reoptimizeIntervalSeconds",
            self.reoptimize_interval_seconds,
            10,
            86400,
        )?;
        let m = &self.dynamic_multiplier;
        in_range(s, "dynamicMultiplier.min", m.min, 0.01, 100.0)?;
        in_range(s, "dynamicMultiplier.max", m.max, 0.01, 100.0)?;
        ensure(m.min <= m.max, s, "dynamicMultiplier", || {
            format!("min {} is above max {}", m.min, m.max)
        })?;
        in_range(
            s,
            "elasticityMinSamples",
            self.elasticity_min_samples,
            3,
            100000,
        )
    }
}

/// The range of the DYNAMIC strategy's multiplier.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct PricingMultipliers {
    /// Multiplier at demand score 0.
    #[schemars(range(min = 0.01, max = 100.0))]
    pub min: f64,
    /// Multiplier at demand score 100.
    #[schemars(range(min = 0.01, max = 100.0))]
    pub max: f64,
}

impl Default for PricingMultipliers {
    fn default() -> Self {
        Self { min: 0.9, max: 1.3 }
    }
}

/// Configuration of the analytics service.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct AnalyticsConfig {
    /// Events inserted into ClickHouse per batch.
    #[schemars(range(min = 1, max = 1000000))]
    pub ingest_batch_size: u32,
    /// Longest wait before a partial batch is inserted, in milliseconds. Callers wait for their
    /// batch to be stored, so this bounds their latency at low volume; each insert makes a part
    /// that ClickHouse merges later, so it also bounds the inserts per second.
    #[schemars(range(min = 10, max = 60000))]
    pub flush_interval_millis: u32,
    /// Window of the real-time dashboard, in seconds.
    #[schemars(range(min = 10, max = 3600))]
    pub realtime_window_seconds: u32,
    /// Longest conversion window a funnel query may ask for, in days.
    #[schemars(range(min = 1, max = 365))]
    pub max_funnel_window_days: u32,
    /// How far in the future an event's timestamp may be (client clocks drift), in seconds.
    #[schemars(range(min = 0, max = 86400))]
    pub max_clock_skew_seconds: u32,
    /// Events accepted but not yet stored, across all callers; when full, tracking answers
    /// `Unavailable` instead of queueing more (ClickHouse is slow or down).
    #[schemars(range(min = 1000, max = 10000000))]
    pub buffer_events: u32,
    /// Services whose event streams are ingested (default: every Titan service).
    pub sources: Vec<String>,
}

impl Default for AnalyticsConfig {
    fn default() -> Self {
        Self {
            ingest_batch_size: 10000,
            flush_interval_millis: 200,
            realtime_window_seconds: 300,
            max_funnel_window_days: 30,
            max_clock_skew_seconds: 300,
            buffer_events: 200_000,
            sources: ServiceKind::TITAN
                .iter()
                .filter(|k| **k != ServiceKind::Analytics)
                .map(ToString::to_string)
                .collect(),
        }
    }
}

impl TitanConfig for AnalyticsConfig {
    const SERVICE: ServiceKind = ServiceKind::Analytics;

    fn validate(&self) -> Result<(), ConfigError> {
        let s = Self::SERVICE;
        in_range(s, "ingestBatchSize", self.ingest_batch_size, 1, 1000000)?;
        in_range(
            s,
            "flushIntervalMillis",
            self.flush_interval_millis,
            10,
            60000,
        )?;
        in_range(
            s,
            "realtimeWindowSeconds",
            self.realtime_window_seconds,
            10,
            3600,
        )?;
        in_range(
            s,
            "maxFunnelWindowDays",
            self.max_funnel_window_days,
            1,
            365,
        )?;
        in_range(
            s,
            "maxClockSkewSeconds",
            self.max_clock_skew_seconds,
            0,
            86400,
        )?;
        in_range(s, "bufferEvents", self.buffer_events, 1000, 10000000)?;
        for source in &self.sources {
            ensure(
                !source.is_empty()
                    && source
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                s,
                "sources",
                || format!("{source:?} is not a service name (lower-case letters, digits, '_')"),
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fraud_defaults_follow_the_design() {
        let c = FraudConfig::default();
        assert_eq!(
            (
                c.thresholds.medium,
                c.thresholds.high,
                c.thresholds.critical
            ),
            (0.3, 0.6, 0.8)
        );
        assert_eq!(c.decisions.critical, FraudDecision::Reject);
        assert_eq!(c.weights.high_risk_country, 0.20);
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn fraud_thresholds_must_increase() {
        let mut c = FraudConfig::default();
        c.thresholds.high = 0.2;
        assert_eq!(
            c.validate().map_err(|e| e.to_string()),
            Err("fraud.thresholds: need 0 < medium < high < critical <= 1, got 0.3 0.2 0.8".into())
        );
    }

    #[test]
    fn fraud_countries_are_iso_codes() {
        let c = FraudConfig {
            high_risk_countries: vec!["xx1".into()],
            ..Default::default()
        };
        assert!(c.validate().is_err());
    }

    #[test]
    fn pricing_multipliers_must_be_ordered() {
        let mut c = PricingConfig::default();
        assert_eq!(
            (c.dynamic_multiplier.min, c.dynamic_multiplier.max),
            (0.9, 1.3)
        );
        c.dynamic_multiplier.min = 2.0;
        assert_eq!(
            c.validate().map_err(|e| e.to_string()),
            Err("pricing.dynamicMultiplier: min 2 is above max 1.3".into())
        );
    }
}
