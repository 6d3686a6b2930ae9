//! Records from shipping's events, driver events in any arrival order, the two views, the
//! refusals, append-only events and concurrent appends.

use titan_kit::{events::HandlerError, testing::caller};
use titan_tracking::{
    app::{Appended, Lookup, TrackingStore},
    domain::{NewEvent, Status},
    store::pg::PgTracking,
};

use crate::{
    World, at, delivery, field, kinds, lookup, owner, reason, shipment_created, stranger, support,
};

#[tokio::test]
async fn a_shipment_becomes_a_created_record_once() {
    let w = World::new().await;
    let created = shipment_created("ship-1", "fr0000000000000001", "flat-rate");
    w.deliver(&created).await.expect("created");
    // The same envelope again (a relay duplicate past kit's check) appends nothing.
    w.deliver(&created).await.expect("again");
    // Another envelope for the same shipment (shipping emitted it twice) neither.
    w.shipment("ship-1", "FR0000000000000001").await;
    let page = w
        .app
        .track(&lookup("FR0000000000000001"))
        .await
        .expect("track");
    assert_eq!(page.record.status, Status::Created);
    assert_eq!(page.record.carrier, "flat-rate");
    assert_eq!(page.record.owner_id, crate::OWNER);
    assert_eq!(page.record.event_count, 1);
    assert_eq!(kinds(&page), [("CREATED", true)]);
    assert_eq!(page.events[0].0.at, at(0));
    assert_eq!(page.events[0].0.source, "shipping");
    assert_eq!(page.events[0].0.source_event_id, created.id.to_string());
    // Lower case finds it too; the number of another shipment is refused for good.
    assert!(w.app.track(&lookup("fr0000000000000001")).await.is_ok());
    match w
        .deliver(&shipment_created(
            "ship-2",
            "FR0000000000000001",
            "flat-rate",
        ))
        .await
    {
        Err(HandlerError::Permanent(m)) => {
            assert!(m.contains("already tracks shipment ship-1"), "{m}")
        }
        other => panic!("expected a permanent refusal, got {other:?}"),
    }
    // A payload without a usable number or carrier is dead-lettered at once.
    for bad in [
        shipment_created("ship-3", "no", "flat-rate"),
        shipment_created("ship-3", "FR0000000000000003", "Flat Rate"),
    ] {
        assert!(matches!(
            w.deliver(&bad).await,
            Err(HandlerError::Permanent(_))
        ));
    }
    // Carrier names as shipping allows them, dots included.
    w.deliver(&shipment_created(
        "ship-4",
        "DH0000000000000004",
        "dhl-express.asia",
    ))
    .await
    .expect("a carrier with a dot");
    assert_eq!(w.count("SELECT count(*) FROM tracking_records").await, 2);
}

#[tokio::test]
async fn driver_events_walk_the_record_to_delivered_in_any_arrival_order() {
    let w = World::new().await;
    let n = "FR00000000000000AA";
    w.shipment("ship-1", n).await;
    // Completed arrives before the departure and the arrival it follows.
    for e in [
        delivery("completed", "ship-1", 300),
        delivery("assigned", "ship-1", 100),
        delivery("in_transit", "ship-1", 200),
        delivery("at_location", "ship-1", 250),
    ] {
        w.deliver(&e).await.expect("delivered");
    }
    let full = w.app.get(&support(), &lookup(n)).await.expect("full");
    assert_eq!(full.record.status, Status::Delivered);
    assert_eq!(
        kinds(&full),
        [
            ("CREATED", true),
            ("OUT_FOR_DELIVERY", true),
            ("OUT_FOR_DELIVERY", true),
            ("DELIVERED", true)
        ]
    );
    assert!(
        full.events[1]
            .0
            .note
            .starts_with("the driver departed (delivery "),
        "{:?}",
        full.events[1].0.note
    );
    assert_eq!(full.events[3].0.source, "driver");
    assert_eq!(
        full.record.coordinates.map(|c| (c.lat, c.lng)),
        Some((1.30, 103.80))
    );
    // A late failure after delivery is kept, flagged, and moves nothing.
    w.deliver(&delivery("failed", "ship-1", 400))
        .await
        .expect("late failure");
    let full = w.app.get(&support(), &lookup(n)).await.expect("full");
    assert_eq!(full.record.status, Status::Delivered);
    assert_eq!(
        full.events.last().map(|(e, a)| (e.kind, *a)),
        Some((Status::Exception, false))
    );
    assert_eq!(full.total, 5);
    // The recipient's view: only what moved the status.
    let public = w.app.track(&lookup(n)).await.expect("public");
    assert_eq!(public.total, 4);
    assert_eq!(
        kinds(&public),
        [
            ("CREATED", true),
            ("OUT_FOR_DELIVERY", true),
            ("OUT_FOR_DELIVERY", true),
            ("DELIVERED", true)
        ]
    );
}

