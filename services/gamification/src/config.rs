//! The gamification service's settings: the `gamification` config type of the `crds` crate
//! (points, level thresholds, badge rules, leaderboard page size), so the operator validates
//! exactly what this service parses (`services.gamification` in the file).

pub use titan_crds::config::GamificationConfig as Settings;
