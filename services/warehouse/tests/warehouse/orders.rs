//! Reservations: allocation worked examples on the real store, reserve → pick → ship and
//! release, expiry by the periodic job, pick lists and putaway, and 200 concurrent
//! reservations, releases and transfers that leave the ledger balanced.

use std::sync::Arc;

use chrono::Duration;
use titan_kit::testing::caller;
use titan_warehouse::{
    app::{OrderForm, PickLine, Reservation, ReservedLine, Short, WarehouseError},
    domain::Preference,
};

use crate::{App, World, at, checkout, field, reason, rid, staff};

fn lines(l: &[(&str, i64)]) -> Vec<(String, i64)> {
    l.iter().map(|(p, q)| ((*p).to_owned(), *q)).collect()
}

async fn reserve(
    app: &App,
    order: &str,
    to: (f64, f64),
    l: &[(&str, i64)],
    ttl_seconds: i64,
) -> Result<Reservation, WarehouseError> {
    let l = lines(l);
    app.reserve(
        &checkout(),
        &rid(),
        &OrderForm {
            order_id: order,
            lat: to.0,
            lng: to.1,
            lines: &l,
            ttl_seconds,
        },
    )
    .await
}

fn line(w: &str, b: &str, p: &str, quantity: i64) -> ReservedLine {
    ReservedLine {
        warehouse: w.into(),
        bin: b.into(),
        product_id: p.into(),
        quantity,
    }
}

/// Singapore, Johor Bahru (18 km north of it), Kuala Lumpur (priority 50) and Jakarta
/// (INACTIVE, priority 90), stocked with tees and one mug.
async fn region(w: &World) {
    w.warehouse("SIN", 1.3521, 103.8198, 10, &["A-2", "A-10", "B-1", "A-1"])
        .await;
    w.warehouse("JHB", 1.4927, 103.7414, 10, &["A-1"]).await;
    w.warehouse("KUL", 3.1390, 101.6869, 50, &["A-1"]).await;
    w.warehouse("CGK", -6.2088, 106.8456, 90, &["A-1"]).await;
    w.receive("SIN", "B-1", "tee", 4).await;
    w.receive("SIN", "A-10", "tee", 3).await;
    w.receive("SIN", "A-2", "tee", 2).await;
    w.receive("JHB", "A-1", "tee", 5).await;
    w.receive("KUL", "A-1", "tee", 100).await;
    w.receive("CGK", "A-1", "tee", 100).await;
    w.receive("SIN", "A-1", "mug", 1).await;
    w.app
        .set_status(&crate::admin(), &rid(), "CGK", "INACTIVE")
        .await
        .expect("inactive");
}

/// A destination in central Singapore.
const MARINA: (f64, f64) = (1.29, 103.85);

