//! The search: a greedy construction, then ruin-and-recreate after Christiaens & Vanden
//! Berghe's SISR ("Slack Induction by String Removals", Transportation Science 2020): remove a
//! few strings of consecutive jobs from routes near a random job, reinsert the removed jobs
//! one by one at their cheapest feasible position (skipping each position with a small
//! "blink" probability), and accept the result by simulated annealing with a temperature
//! that decays over the budget.
//!
//! Speed is the whole game at a one-second budget, so the inner loop is built to be cheap:
//! - every distance and travel time is read once into flat matrices over "points" (the jobs,
//!   then each distinct vehicle start/end location);
//! - each route keeps, per position, the earliest service start (forward) and the latest
//!   service start that keeps the rest of the route feasible (backward), so whether a job
//!   fits between two neighbours is two additions and two comparisons;
//! - the candidate solution is the current one with the touched routes changed; on accept or
//!   reject only those routes are copied back, into buffers that are reused (no allocation
//!   per iteration).

use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::{
    Settings,
    metric::Metric,
    model::{Objective, Problem, Route, Solution, Stop, Unassigned, UnassignedReason},
};

/// No route: the job is unassigned.
const NONE: u32 = u32::MAX;
/// Safety margin on time-window checks: backward slacks come from subtractions and forward
/// times from additions, and their rounding must never let an insertion past a due time.
const EPS: f64 = 1e-7;
/// SISR's average number of jobs removed per ruin (c̄).
const MEAN_REMOVED: f64 = 10.0;
/// SISR's longest string (L_max).
const MAX_STRING: f64 = 10.0;
/// Probability that a position is skipped while looking for the cheapest one (SISR's blinks):
/// it keeps the greedy reinsertion from always rebuilding the same routes.
const BLINK: f64 = 0.01;
/// Probability that a ruin removes a split string (keeping a middle part) instead of a string.
const SPLIT_RATE: f64 = 0.5;
/// Probability that a split string keeps one more job in its middle part.
const SPLIT_GROWTH: f64 = 0.5;
/// Start and final temperature as multiples of the initial solution's mean arc length.
/// Measured on the 44 Solomon instances at 1 s (titan-bench routes, seed 1): 0.1 → 0.002 gave
/// a mean gap of 1.15–1.39 %, 0.3 → 0.003 1.19 %, 1 → 0.01 0.65 %, 2 → 0.02 0.32 %,
/// 4 → 0.04 0.34 %, 2 → 0.06 0.28 %: a hot start lets a short search leave the greedy
/// construction's basin (a route too many on C2, long type-2 routes in the wrong order).
const T_START: f64 = 2.0;
const T_END: f64 = 0.06;
/// Added to the cost of opening a route when the objective counts vehicles first: a new
/// route is taken only when no open route has a feasible position.
const OPEN_PENALTY: f64 = 1e9;
/// Share of the budget spent removing vehicles when the objective counts them first.
const FLEET_SHARE: f64 = 0.4;
/// Neighbour list length: a ruin walks outwards from its seed job through this many.
const NEIGHBOURS: usize = 128;

#[derive(Debug, Clone, Copy)]
struct VehicleData {
    start: u32,
    end: u32,
    capacity: u32,
    shift_start: f64,
    shift_end: f64,
    /// Vehicles of one class are interchangeable (same start, end, capacity and shift): only
    /// one empty route per class is tried for an insertion.
    class: u32,
}

/// The problem flattened for the search.
#[derive(Debug)]
struct Data {
    jobs: usize,
    points: usize,
    dist: Vec<f64>,
    dur: Vec<f64>,
    ready: Vec<f64>,
    due: Vec<f64>,
    service: Vec<f64>,
    demand: Vec<u32>,
    vehicles: Vec<VehicleData>,
    classes: usize,
    /// `neighbours[j * k..(j + 1) * k]`: the jobs nearest to job `j`, itself first.
    neighbours: Vec<u32>,
    k: usize,
    /// Distance from the nearest vehicle start to each job (recreate orders use it).
    depot_distance: Vec<f64>,
}