#[tokio::test]
async fn an_exception_recovers_through_a_rescheduled_delivery() {
    let w = World::new().await;
    let n = "FR00000000000000AB";
    w.shipment("ship-1", n).await;
    for e in [
        delivery("in_transit", "ship-1", 10),
        delivery("failed", "ship-1", 20),
        delivery("rescheduled", "ship-1", 30),
        delivery("in_transit", "ship-1", 40),
    ] {
        w.deliver(&e).await.expect("delivered");
    }
    let page = w
        .app
        .get(&caller("ops", &["admin"]), &lookup(n))
        .await
        .expect("admin");
    assert_eq!(
        kinds(&page),
        [
            ("CREATED", true),
            ("OUT_FOR_DELIVERY", true),
            ("EXCEPTION", true),
            ("IN_TRANSIT", true),
            ("OUT_FOR_DELIVERY", true)
        ]
    );
    assert_eq!(page.record.status, Status::OutForDelivery);
}

#[tokio::test]
async fn events_for_unknown_shipments_are_retried_and_cancellations_are_final() {
    let w = World::new().await;
    match w.deliver(&delivery("completed", "ship-9", 10)).await {
        Err(HandlerError::Retry(m)) => {
            assert!(m.contains("no tracking record for shipment ship-9"), "{m}")
        }
        other => panic!("expected a retry, got {other:?}"),
    }
    let mut broken = delivery("completed", "ship-9", 10);
    broken.payload = serde_json::json!({"shipment_id": "ship-9"});
    assert!(matches!(
        w.deliver(&broken).await,
        Err(HandlerError::Permanent(_))
    ));
    assert_eq!(w.count("SELECT count(*) FROM tracking_events").await, 0);
    // Cancelled before pickup: final; a driver event after it is kept and ignored.
    w.shipment("ship-1", "FR00000000000000AC").await;
    let cancel = titan_kit::events::Envelope::new(
        "test",
        "shipping.shipment_cancelled",
        1,
        &serde_json::json!({"shipment_id": "ship-1", "cancelled_at": at(50)}),
    )
    .expect("envelope");
    w.deliver(&cancel).await.expect("cancelled");
    w.deliver(&delivery("in_transit", "ship-1", 60))
        .await
        .expect("late");
    let page = w
        .app
        .get(&support(), &lookup("FR00000000000000AC"))
        .await
        .expect("page");
    assert_eq!(page.record.status, Status::Cancelled);
    assert_eq!(
        kinds(&page),
        [
            ("CREATED", true),
            ("CANCELLED", true),
            ("OUT_FOR_DELIVERY", false)
        ]
    );
}

#[tokio::test]
async fn lookups_refuse_bad_input_naming_the_field_and_strangers_the_full_view() {
    let w = World::new().await;
    w.shipment("ship-1", "FR00000000000000AD").await;
    let n = "FR00000000000000AD";
    for (l, expected) in [
        (
            Lookup {
                tracking_number: "",
                ..lookup(n)
            },
            "tracking_number",
        ),
        (
            Lookup {
                tracking_number: "AB-1234567",
                ..lookup(n)
            },
            "tracking_number",
        ),
        (
            Lookup {
                carrier: "Flat Rate",
                ..lookup(n)
            },
            "carrier",
        ),
        (
            Lookup {
                page_size: 101,
                ..lookup(n)
            },
            "page_size",
        ),
        (
            Lookup {
                page_token: "-1",
                ..lookup(n)
            },
            "page_token",
        ),
    ] {
        assert_eq!(field(w.app.track(&l).await), expected);
        assert_eq!(field(w.app.get(&support(), &l).await), expected);
    }
    assert_eq!(
        field(w.app.subscribe(&support(), "x", "").await),
        "tracking_number"
    );
    assert_eq!(
        reason(w.app.track(&lookup("FR0000000000000099")).await),
        "NOT_FOUND"
    );
    assert_eq!(
        reason(w.app.get(&stranger(), &lookup(n)).await),
        "NOT_ALLOWED"
    );
    // Not even the buyer who owns the shipment: the full view has the internal notes.
    assert_eq!(reason(w.app.get(&owner(), &lookup(n)).await), "NOT_ALLOWED");
    assert!(
        w.app
            .get(&caller("checkout", &["service"]), &lookup(n))
            .await
            .is_ok()
    );
    // The same number with two carriers: a lookup must name one.
    w.deliver(&shipment_created("ship-2", n, "acme"))
        .await
        .expect("acme");
    assert_eq!(field(w.app.track(&lookup(n)).await), "carrier");
    let acme = w
        .app
        .track(&Lookup {
            carrier: "acme",
            ..lookup(n)
        })
        .await
        .expect("acme");
    assert_eq!(acme.record.shipment_id, "ship-2");
}

