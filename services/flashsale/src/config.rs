//! The flash-sale service's settings (`services.flashsale` in the config file), with the
//! defaults of the spec. Unknown fields are refused.

use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct Settings {
    /// How long a reservation holds its units.
    pub reservation_ttl_seconds: u64,
    /// Per-buyer limit of a sale that does not set one.
    pub default_max_per_user: u32,
    /// Attempts a buyer may make at once on a sale...
    pub rate_limit_burst: u32,
    /// ...and then one per this many milliseconds.
    pub rate_limit_interval_ms: u64,
    /// How long an issued proof-of-work challenge stays valid.
    pub challenge_ttl_seconds: u64,
    /// How often expired reservations are swept back into stock.
    pub sweep_interval_ms: u64,
    /// How often Redis and PostgreSQL are compared.
    pub reconcile_interval_seconds: u64,
    /// How often `WatchSale` looks for changes (updates are coalesced to this rate).
    pub watch_interval_ms: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            reservation_ttl_seconds: 300,
            default_max_per_user: 5,
            rate_limit_burst: 10,
            rate_limit_interval_ms: 1000,
            challenge_ttl_seconds: 120,
            sweep_interval_ms: 500,
            reconcile_interval_seconds: 60,
            watch_interval_ms: 250,
        }
    }
}

impl Settings {
    /// Refuses values that would break the service, naming the field.
    pub fn validate(&self) -> Result<(), String> {
        let checks = [
            (
                self.reservation_ttl_seconds == 0 || self.reservation_ttl_seconds > 86_400,
                "reservationTtlSeconds must be 1 to 86400",
            ),
            (
                self.default_max_per_user == 0,
                "defaultMaxPerUser must be at least 1",
            ),
            (
                self.rate_limit_burst == 0,
                "rateLimitBurst must be at least 1",
            ),
            (
                self.rate_limit_interval_ms == 0,
                "rateLimitIntervalMs must be at least 1",
            ),
            (
                self.challenge_ttl_seconds == 0,
                "challengeTtlSeconds must be at least 1",
            ),
            (
                self.sweep_interval_ms == 0,
                "sweepIntervalMs must be at least 1",
            ),
            (
                self.reconcile_interval_seconds == 0,
                "reconcileIntervalSeconds must be at least 1",
            ),
            (
                self.watch_interval_ms < 100,
                "watchIntervalMs must be at least 100",
            ),
        ];
        match checks.iter().find(|(bad, _)| *bad) {
            Some((_, msg)) => Err((*msg).to_owned()),
            None => Ok(()),
        }
    }

    pub fn reservation_ttl(&self) -> Duration {
        Duration::from_secs(self.reservation_ttl_seconds)
    }
}
