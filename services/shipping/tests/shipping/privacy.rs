//! A person's export and erasure (`titan_kit::privacy`) on real PostgreSQL and S3 with the
//! built-in flat-rate carrier: the export holds exactly their shipments (and those they
//! booked); the erasure keeps the shipments under the pseudonym with the recipient blanked
//! but for the country and deletes their labels; what is left naming them is only what kit's
//! part of the job deletes (the booking service's stored answers, which name the owner);
//! everyone else's rows stay as they were, and a second run changes nothing.

use std::sync::Arc;

use serde_json::{Value, json};
use sqlx::PgPool;
use titan_crds::config::ShippingConfig;
use titan_kit::{
    ErrorCode, ServiceError,
    auth::Caller,
    datastores::postgres,
    objects::ObjectKey,
    privacy::{Erasure, PersonalData},
    testing::{
        TestObjectStorage, TestPostgres, caller, mentions,
        privacy::{subject, unique},
    },
};
use titan_shipping::{
    app::{Labelled, Parts, Shipping},
    carrier,
    domain::{Address, Parcel, RawShipment},
    store::{pg::PgShipments, privacy::PersonalStore},
};

struct World {
    app: Shipping<PgShipments>,
    db: TestPostgres,
    objects: TestObjectStorage,
}

async fn world() -> World {
    let db = TestPostgres::new().await;
    postgres::migrate(&db.pool, "shipping", titan_shipping::migrator())
        .await
        .expect("migrate");
    let objects = TestObjectStorage::new();
    let config = ShippingConfig::default();
    let app = Shipping::new(
        PgShipments::new(db.pool.clone(), "test".into()),
        Parts {
            carriers: carrier::from_config(&config, |_| None).expect("carriers"),
            objects: objects.storage.clone(),
            settings: titan_shipping::settings(&config),
            clock: Arc::new(chrono::Utc::now),
        },
    );
    World { app, db, objects }
}

fn checkout() -> Caller {
    caller("checkout", &["service"])
}

fn address(name: &str, postcode: &str) -> Address {
    Address {
        name: name.into(),
        line1: "1 Harbourfront Walk".into(),
        line2: "#03-01".into(),
        city: "Singapore".into(),
        postcode: postcode.into(),
        country: "SG".into(),
    }
}

fn raw(owner: &str, recipient: &str) -> RawShipment {
    RawShipment {
        order_id: "order-1".into(),
        owner_id: owner.into(),
        from: address("Titan Shop", "098585"),
        to: address(recipient, "530123"),
        parcels: vec![Parcel {
            weight_g: 900,
            length_mm: 200,
            width_mm: 150,
            height_mm: 100,
        }],
        ..RawShipment::default()
    }
}

/// A shipment as the export holds it.
fn exported(l: &Labelled) -> Value {
    let s = &l.shipment;
    json!({
        "id": s.id, "order_id": s.order_id, "carrier": s.carrier,
        "service_level": s.service_level.as_str(), "tracking_number": s.tracking_number,
        "status": s.status.as_str(), "from": s.from, "to": s.to, "parcels": s.parcels,
        "amount_minor": s.amount_minor, "currency": s.currency, "days": s.days,
        "label_key": s.label_key, "created_at": s.created_at, "updated_at": s.updated_at,
    })
}

/// Rows of the service's tables, and of kit's stored answers, whose text holds `text`: kit's
/// outbox is left out, as the events it relays are kit's to forget.
async fn rows_naming(pool: &PgPool, text: &str) -> Vec<(String, i64)> {
    let mut found = mentions::postgres(pool, text).await;
    found.retain(|(t, _)| t.starts_with("shipping_") || t == "titan_idempotency");
    found
}

/// (shipments, cancelled, amounts, countries): what the erasure keeps.
async fn totals(pool: &PgPool) -> (i64, i64, i64, Vec<String>) {
    let (n, cancelled, amount): (i64, i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE status = 'CANCELLED'),
                sum(amount_minor)::BIGINT FROM shipping_shipments",
    )
    .fetch_one(pool)
    .await
    .expect("totals");
    let countries = sqlx::query_scalar(
        "SELECT to_address->>'country' FROM shipping_shipments ORDER BY created_at, id",
    )
    .fetch_all(pool)
    .await
    .expect("countries");
    (n, cancelled, amount, countries)
}

async fn label_code(w: &World, l: &Labelled) -> Result<(), ErrorCode> {
    let key = ObjectKey::parse(&l.shipment.label_key).expect("key");
    w.objects
        .storage
        .head(&key)
        .await
        .map(|_| ())
        .map_err(|e| e.code())
}

