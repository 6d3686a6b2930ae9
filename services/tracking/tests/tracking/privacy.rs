//! A person's export and erasure (`titan_kit::privacy`) on real PostgreSQL and Redis: the
//! export holds exactly the records they own with their events (a carrier's notes, no
//! coordinates); the erasure keeps every record and event under the pseudonym with the
//! coordinates and carriers' notes blanked, the events' trigger still refusing every other
//! change; appends go on afterwards; a second run changes nothing.

use serde_json::{Value, json};
use sqlx::PgPool;
use titan_kit::{
    events::Envelope,
    privacy::{Erasure, PersonalData},
    testing::{
        mentions,
        privacy::{subject, unique},
    },
};
use titan_tracking::{
    app::Record,
    domain::{Coordinates, NewEvent, Status},
    store::privacy::PersonalStore,
};

use crate::{World, at, delivery, epoch, lookup, support};

/// `shipping.shipment_created` for `owner`'s `shipment`.
fn created(shipment: &str, number: &str, carrier: &str, owner: &str) -> Envelope {
    Envelope::new(
        "test",
        "shipping.shipment_created",
        1,
        &json!({
            "shipment_id": shipment, "order_id": "order-1", "tracking_number": number,
            "carrier": carrier, "service_level": "standard", "owner_id": owner,
            "created_at": epoch(),
        }),
    )
    .expect("envelope")
}

/// A carrier's scan at `seconds`, with coordinates and a note naming the recipient.
fn scan(id: &str, number: &str, seconds: i64, note: &str) -> (String, NewEvent) {
    (
        number.to_owned(),
        NewEvent {
            source_event_id: id.to_owned(),
            kind: Status::PickedUp,
            location: "Tuas depot".into(),
            coordinates: Some(Coordinates {
                lat: 1.32,
                lng: 103.64,
            }),
            at: at(seconds),
            note: note.to_owned(),
            estimated_delivery: None,
        },
    )
}

/// (records, events, events with coordinates, statuses in order): what the erasure keeps.
async fn totals(pool: &PgPool) -> (i64, i64, i64, Vec<String>) {
    let (records, events, placed): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM tracking_records), (SELECT count(*) FROM tracking_events),
                (SELECT count(*) FROM tracking_events WHERE lat IS NOT NULL)",
    )
    .fetch_one(pool)
    .await
    .expect("totals");
    let statuses = sqlx::query_scalar("SELECT status FROM tracking_records ORDER BY shipment_id")
        .fetch_all(pool)
        .await
        .expect("statuses");
    (records, events, placed, statuses)
}

async fn record(w: &World, number: &str) -> Record {
    w.app
        .get(&support(), &lookup(number))
        .await
        .expect("record")
        .record
}

/// A record as the export holds it, with its events.
fn exported(r: &Record, events: Value) -> Value {
    json!({
        "tracking_number": r.tracking_number, "carrier": r.carrier,
        "shipment_id": r.shipment_id, "order_id": r.order_id,
        "service_level": r.service_level, "status": r.status.as_str(),
        "location": r.location, "estimated_delivery": r.estimated_delivery,
        "created_at": r.created_at, "updated_at": r.updated_at, "events": events,
    })
}