impl Data {
    fn new<M: Metric>(problem: &Problem<M>) -> Self {
        let jobs = problem.jobs.len();
        // Points: the jobs, then every distinct start or end location of the fleet.
        let mut location: Vec<usize> = problem.jobs.iter().map(|j| j.location).collect();
        let point_of = |loc: usize, location: &mut Vec<usize>| -> u32 {
            let found = location[jobs..].iter().position(|&l| l == loc);
            let index = found.map_or_else(
                || {
                    location.push(loc);
                    location.len() - 1
                },
                |i| jobs + i,
            );
            u32::try_from(index).unwrap_or(NONE)
        };
        let mut vehicles = Vec::with_capacity(problem.vehicles.len());
        let mut class_keys: Vec<(u32, u32, u32, u64, u64)> = Vec::new();
        for v in &problem.vehicles {
            let start = point_of(v.start, &mut location);
            let end = point_of(v.end, &mut location);
            let key = (
                start,
                end,
                v.capacity,
                v.shift_start.to_bits(),
                v.shift_end.to_bits(),
            );
            let class = class_keys
                .iter()
                .position(|k| *k == key)
                .unwrap_or_else(|| {
                    class_keys.push(key);
                    class_keys.len() - 1
                });
            vehicles.push(VehicleData {
                start,
                end,
                capacity: v.capacity,
                shift_start: v.shift_start,
                shift_end: v.shift_end,
                class: u32::try_from(class).unwrap_or(NONE),
            });
        }
        let points = location.len();
        let mut dist = vec![0.0; points * points];
        let mut dur = vec![0.0; points * points];
        for (p, &lp) in location.iter().enumerate() {
            for (q, &lq) in location.iter().enumerate() {
                dist[p * points + q] = problem.metric.distance(lp, lq);
                dur[p * points + q] = problem.metric.duration(lp, lq);
            }
        }
        let mut ready = vec![0.0; points];
        let mut due = vec![f64::INFINITY; points];
        let mut service = vec![0.0; points];
        let mut demand = vec![0; points];
        for (i, j) in problem.jobs.iter().enumerate() {
            ready[i] = j.ready;
            due[i] = j.due;
            service[i] = j.service;
            demand[i] = j.demand;
        }
        let k = NEIGHBOURS.min(jobs);
        let mut neighbours = Vec::with_capacity(jobs * k);
        let mut order: Vec<u32> = (0..jobs).filter_map(|j| u32::try_from(j).ok()).collect();
        for j in 0..jobs {
            let row = &dist[j * points..j * points + jobs];
            // Itself first (distance 0, ties broken by index so j wins among co-located jobs).
            order.sort_by(|&a, &b| {
                let key = |x: u32| (x as usize != j, row[x as usize]);
                let (ka, kb) = (key(a), key(b));
                ka.0.cmp(&kb.0).then(ka.1.total_cmp(&kb.1)).then(a.cmp(&b))
            });
            neighbours.extend_from_slice(&order[..k]);
        }
        let depot_distance = (0..jobs)
            .map(|j| {
                vehicles
                    .iter()
                    .map(|v| dist[v.start as usize * points + j])
                    .fold(f64::INFINITY, f64::min)
            })
            .collect();
        Self {
            jobs,
            points,
            dist,
            dur,
            ready,
            due,
            service,
            demand,
            vehicles,
            classes: class_keys.len(),
            neighbours,
            k,
            depot_distance,
        }
    }

    #[inline]
    fn d(&self, from: u32, to: u32) -> f64 {
        self.dist[from as usize * self.points + to as usize]
    }

    #[inline]
    fn t(&self, from: u32, to: u32) -> f64 {
        self.dur[from as usize * self.points + to as usize]
    }
}

/// One vehicle's route with its schedule: `nodes` starts and ends with the vehicle's start
/// and end points; `earliest[i]` is the earliest service start at `nodes[i]` and `latest[i]`
/// the latest one that keeps every later node on time.
#[derive(Debug, Clone)]
struct RouteState {
    nodes: Vec<u32>,
    earliest: Vec<f64>,
    latest: Vec<f64>,
    load: u32,
    cost: f64,
}

