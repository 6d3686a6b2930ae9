//! The rules over the real store, each outcome asserted exactly.

use chrono::Duration;
use titan_driver::domain::{DeliveryStatus, DriverStatus, gps::MAX_PLAUSIBLE_SPEED_MPS};
use titan_kit::objects::ObjectKey;

use titan_driver::app::NewDriver;

use crate::{JPEG, World, dispatcher, photo_proof, reason, rid, user};

#[tokio::test]
async fn a_driver_registers_once_off_duty_and_bad_input_stores_nothing() {
    let w = World::new().await;
    let ann = user("ann");
    let id = rid();
    let ann_form = NewDriver {
        name: "Ann",
        phone: "+65 6123 4567",
        email: "ann@Example.com",
        vehicle_type: "CAR",
        capacity: 40,
    };
    let d = w
        .app
        .register(&ann, &id, &ann_form)
        .await
        .expect("register");
    assert_eq!(d.status, DriverStatus::OffDuty);
    assert_eq!(
        (d.phone.as_str(), d.email.as_str()),
        ("+6561234567", "ann@example.com")
    );
    let again = w.app.register(&ann, &id, &ann_form).await.expect("replay");
    assert_eq!(again.id, d.id);
    assert_eq!(
        reason(
            w.app
                .register(
                    &ann,
                    &rid(),
                    &NewDriver {
                        name: "Ann",
                        phone: "+6561234567",
                        email: "a@b.co",
                        vehicle_type: "CAR",
                        capacity: 40
                    }
                )
                .await
        ),
        "ALREADY_REGISTERED"
    );
    let bob = user("bob");
    match w
        .app
        .register(
            &bob,
            &rid(),
            &NewDriver {
                name: "Bob",
                phone: "61234567",
                email: "b@b.co",
                vehicle_type: "CAR",
                capacity: 40,
            },
        )
        .await
    {
        Err(titan_driver::app::DriverError::Invalid(e)) => assert_eq!(e.field, "phone"),
        other => panic!("expected an invalid phone, got {other:?}"),
    }
    assert_eq!(reason(w.app.me(&bob).await), "NOT_A_DRIVER");
}

#[tokio::test]
async fn status_changes_follow_the_machine() {
    let w = World::new().await;
    let ann = user("ann");
    w.app
        .register(
            &ann,
            &rid(),
            &NewDriver {
                name: "Ann",
                phone: "+6561234567",
                email: "a@b.co",
                vehicle_type: "VAN",
                capacity: 100,
            },
        )
        .await
        .expect("register");
    assert_eq!(
        reason(w.app.set_status(&ann, &rid(), "ON_BREAK").await),
        "ILLEGAL_TRANSITION"
    );
    assert_eq!(
        reason(w.app.set_status(&ann, &rid(), "ON_DELIVERY").await),
        "INVALID_ARGUMENT"
    );
    let d = w
        .app
        .set_status(&ann, &rid(), "AVAILABLE")
        .await
        .expect("available");
    assert_eq!(d.status, DriverStatus::Available);
    let d = w
        .app
        .set_status(&ann, &rid(), "ON_BREAK")
        .await
        .expect("break");
    assert_eq!(d.status, DriverStatus::OnBreak);
    let d = w
        .app
        .set_status(&ann, &rid(), "OFF_DUTY")
        .await
        .expect("off");
    assert_eq!(d.status, DriverStatus::OffDuty);
}

#[tokio::test]
async fn positions_move_forward_and_jumps_are_flagged() {
    let w = World::new().await;
    let ann = user("ann");
    w.available("ann", 10).await;
    let t0 = w.clock.now();
    let first = w
        .app
        .report_position(&ann, 1.30, 103.80, t0)
        .await
        .expect("first");
    assert!(!first.implausible);
    assert_eq!(
        reason(w.app.report_position(&ann, 1.30, 103.80, t0).await),
        "POSITION_NOT_AFTER_LAST"
    );
    assert_eq!(
        reason(
            w.app
                .report_position(&ann, 1.30, 103.80, t0 + Duration::seconds(31))
                .await
        ),
        "POSITION_IN_THE_FUTURE"
    );
    assert_eq!(
        reason(w.app.report_position(&ann, 91.0, 103.80, t0).await),
        "INVALID_ARGUMENT"
    );
    w.clock.advance(Duration::seconds(10));
    // 0.1° of latitude (11 km) in 10 s.
    let jump = w
        .app
        .report_position(&ann, 1.40, 103.80, t0 + Duration::seconds(10))
        .await
        .expect("jump");
    assert!(jump.implausible && jump.speed_mps > Some(MAX_PLAUSIBLE_SPEED_MPS));
    let me = w.app.me(&ann).await.expect("me");
    assert_eq!(
        me.location.map(|p| (p.lat, p.at)),
        Some((1.40, t0 + Duration::seconds(10)))
    );
    let history: Vec<(f64, bool)> =
        sqlx::query_as("SELECT lat, implausible FROM driver_positions ORDER BY at")
            .fetch_all(&w.db.pool)
            .await
            .expect("history");
    assert_eq!(history, [(1.30, false), (1.40, true)]);
}

