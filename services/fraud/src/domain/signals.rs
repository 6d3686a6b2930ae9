//! The risk signals of the seed: each has a strength in 0..1 computed from the facts the
//! stores gathered, a weight from the config, and a reason when it fires (strength > 0). The
//! strengths are also the model's features, in [`Signal::ALL`] order.

use serde::{Deserialize, Serialize};
use titan_crds::config::{FraudConfig, FraudVelocityLimit};

use super::stats::sigmoid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    NewDevice,
    NewIp,
    HighRiskCountry,
    CountryMismatch,
    Velocity,
    AmountAnomaly,
    FailedPayments,
    NewAccount,
    KnownBad,
    Chargebacks,
}

/// Number of signals (and of model features).
pub const SIGNALS: usize = 10;

impl Signal {
    pub const ALL: [Signal; SIGNALS] = [
        Self::NewDevice,
        Self::NewIp,
        Self::HighRiskCountry,
        Self::CountryMismatch,
        Self::Velocity,
        Self::AmountAnomaly,
        Self::FailedPayments,
        Self::NewAccount,
        Self::KnownBad,
        Self::Chargebacks,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::NewDevice => "new_device",
            Self::NewIp => "new_ip",
            Self::HighRiskCountry => "high_risk_country",
            Self::CountryMismatch => "country_mismatch",
            Self::Velocity => "velocity",
            Self::AmountAnomaly => "amount_anomaly",
            Self::FailedPayments => "failed_payments",
            Self::NewAccount => "new_account",
            Self::KnownBad => "known_bad",
            Self::Chargebacks => "chargebacks",
        }
    }

    fn weight(self, c: &FraudConfig) -> f64 {
        let w = &c.weights;
        match self {
            Self::NewDevice => w.new_device,
            Self::NewIp => w.new_ip,
            Self::HighRiskCountry => w.high_risk_country,
            Self::CountryMismatch => w.country_mismatch,
            Self::Velocity => w.velocity,
            Self::AmountAnomaly => w.amount_anomaly,
            Self::FailedPayments => w.failed_payments,
            Self::NewAccount => w.new_account,
            Self::KnownBad => w.known_bad,
            Self::Chargebacks => w.chargebacks,
        }
    }
}

/// What velocity is counted per.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dimension {
    User,
    Card,
    Device,
    Ip,
}

impl Dimension {
    pub const ALL: [Dimension; 4] = [Self::User, Self::Card, Self::Device, Self::Ip];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Card => "card",
            Self::Device => "device",
            Self::Ip => "ip",
        }
    }
}

/// A velocity window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Window {
    #[serde(rename = "1h")]
    Hour,
    #[serde(rename = "24h")]
    Day,
    #[serde(rename = "7d")]
    Week,
}

impl Window {
    pub const ALL: [Window; 3] = [Self::Hour, Self::Day, Self::Week];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hour => "1h",
            Self::Day => "24h",
            Self::Week => "7d",
        }
    }

    pub fn millis(self) -> i64 {
        match self {
            Self::Hour => 3_600_000,
            Self::Day => 86_400_000,
            Self::Week => 7 * 86_400_000,
        }
    }

    fn limit(self, c: &FraudConfig) -> &FraudVelocityLimit {
        match self {
            Self::Hour => &c.velocity.hour,
            Self::Day => &c.velocity.day,
            Self::Week => &c.velocity.week,
        }
    }
}

/// Transactions and their summed amount in one window, this one included.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    pub count: u64,
    pub amount: i64,
}

/// The tallies of one dimension's key in each window ([`Window::ALL`] order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DimensionTally {
    pub dimension: Dimension,
    pub windows: [Tally; 3],
}

/// Velocity of the dimensions the transaction names (user always; card, device, IP when given).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Velocity {
    pub tallies: Vec<DimensionTally>,
}

/// How far `value` is past `limit`: 0 at or below it, 1 at twice it and beyond.
fn excess(value: f64, limit: f64) -> f64 {
    ((value - limit) / limit).clamp(0.0, 1.0)
}

impl Velocity {
    pub fn tally(&self, d: Dimension, w: Window) -> Tally {
        self.tallies
            .iter()
            .find(|t| t.dimension == d)
            .map(|t| t.windows[w as usize])
            .unwrap_or_default()
    }

