//! A person's export and erasure (`titan_kit::privacy`) on the real stores: as a driver, the
//! profile, GPS history and live position go and the routes and deliveries stay under the
//! pseudonym; as a customer, the deliveries stay blanked under the pseudonym and the proofs
//! taken at their door leave the bucket (and a proof that lands late goes with the next run);
//! a driver on a route waits; a second run removes nothing more.

use chrono::Duration;
use serde_json::{Value, json};
use sqlx::PgPool;
use titan_driver::store::privacy::{PersonalStore, PrivacyError};
use titan_kit::{
    ErrorCode, ServiceError,
    objects::ObjectKey,
    privacy::{Erasure, PersonalData, Subject},
    testing::{
        mentions,
        privacy::{subject, unique},
    },
};

use crate::{World, dispatcher, reason, rid, user};

fn handler(w: &World) -> PersonalStore {
    PersonalStore::new(w.db.pool.clone(), w.live.clone(), w.objects.storage.clone())
}

/// The export without the deliveries' `created_at`, which PostgreSQL's clock sets.
async fn export(p: &PersonalStore, s: &Subject) -> Value {
    let mut doc = p.export(s).await.expect("export");
    if let Some(received) = doc
        .get_mut("deliveries_received")
        .and_then(Value::as_array_mut)
    {
        for d in received {
            let d = d.as_object_mut().expect("a delivery is an object");
            assert!(
                d.remove("created_at").is_some_and(|t| t.is_string()),
                "a delivery's created_at is exported"
            );
        }
    }
    doc
}

/// (deliveries, routes, completed deliveries, sum of ratings): what the erasures keep.
async fn totals(pool: &PgPool) -> (i64, i64, i64, i64) {
    sqlx::query_as(
        "SELECT (SELECT count(*) FROM driver_deliveries),
                (SELECT count(*) FROM driver_routes),
                (SELECT count(*) FROM driver_deliveries WHERE status = 'COMPLETED'),
                (SELECT COALESCE(sum(rating), 0)::BIGINT FROM driver_deliveries)",
    )
    .fetch_one(pool)
    .await
    .expect("totals")
}

/// Registers `name` with a van of 10, AVAILABLE, and reports two positions a minute apart.
async fn working(w: &World, name: &str) -> titan_driver::domain::Driver {
    let d = w.available(name, 10).await;
    for lat in [1.301, 1.302] {
        w.clock.advance(Duration::minutes(1));
        w.app
            .report_position(&user(name), lat, 103.8, w.clock.now())
            .await
            .expect("position");
    }
    d
}

/// Assigns two fresh deliveries of `customer` to `driver` and delivers both with a photo.
async fn two_deliveries(
    w: &World,
    driver: &titan_driver::domain::Driver,
    customer: &str,
) -> (uuid::Uuid, uuid::Uuid) {
    let a = w.delivery(customer, 2).await;
    let b = w.delivery(customer, 3).await;
    let now = w.clock.now();
    w.app
        .assign_route(
            &dispatcher(),
            &rid(),
            &driver.id.to_string(),
            &[
                (a.id.to_string(), now),
                (b.id.to_string(), now + Duration::minutes(20)),
            ],
        )
        .await
        .expect("assign");
    let me = user(&driver.user_id);
    w.deliver(&me, &a.id.to_string()).await;
    w.deliver(&me, &b.id.to_string()).await;
    (a.id, b.id)
}

