//! Route optimisation requests, pure: a dispatcher's deliveries (jobs) and drivers (vehicles)
//! with times as instants are checked, field by field, and turned into a `titan-route`
//! problem whose clock is seconds from the earliest instant of the request; the solution
//! comes back as routes of the caller's own ids with ETAs as instants.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use titan_kit::input::ident;
use titan_route::{
    Euclidean, Haversine, Job, Matrix, ModelError, Objective, Problem, Settings, SettingsError,
    Solution, UnassignedReason, Vehicle,
};

use super::{Capacity, InputError, Position, Size, TimeWindow};

/// Most jobs one request may carry (the solver allows more, but a request this size already
/// takes seconds to improve).
pub const MAX_JOBS: usize = 1000;
/// Most vehicles one request may carry.
pub const MAX_VEHICLES: usize = 200;
/// Most locations of a caller-supplied matrix: two 500 × 500 matrices of doubles are 4 MB,
/// inside the request size the service decodes.
pub const MAX_MATRIX_LOCATIONS: usize = 500;
/// Longest time at a door, in seconds (as for a stored delivery).
pub const MAX_SERVICE_SECONDS: i64 = 4 * 3600;

/// How travel between locations is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Great-circle metres between `(lat, lng)`, at the configured mean speed.
    Haversine,
    /// Plane distance between `(lat, lng)` read as `(x, y)`, one unit per second.
    Euclidean,
    /// The caller's matrices, locations by index.
    Matrix,
}

titan_kit::names!(MetricKind {
    Haversine => "HAVERSINE",
    Euclidean => "EUCLIDEAN",
    Matrix => "MATRIX",
});

/// A delivery to plan, as the caller sends it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobInput {
    /// The caller's id for it (a delivery's UUID for `AssignRoutes`).
    pub id: String,
    pub lat: f64,
    pub lng: f64,
    /// MATRIX: its location's index.
    pub location: u32,
    pub window_start: DateTime<Utc>,
    pub window_end: DateTime<Utc>,
    pub size: i64,
    pub service_seconds: i64,
}

/// A driver to plan for, as the caller sends it.
#[derive(Debug, Clone, PartialEq)]
pub struct VehicleInput {
    /// The caller's id for it (a driver's UUID for `AssignRoutes`).
    pub id: String,
    pub lat: f64,
    pub lng: f64,
    /// MATRIX: its start's (and end's) index.
    pub location: u32,
    pub capacity: i64,
    pub shift_start: DateTime<Utc>,
    pub shift_end: DateTime<Utc>,
}

/// The whole request.
#[derive(Debug, Clone, PartialEq)]
pub struct OptimizeInput {
    pub metric: MetricKind,
    pub jobs: Vec<JobInput>,
    pub vehicles: Vec<VehicleInput>,
    /// MATRIX: `distances[i * n + j]`, `durations[i * n + j]` (seconds), `n × n`.
    pub distances: Vec<f64>,
    pub durations: Vec<f64>,
    /// 0 for the configured budget; at most that.
    pub budget_ms: u32,
    pub seed: u64,
}

/// What the service's config fixes for every request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// The default and largest time budget.
    pub budget_ms: u32,
    /// Mean road speed for HAVERSINE, in metres per second.
    pub speed_mps: f64,
}

/// A problem over one of the metrics.
#[derive(Debug, Clone)]
pub enum AnyProblem {
    Haversine(Problem<Haversine>),
    Euclidean(Problem<Euclidean>),
    Matrix(Problem<Matrix>),
}

/// A checked request, ready to solve.
#[derive(Debug, Clone)]
pub struct Optimization {
    pub problem: AnyProblem,
    pub settings: Settings,
    origin: DateTime<Utc>,
    job_ids: Vec<String>,
    vehicle_ids: Vec<String>,
}

/// One stop of a planned route.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedStop {
    pub job_id: String,
    pub eta: DateTime<Utc>,
    /// When service starts: the ETA, or the window's start if the driver arrives early.
    pub start: DateTime<Utc>,
}

/// One driver's planned route.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedRoute {
    pub vehicle_id: String,
    pub departure: DateTime<Utc>,
    pub stops: Vec<PlannedStop>,
    pub arrival: DateTime<Utc>,
    pub distance: f64,
    pub load: u32,
}

/// The answer: routes, jobs left out with the reason, the total distance.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    pub routes: Vec<PlannedRoute>,
    pub unassigned: Vec<(String, UnassignedReason)>,
    pub distance: f64,
    pub iterations: u64,
}

