//! The gamification service's own metrics (per-RPC metrics come from kit). Labels are reasons
//! and outcomes from fixed sets, never a user.

use prometheus::{IntCounter, IntCounterVec, Opts, Registry};
use titan_kit::{KitError, metrics::register};

use crate::{app::Awarded, domain::Reason};

#[derive(Debug, Clone)]
pub struct Metrics {
    points: IntCounterVec,
    duplicates: IntCounter,
    redemptions: IntCounterVec,
    fed: IntCounter,
}

impl Metrics {
    pub fn new(registry: &Registry) -> Result<Self, KitError> {
        Ok(Self {
            points: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "titan_gamification_points_awarded_total",
                        "points earned, by reason",
                    ),
                    &["reason"],
                )?,
            )?,
            duplicates: register(
                registry,
                IntCounter::new(
                    "titan_gamification_duplicate_awards_total",
                    "awards of a source already awarded (nothing changed)",
                )?,
            )?,
            redemptions: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "titan_gamification_reward_redemptions_total",
                        "reward redemptions by outcome (redeemed or the refusal reason)",
                    ),
                    &["outcome"],
                )?,
            )?,
            fed: register(
                registry,
                IntCounter::new(
                    "titan_gamification_leaderboard_rows_total",
                    "ledger rows moved onto the leaderboards",
                )?,
            )?,
        })
    }

    pub fn awarded(&self, reason: Reason, a: &Awarded) {
        if a.duplicate {
            self.duplicates.inc();
        } else {
            self.earned(reason, a.points);
        }
    }

    pub fn earned(&self, reason: Reason, points: i64) {
        self.points
            .with_label_values(&[reason.as_str()])
            .inc_by(u64::try_from(points).unwrap_or(0));
    }

    pub fn redeemed(&self, outcome: &str) {
        self.redemptions.with_label_values(&[outcome]).inc();
    }

    pub fn fed(&self, rows: u64) {
        self.fed.inc_by(rows);
    }
}