#[tokio::test]
async fn nearest_warehouses_first_bins_in_walk_order_the_rest_short() {
    let w = World::new().await;
    region(&w).await;
    let r = reserve(&w.app, "o-1", MARINA, &[("tee", 12), ("mug", 3)], 0)
        .await
        .expect("reserve");
    assert_eq!(r.status, "RESERVED");
    assert_eq!(r.expires_at, crate::epoch() + Duration::minutes(15));
    // SIN (8 km) empties its tee bins, B-1 (9 units), JHB (26 km) gives the other
    // 3; KUL is farther and CGK is INACTIVE. One mug of three.
    assert_eq!(
        r.lines,
        [
            line("SIN", "A-2", "tee", 2),
            line("SIN", "A-10", "tee", 3),
            line("SIN", "B-1", "tee", 4),
            line("JHB", "A-1", "tee", 3),
            line("SIN", "A-1", "mug", 1),
        ]
    );
    assert_eq!(
        r.short,
        [Short {
            product_id: "mug".into(),
            requested: 3,
            short: 2
        }]
    );
    let levels = w.levels().await;
    let get = |wh: &str, b: &str, p: &str| {
        levels
            .iter()
            .find(|l| l.0 == wh && l.1 == b && l.2 == p)
            .map(|l| (l.3, l.4))
    };
    assert_eq!(get("SIN", "A-2", "tee"), Some((0, 2)));
    assert_eq!(get("SIN", "B-1", "tee"), Some((0, 4)));
    assert_eq!(get("JHB", "A-1", "tee"), Some((2, 3)));
    assert_eq!(get("KUL", "A-1", "tee"), Some((100, 0)));
    assert_eq!(get("CGK", "A-1", "tee"), Some((100, 0)));
    assert_eq!(get("SIN", "A-1", "mug"), Some((0, 1)));

    // The same order again is refused while the first is open.
    assert_eq!(
        reason(reserve(&w.app, "o-1", MARINA, &[("tee", 1)], 0).await),
        "ORDER_ALREADY_RESERVED"
    );
    // Nothing left of the mug anywhere ACTIVE: refused, nothing changed.
    let before = w.snapshot().await;
    let none = reserve(&w.app, "o-2", MARINA, &[("mug", 1)], 0).await;
    assert_eq!(
        none.as_ref().map_err(ToString::to_string).err().as_deref(),
        Some("no ACTIVE warehouse has any of the order's products: mug short 1 of 1")
    );
    assert_eq!(reason(none), "OUT_OF_STOCK");
    assert_eq!(w.snapshot().await, before);
    w.assert_balanced().await;
}

#[tokio::test]
async fn priority_first_takes_from_the_preferred_warehouse() {
    let w = World::with(Preference::PriorityFirst).await;
    region(&w).await;
    let r = reserve(&w.app, "o-1", MARINA, &[("tee", 12)], 0)
        .await
        .expect("reserve");
    assert_eq!(r.lines, [line("KUL", "A-1", "tee", 12)]);
    assert!(r.short.is_empty());
    // From Kuala Lumpur itself both rules agree; 200 tees are more than KUL and the ACTIVE
    // rest hold (100 + 14 - 12 reserved).
    let r = reserve(&w.app, "o-2", (3.139, 101.687), &[("tee", 200)], 0)
        .await
        .expect("reserve");
    let total: i64 = r.lines.iter().map(|l| l.quantity).sum();
    assert_eq!(total, 88 + 14);
    assert_eq!(r.lines[0], line("KUL", "A-1", "tee", 88));
    assert_eq!(r.short[0].short, 200 - 102);
    w.assert_balanced().await;
}

