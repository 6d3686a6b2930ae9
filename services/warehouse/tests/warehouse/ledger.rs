//! Warehouses, bins and the stock ledger: receipts, adjustments and transfers each write
//! their movements with the change, refusals leave everything as it was.

use titan_kit::{idempotency::IdempotencyError, testing::caller};
use titan_warehouse::app::{Level, WarehouseError, WarehouseForm};

use crate::{World, admin, at, checkout, field, reason, rid, staff};

fn level(w: &str, b: &str, p: &str, available: i64, reserved: i64) -> Level {
    Level {
        warehouse: w.into(),
        bin: b.into(),
        product_id: p.into(),
        available,
        reserved,
    }
}

#[tokio::test]
async fn receipts_adjustments_and_transfers_are_movements() {
    let w = World::new().await;
    w.warehouse("SIN-1", 1.35, 103.82, 10, &["A-1", "A-2"])
        .await;
    w.warehouse("KUL-1", 3.139, 101.687, 10, &["A-1"]).await;
    let app = &w.app;

    let got = w.receive("SIN-1", "A-1", "tee", 100).await;
    assert_eq!(got.levels, [level("SIN-1", "A-1", "tee", 100, 0)]);
    let got = app
        .receive(&staff(), &rid(), at("sin-1", "a-2", "tee"), "RETURN", 5, "")
        .await
        .expect("return");
    assert_eq!(got.levels, [level("SIN-1", "A-2", "tee", 5, 0)]);
    let got = app
        .adjust(
            &staff(),
            &rid(),
            at("SIN-1", "A-1", "tee"),
            -10,
            "cycle count",
        )
        .await
        .expect("adjust");
    assert_eq!(got.levels, [level("SIN-1", "A-1", "tee", 90, 0)]);

    let before = w.snapshot().await;
    let short = app
        .adjust(&staff(), &rid(), at("SIN-1", "A-1", "tee"), -91, "lost")
        .await;
    assert_eq!(
        short.as_ref().map_err(ToString::to_string).err().as_deref(),
        Some("tee in SIN-1 bin A-1: 90 available, 91 needed")
    );
    assert_eq!(reason(short), "INSUFFICIENT_STOCK");
    assert_eq!(w.snapshot().await, before);

    let got = app
        .transfer(
            &staff(),
            &rid(),
            at("SIN-1", "A-1", "tee"),
            at("KUL-1", "A-1", "tee"),
            30,
            "rebalance",
        )
        .await
        .expect("transfer");
    assert_eq!(
        got.levels,
        [
            level("SIN-1", "A-1", "tee", 60, 0),
            level("KUL-1", "A-1", "tee", 30, 0)
        ]
    );
    let legs: Vec<(String, i64)> = sqlx::query_as(
        "SELECT transfer_id::TEXT, available_delta FROM warehouse_movements \
         WHERE type = 'TRANSFER' ORDER BY available_delta",
    )
    .fetch_all(&w.db.pool)
    .await
    .expect("legs");
    assert_eq!(legs.len(), 2);
    assert_eq!(legs[0].0, legs[1].0, "both legs carry one transfer id");
    assert_eq!((legs[0].1, legs[1].1), (-30, 30));

    let before = w.snapshot().await;
    let too_many = app
        .transfer(
            &staff(),
            &rid(),
            at("SIN-1", "A-1", "tee"),
            at("KUL-1", "A-1", "tee"),
            61,
            "",
        )
        .await;
    assert_eq!(reason(too_many), "INSUFFICIENT_STOCK");
    // The bin holds 1,000: 60 + 941 does not fit.
    let full = app
        .receive(
            &staff(),
            &rid(),
            at("SIN-1", "A-1", "mug"),
            "INBOUND",
            941,
            "",
        )
        .await;
    assert_eq!(
        full.as_ref().map_err(ToString::to_string).err().as_deref(),
        Some("bin A-1 of SIN-1 has room for 940 more units, not 941")
    );
    assert_eq!(reason(full), "BIN_FULL");
    assert_eq!(w.snapshot().await, before);

    let moves = app
        .movements(&staff(), "SIN-1", "tee", 0, 0)
        .await
        .expect("movements");
    let rows: Vec<(&str, &str, i64, &str, &str)> = moves
        .iter()
        .map(|m| {
            (
                m.kind.as_str(),
                m.bin.as_str(),
                m.available_delta,
                m.reference.as_str(),
                m.by.as_str(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("TRANSFER", "A-1", -30, "rebalance", "picker"),
            ("ADJUSTMENT", "A-1", -10, "cycle count", "picker"),
            ("RETURN", "A-2", 5, "", "picker"),
            ("INBOUND", "A-1", 100, "po-1", "picker"),
        ]
    );
    let older = app
        .movements(&staff(), "SIN-1", "tee", moves[1].id, 1)
        .await
        .expect("page");
    assert_eq!(older.len(), 1);
    assert_eq!(older[0].id, moves[2].id);

    let stock = app.stock(&checkout(), "tee", 0).await.expect("stock");
    assert_eq!(
        stock,
        [
            level("KUL-1", "A-1", "tee", 30, 0),
            level("SIN-1", "A-1", "tee", 60, 0),
            level("SIN-1", "A-2", "tee", 5, 0),
        ]
    );
    assert_eq!(
        w.events().await,
        [
            "warehouse.warehouse_created",
            "warehouse.warehouse_created",
            "warehouse.stock_changed",
            "warehouse.stock_changed",
            "warehouse.stock_changed",
            "warehouse.stock_changed",
        ]
    );
    w.assert_balanced().await;
}

#[tokio::test]
async fn a_request_id_changes_stock_once() {
    let w = World::new().await;
    w.warehouse("SIN-1", 1.35, 103.82, 10, &["A-1"]).await;
    let id = rid();
    let place = at("SIN-1", "A-1", "tee");
    let first = w
        .app
        .receive(&staff(), &id, place, "INBOUND", 7, "po-9")
        .await
        .expect("first");
    let again = w
        .app
        .receive(&staff(), &id, place, "INBOUND", 7, "po-9")
        .await
        .expect("replay");
    assert_eq!(first, again);
    assert_eq!(w.levels().await[0].3, 7);
    let other = w
        .app
        .receive(&staff(), &id, place, "INBOUND", 8, "po-9")
        .await;
    assert_eq!(reason(other), "REQUEST_ID_REUSED");
    assert_eq!(w.levels().await[0].3, 7);
    w.assert_balanced().await;
}

#[tokio::test]
async fn bad_input_names_the_field_and_changes_nothing() {
    let w = World::new().await;
    w.warehouse("SIN-1", 1.35, 103.82, 10, &["A-1", "A-2"])
        .await;
    w.receive("SIN-1", "A-1", "tee", 50).await;
    let before = w.snapshot().await;
    let (app, s) = (&w.app, staff());
    let p = at("SIN-1", "A-1", "tee");

    assert_eq!(
        field(
            app.receive(&s, &rid(), at("S", "A-1", "tee"), "INBOUND", 1, "")
                .await
        ),
        "warehouse"
    );
    assert_eq!(
        field(
            app.receive(&s, &rid(), at("SIN-1", "A--1", "tee"), "INBOUND", 1, "")
                .await
        ),
        "bin"
    );
    assert_eq!(
        field(
            app.receive(&s, &rid(), at("SIN-1", "A-1", "t ee"), "INBOUND", 1, "")
                .await
        ),
        "product_id"
    );
    assert_eq!(
        field(app.receive(&s, &rid(), p, "ADJUSTMENT", 1, "").await),
        "type"
    );
    assert_eq!(
        field(app.receive(&s, &rid(), p, "INBOUND", 0, "").await),
        "quantity"
    );
    assert_eq!(
        field(app.receive(&s, &rid(), p, "INBOUND", 1_000_001, "").await),
        "quantity"
    );
    assert_eq!(
        field(
            app.receive(&s, &rid(), p, "INBOUND", 1, &"x".repeat(201))
                .await
        ),
        "reference"
    );
    assert!(matches!(
        app.receive(&s, "", p, "INBOUND", 1, "").await,
        Err(WarehouseError::Idempotency(
            IdempotencyError::MissingRequestId
        ))
    ));
    assert_eq!(field(app.adjust(&s, &rid(), p, 0, "count").await), "delta");
    assert_eq!(field(app.adjust(&s, &rid(), p, -1, "  ").await), "reason");
    assert_eq!(field(app.transfer(&s, &rid(), p, p, 1, "").await), "to.bin");
    assert_eq!(
        field(
            app.transfer(&s, &rid(), p, at("SIN-1", "A-2", "mug"), 1, "")
                .await
        ),
        "to.product_id"
    );
    assert_eq!(
        field(
            app.transfer(&s, &rid(), p, at("SIN-1", "", "tee"), 1, "")
                .await
        ),
        "to.bin"
    );
    assert_eq!(
        field(
            app.transfer(&s, &rid(), at("", "A-1", "tee"), p, 1, "")
                .await
        ),
        "from.warehouse"
    );
    assert_eq!(
        field(
            app.transfer(&s, &rid(), p, at("SIN-1", "A-2", "tee"), -4, "")
                .await
        ),
        "quantity"
    );
    assert_eq!(
        field(
            app.create_bin(&admin(), &rid(), "SIN-1", "A-1", "B-1", 5)
                .await
        ),
        "zone"
    );
    assert_eq!(
        field(
            app.create_bin(&admin(), &rid(), "SIN-1", "A", "B-1", 0)
                .await
        ),
        "capacity"
    );
    assert_eq!(
        field(app.set_status(&admin(), &rid(), "SIN-1", "CLOSED").await),
        "status"
    );
    assert_eq!(
        field(
            app.create_warehouse(
                &admin(),
                &rid(),
                &WarehouseForm {
                    code: "JKT-1",
                    name: "Jakarta",
                    address: "1 Jalan",
                    lat: -6.2,
                    lng: 200.0,
                    capacity: 10,
                    priority: 0,
                },
            )
            .await
        ),
        "location.lng"
    );
    assert_eq!(
        field(app.movements(&s, "SIN-1", "tee", -1, 0).await),
        "before_id"
    );
    assert_eq!(
        field(app.movements(&s, "SIN-1", "tee", 0, 101).await),
        "page_size"
    );
    assert_eq!(w.snapshot().await, before);
}

#[tokio::test]
async fn roles_codes_and_capacity() {
    let w = World::new().await;
    w.warehouse("SIN-1", 1.35, 103.82, 10, &["A-1"]).await;
    let before = w.snapshot().await;
    let app = &w.app;
    let buyer = caller("ann", &[]);
    let p = at("SIN-1", "A-1", "tee");
    assert_eq!(
        reason(app.receive(&checkout(), &rid(), p, "INBOUND", 1, "").await),
        "ROLE_REQUIRED"
    );
    assert_eq!(
        reason(
            app.create_bin(&staff(), &rid(), "SIN-1", "A", "A-9", 1)
                .await
        ),
        "ROLE_REQUIRED"
    );
    assert_eq!(reason(app.stock(&buyer, "tee", 0).await), "ROLE_REQUIRED");
    assert_eq!(
        reason(app.movements(&checkout(), "SIN-1", "tee", 0, 0).await),
        "ROLE_REQUIRED"
    );
    assert_eq!(
        reason(
            app.receive(
                &staff(),
                &rid(),
                at("KUL-1", "A-1", "tee"),
                "INBOUND",
                1,
                ""
            )
            .await
        ),
        "WAREHOUSE_NOT_FOUND"
    );
    assert_eq!(
        reason(
            app.receive(
                &staff(),
                &rid(),
                at("SIN-1", "Z-9", "tee"),
                "INBOUND",
                1,
                ""
            )
            .await
        ),
        "BIN_NOT_FOUND"
    );
    assert_eq!(
        reason(
            app.create_bin(&admin(), &rid(), "SIN-1", "A", "a-1", 1)
                .await
        ),
        "BIN_TAKEN"
    );
    // 1,000 of the warehouse's 10,000 units are in A-1 already.
    let over = app
        .create_bin(&admin(), &rid(), "SIN-1", "B", "B-1", 9001)
        .await;
    assert_eq!(
        over.as_ref().map_err(ToString::to_string).err().as_deref(),
        Some(
            "warehouse SIN-1 holds 10000 units and its bins already take 1000; a bin of 9001 does not fit"
        )
    );
    assert_eq!(reason(over), "WAREHOUSE_CAPACITY");
    let dup = app
        .create_warehouse(
            &admin(),
            &rid(),
            &WarehouseForm {
                code: "sin-1",
                name: "again",
                address: "2 Dock Rd",
                lat: 1.0,
                lng: 103.0,
                capacity: 10,
                priority: 0,
            },
        )
        .await;
    assert_eq!(reason(dup), "CODE_TAKEN");
    assert_eq!(w.snapshot().await, before);

    app.create_bin(&admin(), &rid(), "SIN-1", "B", "B-1", 9000)
        .await
        .expect("the rest fits");
    let paused = app
        .set_status(&admin(), &rid(), "SIN-1", "MAINTENANCE")
        .await
        .expect("status");
    assert_eq!(paused.status, "MAINTENANCE");
    let listed = app.list_warehouses(&staff(), "", 0).await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].code, "SIN-1");
    assert!(
        app.list_warehouses(&staff(), "SIN-1", 0)
            .await
            .expect("after")
            .is_empty()
    );
}