    /// The velocity signal v in 0..1: the largest excess over a configured limit of any
    /// dimension, window, count or amount, and where it was.
    pub fn strength(&self, c: &FraudConfig) -> (f64, String) {
        let mut best = (0.0, String::new());
        for t in &self.tallies {
            for w in Window::ALL {
                let limit = w.limit(c);
                let tally = t.windows[w as usize];
                // Counts and amounts far below 2^53 convert exactly.
                for (what, value, lim) in [
                    ("transactions", tally.count as f64, f64::from(limit.count)),
                    ("amount", tally.amount as f64, limit.amount as f64),
                ] {
                    let e = excess(value, lim);
                    if e > best.0 {
                        best = (
                            e,
                            format!(
                                "{} {what} in {} per {} (limit {})",
                                value,
                                w.as_str(),
                                t.dimension.as_str(),
                                lim
                            ),
                        );
                    }
                }
            }
        }
        best
    }
}

/// What the stores know about a transaction, from which the signals are computed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Facts {
    /// A device was given and this user never used it before.
    pub new_device: bool,
    /// An IP was given and this user never used it before.
    pub new_ip: bool,
    /// The IP's country is configured as high-risk.
    pub high_risk_country: bool,
    /// The IP, billing and shipping countries given disagree.
    pub country_mismatch: bool,
    /// `None` when Redis did not answer in time (the check is degraded).
    pub velocity: Option<Velocity>,
    /// Robust z-score of the amount against the user's earlier amounts, if enough.
    pub amount_z: Option<f64>,
    pub failed_payments_7d: u64,
    pub account_age_days: u32,
    /// Which known-bad list matched (`device`, `ip`, `email_domain`).
    pub known_bad: Option<String>,
    pub chargebacks: u64,
}

/// A signal that fired: its share of the score and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fired {
    pub signal: Signal,
    pub contribution: f64,
    pub reason: String,
}

/// Strength in 0..1 of each signal ([`Signal::ALL`] order) with the reason of those above 0.
pub fn strengths(f: &Facts, c: &FraudConfig) -> [(f64, String); SIGNALS] {
    let flag = |on: bool, why: String| if on { (1.0, why) } else { (0.0, String::new()) };
    let velocity = f
        .velocity
        .as_ref()
        .map(|v| v.strength(c))
        .unwrap_or_default();
    let anomaly = match f.amount_z {
        // Only an amount more than 2 robust deviations above the user's usual one counts, so an
        // ordinary amount adds nothing; past that the weight is scaled by sigmoid(z − 2).
        Some(z) if z > 2.0 => (
            sigmoid(z - 2.0),
            format!("amount is {z:.1} robust deviations above the user's usual amount"),
        ),
        _ => (0.0, String::new()),
    };
    [
        flag(f.new_device, "device never seen for this user".into()),
        flag(f.new_ip, "IP address never seen for this user".into()),
        flag(f.high_risk_country, "IP country is high-risk".into()),
        flag(
            f.country_mismatch,
            "IP, billing and shipping countries disagree".into(),
        ),
        velocity,
        anomaly,
        flag(
            f.failed_payments_7d > u64::from(c.failed_payments_threshold),
            format!("{} failed payments in 7 days", f.failed_payments_7d),
        ),
        flag(
            f.account_age_days < c.new_account_days,
            format!("account is {} days old", f.account_age_days),
        ),
        match &f.known_bad {
            Some(list) => (1.0, format!("{list} is on the known-bad list")),
            None => (0.0, String::new()),
        },
        flag(
            f.chargebacks > 0,
            format!("{} chargebacks in the user's history", f.chargebacks),
        ),
    ]
}

/// The model's features: the strengths alone.
pub fn features(f: &Facts, c: &FraudConfig) -> [f64; SIGNALS] {
    strengths(f, c).map(|(s, _)| s)
}