#[tokio::test]
async fn an_erased_driver_leaves_routes_and_deliveries_under_a_pseudonym_and_nothing_else() {
    let w = World::new().await;
    let (a, b) = (unique("ann"), unique("bob"));
    let ann = working(&w, &a).await;
    let bob = working(&w, &b).await;
    // Ann carries two deliveries to Bob; Bob rates one.
    let (d1, d2) = two_deliveries(&w, &ann, &b).await;
    w.app
        .rate(&user(&b), &rid(), &d1.to_string(), 4)
        .await
        .expect("rate");
    let p = handler(&w);
    let (sa, sb) = (subject(&a), subject(&b));
    let t0 = ann.created_at;
    let at = |minutes: i64| json!(t0 + Duration::minutes(minutes));
    let doc = export(&p, &sa).await;
    let route = doc["routes"][0]["id"].clone();
    assert_eq!(
        doc,
        json!({
            "user_id": a,
            "driver": {
                "id": ann.id, "name": a, "phone": "+6561234567", "email": "d@example.com",
                "vehicle_type": "VAN", "capacity": 10, "status": "AVAILABLE",
                "lat": 1.302, "lng": 103.8, "located_at": at(2),
                "completed": 2, "failed": 0, "on_time": 2, "rating_sum": 4, "ratings": 1,
                "created_at": at(0),
            },
            "positions": [
                {"at": at(1), "lat": 1.301, "lng": 103.8, "implausible": false},
                {"at": at(2), "lat": 1.302, "lng": 103.8, "implausible": false},
            ],
            "routes": [{"id": route, "status": "COMPLETED", "created_at": at(4),
                        "finished_at": at(4)}],
            "deliveries_driven": [
                {"id": d1, "shipment_id": "sh-1", "route_id": route, "stop_sequence": 0,
                 "status": "COMPLETED", "eta": at(4), "finished_at": at(4), "rating": 4},
                {"id": d2, "shipment_id": "sh-1", "route_id": route, "stop_sequence": 1,
                 "status": "COMPLETED", "eta": at(24), "finished_at": at(4), "rating": null},
            ],
            "deliveries_received": [],
        })
    );
    let bob_before = export(&p, &sb).await;
    assert_eq!(bob_before["driver"]["id"], json!(bob.id));
    assert_eq!(bob_before["positions"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        bob_before["deliveries_received"]
            .as_array()
            .map(|v| v.iter().map(|d| d["id"].clone()).collect::<Vec<_>>()),
        Some(vec![json!(d1), json!(d2)])
    );
    let before = totals(&w.db.pool).await;
    assert_eq!(before, (2, 1, 2, 4));
    let ann_id = ann.id.to_string();
    assert!(
        !mentions::redis(&w.redis, &ann_id).await.is_empty(),
        "ann is live in Redis before the erasure"
    );

    assert_eq!(
        mentions::postgres_in(&w.db.pool, "driver_", &a).await,
        [("driver_drivers".to_owned(), 1)]
    );
    assert_eq!(
        mentions::postgres_in(&w.db.pool, "driver_", &ann_id).await,
        [
            ("driver_deliveries".to_owned(), 2),
            ("driver_drivers".to_owned(), 1),
            ("driver_positions".to_owned(), 2),
            ("driver_routes".to_owned(), 1),
        ]
    );

    let erased = PersonalData::erase(&p, &sa).await.expect("erase");
    assert_eq!(
        erased,
        Erasure::default()
            .removed("driver profiles", 1)
            .removed("gps positions", 2)
            .removed("live positions", 2)
            .removed("proof of delivery objects", 0)
            .pseudonymised("routes driven", 1)
            .pseudonymised("deliveries driven", 2)
            .pseudonymised("deliveries received", 0)
    );

    assert_eq!(
        mentions::postgres_in(&w.db.pool, "driver_", &a).await,
        vec![]
    );
    assert_eq!(
        mentions::postgres_in(&w.db.pool, "driver_", &ann_id).await,
        vec![]
    );
    assert!(
        !mentions::redis(&w.redis, &bob.id.to_string())
            .await
            .is_empty(),
        "bob is still live"
    );
    for ann in [&ann_id, &a] {
        assert_eq!(
            mentions::redis(&w.redis, ann).await,
            Vec::<String>::new(),
            "redis still names ann"
        );
    }
    assert_eq!(totals(&w.db.pool).await, before);
    let kept: (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM driver_deliveries WHERE driver_pseudonym = $1
                   AND driver_id IS NULL AND status = 'COMPLETED'),
                (SELECT count(*) FROM driver_routes WHERE driver_pseudonym = $1
                   AND driver_id IS NULL)",
    )
    .bind(&sa.pseudonym)
    .fetch_one(&w.db.pool)
    .await
    .expect("kept");
    assert_eq!(kept, (2, 1));
    assert_eq!(export(&p, &sb).await, bob_before);
    assert_eq!(
        w.app
            .driver(ann.id)
            .await
            .map(|d| d.id)
            .map_err(|e| e.code()),
        Err(ErrorCode::NotFound)
    );
    // Bob's unrated delivery has no driver left to count a rating for.
    assert_eq!(
        reason(w.app.rate(&user(&b), &rid(), &d2.to_string(), 5).await),
        "DRIVER_ERASED"
    );
    assert_eq!(totals(&w.db.pool).await, before);

    assert_eq!(PersonalData::erase(&p, &sa).await.expect("again"), zeros());
    assert_eq!(
        export(&p, &sa).await,
        json!({"user_id": a, "driver": null, "positions": [], "routes": [],
               "deliveries_driven": [], "deliveries_received": []})
    );
}

