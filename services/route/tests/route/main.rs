//! The solver on Solomon instances, every solution verified by [`checker`], which reads the
//! instance on its own and shares no code with the solver.

mod checker;

use std::{collections::BTreeMap, time::Duration};

use titan_route::{Objective, Settings, Solution, solomon};

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/solomon");

fn read(name: &str) -> String {
    let path = format!("{DATA}/{name}");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

/// `(instance, objective) -> (vehicles, distance)` from best-known.csv.
fn best_known() -> BTreeMap<(String, String), (usize, f64)> {
    read("best-known.csv")
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let vehicles = f[2].parse().expect("vehicles");
            let distance = f[3].parse().expect("distance");
            ((f[0].to_owned(), f[1].to_owned()), (vehicles, distance))
        })
        .collect()
}

/// The solution's routes as the file's customer numbers.
fn customer_routes(instance: &solomon::Instance, solution: &Solution) -> Vec<Vec<u32>> {
    solution
        .routes
        .iter()
        .map(|r| r.stops.iter().map(|s| instance.customers[s.job]).collect())
        .collect()
}

fn solve(name: &str, settings: &Settings) -> (String, solomon::Instance, Solution) {
    let text = read(&format!("{name}.txt"));
    let instance = solomon::parse(&text).expect("instance parses");
    let solution = titan_route::solve(&instance.problem, settings).expect("settings valid");
    (text, instance, solution)
}

#[test]
fn every_solution_is_feasible_and_measured_as_the_checker_measures_it() {
    let known = best_known();
    // One instance per class, at a short budget: feasibility is checked, not quality.
    for (name, objective) in [
        ("C101", Objective::Distance),
        ("R101", Objective::Distance),
        ("RC105", Objective::VehiclesThenDistance),
        ("R202", Objective::Distance),
        ("C204", Objective::VehiclesThenDistance),
        ("RC208", Objective::Distance),
    ] {
        let settings = Settings {
            objective,
            seed: 7,
            time_limit: Some(Duration::from_millis(200)),
            max_iterations: None,
        };
        let (text, instance, solution) = solve(name, &settings);
        assert!(
            solution.unassigned.is_empty(),
            "{name}: {:?}",
            solution.unassigned
        );
        let checked = checker::check(&text, &customer_routes(&instance, &solution))
            .unwrap_or_else(|e| panic!("{name}: infeasible: {e}"));
        assert_eq!(checked.vehicles, solution.vehicles(), "{name}");
        assert!(
            (checked.distance - solution.distance).abs() < 1e-6,
            "{name}: solver says {}, checker {}",
            solution.distance,
            checked.distance
        );
        // The truncated-distance optimum bounds every double-precision distance from below,
        // and the hierarchical best-known vehicle count bounds every fleet.
        let (_, bound) = known[&(name.to_owned(), "distance-trunc1".to_owned())];
        let (fewest, _) = known[&(name.to_owned(), "hierarchical".to_owned())];
        assert!(
            checked.distance >= bound,
            "{name}: {} below the optimum {bound}",
            checked.distance
        );
        assert!(
            checked.vehicles >= fewest,
            "{name}: {} vehicles",
            checked.vehicles
        );
    }
}

#[test]
fn the_same_seed_and_iteration_limit_give_the_same_solution() {
    let settings = |seed| Settings {
        objective: Objective::Distance,
        seed,
        time_limit: None,
        max_iterations: Some(300),
    };
    let (text, instance, first) = solve("R103", &settings(3));
    let (_, _, again) = solve("R103", &settings(3));
    assert_eq!(first, again);
    assert_eq!(first.iterations, 300);
    checker::check(&text, &customer_routes(&instance, &first)).expect("feasible");
    let (_, _, other) = solve("R103", &settings(4));
    assert_ne!(
        first.routes, other.routes,
        "another seed searches elsewhere"
    );
}

#[test]
fn the_hierarchical_objective_uses_fewer_vehicles_than_distance_only() {
    let settings = |objective| Settings {
        objective,
        seed: 1,
        time_limit: None,
        max_iterations: Some(2_000),
    };
    let (text, instance, fleet) = solve("R101", &settings(Objective::VehiclesThenDistance));
    let (_, _, distance) = solve("R101", &settings(Objective::Distance));
    checker::check(&text, &customer_routes(&instance, &fleet)).expect("feasible");
    assert!(
        fleet.vehicles() < distance.vehicles(),
        "hierarchical {} vehicles, distance-only {}",
        fleet.vehicles(),
        distance.vehicles()
    );
}

#[test]
fn the_checker_refuses_what_is_infeasible() {
    let text = read("C101.txt");
    let all: Vec<u32> = (1..=100).collect();
    // Each customer alone: feasible in C101 (every window is reachable from the depot).
    let alone: Vec<Vec<u32>> = all.iter().map(|&c| vec![c]).collect();
    assert!(
        checker::check(&text, &alone).is_err_and(|e| e.contains("100 routes for a fleet of 25"))
    );
    let (instance_text, instance, solution) = solve(
        "C101",
        &Settings {
            objective: Objective::Distance,
            seed: 1,
            time_limit: None,
            max_iterations: Some(100),
        },
    );
    let mut routes = customer_routes(&instance, &solution);
    checker::check(&instance_text, &routes).expect("feasible");
    // The same routes with a capacity of 10 (the fleet line is "25 200").
    let small = instance_text.replacen("200", "10", 1);
    assert!(checker::check(&small, &routes).is_err_and(|e| e.contains("above capacity 10")));
    // Reversing a route of C101's tight windows makes it late somewhere.
    routes[0].reverse();
    assert!(checker::check(&instance_text, &routes).is_err_and(|e| e.contains("after")));
    routes[0].reverse();
    let dropped = routes[0].pop().expect("non-empty route");
    assert!(checker::check(&instance_text, &routes).is_err_and(|e| e.contains("on no route")));
    routes[1].push(dropped);
    routes[0].push(dropped);
    assert!(checker::check(&instance_text, &routes).is_err_and(|e| e.contains("on routes")));
}