fn seconds(origin: DateTime<Utc>, t: DateTime<Utc>) -> f64 {
    (t - origin).num_milliseconds() as f64 / 1000.0
}

fn instant(origin: DateTime<Utc>, s: f64) -> DateTime<Utc> {
    // Solver times are within a few days of the origin: milliseconds fit an i64 easily.
    origin + Duration::milliseconds((s * 1000.0).round() as i64)
}

fn unique_id(
    field: &str,
    id: &str,
    seen: &mut HashMap<String, usize>,
    i: usize,
) -> Result<String, InputError> {
    let id = ident(field, id)?.to_owned();
    if let Some(first) = seen.insert(id.clone(), i) {
        return Err(InputError::new(
            field,
            format!("{id:?} is already at {first}"),
        ));
    }
    Ok(id)
}

fn location(field: &str, kind: MetricKind, lat: f64, lng: f64) -> Result<(f64, f64), InputError> {
    match kind {
        MetricKind::Haversine => {
            let p = Position::parse(field, lat, lng, DateTime::UNIX_EPOCH)?;
            Ok((p.lat, p.lng))
        }
        _ if !(lat.is_finite() && lng.is_finite()) => {
            Err(InputError::new(field, "coordinates must be finite numbers"))
        }
        _ => Ok((lat, lng)),
    }
}

fn index(field: &str, location: u32, n: usize) -> Result<usize, InputError> {
    let i = location as usize;
    if i >= n {
        return Err(InputError::new(
            field,
            format!("is {i}; the matrix has {n} locations"),
        ));
    }
    Ok(i)
}

fn model(e: ModelError) -> InputError {
    // Every field was checked above; what the solver still refuses is the matrix's shape.
    InputError::new("matrix", e.to_string())
}

impl Optimization {
    /// Checks `input` against the bounds and `limits`; a refusal names the first bad field.
    pub fn parse(input: &OptimizeInput, limits: Limits) -> Result<Self, InputError> {
        if input.jobs.is_empty() || input.jobs.len() > MAX_JOBS {
            return Err(InputError::new(
                "jobs",
                format!("has {}; 1 to {MAX_JOBS} are allowed", input.jobs.len()),
            ));
        }
        if input.vehicles.is_empty() || input.vehicles.len() > MAX_VEHICLES {
            return Err(InputError::new(
                "vehicles",
                format!(
                    "has {}; 1 to {MAX_VEHICLES} are allowed",
                    input.vehicles.len()
                ),
            ));
        }
        let budget_ms = match input.budget_ms {
            0 => limits.budget_ms,
            b if b > limits.budget_ms => {
                return Err(InputError::new(
                    "time_budget_ms",
                    format!("is {b}; this cell allows at most {}", limits.budget_ms),
                ));
            }
            b => b,
        };
        let kind = input.metric;
        let n = match kind {
            MetricKind::Matrix => {
                let n = (input.distances.len() as f64).sqrt() as usize;
                if n == 0 || n > MAX_MATRIX_LOCATIONS || n * n != input.distances.len() {
                    return Err(InputError::new(
                        "matrix.distances",
                        format!(
                            "has {} entries; it must be n × n for 1 to {MAX_MATRIX_LOCATIONS} \
                             locations",
                            input.distances.len()
                        ),
                    ));
                }
                if input.durations.len() != input.distances.len() {
                    return Err(InputError::new(
                        "matrix.durations",
                        format!(
                            "has {} entries; distances has {}",
                            input.durations.len(),
                            input.distances.len()
                        ),
                    ));
                }
                n
            }
            _ if !input.distances.is_empty() || !input.durations.is_empty() => {
                return Err(InputError::new(
                    "matrix",
                    format!("is only for metric MATRIX, not {kind}"),
                ));
            }
            _ => 0,
        };
        let origin = input
            .jobs
            .iter()
            .map(|j| j.window_start)
            .chain(input.vehicles.iter().map(|v| v.shift_start))
            .min()
            .unwrap_or(DateTime::UNIX_EPOCH);
        let mut points = Vec::new();
        let mut seen = HashMap::new();
        let mut jobs = Vec::with_capacity(input.jobs.len());
        let mut job_ids = Vec::with_capacity(input.jobs.len());
        for (i, j) in input.jobs.iter().enumerate() {
            let f = |name: &str| format!("jobs[{i}].{name}");
            job_ids.push(unique_id(&f("id"), &j.id, &mut seen, i)?);
            let at = match kind {
                MetricKind::Matrix => index(&f("location"), j.location, n)?,
                _ => {
                    points.push(location(&format!("jobs[{i}]"), kind, j.lat, j.lng)?);
                    points.len() - 1
                }
            };
            let window = TimeWindow::new(&f("window"), j.window_start, j.window_end)?;
            let size = Size::parse(&f("size"), j.size)?;
            if !(0..=MAX_SERVICE_SECONDS).contains(&j.service_seconds) {
                return Err(InputError::new(
                    f("service_seconds"),
                    format!(
                        "is {}; it must be 0 to {MAX_SERVICE_SECONDS}",
                        j.service_seconds
                    ),
                ));
            }
            jobs.push(Job {
                location: at,
                demand: size.get(),
                ready: seconds(origin, window.start),
                due: seconds(origin, window.end),
                service: j.service_seconds as f64,
            });
        }
        let mut seen = HashMap::new();
        let mut vehicles = Vec::with_capacity(input.vehicles.len());
        let mut vehicle_ids = Vec::with_capacity(input.vehicles.len());
        for (i, v) in input.vehicles.iter().enumerate() {
            let f = |name: &str| format!("vehicles[{i}].{name}");
            vehicle_ids.push(unique_id(&f("id"), &v.id, &mut seen, i)?);
            let at = match kind {
                MetricKind::Matrix => index(&f("location"), v.location, n)?,
                _ => {
                    points.push(location(&format!("vehicles[{i}]"), kind, v.lat, v.lng)?);
                    points.len() - 1
                }
            };
            let capacity = Capacity::parse(&f("capacity"), v.capacity)?;
            let shift = TimeWindow::new(&f("shift"), v.shift_start, v.shift_end)?;
            vehicles.push(Vehicle {
                start: at,
                end: at,
                capacity: capacity.get(),
                shift_start: seconds(origin, shift.start),
                shift_end: seconds(origin, shift.end),
            });
        }
        let problem = match kind {
            MetricKind::Haversine => AnyProblem::Haversine(
                Problem::new(
                    Haversine::new(points, limits.speed_mps).map_err(model)?,
                    jobs,
                    vehicles,
                )
                .map_err(model)?,
            ),
            MetricKind::Euclidean => AnyProblem::Euclidean(
                Problem::new(Euclidean::new(points).map_err(model)?, jobs, vehicles)
                    .map_err(model)?,
            ),
            MetricKind::Matrix => AnyProblem::Matrix(
                Problem::new(
                    Matrix::new(n, input.distances.clone(), input.durations.clone())
                        .map_err(model)?,
                    jobs,
                    vehicles,
                )
                .map_err(model)?,
            ),
        };
        Ok(Self {
            problem,
            settings: Settings {
                objective: Objective::Distance,
                seed: input.seed,
                time_limit: Some(std::time::Duration::from_millis(budget_ms.into())),
                max_iterations: None,
            },
            origin,
            job_ids,
            vehicle_ids,
        })
    }

