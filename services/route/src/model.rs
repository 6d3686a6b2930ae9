//! The problem a caller states (jobs, vehicles, a metric) and the solution it gets back,
//! validated once when the problem is built so the search never meets a malformed input.

use serde::Serialize;
use thiserror::Error;

use crate::metric::Metric;

/// Most jobs one problem may have: the solver holds two `locations²` matrices of `f64`, and
/// 2,000 jobs is 64 MB of them.
pub const MAX_JOBS: usize = 2_000;
/// Most vehicles one problem may have.
pub const MAX_VEHICLES: usize = 500;

/// A problem the solver refuses, naming what is wrong.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum ModelError {
    /// The metric itself is malformed.
    #[error("metric: {0}")]
    Metric(String),
    /// A job is malformed; `field` names it.
    #[error("jobs[{index}].{field}: {reason}")]
    Job {
        index: usize,
        field: &'static str,
        reason: String,
    },
    /// A vehicle is malformed; `field` names it.
    #[error("vehicles[{index}].{field}: {reason}")]
    Vehicle {
        index: usize,
        field: &'static str,
        reason: String,
    },
    /// Too many or too few jobs or vehicles.
    #[error("{what}: {reason}")]
    Size { what: &'static str, reason: String },
}

/// A visit to make: at a location, within a window, taking a service time, using capacity.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// Index into the metric's locations.
    pub location: usize,
    /// Capacity the job uses on its vehicle.
    pub demand: u32,
    /// Earliest start of service; a vehicle arriving earlier waits.
    pub ready: f64,
    /// Latest start of service.
    pub due: f64,
    /// How long the service lasts.
    pub service: f64,
}

/// A vehicle of the fleet: where its shift starts and ends, when, and what it carries.
#[derive(Debug, Clone, PartialEq)]
pub struct Vehicle {
    /// Location the vehicle leaves from.
    pub start: usize,
    /// Location the vehicle returns to.
    pub end: usize,
    /// Total demand it may carry.
    pub capacity: u32,
    /// Earliest departure from `start`.
    pub shift_start: f64,
    /// Latest arrival at `end`.
    pub shift_end: f64,
}

/// What the search minimises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Objective {
    /// Fewest vehicles first, then the least distance (Solomon's hierarchical convention).
    VehiclesThenDistance,
    /// The least total distance, whatever the number of vehicles.
    #[default]
    Distance,
}

/// A validated problem: every job and vehicle refers to a location of the metric, windows and
/// shifts are ordered and finite.
#[derive(Debug, Clone)]
pub struct Problem<M> {
    pub(crate) metric: M,
    pub(crate) jobs: Vec<Job>,
    pub(crate) vehicles: Vec<Vehicle>,
}

fn finite_non_negative(v: f64) -> bool {
    v.is_finite() && v >= 0.0
}

impl<M: Metric> Problem<M> {
    /// Checks every job and vehicle against the metric and the bounds.
    pub fn new(metric: M, jobs: Vec<Job>, vehicles: Vec<Vehicle>) -> Result<Self, ModelError> {
        if jobs.len() > MAX_JOBS {
            return Err(ModelError::Size {
                what: "jobs",
                reason: format!("{} jobs, at most {MAX_JOBS}", jobs.len()),
            });
        }
        if vehicles.is_empty() || vehicles.len() > MAX_VEHICLES {
            return Err(ModelError::Size {
                what: "vehicles",
                reason: format!("{} vehicles, between 1 and {MAX_VEHICLES}", vehicles.len()),
            });
        }
        let n = metric.len();
        for (index, j) in jobs.iter().enumerate() {
            let err = |field, reason: String| ModelError::Job {
                index,
                field,
                reason,
            };
            if j.location >= n {
                return Err(err("location", format!("{} is not below {n}", j.location)));
            }
            if !finite_non_negative(j.ready) {
                return Err(err("ready", "must be finite and non-negative".into()));
            }
            if !(j.due.is_finite() && j.due >= j.ready) {
                return Err(err("due", "must be finite and not before ready".into()));
            }
            if !finite_non_negative(j.service) {
                return Err(err("service", "must be finite and non-negative".into()));
            }
        }
        for (index, v) in vehicles.iter().enumerate() {
            let err = |field, reason: String| ModelError::Vehicle {
                index,
                field,
                reason,
            };
            if v.start >= n {
                return Err(err("start", format!("{} is not below {n}", v.start)));
            }
            if v.end >= n {
                return Err(err("end", format!("{} is not below {n}", v.end)));
            }
            if !finite_non_negative(v.shift_start) {
                return Err(err("shift_start", "must be finite and non-negative".into()));
            }
            if !(v.shift_end.is_finite() && v.shift_end >= v.shift_start) {
                return Err(err(
                    "shift_end",
                    "must be finite and not before shift_start".into(),
                ));
            }
        }
        Ok(Self {
            metric,
            jobs,
            vehicles,
        })
    }