impl RouteState {
    fn empty(d: &Data, v: &VehicleData) -> Self {
        let mut r = Self {
            nodes: vec![v.start, v.end],
            earliest: Vec::new(),
            latest: Vec::new(),
            load: 0,
            cost: 0.0,
        };
        r.update(d, v);
        r
    }

    fn is_empty(&self) -> bool {
        self.nodes.len() == 2
    }

    /// Becomes a copy of `other` in the buffers it already has.
    fn copy_from(&mut self, other: &Self) {
        self.nodes.clone_from(&other.nodes);
        self.earliest.clone_from(&other.earliest);
        self.latest.clone_from(&other.latest);
        self.load = other.load;
        self.cost = other.cost;
    }

    /// Recomputes the schedule, load and distance after `nodes` changed.
    fn update(&mut self, d: &Data, v: &VehicleData) {
        let n = self.nodes.len();
        self.earliest.resize(n, 0.0);
        self.latest.resize(n, 0.0);
        self.earliest[0] = v.shift_start;
        let (mut cost, mut load) = (0.0, 0u32);
        for i in 1..n {
            let (u, w) = (self.nodes[i - 1], self.nodes[i]);
            let arrival = self.earliest[i - 1] + d.service[u as usize] + d.t(u, w);
            self.earliest[i] = arrival.max(d.ready[w as usize]);
            cost += d.d(u, w);
            load = load.saturating_add(d.demand[w as usize]);
        }
        self.latest[n - 1] = v.shift_end;
        for i in (0..n - 1).rev() {
            let (u, w) = (self.nodes[i], self.nodes[i + 1]);
            let latest = self.latest[i + 1] - d.t(u, w) - d.service[u as usize];
            self.latest[i] = latest.min(d.due[u as usize]);
        }
        self.cost = cost;
        self.load = load;
    }
}

/// A solution under search: one route slot per vehicle (empty or not).
#[derive(Debug, Clone)]
struct State {
    routes: Vec<RouteState>,
    route_of: Vec<u32>,
    unassigned: Vec<u32>,
    distance: f64,
    used: usize,
}

impl State {
    fn empty(d: &Data) -> Self {
        Self {
            routes: d.vehicles.iter().map(|v| RouteState::empty(d, v)).collect(),
            route_of: vec![NONE; d.jobs],
            unassigned: Vec::new(),
            distance: 0.0,
            used: 0,
        }
    }

    fn totals(&mut self) {
        self.distance = self.routes.iter().map(|r| r.cost).sum();
        self.used = self.routes.iter().filter(|r| !r.is_empty()).count();
    }

    /// Copies the routes listed in `dirty` and the assignment from `other`.
    fn copy_routes_from(&mut self, other: &Self, dirty: &[u32]) {
        for &r in dirty {
            self.routes[r as usize].copy_from(&other.routes[r as usize]);
        }
        self.route_of.copy_from_slice(&other.route_of);
        self.unassigned.clone_from(&other.unassigned);
        self.distance = other.distance;
        self.used = other.used;
    }

    fn copy_all_from(&mut self, other: &Self) {
        for (mine, theirs) in self.routes.iter_mut().zip(&other.routes) {
            mine.copy_from(theirs);
        }
        self.route_of.copy_from_slice(&other.route_of);
        self.unassigned.clone_from(&other.unassigned);
        self.distance = other.distance;
        self.used = other.used;
    }

    /// Strictly better under `objective`: fewer unassigned jobs, then (when counted) fewer
    /// vehicles, then less distance.
    fn better_than(&self, other: &Self, objective: Objective) -> bool {
        if self.unassigned.len() != other.unassigned.len() {
            return self.unassigned.len() < other.unassigned.len();
        }
        if objective == Objective::VehiclesThenDistance && self.used != other.used {
            return self.used < other.used;
        }
        self.distance < other.distance - 1e-9
    }
}

/// The order the removed jobs are reinserted in (SISR's weights 4:4:2:1).
#[derive(Debug, Clone, Copy)]
enum Order {
    Random,
    DemandDescending,
    FarFirst,
    CloseFirst,
}