    /// Runs the solver: CPU-bound for up to the budget, so callers run it off the runtime.
    pub fn solve(&self) -> Result<Planned, SettingsError> {
        let solution = match &self.problem {
            AnyProblem::Haversine(p) => titan_route::solve(p, &self.settings),
            AnyProblem::Euclidean(p) => titan_route::solve(p, &self.settings),
            AnyProblem::Matrix(p) => titan_route::solve(p, &self.settings),
        }?;
        Ok(self.answer(&solution))
    }

    /// The solution in the caller's ids and instants.
    pub fn answer(&self, s: &Solution) -> Planned {
        let at = |t: f64| instant(self.origin, t);
        Planned {
            routes: s
                .routes
                .iter()
                .map(|r| PlannedRoute {
                    vehicle_id: self.vehicle_ids[r.vehicle].clone(),
                    departure: at(r.departure),
                    stops: r
                        .stops
                        .iter()
                        .map(|st| PlannedStop {
                            job_id: self.job_ids[st.job].clone(),
                            eta: at(st.arrival),
                            start: at(st.start),
                        })
                        .collect(),
                    arrival: at(r.arrival),
                    distance: r.distance,
                    load: r.load,
                })
                .collect(),
            unassigned: s
                .unassigned
                .iter()
                .map(|u| (self.job_ids[u.job].clone(), u.reason))
                .collect(),
            distance: s.distance,
            iterations: s.iterations,
        }
    }
}

