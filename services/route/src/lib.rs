//! Route optimisation: a solver for the vehicle routing problem with time windows (VRPTW).
//!
//! Pure: no I/O, no async, no clock other than the budget's. A [`Problem`] is jobs (location,
//! demand, window, service time) and a heterogeneous fleet (start and end location, capacity,
//! shift) over a [`Metric`]; [`solve`] returns the best [`Solution`] found within the budget
//! under the chosen [`Objective`]. The same seed and iteration limit give the same solution;
//! under a time limit the search stops where the clock says, so two runs may differ.
//!
//! [`solomon`] reads the classic benchmark files, which the `titan route solve` command and
//! `titan-bench routes` use.

pub mod metric;
pub mod model;
mod search;
pub mod solomon;

use std::time::Duration;

use thiserror::Error;

pub use metric::{Euclidean, Haversine, Matrix, Metric};
pub use model::{
    Job, MAX_JOBS, MAX_VEHICLES, ModelError, Objective, Problem, Route, Solution, Stop, Unassigned,
    UnassignedReason, Vehicle,
};

/// Longest time budget a caller may ask for.
pub const MAX_TIME_LIMIT: Duration = Duration::from_secs(600);

/// How the search runs: what it minimises, its seed and when it stops.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// What to minimise.
    pub objective: Objective,
    /// Seed of the search's random choices.
    pub seed: u64,
    /// Stop after this long (the construction counts).
    pub time_limit: Option<Duration>,
    /// Stop after this many ruin-and-recreate iterations: a limit that makes runs repeatable.
    pub max_iterations: Option<u64>,
}

impl Settings {
    /// The share of the budget used, in `[0, 1]`; the annealing temperature follows it.
    fn progress(&self, iterations: u64, elapsed: Duration) -> f64 {
        let by_time = self.time_limit.map_or(0.0, |t| {
            elapsed.as_secs_f64() / t.as_secs_f64().max(f64::MIN_POSITIVE)
        });
        let by_iterations = self
            .max_iterations
            .map_or(0.0, |n| iterations as f64 / (n.max(1)) as f64);
        by_time.max(by_iterations).min(1.0)
    }
}

/// Settings the solver refuses.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SettingsError {
    /// Neither limit is set: the search would never stop.
    #[error("settings: set time_limit or max_iterations, or both")]
    Unbounded,
    /// The time limit is above [`MAX_TIME_LIMIT`].
    #[error("settings.time_limit: {0:?} is above the {MAX_TIME_LIMIT:?} maximum")]
    TooLong(Duration),
}

/// Solves `problem` within the limits of `settings`.
pub fn solve<M: Metric>(
    problem: &Problem<M>,
    settings: &Settings,
) -> Result<Solution, SettingsError> {
    match settings.time_limit {
        None if settings.max_iterations.is_none() => return Err(SettingsError::Unbounded),
        Some(t) if t > MAX_TIME_LIMIT => return Err(SettingsError::TooLong(t)),
        _ => {}
    }
    Ok(search::run(problem, settings))
}