struct Search<'a> {
    d: &'a Data,
    objective: Objective,
    rng: ChaCha8Rng,
    removed: Vec<u32>,
    dirty: Vec<u32>,
    is_dirty: Vec<bool>,
    class_tried: Vec<bool>,
    keys: Vec<(f64, u32)>,
}

impl<'a> Search<'a> {
    fn new(d: &'a Data, objective: Objective, seed: u64) -> Self {
        Self {
            d,
            objective,
            rng: ChaCha8Rng::seed_from_u64(seed),
            removed: Vec::with_capacity(d.jobs),
            dirty: Vec::with_capacity(d.vehicles.len()),
            is_dirty: vec![false; d.vehicles.len()],
            class_tried: vec![false; d.classes],
            keys: Vec::with_capacity(d.jobs),
        }
    }

    fn mark(&mut self, r: u32) {
        if !self.is_dirty[r as usize] {
            self.is_dirty[r as usize] = true;
            self.dirty.push(r);
        }
    }

    fn clear_dirty(&mut self) {
        for &r in &self.dirty {
            self.is_dirty[r as usize] = false;
        }
        self.dirty.clear();
    }

    /// SISR's fleet minimisation: empty the route with the fewest jobs, then ruin and
    /// recreate without opening routes, accepting a candidate that leaves fewer jobs out or,
    /// as many, jobs that were out less often so far (each job counts the iterations it spent
    /// unassigned, so the hard ones get inserted first). Every complete solution found is the
    /// new best, and another route is emptied, until `done` says the phase is over.
    fn minimise_fleet(
        &mut self,
        current: &mut State,
        candidate: &mut State,
        best: &mut State,
        iterations: &mut u64,
        mut done: impl FnMut(u64) -> bool,
    ) {
        let mut absent = vec![0u64; self.d.jobs];
        let absence = |s: &State, absent: &[u64]| -> u64 {
            s.unassigned.iter().map(|&c| absent[c as usize]).sum()
        };
        'routes: while best.unassigned.is_empty() && best.used > 1 && !done(*iterations) {
            current.copy_all_from(best);
            let smallest = (0..current.routes.len())
                .filter(|&r| !current.routes[r].is_empty())
                .min_by_key(|&r| current.routes[r].nodes.len());
            let Some(r) = smallest else { return };
            let route = &mut current.routes[r];
            for &c in &route.nodes[1..route.nodes.len() - 1] {
                current.route_of[c as usize] = NONE;
                current.unassigned.push(c);
            }
            route.nodes.drain(1..route.nodes.len() - 1);
            route.update(self.d, &self.d.vehicles[r]);
            current.totals();
            candidate.copy_all_from(current);
            while !done(*iterations) {
                self.ruin(candidate);
                self.recreate(candidate, false);
                for &c in &candidate.unassigned {
                    absent[c as usize] += 1;
                }
                *iterations += 1;
                let fewer = candidate.unassigned.len() < current.unassigned.len();
                let accept = fewer
                    || (candidate.unassigned.len() == current.unassigned.len()
                        && absence(candidate, &absent) < absence(current, &absent));
                if accept {
                    current.copy_routes_from(candidate, &self.dirty);
                } else {
                    candidate.copy_routes_from(current, &self.dirty);
                }
                self.clear_dirty();
                if current.unassigned.is_empty() {
                    best.copy_all_from(current);
                    continue 'routes;
                }
            }
        }
    }

    /// Removes strings of jobs from routes near a random job into `self.removed`.
    fn ruin(&mut self, s: &mut State) {
        self.removed.clear();
        let assigned = self.d.jobs - s.unassigned.len();
        if assigned == 0 || s.used == 0 {
            return;
        }
        let mean_len = assigned as f64 / s.used as f64;
        let max_len = MAX_STRING.min(mean_len);
        let max_strings = 4.0 * MEAN_REMOVED / (1.0 + max_len) - 1.0;
        let strings = self.rng.random_range(1.0..max_strings.max(1.0) + 1.0) as usize;
        let seed = loop {
            let j = self.rng.random_range(0..self.d.jobs);
            if s.route_of[j] != NONE {
                break j;
            }
        };
        let k = self.d.k;
        let mut ruined = 0;
        for n in 0..k {
            if ruined >= strings {
                break;
            }
            let c = self.d.neighbours[seed * k + n];
            let r = s.route_of[c as usize];
            if r == NONE || self.is_dirty[r as usize] {
                continue;
            }
            self.mark(r);
            ruined += 1;
            let route = &mut s.routes[r as usize];
            let jobs = route.nodes.len() - 2;
            let len_max = (jobs as f64).min(max_len);
            let len = (self.rng.random_range(1.0..len_max + 1.0) as usize).clamp(1, jobs);
            let pos = route.nodes.iter().position(|&x| x == c).unwrap_or(1);
            // Keep a middle part of `keep` jobs (a split string) or none (a plain string).
            let mut keep = 0;
            if len < jobs && self.rng.random_bool(SPLIT_RATE) {
                keep = 1;
                while keep < jobs - len && self.rng.random_bool(SPLIT_GROWTH) {
                    keep += 1;
                }
            }
            let total = len + keep;
            // The string covers nodes[first..first + total], contains pos and stays within
            // the jobs (nodes 1..=jobs).
            let lo = pos.saturating_sub(total - 1).max(1);
            let hi = pos.min(jobs + 1 - total);
            let first = self.rng.random_range(lo..=hi);
            let kept_from = first + self.rng.random_range(0..=len);
            let mut i = 0;
            let removed = &mut self.removed;
            let route_of = &mut s.route_of;
            route.nodes.retain(|&x| {
                let inside = i >= first && i < first + total;
                let kept = i >= kept_from && i < kept_from + keep;
                i += 1;
                if inside && !kept {
                    removed.push(x);
                    route_of[x as usize] = NONE;
                    false
                } else {
                    true
                }
            });
            route.update(self.d, &self.d.vehicles[r as usize]);
        }
    }

    /// Reinserts `self.removed` (and the previously unassigned jobs) greedily.
    fn recreate(&mut self, s: &mut State, allow_new_routes: bool) {
        let order = match self.rng.random_range(0..11) {
            0..4 => Order::Random,
            4..8 => Order::DemandDescending,
            8..10 => Order::FarFirst,
            _ => Order::CloseFirst,
        };
        self.removed.append(&mut s.unassigned);
        self.keys.clear();
        for &c in &self.removed {
            let key = match order {
                Order::Random => self.rng.random::<f64>(),
                Order::DemandDescending => -f64::from(self.d.demand[c as usize]),
                Order::FarFirst => -self.d.depot_distance[c as usize],
                Order::CloseFirst => self.d.depot_distance[c as usize],
            };
            self.keys.push((key, c));
        }
        self.keys
            .sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        for i in 0..self.keys.len() {
            let c = self.keys[i].1;
            match self.best_insertion(s, c, allow_new_routes) {
                Some((r, pos)) => {
                    let route = &mut s.routes[r];
                    route.nodes.insert(pos, c);
                    route.update(self.d, &self.d.vehicles[r]);
                    s.route_of[c as usize] = r as u32;
                    self.mark(r as u32);
                }
                None => s.unassigned.push(c),
            }
        }
        s.totals();
    }

    /// The cheapest feasible position for job `c`: (route, index in its nodes).
    fn best_insertion(
        &mut self,
        s: &State,
        c: u32,
        allow_new_routes: bool,
    ) -> Option<(usize, usize)> {
        let d = self.d;
        let ci = c as usize;
        let (ready, due, service, demand) = (d.ready[ci], d.due[ci], d.service[ci], d.demand[ci]);
        let hierarchical = self.objective == Objective::VehiclesThenDistance;
        self.class_tried.fill(false);
        let mut best = f64::INFINITY;
        let mut found = None;
        for (r, route) in s.routes.iter().enumerate() {
            let v = &d.vehicles[r];
            let mut penalty = 0.0;
            if route.is_empty() {
                if !allow_new_routes || self.class_tried[v.class as usize] {
                    continue;
                }
                self.class_tried[v.class as usize] = true;
                if hierarchical {
                    penalty = OPEN_PENALTY;
                }
            }
            if u64::from(route.load) + u64::from(demand) > u64::from(v.capacity) {
                continue;
            }
            for i in 0..route.nodes.len() - 1 {
                let (u, w) = (route.nodes[i], route.nodes[i + 1]);
                let delta = d.d(u, c) + d.d(c, w) - d.d(u, w) + penalty;
                if delta >= best {
                    continue;
                }
                let start = (route.earliest[i] + d.service[u as usize] + d.t(u, c)).max(ready);
                if start > due - EPS {
                    continue;
                }
                if start + service + d.t(c, w) > route.latest[i + 1] - EPS {
                    continue;
                }
                if self.rng.random_bool(BLINK) {
                    continue;
                }
                best = delta;
                found = Some((r, i + 1));
            }
        }
        found
    }
}