/// The signals that fired and the weighted score, capped at 1.
pub fn score(f: &Facts, c: &FraudConfig) -> (f64, Vec<Fired>) {
    let mut fired = Vec::new();
    let mut total = 0.0;
    for (signal, (strength, reason)) in Signal::ALL.into_iter().zip(strengths(f, c)) {
        if strength > 0.0 {
            let contribution = signal.weight(c) * strength;
            total += contribution;
            fired.push(Fired {
                signal,
                contribution,
                reason,
            });
        }
    }
    (total.min(1.0), fired)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An old, calm account on a known device: nothing fires.
    fn calm() -> Facts {
        Facts {
            velocity: Some(Velocity::default()),
            amount_z: Some(0.0),
            account_age_days: 400,
            ..Facts::default()
        }
    }

    fn fired(f: &Facts, c: &FraudConfig) -> Vec<Signal> {
        score(f, c).1.into_iter().map(|s| s.signal).collect()
    }

    fn tally(d: Dimension, hour: (u64, i64)) -> Velocity {
        Velocity {
            tallies: vec![DimensionTally {
                dimension: d,
                windows: [
                    Tally {
                        count: hour.0,
                        amount: hour.1,
                    },
                    Tally::default(),
                    Tally::default(),
                ],
            }],
        }
    }

    #[test]
    fn each_signal_fires_on_its_scenario_and_not_on_its_neighbour() {
        let c = FraudConfig::default();
        assert_eq!(score(&calm(), &c), (0.0, vec![]));
        let cases: Vec<(Signal, Facts, Facts)> = vec![
            (
                Signal::NewDevice,
                Facts {
                    new_device: true,
                    ..calm()
                },
                calm(),
            ),
            (
                Signal::NewIp,
                Facts {
                    new_ip: true,
                    ..calm()
                },
                calm(),
            ),
            (
                Signal::HighRiskCountry,
                Facts {
                    high_risk_country: true,
                    ..calm()
                },
                calm(),
            ),
            (
                Signal::CountryMismatch,
                Facts {
                    country_mismatch: true,
                    ..calm()
                },
                calm(),
            ),
            (
                Signal::Velocity,
                Facts {
                    velocity: Some(tally(Dimension::Card, (6, 100))),
                    ..calm()
                },
                Facts {
                    velocity: Some(tally(Dimension::Card, (5, 100))),
                    ..calm()
                },
            ),
            (
                Signal::AmountAnomaly,
                Facts {
                    amount_z: Some(2.01),
                    ..calm()
                },
                Facts {
                    amount_z: Some(2.0),
                    ..calm()
                },
            ),
            (
                Signal::FailedPayments,
                Facts {
                    failed_payments_7d: 3,
                    ..calm()
                },
                Facts {
                    failed_payments_7d: 2,
                    ..calm()
                },
            ),
            (
                Signal::NewAccount,
                Facts {
                    account_age_days: 6,
                    ..calm()
                },
                Facts {
                    account_age_days: 7,
                    ..calm()
                },
            ),
            (
                Signal::KnownBad,
                Facts {
                    known_bad: Some("device".into()),
                    ..calm()
                },
                calm(),
            ),
            (
                Signal::Chargebacks,
                Facts {
                    chargebacks: 1,
                    ..calm()
                },
                Facts {
                    chargebacks: 0,
                    ..calm()
                },
            ),
        ];
        for (signal, on, neighbour) in cases {
            assert_eq!(fired(&on, &c), vec![signal], "{signal:?} fires");
            assert_eq!(fired(&neighbour, &c), vec![], "{signal:?} neighbour");
        }
    }

    #[test]
    fn contributions_follow_the_weights() {
        let c = FraudConfig::default();
        let f = Facts {
            new_device: true,
            new_ip: true,
            amount_z: Some(2.0 + 1.0),
            velocity: Some(tally(Dimension::User, (10, 0))),
            ..calm()
        };
        let (s, fired) = score(&f, &c);
        // 0.15 + 0.10 + 0.20 × 1 + 0.10 × sigmoid(1)
        let expected = 0.15 + 0.10 + 0.20 + 0.10 * sigmoid(1.0);
        assert!((s - expected).abs() < 1e-12, "{s}");
        assert_eq!(fired[2].reason, "10 transactions in 1h per user (limit 5)");
    }

    #[test]
    fn velocity_counts_amounts_too_and_caps_at_one() {
        let c = FraudConfig::default();
        // 300,000 in an hour against a limit of 200,000: half-way to twice the limit.
        let (v, why) = tally(Dimension::Ip, (1, 300_000)).strength(&c);
        assert_eq!(v, 0.5);
        assert_eq!(why, "300000 amount in 1h per ip (limit 200000)");
        assert_eq!(tally(Dimension::Ip, (1000, 0)).strength(&c).0, 1.0);
    }

    #[test]
    fn the_score_is_capped_at_one() {
        let c = FraudConfig::default();
        let f = Facts {
            new_device: true,
            new_ip: true,
            high_risk_country: true,
            country_mismatch: true,
            known_bad: Some("ip".into()),
            chargebacks: 2,
            ..calm()
        };
        assert_eq!(score(&f, &c).0, 1.0);
    }

    #[test]
    fn degraded_facts_have_no_velocity() {
        let c = FraudConfig::default();
        let f = Facts {
            velocity: None,
            ..calm()
        };
        assert_eq!(features(&f, &c)[4], 0.0);
    }
}