/// What an erasure that finds nothing reports.
fn zeros() -> Erasure {
    Erasure::default()
        .removed("driver profiles", 0)
        .removed("gps positions", 0)
        .removed("live positions", 0)
        .removed("proof of delivery objects", 0)
        .pseudonymised("routes driven", 0)
        .pseudonymised("deliveries driven", 0)
        .pseudonymised("deliveries received", 0)
}

#[tokio::test]
async fn an_erased_customer_keeps_blank_deliveries_under_a_pseudonym_and_loses_the_proofs() {
    let w = World::new().await;
    let (a, b, driver) = (unique("ann"), unique("bob"), unique("dan"));
    let dan = working(&w, &driver).await;
    let (a1, a2) = two_deliveries(&w, &dan, &a).await;
    w.app
        .rate(&user(&a), &rid(), &a1.to_string(), 5)
        .await
        .expect("rate");
    let (b1, b2) = two_deliveries(&w, &dan, &b).await;
    let p = handler(&w);
    let (sa, sb) = (subject(&a), subject(&b));
    let proof = |d: uuid::Uuid| format!("driver/proofs/{d}/photo");
    let received = |d: uuid::Uuid, rating: Value| {
        json!({"id": d, "shipment_id": "sh-1", "address": "1 Main St", "lat": 1.3,
               "lng": 103.8, "window_start": dan.created_at + Duration::minutes(2),
               "window_end": dan.created_at + Duration::minutes(122),
               "status": "COMPLETED", "finished_at": dan.created_at + Duration::minutes(2),
               "recipient_name": "Cy", "proof_keys": [proof(d)], "rating": rating})
    };
    assert_eq!(
        export(&p, &sa).await,
        json!({"user_id": a, "driver": null, "positions": [], "routes": [],
               "deliveries_driven": [],
               "deliveries_received": [received(a1, json!(5)), received(a2, json!(null))]})
    );
    let bob_before = export(&p, &sb).await;
    assert_eq!(
        bob_before["deliveries_received"],
        json!([received(b1, json!(null)), received(b2, json!(null))])
    );
    let dan_before = export(&p, &subject(&driver)).await;
    let before = totals(&w.db.pool).await;
    assert_eq!(before, (4, 2, 4, 5));
    let objects = &w.objects.storage;
    for d in [a1, a2, b1, b2] {
        let key = ObjectKey::parse(&proof(d)).expect("key");
        objects.head(&key).await.expect("the proof is stored");
    }

    assert_eq!(
        mentions::postgres_in(&w.db.pool, "driver_", &a).await,
        [("driver_deliveries".to_owned(), 2)]
    );

    let erased = PersonalData::erase(&p, &sa).await.expect("erase");
    assert_eq!(
        erased,
        zeros()
            .removed("proof of delivery objects", 2)
            .pseudonymised("deliveries received", 2)
    );

    assert_eq!(
        mentions::postgres_in(&w.db.pool, "driver_", &a).await,
        vec![]
    );
    assert_eq!(
        mentions::redis(&w.redis, &a).await,
        Vec::<String>::new(),
        "redis names ann"
    );
    for d in [a1, a2] {
        let key = ObjectKey::parse(&proof(d)).expect("key");
        let gone = objects.head(&key).await.map(|_| ()).map_err(|e| e.code());
        assert_eq!(gone, Err(ErrorCode::NotFound), "proof of {d}");
    }
    for d in [b1, b2] {
        let key = ObjectKey::parse(&proof(d)).expect("key");
        objects.head(&key).await.expect("bob's proof stays");
    }
    type Kept = (
        uuid::Uuid,
        String,
        String,
        f64,
        f64,
        Option<String>,
        Vec<String>,
    );
    let kept: Vec<Kept> = sqlx::query_as(
        "SELECT id, customer_id, address, lat, lng, recipient_name, proof_keys
             FROM driver_deliveries WHERE id = ANY($1) ORDER BY created_at, id",
    )
    .bind(vec![a1, a2])
    .fetch_all(&w.db.pool)
    .await
    .expect("kept");
    assert_eq!(
        kept,
        [a1, a2].map(|d| (
            d,
            sa.pseudonym.clone(),
            String::new(),
            0.0,
            0.0,
            None,
            vec![]
        ))
    );
    assert_eq!(totals(&w.db.pool).await, before);
    assert_eq!(export(&p, &sb).await, bob_before);
    assert_eq!(export(&p, &subject(&driver)).await, dan_before);

    assert_eq!(PersonalData::erase(&p, &sa).await.expect("again"), zeros());

    // A completion that was uploading while the erasure held the rows lands on the kept row
    // afterwards; the next erasure finishes it.
    let late = ObjectKey::parse(&proof(a2)).expect("key");
    objects
        .put(&late, "image/jpeg", bytes::Bytes::from_static(crate::JPEG))
        .await
        .expect("late upload");
    sqlx::query(
        "UPDATE driver_deliveries SET recipient_name = 'Cy', proof_keys = $2 WHERE id = $1",
    )
    .bind(a2)
    .bind(vec![proof(a2)])
    .execute(&w.db.pool)
    .await
    .expect("late completion");
    assert_eq!(
        PersonalData::erase(&p, &sa)
            .await
            .expect("after a late completion"),
        zeros()
            .removed("proof of delivery objects", 1)
            .pseudonymised("deliveries received", 1)
    );
    assert_eq!(
        objects.head(&late).await.map(|_| ()).map_err(|e| e.code()),
        Err(ErrorCode::NotFound)
    );
    assert_eq!(
        PersonalData::erase(&p, &sa).await.expect("then nothing"),
        zeros()
    );
}