/// Runs the search on a validated problem.
pub(crate) fn run<M: Metric>(problem: &Problem<M>, settings: &Settings) -> Solution {
    let started = Instant::now();
    let d = Data::new(problem);
    let mut search = Search::new(&d, settings.objective, settings.seed);
    let mut current = State::empty(&d);
    search.removed.extend(0..d.jobs as u32);
    search.recreate(&mut current, true);
    search.clear_dirty();
    let mut candidate = current.clone();
    let mut best = current.clone();

    let arcs = (d.jobs + current.used).max(1) as f64;
    let scale = (current.distance / arcs).max(f64::MIN_POSITIVE);
    let (t_start, t_end) = (T_START * scale, T_END * scale);
    let mut iterations = 0u64;
    let progress = |iterations| settings.progress(iterations, started.elapsed());
    if settings.objective == Objective::VehiclesThenDistance {
        search.minimise_fleet(
            &mut current,
            &mut candidate,
            &mut best,
            &mut iterations,
            |i| progress(i) >= FLEET_SHARE,
        );
        current.copy_all_from(&best);
        candidate.copy_all_from(&best);
    }
    let first = progress(iterations);
    loop {
        let p = progress(iterations);
        if p >= 1.0 || d.jobs == 0 {
            break;
        }
        // The temperature decays over what is left of the budget after the fleet phase.
        let share = ((p - first) / (1.0 - first).max(f64::MIN_POSITIVE)).clamp(0.0, 1.0);
        let temperature = t_start * (t_end / t_start).powf(share);
        search.ruin(&mut candidate);
        search.recreate(&mut candidate, true);
        let accept = if candidate.unassigned.len() != current.unassigned.len()
            || (settings.objective == Objective::VehiclesThenDistance
                && candidate.used != current.used)
        {
            candidate.better_than(&current, settings.objective)
        } else {
            // Simulated annealing: a worse candidate passes with probability
            // exp(-(worse by) / temperature).
            let threshold = -temperature * search.rng.random::<f64>().ln();
            candidate.distance < current.distance + threshold
        };
        if accept {
            current.copy_routes_from(&candidate, &search.dirty);
            if current.better_than(&best, settings.objective) {
                best.copy_all_from(&current);
            }
        } else {
            candidate.copy_routes_from(&current, &search.dirty);
        }
        search.clear_dirty();
        iterations += 1;
    }
    solution(problem, &d, &best, iterations)
}