#[tokio::test]
async fn routes_go_only_to_available_drivers_with_room_all_or_nothing() {
    let w = World::new().await;
    let ann = w.available("ann", 10).await;
    let a = w.delivery("cus", 6).await;
    let b = w.delivery("cus", 5).await;
    let now = w.clock.now();
    let stops =
        |ids: &[&titan_driver::domain::Delivery]| -> Vec<(String, chrono::DateTime<chrono::Utc>)> {
            ids.iter()
                .enumerate()
                .map(|(i, d)| (d.id.to_string(), now + Duration::minutes(10 * i as i64)))
                .collect()
        };
    let id = ann.id.to_string();
    assert_eq!(
        reason(
            w.app
                .assign_route(&user("eve"), &rid(), &id, &stops(&[&a]))
                .await
        ),
        "NOT_A_DISPATCHER"
    );
    assert_eq!(
        reason(
            w.app
                .assign_route(&dispatcher(), &rid(), &id, &stops(&[&a, &b]))
                .await
        ),
        "OVER_CAPACITY"
    );
    // Nothing moved: both still PENDING, the driver still AVAILABLE.
    for d in [&a, &b] {
        let d = w.app.delivery(d.id).await.expect("delivery");
        assert_eq!(d.status, DeliveryStatus::Pending);
    }
    assert_eq!(
        w.app.driver(ann.id).await.expect("driver").status,
        DriverStatus::Available
    );
    let route = w
        .app
        .assign_route(&dispatcher(), &rid(), &id, &stops(&[&a]))
        .await
        .expect("assign");
    assert_eq!(route.stops.len(), 1);
    assert_eq!(
        w.app.driver(ann.id).await.expect("driver").status,
        DriverStatus::OnDelivery
    );
    let a_now = w.app.delivery(a.id).await.expect("a");
    assert_eq!(
        (a_now.status, a_now.route_id),
        (DeliveryStatus::Assigned, Some(route.id))
    );
    // Busy now: a second route is refused, and so is a delivery already on a route.
    assert_eq!(
        reason(
            w.app
                .assign_route(&dispatcher(), &rid(), &id, &stops(&[&b]))
                .await
        ),
        "DRIVER_NOT_AVAILABLE"
    );
    let bob = w.available("bob", 100).await;
    assert_eq!(
        reason(
            w.app
                .assign_route(
                    &dispatcher(),
                    &rid(),
                    &bob.id.to_string(),
                    &stops(&[&b, &a])
                )
                .await
        ),
        "ILLEGAL_TRANSITION"
    );
    assert_eq!(
        w.app.delivery(b.id).await.expect("b").status,
        DeliveryStatus::Pending
    );
    assert_eq!(
        w.app.driver(bob.id).await.expect("bob").status,
        DriverStatus::Available
    );
    assert_eq!(w.events().await, ["driver.delivery_assigned"]);
}

#[tokio::test]
async fn a_route_runs_to_its_last_stop_and_frees_the_driver() {
    let w = World::new().await;
    let trip = w.trip("ann").await;
    let (ann, ann_caller) = (trip.driver, trip.caller);
    let (aid, bid) = (trip.a.id.to_string(), trip.b.id.to_string());
    // Someone else's delivery, and a proof before arrival, are refused; nothing is uploaded.
    let bob = w.available("bob", 10).await;
    assert_eq!(bob.status, DriverStatus::Available);
    assert_eq!(
        reason(w.app.advance(&user("bob"), &rid(), &aid, "DEPART").await),
        "NOT_THE_DRIVER"
    );
    assert_eq!(
        reason(
            w.app
                .complete(&ann_caller, &rid(), &aid, photo_proof("Cy"))
                .await
        ),
        "ILLEGAL_TRANSITION"
    );
    let photo_key = ObjectKey::new(["driver", "proofs", &aid, "photo"]).expect("key");
    assert!(w.objects.storage.head(&photo_key).await.is_err());
    assert_eq!(
        reason(w.app.advance(&ann_caller, &rid(), &aid, "COMPLETE").await),
        "INVALID_ARGUMENT"
    );
    w.app
        .advance(&ann_caller, &rid(), &aid, "DEPART")
        .await
        .expect("depart");
    let route: String = sqlx::query_scalar("SELECT status FROM driver_routes")
        .fetch_one(&w.db.pool)
        .await
        .expect("route");
    assert_eq!(route, "IN_PROGRESS");
    w.app
        .advance(&ann_caller, &rid(), &aid, "ARRIVE")
        .await
        .expect("arrive");
    w.clock.advance(Duration::minutes(30));
    let done = w
        .app
        .complete(&ann_caller, &rid(), &aid, photo_proof("Cy"))
        .await
        .expect("complete");
    assert_eq!(done.status, DeliveryStatus::Completed);
    assert_eq!(done.finished_at, Some(w.clock.now()));
    let info = w
        .objects
        .storage
        .head(&photo_key)
        .await
        .expect("photo stored");
    assert_eq!(
        (info.size, info.content_type.as_deref()),
        (JPEG.len() as u64, Some("image/jpeg"))
    );
    assert_eq!(
        w.app.driver(ann.id).await.expect("ann").status,
        DriverStatus::OnDelivery
    );
    // The last stop fails: the route completes and the driver is AVAILABLE again.
    w.app
        .advance(&ann_caller, &rid(), &bid, "DEPART")
        .await
        .expect("depart b");
    w.app
        .advance(&ann_caller, &rid(), &bid, "FAIL")
        .await
        .expect("fail b");
    let route: String = sqlx::query_scalar("SELECT status FROM driver_routes")
        .fetch_one(&w.db.pool)
        .await
        .expect("route");
    assert_eq!(route, "COMPLETED");
    let ann = w.app.driver(ann.id).await.expect("ann");
    assert_eq!(ann.status, DriverStatus::Available);
    let p = ann.performance;
    assert_eq!((p.completed, p.failed, p.on_time), (1, 1, 1));
    assert_eq!(
        w.events().await,
        [
            "driver.delivery_assigned",
            "driver.delivery_assigned",
            "driver.delivery_in_transit",
            "driver.delivery_at_location",
            "driver.delivery_completed",
            "driver.delivery_in_transit",
            "driver.delivery_failed",
        ]
    );
}