#[tokio::test]
async fn reserve_pick_ship_or_release() {
    let w = World::new().await;
    region(&w).await;
    let app = &w.app;
    let r = reserve(app, "o-1", MARINA, &[("tee", 3)], 0)
        .await
        .expect("reserve");
    let id = r.id.to_string();
    assert_eq!(
        reason(app.ship(&staff(), &rid(), &id).await),
        "ILLEGAL_TRANSITION"
    );
    assert_eq!(
        reason(app.pick(&checkout(), &rid(), &id).await),
        "ROLE_REQUIRED"
    );
    let picked = app.pick(&staff(), &rid(), &id).await.expect("pick");
    assert_eq!(picked.status, "PICKED");
    let shipped = app.ship(&staff(), &rid(), &id).await.expect("ship");
    assert_eq!(shipped.status, "SHIPPED");
    let release = app.release(&checkout(), &rid(), &id).await;
    assert_eq!(
        release
            .as_ref()
            .map_err(ToString::to_string)
            .err()
            .as_deref(),
        Some("cannot RELEASE a reservation that is SHIPPED")
    );
    // Shipped units left: A-2 and A-10 (2 + 1 of 3) are down to what was not reserved.
    let levels = w.levels().await;
    let sin: Vec<(&str, i64, i64)> = levels
        .iter()
        .filter(|l| l.0 == "SIN" && l.2 == "tee")
        .map(|l| (l.1.as_str(), l.3, l.4))
        .collect();
    assert_eq!(sin, [("A-10", 2, 0), ("A-2", 0, 0), ("B-1", 4, 0)]);

    let r = reserve(app, "o-2", MARINA, &[("tee", 5)], 0)
        .await
        .expect("reserve");
    let released = app
        .release(&checkout(), &rid(), &r.id.to_string())
        .await
        .expect("release");
    assert_eq!(released.status, "RELEASED");
    // A released order may be reserved again.
    reserve(app, "o-2", MARINA, &[("tee", 1)], 0)
        .await
        .expect("again");

    let kinds: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT type, SUM(available_delta)::BIGINT, SUM(reserved_delta)::BIGINT \
         FROM warehouse_movements WHERE reservation_id IS NOT NULL GROUP BY type ORDER BY type",
    )
    .fetch_all(&w.db.pool)
    .await
    .expect("movements");
    assert_eq!(
        kinds,
        [
            ("OUTBOUND".into(), 0, -3),
            ("RELEASE".into(), 5, -5),
            ("RESERVE".into(), -9, 9),
        ]
    );
    let events = w.events().await;
    let tail: Vec<&str> = events
        .iter()
        .rev()
        .take(6)
        .rev()
        .map(String::as_str)
        .collect();
    assert_eq!(
        tail,
        [
            "warehouse.reserved",
            "warehouse.picked",
            "warehouse.shipped",
            "warehouse.reserved",
            "warehouse.released",
            "warehouse.reserved",
        ]
    );
    assert_eq!(
        reason(app.reservation(&caller("ann", &[]), &id).await),
        "ROLE_REQUIRED"
    );
    assert_eq!(
        app.reservation(&staff(), &id).await.expect("get").status,
        "SHIPPED"
    );
    w.assert_balanced().await;
}

#[tokio::test]
async fn expired_reservations_are_released_by_the_job() {
    let w = World::new().await;
    region(&w).await;
    let app = &w.app;
    let short = reserve(app, "o-1", MARINA, &[("tee", 2)], 60)
        .await
        .expect("reserve");
    let long = reserve(app, "o-2", MARINA, &[("tee", 2)], 3600)
        .await
        .expect("reserve");
    let picked = reserve(app, "o-3", MARINA, &[("tee", 2)], 60)
        .await
        .expect("reserve");
    app.pick(&staff(), &rid(), &picked.id.to_string())
        .await
        .expect("pick");
    assert_eq!(app.expire().await.expect("expire"), 0);
    w.clock.advance(Duration::seconds(61));
    assert_eq!(app.expire().await.expect("expire"), 1);
    assert_eq!(app.expire().await.expect("again"), 0);
    let status = |id: uuid::Uuid| {
        let app = app.clone();
        async move {
            app.reservation(&staff(), &id.to_string())
                .await
                .expect("get")
                .status
        }
    };
    assert_eq!(status(short.id).await, "EXPIRED");
    assert_eq!(status(long.id).await, "RESERVED");
    assert_eq!(
        status(picked.id).await,
        "PICKED",
        "a picked reservation does not expire"
    );
    assert_eq!(
        reason(
            app.release(&checkout(), &rid(), &short.id.to_string())
                .await
        ),
        "ILLEGAL_TRANSITION"
    );
    let by: Vec<String> =
        sqlx::query_scalar("SELECT by_user FROM warehouse_movements WHERE type = 'RELEASE'")
            .fetch_all(&w.db.pool)
            .await
            .expect("release movements");
    assert_eq!(by, ["warehouse-expiry"]);
    assert!(w.events().await.contains(&"warehouse.expired".to_owned()));
    w.assert_balanced().await;
}