/// The public solution of a search state, with reasons for every unassigned job.
fn solution<M: Metric>(problem: &Problem<M>, d: &Data, s: &State, iterations: u64) -> Solution {
    let mut routes = Vec::new();
    for (r, route) in s.routes.iter().enumerate() {
        if route.is_empty() {
            continue;
        }
        let v = &d.vehicles[r];
        let n = route.nodes.len();
        // Leave as late as the first service allows: waiting at the depot, not at the door.
        let first = route.nodes[1];
        let departure = (route.earliest[1] - d.t(v.start, first)).max(v.shift_start);
        let mut stops = Vec::with_capacity(n - 2);
        let mut previous_end = departure;
        for i in 1..n - 1 {
            let (u, w) = (route.nodes[i - 1], route.nodes[i]);
            let arrival = previous_end + d.t(u, w);
            stops.push(Stop {
                job: w as usize,
                arrival,
                start: route.earliest[i],
            });
            previous_end = route.earliest[i] + d.service[w as usize];
        }
        routes.push(Route {
            vehicle: r,
            departure,
            stops,
            arrival: route.earliest[n - 1],
            distance: route.cost,
            load: route.load,
        });
    }
    let mut unassigned: Vec<Unassigned> = s
        .unassigned
        .iter()
        .map(|&c| Unassigned {
            job: c as usize,
            reason: reason(problem, d, c),
        })
        .collect();
    unassigned.sort_by_key(|u| u.job);
    Solution {
        distance: routes.iter().map(|r| r.distance).sum(),
        routes,
        unassigned,
        iterations,
    }
}

