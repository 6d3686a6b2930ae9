//! Gamification rules, pure: what each action earns, levels from lifetime points, badges over
//! counters, check-in streaks, calendar days in a shopper's time zone, leaderboard periods. No I/O.

pub mod badge;
pub mod calendar;
pub mod level;
pub mod points;

pub use badge::{Badge, Counters};
pub use calendar::{Period, local_date};
pub use level::level_for;
pub use points::{Action, Reason};

/// The service's name: its migrations, its consumer group and its config section.
pub const SERVICE: &str = "gamification";
