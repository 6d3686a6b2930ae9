//! A person's export and erasure (`titan_kit::privacy`) on real PostgreSQL: the warehouse
//! names a person only as whoever acted, so the export holds exactly the movements and
//! reservations they made and the erasure keeps them under the pseudonym, the ledger still
//! balanced and everyone else's rows as they were; a second run changes nothing.

use serde_json::json;
use sqlx::PgPool;
use titan_kit::{
    privacy::{Erasure, PersonalData},
    testing::{
        caller, mentions,
        privacy::{subject, unique},
    },
};
use titan_warehouse::{
    app::{OrderForm, SERVICE_ROLE, STAFF_ROLE},
    store::privacy::PersonalStore,
};

use crate::{World, at, rid};

/// Every movement and reservation without who made it: what an erasure must not change.
async fn ledger(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT concat_ws(' ', id, warehouse_id, product_id, bin_id, type, available_delta,
                          reserved_delta, reference, reservation_id, at)
         FROM warehouse_movements
         UNION ALL
         SELECT concat_ws(' ', id, order_id, status, expires_at, created_at)
         FROM warehouse_reservations ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .expect("ledger")
}

#[tokio::test]
async fn an_erased_worker_stays_on_the_ledger_only_as_a_pseudonym() {
    let w = World::new().await;
    w.warehouse("SIN-1", 1.30, 103.80, 1, &["A-01", "A-02"])
        .await;
    let (a, b) = (unique("ann"), unique("bob"));
    let ann = caller(&a, &[STAFF_ROLE, SERVICE_ROLE]);
    let bob = caller(&b, &[STAFF_ROLE]);
    // Ann receives ten tees and reserves three for an order; Bob receives five mugs.
    let received = w
        .app
        .receive(
            &ann,
            &rid(),
            at("SIN-1", "A-01", "tee"),
            "INBOUND",
            10,
            "po-7",
        )
        .await
        .expect("ann receives");
    let lines = vec![("tee".to_owned(), 3)];
    let reserved = w
        .app
        .reserve(
            &ann,
            &rid(),
            &OrderForm {
                order_id: "order-a",
                lat: 1.31,
                lng: 103.81,
                lines: &lines,
                ttl_seconds: 600,
            },
        )
        .await
        .expect("ann reserves");
    let bobs = w
        .app
        .receive(
            &bob,
            &rid(),
            at("SIN-1", "A-02", "mug"),
            "INBOUND",
            5,
            "po-8",
        )
        .await
        .expect("bob receives");

    let p = PersonalStore::new(w.db.pool.clone());
    let (sa, sb) = (subject(&a), subject(&b));
    let reserve_id: i64 =
        sqlx::query_scalar("SELECT id FROM warehouse_movements WHERE reservation_id = $1")
            .bind(reserved.id)
            .fetch_one(&w.db.pool)
            .await
            .expect("the reservation's movement");
    let now = w.clock.now();
    assert_eq!(
        PersonalData::export(&p, &sa).await.expect("export"),
        json!({
            "user_id": a,
            "movements": [
                {"id": received.movements[0], "warehouse": "SIN-1", "bin": "A-01",
                 "product_id": "tee", "type": "INBOUND", "available_delta": 10,
                 "reserved_delta": 0, "reference": "po-7", "reservation_id": null,
                 "transfer_id": null, "at": now},
                {"id": reserve_id, "warehouse": "SIN-1", "bin": "A-01", "product_id": "tee",
                 "type": "RESERVE", "available_delta": -3, "reserved_delta": 3,
                 "reference": "order-a", "reservation_id": reserved.id, "transfer_id": null,
                 "at": now},
            ],
            "reservations": [{"id": reserved.id, "order_id": "order-a", "status": "RESERVED",
                              "created_at": now}],
        })
    );
    let bob_before = PersonalData::export(&p, &sb).await.expect("bob");
    assert_eq!(
        bob_before["movements"][0]["id"],
        json!(bobs.movements[0]),
        "{bob_before}"
    );
    let before = ledger(&w.db.pool).await;
    let levels = w.levels().await;

    assert_eq!(
        mentions::postgres_in(&w.db.pool, "warehouse_", &a).await,
        [
            ("warehouse_movements".to_owned(), 2),
            ("warehouse_reservations".to_owned(), 1)
        ]
    );

    let erased = PersonalData::erase(&p, &sa).await.expect("erase");
    assert_eq!(
        erased,
        Erasure::default()
            .pseudonymised("stock movements", 2)
            .pseudonymised("reservations", 1)
    );

    assert_eq!(
        mentions::postgres_in(&w.db.pool, "warehouse_", &a).await,
        vec![]
    );
    assert_eq!(ledger(&w.db.pool).await, before);
    assert_eq!(w.levels().await, levels);
    w.assert_balanced().await;
    let kept: (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM warehouse_movements WHERE by_user = $1),
                (SELECT count(*) FROM warehouse_reservations WHERE created_by = $1)",
    )
    .bind(&sa.pseudonym)
    .fetch_one(&w.db.pool)
    .await
    .expect("kept");
    assert_eq!(kept, (2, 1));
    assert_eq!(
        PersonalData::export(&p, &sb).await.expect("bob after"),
        bob_before
    );

    assert_eq!(
        PersonalData::erase(&p, &sa).await.expect("again"),
        Erasure::default()
            .pseudonymised("stock movements", 0)
            .pseudonymised("reservations", 0)
    );
    assert_eq!(
        PersonalData::export(&p, &sa).await.expect("export after"),
        json!({"user_id": a, "movements": [], "reservations": []})
    );
}