/// Why job `c` could not be served: too big for every vehicle, unreachable in its window by
/// every vehicle alone, or only crowded out.
fn reason<M: Metric>(problem: &Problem<M>, d: &Data, c: u32) -> UnassignedReason {
    let ci = c as usize;
    let big = problem
        .vehicles
        .iter()
        .all(|v| v.capacity < problem.jobs[ci].demand);
    if big {
        return UnassignedReason::Capacity;
    }
    let reachable = d.vehicles.iter().any(|v| {
        let start = (v.shift_start + d.t(v.start, c)).max(d.ready[ci]);
        v.capacity >= d.demand[ci]
            && start <= d.due[ci]
            && start + d.service[ci] + d.t(c, v.end) <= v.shift_end
    });
    if reachable {
        UnassignedReason::FleetExhausted
    } else {
        UnassignedReason::TimeWindow
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::{Euclidean, Job, Vehicle};

    /// Recomputes a route from the public problem: its distance, or why it is infeasible.
    fn verify(problem: &Problem<Euclidean>, route: &Route) -> Result<f64, String> {
        let m = problem.metric();
        let v = &problem.vehicles()[route.vehicle];
        let (mut at, mut time, mut load, mut distance) = (v.start, v.shift_start, 0u32, 0.0);
        for stop in &route.stops {
            let j = &problem.jobs()[stop.job];
            time = (time + m.duration(at, j.location)).max(j.ready);
            distance += m.distance(at, j.location);
            if time > j.due + 1e-6 {
                return Err(format!("job {} late: {time} > {}", stop.job, j.due));
            }
            if (time - stop.start).abs() > 1e-6 {
                return Err(format!(
                    "job {} starts at {time}, reported {}",
                    stop.job, stop.start
                ));
            }
            time += j.service;
            load += j.demand;
            at = j.location;
        }
        time += m.duration(at, v.end);
        distance += m.distance(at, v.end);
        if time > v.shift_end + 1e-6 {
            return Err(format!(
                "vehicle {} back at {time} > {}",
                route.vehicle, v.shift_end
            ));
        }
        if load > v.capacity || load != route.load {
            return Err(format!("vehicle {} load {load}", route.vehicle));
        }
        Ok(distance)
    }

    prop_compose! {
        fn problems()(
            points in prop::collection::vec((0.0..100.0f64, 0.0..100.0f64), 2..30),
            vehicles in prop::collection::vec((0..3usize, 1..40u32, 0.0..50.0f64, 100.0..400.0f64), 1..6),
            windows in prop::collection::vec((0..12u32, 0.0..300.0f64, 0.0..200.0f64, 0.0..10.0f64), 1..25),
        ) -> Problem<Euclidean> {
            let n = points.len();
            let jobs = windows
                .iter()
                .enumerate()
                .map(|(i, &(demand, ready, width, service))| Job {
                    location: 3.min(n - 1) + i % (n - 3.min(n - 1)),
                    demand,
                    ready,
                    due: ready + width,
                    service,
                })
                .collect();
            let fleet = vehicles
                .iter()
                .map(|&(depot, capacity, shift_start, length)| Vehicle {
                    start: depot % n,
                    end: (depot + 1) % n,
                    capacity,
                    shift_start,
                    shift_end: shift_start + length,
                })
                .collect();
            Problem::new(Euclidean::new(points).expect("finite"), jobs, fleet).expect("valid")
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Whatever the fleet and windows, every route is feasible, every job is on exactly one
        /// route or unassigned with a reason, and the reported figures are the recomputed ones.
        #[test]
        fn solutions_are_feasible_and_complete(problem in problems(), seed in 0..1000u64, hierarchical in any::<bool>()) {
            let settings = Settings {
                objective: if hierarchical { Objective::VehiclesThenDistance } else { Objective::Distance },
                seed,
                time_limit: None,
                max_iterations: Some(200),
            };
            let solution = crate::solve(&problem, &settings).expect("bounded");
            let mut seen = vec![0; problem.jobs().len()];
            let mut total = 0.0;
            for route in &solution.routes {
                prop_assert!(!route.stops.is_empty());
                let distance = verify(&problem, route).map_err(TestCaseError::fail)?;
                prop_assert!((distance - route.distance).abs() < 1e-6);
                total += distance;
                for s in &route.stops {
                    seen[s.job] += 1;
                }
            }
            for u in &solution.unassigned {
                seen[u.job] += 1;
                let job = &problem.jobs()[u.job];
                if u.reason == UnassignedReason::Capacity {
                    prop_assert!(problem.vehicles().iter().all(|v| v.capacity < job.demand));
                }
            }
            prop_assert!(seen.iter().all(|&n| n == 1), "{:?}", seen);
            prop_assert!((total - solution.distance).abs() < 1e-6);
            let vehicles: std::collections::BTreeSet<usize> = solution.routes.iter().map(|r| r.vehicle).collect();
            prop_assert_eq!(vehicles.len(), solution.routes.len());
        }
    }

    #[test]
    fn a_job_too_big_or_too_late_for_every_vehicle_is_unassigned_with_its_reason() {
        let points = vec![(0.0, 0.0), (10.0, 0.0), (0.0, 10.0), (5.0, 5.0)];
        let job = |location, demand, due| Job {
            location,
            demand,
            ready: 0.0,
            due,
            service: 0.0,
        };
        let vehicle = Vehicle {
            start: 0,
            end: 0,
            capacity: 5,
            shift_start: 0.0,
            shift_end: 100.0,
        };
        let problem = Problem::new(
            Euclidean::new(points).expect("finite"),
            vec![
                job(1, 6, 50.0),
                job(2, 1, 5.0),
                job(3, 5, 50.0),
                job(1, 5, 50.0),
            ],
            vec![vehicle],
        )
        .expect("valid");
        let settings = Settings {
            objective: Objective::Distance,
            seed: 1,
            time_limit: None,
            max_iterations: Some(50),
        };
        let solution = crate::solve(&problem, &settings).expect("bounded");
        let reasons: Vec<(usize, UnassignedReason)> = solution
            .unassigned
            .iter()
            .map(|u| (u.job, u.reason))
            .collect();
        // Job 0 needs 6 > 5; job 1 is 10 away and due at 5; jobs 2 and 3 each fill the one
        // vehicle, so the longer one (job 3, 20 there and back against 14.1) waits outside.
        assert_eq!(
            reasons,
            vec![
                (0, UnassignedReason::Capacity),
                (1, UnassignedReason::TimeWindow),
                (3, UnassignedReason::FleetExhausted)
            ]
        );
        assert_eq!(solution.routes.len(), 1);
        assert_eq!(solution.routes[0].stops.len(), 1);
        assert_eq!(solution.routes[0].stops[0].job, 2);
    }

    #[test]
    fn neither_limit_is_refused() {
        let problem = Problem::new(
            Euclidean::new(vec![(0.0, 0.0)]).expect("finite"),
            vec![],
            vec![Vehicle {
                start: 0,
                end: 0,
                capacity: 1,
                shift_start: 0.0,
                shift_end: 1.0,
            }],
        )
        .expect("valid");
        let unbounded = Settings {
            objective: Objective::Distance,
            seed: 0,
            time_limit: None,
            max_iterations: None,
        };
        assert_eq!(
            crate::solve(&problem, &unbounded),
            Err(crate::SettingsError::Unbounded)
        );
    }
}