#[tokio::test]
async fn a_customer_rates_a_completed_delivery_once() {
    let w = World::new().await;
    let trip = w.trip("ann").await;
    let (ann, ann_caller) = (trip.driver, trip.caller);
    let (aid, bid) = (trip.a.id.to_string(), trip.b.id.to_string());
    w.deliver(&ann_caller, &aid).await;
    w.app
        .advance(&ann_caller, &rid(), &bid, "DEPART")
        .await
        .expect("depart");
    w.app
        .advance(&ann_caller, &rid(), &bid, "FAIL")
        .await
        .expect("fail");
    let cus = user("cus");
    assert_eq!(
        reason(w.app.rate(&user("eve"), &rid(), &aid, 5).await),
        "NOT_THE_CUSTOMER"
    );
    assert_eq!(
        reason(w.app.rate(&cus, &rid(), &bid, 5).await),
        "NOT_RATEABLE"
    );
    assert_eq!(
        reason(w.app.rate(&cus, &rid(), &aid, 6).await),
        "INVALID_ARGUMENT"
    );
    let id = rid();
    let p = w.app.rate(&cus, &id, &aid, 4).await.expect("rate");
    assert_eq!((p.rating(), p.ratings), (Some(4.0), 1));
    // A retry answers the same; a second rating is refused and counts nothing.
    assert_eq!(w.app.rate(&cus, &id, &aid, 4).await.expect("replay"), p);
    assert_eq!(
        reason(w.app.rate(&cus, &rid(), &aid, 2).await),
        "ALREADY_RATED"
    );
    let ann = w.app.driver(ann.id).await.expect("ann");
    assert_eq!(ann.performance.rating(), Some(4.0));
}

#[tokio::test]
async fn a_rescheduled_last_stop_completes_the_route_and_can_go_on_another() {
    let w = World::new().await;
    let trip = w.trip("ann").await;
    let (ann, ann_caller) = (trip.driver, trip.caller);
    let (aid, bid) = (trip.a.id.to_string(), trip.b.id.to_string());
    w.deliver(&ann_caller, &aid).await;
    let now = w.clock.now();
    let (start, end) = (
        now + Duration::days(1),
        now + Duration::days(1) + Duration::hours(2),
    );
    assert_eq!(
        reason(
            w.app
                .reschedule(&ann_caller, &rid(), &bid, start, end)
                .await
        ),
        "NOT_A_DISPATCHER"
    );
    assert_eq!(
        reason(
            w.app
                .reschedule(&dispatcher(), &rid(), &aid, start, end)
                .await
        ),
        "ILLEGAL_TRANSITION"
    );
    assert_eq!(
        reason(
            w.app
                .reschedule(&dispatcher(), &rid(), &bid, end, start)
                .await
        ),
        "INVALID_ARGUMENT"
    );
    let moved = w
        .app
        .reschedule(&dispatcher(), &rid(), &bid, start, end)
        .await
        .expect("reschedule");
    assert_eq!(moved.status, DeliveryStatus::Rescheduled);
    assert_eq!((moved.window.start, moved.window.end), (start, end));
    let ann = w.app.driver(ann.id).await.expect("ann");
    assert_eq!(ann.status, DriverStatus::Available);
    assert_eq!((ann.performance.completed, ann.performance.failed), (1, 0));
    let bob = w.available("bob", 10).await;
    let route = w
        .app
        .assign_route(
            &dispatcher(),
            &rid(),
            &bob.id.to_string(),
            &[(bid.clone(), start)],
        )
        .await
        .expect("reassign");
    let b = w.app.delivery(trip.b.id).await.expect("b");
    assert_eq!(
        (b.status, b.route_id, b.driver_id),
        (DeliveryStatus::Assigned, Some(route.id), Some(bob.id))
    );
    assert_eq!(
        w.events().await.last().map(String::as_str),
        Some("driver.delivery_assigned")
    );
    assert!(
        w.events()
            .await
            .iter()
            .any(|e| e == "driver.delivery_rescheduled")
    );
}