/// The name clients read for an unassigned reason.
pub fn reason_name(r: UnassignedReason) -> &'static str {
    match r {
        UnassignedReason::Capacity => "CAPACITY",
        UnassignedReason::TimeWindow => "TIME_WINDOW",
        UnassignedReason::FleetExhausted => "FLEET_EXHAUSTED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_900_000_000 + s, 0).expect("time")
    }

    fn job(id: &str, x: f64, size: i64) -> JobInput {
        JobInput {
            id: id.into(),
            lat: x,
            lng: 0.0,
            location: 0,
            window_start: t(0),
            window_end: t(3600),
            size,
            service_seconds: 10,
        }
    }

    fn input(jobs: Vec<JobInput>) -> OptimizeInput {
        OptimizeInput {
            metric: MetricKind::Euclidean,
            jobs,
            vehicles: vec![VehicleInput {
                id: "van".into(),
                lat: 0.0,
                lng: 0.0,
                location: 0,
                capacity: 10,
                shift_start: t(0),
                shift_end: t(7200),
            }],
            distances: Vec::new(),
            durations: Vec::new(),
            budget_ms: 0,
            seed: 1,
        }
    }

    const LIMITS: Limits = Limits {
        budget_ms: 50,
        speed_mps: 10.0,
    };

    fn field(r: Result<Optimization, InputError>) -> String {
        r.expect_err("refused").field
    }

    #[test]
    fn a_line_of_jobs_is_visited_in_order_and_an_oversized_one_is_left_out() {
        let o = Optimization::parse(
            &input(vec![
                job("far", 200.0, 2),
                job("near", 100.0, 2),
                job("big", 5.0, 11),
            ]),
            LIMITS,
        )
        .expect("valid");
        let planned = o.solve().expect("solved");
        assert_eq!(planned.routes.len(), 1);
        let r = &planned.routes[0];
        let order: Vec<&str> = r.stops.iter().map(|s| s.job_id.as_str()).collect();
        assert_eq!(order, ["near", "far"]);
        // One unit per second: 100 s to the first, 10 s there, 100 s on.
        assert_eq!(r.stops[0].eta, r.departure + Duration::seconds(100));
        assert_eq!(r.stops[1].eta, r.departure + Duration::seconds(210));
        assert_eq!(r.distance, 400.0);
        assert_eq!(r.load, 4);
        assert_eq!(
            planned.unassigned,
            vec![("big".to_owned(), UnassignedReason::Capacity)]
        );
    }

    #[test]
    fn bad_requests_name_their_field() {
        assert_eq!(field(Optimization::parse(&input(vec![]), LIMITS)), "jobs");
        assert_eq!(
            field(Optimization::parse(
                &input(vec![job("a", 1.0, 1), job("a", 2.0, 1)]),
                LIMITS
            )),
            "jobs[1].id"
        );
        assert_eq!(
            field(Optimization::parse(&input(vec![job("a", 1.0, 0)]), LIMITS)),
            "jobs[0].size"
        );
        let mut slow = input(vec![job("a", 1.0, 1)]);
        slow.budget_ms = 51;
        assert_eq!(field(Optimization::parse(&slow, LIMITS)), "time_budget_ms");
        let mut globe = input(vec![job("a", 91.0, 1)]);
        globe.metric = MetricKind::Haversine;
        assert_eq!(field(Optimization::parse(&globe, LIMITS)), "jobs[0].lat");
        let mut matrix = input(vec![job("a", 0.0, 1)]);
        matrix.metric = MetricKind::Matrix;
        matrix.distances = vec![0.0, 1.0, 1.0];
        assert_eq!(
            field(Optimization::parse(&matrix, LIMITS)),
            "matrix.distances"
        );
        matrix.distances = vec![0.0, 1.0, 1.0, 0.0];
        matrix.durations = vec![0.0, 1.0, 1.0, 0.0];
        matrix.jobs[0].location = 2;
        assert_eq!(
            field(Optimization::parse(&matrix, LIMITS)),
            "jobs[0].location"
        );
        let mut stray = input(vec![job("a", 0.0, 1)]);
        stray.durations = vec![0.0];
        assert_eq!(field(Optimization::parse(&stray, LIMITS)), "matrix");
    }

    #[test]
    fn a_matrix_problem_uses_the_callers_durations() {
        let mut m = input(vec![job("a", 0.0, 1)]);
        m.metric = MetricKind::Matrix;
        m.jobs[0].location = 1;
        m.distances = vec![0.0, 7.0, 7.0, 0.0];
        m.durations = vec![0.0, 30.0, 30.0, 0.0];
        let planned = Optimization::parse(&m, LIMITS)
            .expect("valid")
            .solve()
            .expect("solved");
        let r = &planned.routes[0];
        assert_eq!(r.distance, 14.0);
        assert_eq!(r.stops[0].eta - r.departure, Duration::seconds(30));
    }
}
