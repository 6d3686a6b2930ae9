//! Planning over the real store: a dispatcher optimises stored deliveries for two drivers,
//! then assigns the answer in one transaction, all or nothing, once per request id.

use chrono::Duration;
use titan_driver::{
    app::{AssignedRoute, RouteRequest},
    domain::{
        Delivery, DeliveryStatus, Driver, DriverStatus,
        optimize::{JobInput, MetricKind, OptimizeInput, VehicleInput},
    },
};

use crate::{World, dispatcher, reason, rid, user};

fn job(d: &Delivery, lng: f64) -> JobInput {
    JobInput {
        id: d.id.to_string(),
        lat: 1.30,
        lng,
        location: 0,
        window_start: d.window.start,
        window_end: d.window.end,
        size: d.size.get().into(),
        service_seconds: d.service_seconds.into(),
    }
}

fn vehicle(w: &World, d: &Driver, lng: f64) -> VehicleInput {
    VehicleInput {
        id: d.id.to_string(),
        lat: 1.30,
        lng,
        location: 0,
        capacity: d.capacity.get().into(),
        shift_start: w.clock.now(),
        shift_end: w.clock.now() + Duration::hours(8),
    }
}

#[tokio::test]
async fn optimised_routes_are_assigned_in_one_transaction() {
    let w = World::new().await;
    let ann = w.available("ann", 10).await;
    let bob = w.available("bob", 10).await;
    // Two deliveries near each driver's start, 20 km apart: each driver takes their own two.
    let west: Vec<Delivery> = vec![w.delivery("c1", 3).await, w.delivery("c2", 3).await];
    let east: Vec<Delivery> = vec![w.delivery("c3", 3).await, w.delivery("c4", 3).await];
    let input = OptimizeInput {
        metric: MetricKind::Haversine,
        jobs: vec![
            job(&west[0], 103.70),
            job(&east[0], 103.90),
            job(&west[1], 103.71),
            job(&east[1], 103.91),
        ],
        vehicles: vec![vehicle(&w, &ann, 103.695), vehicle(&w, &bob, 103.905)],
        distances: Vec::new(),
        durations: Vec::new(),
        budget_ms: 0,
        seed: 7,
    };
    assert_eq!(
        reason(w.app.optimize(&user("ann"), &input).await),
        "NOT_A_DISPATCHER"
    );
    let planned = w.app.optimize(&dispatcher(), &input).await.expect("plan");
    assert!(planned.unassigned.is_empty(), "{:?}", planned.unassigned);
    // On a line, either order of a driver's two stops is as short: compare them as sets.
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    let mut by_vehicle: Vec<(String, Vec<String>)> = planned
        .routes
        .iter()
        .map(|r| {
            (
                r.vehicle_id.clone(),
                sorted(r.stops.iter().map(|s| s.job_id.clone()).collect()),
            )
        })
        .collect();
    by_vehicle.sort();
    let mut expected = vec![
        (
            ann.id.to_string(),
            sorted(west.iter().map(|d| d.id.to_string()).collect()),
        ),
        (
            bob.id.to_string(),
            sorted(east.iter().map(|d| d.id.to_string()).collect()),
        ),
    ];
    expected.sort();
    assert_eq!(by_vehicle, expected);
    for r in &planned.routes {
        assert!(r.stops.windows(2).all(|s| s[0].eta <= s[1].eta));
        assert!(r.distance > 0.0 && r.distance < 5_000.0, "{r:?}");
    }
    let routes: Vec<RouteRequest> = planned
        .routes
        .iter()
        .map(|r| {
            (
                r.vehicle_id.clone(),
                r.stops.iter().map(|s| (s.job_id.clone(), s.eta)).collect(),
            )
        })
        .collect();

    // A driver who is no longer AVAILABLE refuses the whole assignment.
    w.app
        .set_status(&user("bob"), &rid(), "ON_BREAK")
        .await
        .expect("break");
    assert_eq!(
        reason(w.app.assign_routes(&dispatcher(), &rid(), &routes).await),
        "DRIVER_NOT_AVAILABLE"
    );
    for d in west.iter().chain(&east) {
        assert_eq!(
            w.app.delivery(d.id).await.expect("d").status,
            DeliveryStatus::Pending
        );
    }
    assert_eq!(
        w.app.driver(ann.id).await.expect("ann").status,
        DriverStatus::Available
    );
    w.app
        .set_status(&user("bob"), &rid(), "AVAILABLE")
        .await
        .expect("back");
    let id = rid();
    let assigned = w
        .app
        .assign_routes(&dispatcher(), &id, &routes)
        .await
        .expect("assign");
    assert_eq!(assigned.len(), 2);
    for (route, (driver, stops)) in assigned.iter().zip(&routes) {
        assert_eq!(route.driver_id.to_string(), *driver);
        let ids: Vec<String> = route
            .stops
            .iter()
            .map(|s| s.delivery_id.to_string())
            .collect();
        assert_eq!(ids, stops.iter().map(|s| s.0.clone()).collect::<Vec<_>>());
    }
    for d in [&ann, &bob] {
        assert_eq!(
            w.app.driver(d.id).await.expect("driver").status,
            DriverStatus::OnDelivery
        );
    }
    for d in west.iter().chain(&east) {
        assert_eq!(
            w.app.delivery(d.id).await.expect("d").status,
            DeliveryStatus::Assigned
        );
    }
    // The same request id replays the same routes.
    let again: Vec<AssignedRoute> = w
        .app
        .assign_routes(&dispatcher(), &id, &routes)
        .await
        .expect("replay");
    assert_eq!(again, assigned);
    assert_eq!(w.events().await.len(), 4);
}

#[tokio::test]
async fn assignments_name_the_bad_field() {
    let w = World::new().await;
    let ann = w.available("ann", 10).await;
    let d = w.delivery("c1", 1).await;
    let now = w.clock.now();
    let (a, did) = (ann.id.to_string(), d.id.to_string());
    let field = |r| match r {
        Err(titan_driver::app::DriverError::Invalid(e)) => e.field,
        other => panic!("expected a refused field, got {other:?}"),
    };
    assert_eq!(
        field(w.app.assign_routes(&dispatcher(), &rid(), &[]).await),
        "routes"
    );
    assert_eq!(
        field(
            w.app
                .assign_routes(
                    &dispatcher(),
                    &rid(),
                    &[
                        (a.clone(), vec![(did.clone(), now)]),
                        (a.clone(), vec![(did.clone(), now)])
                    ]
                )
                .await
        ),
        "routes[1].driver_id"
    );
    assert_eq!(
        field(
            w.app
                .assign_routes(
                    &dispatcher(),
                    &rid(),
                    &[(a.clone(), vec![(did.clone(), now), (did.clone(), now)])]
                )
                .await
        ),
        "routes[0].stops[1].delivery_id"
    );
    assert_eq!(
        field(
            w.app
                .assign_routes(&dispatcher(), &rid(), &[(a, vec![])])
                .await
        ),
        "routes[0].stops"
    );
}