#[tokio::test]
async fn an_erased_recipient_keeps_blank_shipments_under_a_pseudonym_and_loses_the_labels() {
    let w = world().await;
    let (a, b) = (unique("ann"), unique("bob"));
    let (ann_name, bob_name) = (format!("Ann {}", &a[4..12]), format!("Bob {}", &b[4..12]));
    let rid = || uuid::Uuid::new_v4().to_string();
    // Checkout books two shipments for Ann and cancels one, and one for Bob; Ann, an admin,
    // books one more for Bob.
    let a1 = w
        .app
        .create_shipment(&checkout(), &rid(), &raw(&a, &ann_name))
        .await
        .expect("a1");
    let a2 = w
        .app
        .create_shipment(&checkout(), &rid(), &raw(&a, &ann_name))
        .await
        .expect("a2");
    let a2 = w
        .app
        .cancel_shipment(&checkout(), &rid(), &a2.shipment.id.to_string())
        .await
        .expect("cancel");
    let b1 = w
        .app
        .create_shipment(&checkout(), &rid(), &raw(&b, &bob_name))
        .await
        .expect("b1");
    let ann_admin = caller(&a, &["admin"]);
    let booked_rid = rid();
    let b2 = w
        .app
        .create_shipment(&ann_admin, &booked_rid, &raw(&b, &bob_name))
        .await
        .expect("b2");

    let p = PersonalStore::new(w.db.pool.clone(), w.objects.storage.clone());
    let (sa, sb) = (subject(&a), subject(&b));
    assert_eq!(
        PersonalData::export(&p, &sa).await.expect("export"),
        json!({
            "user_id": a,
            "shipments": [exported(&a1), exported(&a2)],
            "booked": [{"id": b2.shipment.id, "request_id": booked_rid,
                        "created_at": b2.shipment.created_at}],
        })
    );
    let bob_before = PersonalData::export(&p, &sb).await.expect("export bob");
    assert_eq!(
        bob_before,
        json!({"user_id": b, "shipments": [exported(&b1), exported(&b2)], "booked": []})
    );
    let before = totals(&w.db.pool).await;
    assert_eq!(before.0, 4);
    assert_eq!(before.1, 1);
    for l in [&a1, &a2, &b1, &b2] {
        assert_eq!(label_code(&w, l).await, Ok(()));
    }

    // The searches below find Ann before the erasure: her rows, and the answers kept for
    // checkout, which name her and repeat her name, and her own call as an admin.
    assert_eq!(
        rows_naming(&w.db.pool, &a).await,
        [
            ("shipping_shipments".to_owned(), 3),
            ("titan_idempotency".to_owned(), 4)
        ]
    );
    assert_eq!(
        rows_naming(&w.db.pool, &ann_name).await,
        [
            ("shipping_shipments".to_owned(), 2),
            ("titan_idempotency".to_owned(), 3)
        ]
    );

    let erased = PersonalData::erase(&p, &sa).await.expect("erase");
    assert_eq!(
        erased,
        Erasure::default()
            .removed("shipping labels", 2)
            .pseudonymised("shipments received", 2)
            .pseudonymised("shipments booked", 1)
    );

    // What still names Ann is kit's to delete after the handler, with the statement of
    // titan_kit::privacy: checkout's answers of its two creations and its cancellation (the
    // whole shipment, owner included) and Ann's own call as an admin.
    let kits = sqlx::query(
        "DELETE FROM titan_idempotency
         WHERE service = 'shipping'
           AND (user_id = $1 OR position(convert_to($1, 'UTF8') IN response) > 0)",
    )
    .bind(&a)
    .execute(&w.db.pool)
    .await
    .expect("kit's keys")
    .rows_affected();
    assert_eq!(kits, 4);
    assert_eq!(rows_naming(&w.db.pool, &a).await, vec![]);
    assert_eq!(rows_naming(&w.db.pool, &ann_name).await, vec![]);
    assert_eq!(label_code(&w, &a1).await, Err(ErrorCode::NotFound));
    assert_eq!(label_code(&w, &a2).await, Err(ErrorCode::NotFound));
    assert_eq!(label_code(&w, &b1).await, Ok(()));
    assert_eq!(label_code(&w, &b2).await, Ok(()));
    assert_eq!(totals(&w.db.pool).await, before);
    let blank = Address {
        country: "SG".into(),
        ..Address::default()
    };
    let kept: Vec<(uuid::Uuid, String, sqlx::types::Json<Address>)> = sqlx::query_as(
        "SELECT id, owner_id, to_address FROM shipping_shipments
         WHERE id = ANY($1) ORDER BY created_at, id",
    )
    .bind(vec![a1.shipment.id, a2.shipment.id])
    .fetch_all(&w.db.pool)
    .await
    .expect("kept");
    assert_eq!(
        kept.into_iter()
            .map(|(id, owner, to)| (id, owner, to.0))
            .collect::<Vec<_>>(),
        [&a1, &a2].map(|l| (l.shipment.id, sa.pseudonym.clone(), blank.clone()))
    );
    let booked_by: String =
        sqlx::query_scalar("SELECT created_by FROM shipping_shipments WHERE id = $1")
            .bind(b2.shipment.id)
            .fetch_one(&w.db.pool)
            .await
            .expect("booked by");
    assert_eq!(booked_by, sa.pseudonym);
    // Bob's shipments are as they were; the service still reads Ann's kept ones.
    assert_eq!(
        PersonalData::export(&p, &sb).await.expect("bob after"),
        bob_before
    );
    let read = w
        .app
        .get_shipment(&checkout(), &a1.shipment.id.to_string())
        .await
        .expect("a kept shipment reads");
    assert_eq!(
        (read.shipment.owner_id, read.shipment.to),
        (sa.pseudonym.clone(), blank)
    );

    assert_eq!(
        PersonalData::erase(&p, &sa).await.expect("again"),
        Erasure::default()
            .removed("shipping labels", 0)
            .pseudonymised("shipments received", 0)
            .pseudonymised("shipments booked", 0)
    );
    assert_eq!(
        PersonalData::export(&p, &sa).await.expect("export after"),
        json!({"user_id": a, "shipments": [], "booked": []})
    );
}