#[tokio::test]
async fn pick_lists_walk_the_bins_and_putaway_keeps_products_together() {
    let w = World::new().await;
    region(&w).await;
    let app = &w.app;
    let a = reserve(app, "o-1", MARINA, &[("tee", 6)], 0)
        .await
        .expect("reserve");
    let b = reserve(app, "o-2", MARINA, &[("mug", 1), ("tee", 1)], 0)
        .await
        .expect("reserve");
    // The picking list of SIN holds at most 4 lines (the test's setting): o-1's three, then
    // o-2's first, walked, B-1.
    let list = app.pick_list(&staff(), "SIN").await.expect("pick list");
    let pl = |bin: &str, p: &str, q: i64, r: &Reservation| PickLine {
        bin: bin.into(),
        product_id: p.into(),
        quantity: q,
        reservation_id: r.id,
        order_id: r.order_id.clone(),
    };
    assert_eq!(
        list,
        [
            pl("A-1", "mug", 1, &b),
            pl("A-2", "tee", 2, &a),
            pl("A-10", "tee", 3, &a),
            pl("B-1", "tee", 1, &a),
        ]
    );
    app.pick(&staff(), &rid(), &a.id.to_string())
        .await
        .expect("pick");
    let list = app.pick_list(&staff(), "SIN").await.expect("pick list");
    assert_eq!(list, [pl("A-1", "mug", 1, &b), pl("B-1", "tee", 1, &b)]);

    // Putaway of 1,500 tees in SIN: the bins holding tees first (A-2, A-10, B-1, in walk
    // order: A-2 is empty again but reserved units count), then the empty... none left, then
    // A-1 which holds a mug.
    let p = app
        .putaway(&staff(), "SIN", "tee", 1500)
        .await
        .expect("putaway");
    let got: Vec<(&str, i64)> = p.lines.iter().map(|l| (l.1.as_str(), l.2)).collect();
    assert_eq!(got, [("A-2", 998), ("A-10", 502)]);
    assert_eq!(p.unplaced, 0);
    let p = app
        .putaway(&staff(), "SIN", "tee", 4000)
        .await
        .expect("putaway");
    let got: Vec<(&str, i64)> = p.lines.iter().map(|l| (l.1.as_str(), l.2)).collect();
    assert_eq!(
        got,
        [("A-2", 998), ("A-10", 997), ("B-1", 996), ("A-1", 999)]
    );
    assert_eq!(p.unplaced, 4000 - 998 - 997 - 996 - 999);
    assert_eq!(
        field(app.putaway(&staff(), "SIN", "tee", 0).await),
        "quantity"
    );
}

#[tokio::test]
async fn bad_orders_name_the_field_and_change_nothing() {
    let w = World::new().await;
    region(&w).await;
    let before = w.snapshot().await;
    let app = &w.app;
    let form = |order_id, lat, lines: &'static [(&'static str, i64)], ttl| async move {
        reserve(app, order_id, (lat, 103.8), lines, ttl).await
    };
    assert_eq!(field(form("", 1.3, &[("tee", 1)], 0).await), "order_id");
    assert_eq!(
        field(form("o-1", 95.0, &[("tee", 1)], 0).await),
        "destination.lat"
    );
    assert_eq!(field(form("o-1", 1.3, &[], 0).await), "lines");
    assert_eq!(
        field(form("o-1", 1.3, &[("tee", 1), ("tee", 2)], 0).await),
        "lines[1].product_id"
    );
    assert_eq!(
        field(form("o-1", 1.3, &[("tee", 1), ("mug", 0)], 0).await),
        "lines[1].quantity"
    );
    assert_eq!(
        field(form("o-1", 1.3, &[("tee", 1)], 30).await),
        "ttl_seconds"
    );
    assert_eq!(
        field(app.release(&checkout(), &rid(), "not-a-uuid").await),
        "reservation_id"
    );
    assert_eq!(
        reason(
            app.release(&checkout(), &rid(), &uuid::Uuid::nil().to_string())
                .await
        ),
        "RESERVATION_NOT_FOUND"
    );
    assert_eq!(
        reason(
            app.reserve(
                &staff(),
                &rid(),
                &OrderForm {
                    order_id: "o-1",
                    lat: 1.3,
                    lng: 103.8,
                    lines: &lines(&[("tee", 1)]),
                    ttl_seconds: 0
                },
            )
            .await
        ),
        "ROLE_REQUIRED"
    );
    assert_eq!(w.snapshot().await, before);
}