#[tokio::test]
async fn an_erased_owner_keeps_records_under_a_pseudonym_without_coordinates_or_notes() {
    let w = World::new().await;
    let (a, b) = (unique("ann"), unique("bob"));
    let tag = &a[4..12];
    let (sa1, sa2, sb1) = (unique("sa1"), unique("sa2"), unique("sb1"));
    let (na1, na2, nb1) = ("ACME0000A1", "FRA0000002", "ACME0000B1");
    w.deliver(&created(&sa1, na1, "acme", &a))
        .await
        .expect("a1");
    w.deliver(&created(&sa2, na2, "flat-rate", &a))
        .await
        .expect("a2");
    w.deliver(&created(&sb1, nb1, "acme", &b))
        .await
        .expect("b1");
    let ann_note = format!("left with neighbour of Ann {tag}");
    w.app
        .receive(
            "acme",
            &vec![
                scan(&unique("acme"), na1, 10, &ann_note),
                scan(&unique("acme"), nb1, 10, "signed by Bob"),
            ],
        )
        .await
        .expect("scans");
    for (what, shipment, seconds) in [
        ("in_transit", &sa1, 20),
        ("completed", &sa1, 30),
        ("completed", &sb1, 30),
    ] {
        w.deliver(&delivery(what, shipment, seconds))
            .await
            .expect(what);
    }

    let p = PersonalStore::new(w.db.pool.clone());
    let (sa, sb) = (subject(&a), subject(&b));
    let made = json!({"kind": "CREATED", "location": "", "at": epoch(), "note": null});
    let (ra1, ra2) = (record(&w, na1).await, record(&w, na2).await);
    assert_eq!(ra1.status, Status::Delivered);
    assert_eq!(
        PersonalData::export(&p, &sa).await.expect("export"),
        json!({
            "user_id": a,
            "records": [
                exported(&ra1, json!([
                    made.clone(),
                    {"kind": "PICKED_UP", "location": "Tuas depot", "at": at(10),
                     "note": ann_note},
                    {"kind": "OUT_FOR_DELIVERY", "location": "", "at": at(20), "note": null},
                    {"kind": "DELIVERED", "location": "", "at": at(30), "note": null},
                ])),
                exported(&ra2, json!([made])),
            ],
        })
    );
    let bob_before = PersonalData::export(&p, &sb).await.expect("bob");
    assert_eq!(
        bob_before["records"][0]["events"][1]["note"],
        json!("signed by Bob")
    );
    let before = totals(&w.db.pool).await;
    assert_eq!(before.0, 3);
    assert_eq!(before.1, 8);
    assert_eq!(before.2, 5);

    assert_eq!(
        mentions::postgres_in(&w.db.pool, "tracking_", &a).await,
        [("tracking_records".to_owned(), 2)]
    );
    // The tag is in Ann's id on her records, and in the carrier's note.
    assert_eq!(
        mentions::postgres_in(&w.db.pool, "tracking_", tag).await,
        [
            ("tracking_events".to_owned(), 1),
            ("tracking_records".to_owned(), 2)
        ]
    );

    let erased = PersonalData::erase(&p, &sa).await.expect("erase");
    assert_eq!(
        erased,
        Erasure::default()
            .pseudonymised("tracking records", 2)
            // The scan (coordinates and note) and the two driver events (coordinates).
            .pseudonymised("tracking events", 3)
    );

    assert_eq!(
        mentions::postgres_in(&w.db.pool, "tracking_", &a).await,
        vec![]
    );
    assert_eq!(
        mentions::postgres_in(&w.db.pool, "tracking_", tag).await,
        vec![]
    );
    assert_eq!(
        mentions::redis(&w.redis.handle, &a).await,
        Vec::<String>::new(),
        "redis names ann"
    );
    let after = totals(&w.db.pool).await;
    assert_eq!(
        (after.0, after.1, after.2, &after.3),
        (3, 8, 2, &before.3),
        "every record and event stays, only bob's coordinates"
    );
    let kept = record(&w, na1).await;
    assert_eq!(
        (
            &kept.owner_id,
            kept.coordinates,
            kept.status,
            kept.event_count
        ),
        (&sa.pseudonym, None, Status::Delivered, 4)
    );
    let notes: Vec<String> = w
        .app
        .get(&support(), &lookup(na1))
        .await
        .expect("page")
        .events
        .into_iter()
        .map(|(e, _)| e.note)
        .collect();
    assert_eq!(notes[1], "", "the carrier's note is blanked");
    assert!(notes[2].starts_with("the driver departed"), "{notes:?}");
    assert_eq!(
        PersonalData::export(&p, &sb).await.expect("bob after"),
        bob_before
    );

    // The trigger lets nothing else through, even during an erasure.
    let mut tx = w.db.pool.begin().await.expect("begin");
    sqlx::query("SET LOCAL tracking.erasure = 'on'")
        .execute(&mut *tx)
        .await
        .expect("set");
    let refused = sqlx::query(
        "UPDATE tracking_events SET location = '' WHERE record_id = $1 AND location <> ''",
    )
    .bind(kept.id)
    .execute(&mut *tx)
    .await
    .map_err(|e| e.to_string());
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.contains("tracking events are appended, never changed or deleted")),
        "{refused:?}"
    );
    drop(tx);
    let refused = sqlx::query("UPDATE tracking_events SET lat = NULL, lng = NULL")
        .execute(&w.db.pool)
        .await;
    assert!(refused.is_err(), "outside an erasure nothing changes");

    // The kept record takes appends as before.
    w.deliver(&delivery("in_transit", &sa2, 40))
        .await
        .expect("append after");
    let moved = record(&w, na2).await;
    assert_eq!(
        (moved.owner_id, moved.status),
        (sa.pseudonym.clone(), Status::OutForDelivery)
    );

    assert_eq!(
        PersonalData::erase(&p, &sa).await.expect("again"),
        Erasure::default()
            .pseudonymised("tracking records", 0)
            .pseudonymised("tracking events", 0)
    );
    assert_eq!(
        PersonalData::export(&p, &sa).await.expect("export after"),
        json!({"user_id": a, "records": []})
    );
}