#[tokio::test]
async fn a_driver_on_a_route_is_erased_once_the_route_is_done() {
    let w = World::new().await;
    let a = unique("ann");
    let ann = working(&w, &a).await;
    let d = w.delivery("cus", 2).await;
    w.app
        .assign_route(
            &dispatcher(),
            &rid(),
            &ann.id.to_string(),
            &[(d.id.to_string(), w.clock.now())],
        )
        .await
        .expect("assign");
    let store = PersonalStore::new(w.db.pool.clone(), w.live.clone(), w.objects.storage.clone());
    let s = subject(&a);
    let refused = store.erase(&s.user_id, &s.pseudonym).await;
    assert!(
        matches!(refused, Err(PrivacyError::OnRoute(id)) if id == ann.id),
        "{refused:?}"
    );
    assert_eq!(
        mentions::postgres_in(&w.db.pool, "driver_", &a).await,
        [("driver_drivers".to_owned(), 1)]
    );
    w.deliver(&user(&a), &d.id.to_string()).await;
    let erased = PersonalData::erase(&handler(&w), &s).await.expect("erase");
    assert_eq!(
        erased,
        zeros()
            .removed("driver profiles", 1)
            .removed("gps positions", 2)
            .removed("live positions", 2)
            .pseudonymised("routes driven", 1)
            .pseudonymised("deliveries driven", 1)
    );
    assert_eq!(
        mentions::postgres_in(&w.db.pool, "driver_", &a).await,
        vec![]
    );
}