    /// The jobs, in the caller's order (a job's index is its identity in the solution).
    pub fn jobs(&self) -> &[Job] {
        &self.jobs
    }

    /// The fleet, in the caller's order.
    pub fn vehicles(&self) -> &[Vehicle] {
        &self.vehicles
    }

    /// The metric the problem was built on.
    pub fn metric(&self) -> &M {
        &self.metric
    }
}

/// One job on a route, with its times.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stop {
    /// Index of the job in the problem.
    pub job: usize,
    /// When the vehicle arrives (the ETA).
    pub arrival: f64,
    /// When service starts: the arrival or, if earlier, the job's ready time.
    pub start: f64,
}

/// One vehicle's route: the jobs in visit order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Route {
    /// Index of the vehicle in the problem.
    pub vehicle: usize,
    /// Departure from the vehicle's start: as late as the schedule allows without delaying
    /// the first service.
    pub departure: f64,
    /// The visits, in order.
    pub stops: Vec<Stop>,
    /// Arrival back at the vehicle's end.
    pub arrival: f64,
    /// Distance from start to end.
    pub distance: f64,
    /// Total demand carried.
    pub load: u32,
}

/// Why a job is left out of every route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UnassignedReason {
    /// Its demand exceeds the capacity of every vehicle.
    Capacity,
    /// No vehicle can reach it within its window and return within its shift, even alone.
    TimeWindow,
    /// It fits some vehicle alone, but not beside the other jobs with the vehicles available.
    FleetExhausted,
}

/// A job no route serves, with the reason.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Unassigned {
    /// Index of the job in the problem.
    pub job: usize,
    /// Why.
    pub reason: UnassignedReason,
}

/// The best solution the search found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Solution {
    /// Non-empty routes, in vehicle order.
    pub routes: Vec<Route>,
    /// Jobs no route serves.
    pub unassigned: Vec<Unassigned>,
    /// Total distance of the routes.
    pub distance: f64,
    /// Ruin-and-recreate iterations the search ran.
    pub iterations: u64,
}

impl Solution {
    /// Vehicles used (non-empty routes).
    pub fn vehicles(&self) -> usize {
        self.routes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metric::Euclidean;

    fn job(location: usize) -> Job {
        Job {
            location,
            demand: 1,
            ready: 0.0,
            due: 10.0,
            service: 1.0,
        }
    }

    fn vehicle() -> Vehicle {
        Vehicle {
            start: 0,
            end: 0,
            capacity: 5,
            shift_start: 0.0,
            shift_end: 100.0,
        }
    }

    fn metric() -> Euclidean {
        Euclidean::new(vec![(0.0, 0.0), (1.0, 1.0)]).expect("valid")
    }

    #[test]
    fn refusals_name_the_field() {
        let bad_location = Problem::new(metric(), vec![job(2)], vec![vehicle()]);
        assert_eq!(
            bad_location.expect_err("refused").to_string(),
            "jobs[0].location: 2 is not below 2"
        );
        let mut j = job(1);
        j.due = -1.0;
        let bad_window = Problem::new(metric(), vec![j], vec![vehicle()]);
        assert_eq!(
            bad_window.expect_err("refused").to_string(),
            "jobs[0].due: must be finite and not before ready"
        );
        let mut v = vehicle();
        v.shift_end = f64::INFINITY;
        let bad_shift = Problem::new(metric(), vec![job(1)], vec![v]);
        assert_eq!(
            bad_shift.expect_err("refused").to_string(),
            "vehicles[0].shift_end: must be finite and not before shift_start"
        );
        let no_fleet = Problem::new(metric(), vec![job(1)], vec![]);
        assert!(matches!(
            no_fleet,
            Err(ModelError::Size {
                what: "vehicles",
                ..
            })
        ));
        let too_many = Problem::new(metric(), vec![job(1); MAX_JOBS + 1], vec![vehicle()]);
        assert!(matches!(
            too_many,
            Err(ModelError::Size { what: "jobs", .. })
        ));
    }
}