/// 200 operations at once — reservations, reservations released again, transfers both ways
/// between two warehouses and adjustments down — then the ledger: every stock row equals the
/// sum of its movements, nothing negative, reserved units exactly the open reservations',
/// and the units on hand changed only by what adjustments and shipments took.
#[tokio::test]
async fn two_hundred_concurrent_operations_keep_the_ledger_balanced() {
    let w = World::new().await;
    w.warehouse("SIN", 1.35, 103.82, 10, &["A-1", "A-2"]).await;
    w.warehouse("JHB", 1.49, 103.74, 10, &["A-1", "A-2"]).await;
    for (wh, bin) in [
        ("SIN", "A-1"),
        ("SIN", "A-2"),
        ("JHB", "A-1"),
        ("JHB", "A-2"),
    ] {
        w.receive(wh, bin, "tee", 60).await;
    }
    let on_hand = 240;
    let mut tasks = Vec::new();
    for i in 0..200i64 {
        let app = w.app.clone();
        tasks.push(tokio::spawn(async move { operation(&app, i).await }));
    }
    let mut adjusted = 0;
    let mut refused = 0;
    for t in tasks {
        match t.await.expect("task") {
            Ok(delta) => adjusted += delta,
            Err(r) => {
                assert!(
                    ["INSUFFICIENT_STOCK", "OUT_OF_STOCK"].contains(&r),
                    "unexpected refusal {r}"
                );
                refused += 1;
            }
        }
    }
    w.assert_balanced().await;
    let total: i64 =
        sqlx::query_scalar("SELECT SUM(available + reserved)::BIGINT FROM warehouse_stock")
            .fetch_one(&w.db.pool)
            .await
            .expect("total");
    assert_eq!(total, on_hand + adjusted);
    let movements: i64 = sqlx::query_scalar("SELECT count(*) FROM warehouse_movements")
        .fetch_one(&w.db.pool)
        .await
        .expect("movements");
    assert!(
        movements > 4 + 100,
        "{movements} movements, {refused} refusals"
    );
}

/// One of the concurrent operations; the units it took off the books (adjustments), or the
/// refusal's reason.
async fn operation(app: &Arc<App>, i: i64) -> Result<i64, &'static str> {
    let refusal = |e: WarehouseError| {
        use titan_kit::ServiceError;
        e.reason().unwrap_or("NO_REASON")
    };
    let order = format!("o-{i}");
    let q = i % 7 + 1;
    let to = if i % 2 == 0 {
        (1.35, 103.82)
    } else {
        (1.49, 103.74)
    };
    match i % 5 {
        0 | 1 => {
            let r = reserve(app, &order, to, &[("tee", q)], 0)
                .await
                .map_err(refusal)?;
            if i % 5 == 1 {
                app.release(&checkout(), &rid(), &r.id.to_string())
                    .await
                    .map_err(refusal)?;
            }
            Ok(0)
        }
        2 | 3 => {
            let (a, b) = if i % 2 == 0 {
                ("SIN", "JHB")
            } else {
                ("JHB", "SIN")
            };
            let bin = if i % 3 == 0 { "A-1" } else { "A-2" };
            app.transfer(
                &staff(),
                &rid(),
                at(a, bin, "tee"),
                at(b, "A-1", "tee"),
                q,
                "move",
            )
            .await
            .map_err(refusal)?;
            Ok(0)
        }
        _ => {
            let bin = if i % 2 == 0 { "A-1" } else { "A-2" };
            let wh = if i % 3 == 0 { "SIN" } else { "JHB" };
            app.adjust(&staff(), &rid(), at(wh, bin, "tee"), -q, "damaged")
                .await
                .map_err(refusal)?;
            Ok(-q)
        }
    }
}