fn scan(id: &str, kind: Status, seconds: i64) -> NewEvent {
    NewEvent {
        source_event_id: id.to_owned(),
        kind,
        location: format!("hub {id}"),
        coordinates: None,
        at: at(seconds),
        note: "internal".into(),
        estimated_delivery: None,
    }
}

#[tokio::test]
async fn history_pages_in_time_order() {
    let w = World::new().await;
    let n = "FR00000000000000AE";
    w.shipment("ship-1", n).await;
    let store = PgTracking::new(w.db.pool.clone(), w.clock.clock());
    let id = w.app.track(&lookup(n)).await.expect("record").record.id;
    for i in (1..=5).rev() {
        store
            .append(
                id,
                "carrier:flat-rate",
                &scan(&format!("s{i}"), Status::InTransit, i * 10),
            )
            .await
            .expect("append");
    }
    let first = w
        .app
        .track(&Lookup {
            page_size: 4,
            ..lookup(n)
        })
        .await
        .expect("first");
    assert_eq!(first.events.len(), 4);
    assert_eq!(first.next, Some(4));
    let second = w
        .app
        .track(&Lookup {
            page_size: 4,
            page_token: "4",
            ..lookup(n)
        })
        .await
        .expect("second");
    assert_eq!(second.next, None);
    let places: Vec<String> = first
        .events
        .iter()
        .chain(&second.events)
        .map(|(e, _)| e.location.clone())
        .collect();
    assert_eq!(
        places,
        ["", "hub s1", "hub s2", "hub s3", "hub s4", "hub s5"]
    );
    assert_eq!(second.record.location, "hub s5");
}

#[tokio::test]
async fn events_are_append_only() {
    let w = World::new().await;
    w.shipment("ship-1", "FR00000000000000AF").await;
    for sql in [
        "UPDATE tracking_events SET note = 'rewritten'",
        "DELETE FROM tracking_events",
        "TRUNCATE tracking_events",
    ] {
        let err = sqlx::query(sql).execute(&w.db.pool).await.expect_err(sql);
        assert!(
            err.to_string().contains("appended, never changed"),
            "{sql}: {err}"
        );
    }
    assert_eq!(
        w.count("SELECT count(*) FROM tracking_events WHERE note <> 'rewritten'")
            .await,
        1
    );
    // And no statement of the service tries.
    for file in ["src/store/pg.rs", "src/store/consumer.rs", "src/app.rs"] {
        let text = std::fs::read_to_string(file).expect(file).to_lowercase();
        for forbidden in ["update tracking_events", "delete from tracking_events"] {
            assert!(!text.contains(forbidden), "{file} holds {forbidden:?}");
        }
    }
}

#[tokio::test]
async fn concurrent_appends_to_one_record_all_count() {
    let w = World::new().await;
    let n = "FR00000000000000B0";
    w.shipment("ship-1", n).await;
    let store = PgTracking::new(w.db.pool.clone(), w.clock.clock());
    let id = w.app.track(&lookup(n)).await.expect("record").record.id;
    let mut tasks = Vec::new();
    for i in 0..20_i64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            // Each scan twice at once: one appends, the other is a duplicate.
            let event = scan(&format!("c{i}"), Status::InTransit, 100 - i);
            let (a, b) = tokio::join!(
                store.append(id, "carrier:acme", &event),
                store.append(id, "carrier:acme", &event)
            );
            [a.expect("a"), b.expect("b")]
        }));
    }
    let mut fresh = 0;
    for t in tasks {
        for outcome in t.await.expect("task") {
            if matches!(outcome, Appended::Fresh(_)) {
                fresh += 1;
            }
        }
    }
    assert_eq!(fresh, 20);
    let page = w
        .app
        .get(
            &support(),
            &Lookup {
                page_size: 100,
                ..lookup(n)
            },
        )
        .await
        .expect("page");
    assert_eq!(page.record.event_count, 21);
    assert_eq!(page.total, 21);
    // The stored place is the latest scan's (c0 at 100 s), whichever committed last.
    assert_eq!(page.record.location, "hub c0");
    assert_eq!(page.record.status, Status::InTransit);
}
