//! Warehouse against two real `titan serve warehouse` processes sharing PostgreSQL and Redis:
//! an admin defines a warehouse and a bin on replica A, staff receive 10 units on B, then 20
//! orders of one unit each are reserved at once, half through each replica: exactly 10 are
//! reserved and 10 are OUT_OF_STOCK, the stock row is 0 available and 10 reserved, the ledger
//! has one RESERVE movement per reservation, and `warehouse.reserved` reaches the bus.

use titan_e2e::{Cell, CellOptions, authed};
use titan_kit::{error::reason_of, testing::eventually};
use titan_proto::warehouse::v1::{self as pb, warehouse_service_client::WarehouseServiceClient};

fn rid() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_orders_on_two_replicas_reserve_exactly_the_ten_in_stock() {
    let cell = Cell::start_with(CellOptions {
        services: vec!["warehouse".into()],
        ..CellOptions::default()
    })
    .await;
    let b = cell.replica();
    let admin = cell.token("root", &["admin"]);
    let staff = cell.token("picker", &["warehouse"]);
    let checkout = cell.token("checkout", &["service"]);
    let mut on_a = WarehouseServiceClient::new(cell.channel().await);
    let mut on_b = WarehouseServiceClient::new(b.channel().await);

    on_a.create_warehouse(authed(
        pb::CreateWarehouseRequest {
            request_id: rid(),
            code: "SIN-1".into(),
            name: "Jurong".into(),
            address: "1 Pioneer Rd".into(),
            lat: 1.3521,
            lng: 103.8198,
            capacity: 1000,
            priority: 10,
        },
        &admin,
    ))
    .await
    .expect("warehouse");
    on_a.create_bin(authed(
        pb::CreateBinRequest {
            request_id: rid(),
            warehouse: "SIN-1".into(),
            zone: "A".into(),
            bin: "A-01".into(),
            capacity: 100,
        },
        &admin,
    ))
    .await
    .expect("bin");
    on_b.receive_stock(authed(
        pb::ReceiveStockRequest {
            request_id: rid(),
            place: Some(pb::Place {
                warehouse: "SIN-1".into(),
                bin: "A-01".into(),
                product_id: "tee".into(),
            }),
            r#type: "INBOUND".into(),
            quantity: 10,
            reference: "po-1".into(),
        },
        &staff,
    ))
    .await
    .expect("receive");

    let mut orders = Vec::new();
    for i in 0..20 {
        let mut client = if i % 2 == 0 {
            on_a.clone()
        } else {
            on_b.clone()
        };
        let token = checkout.clone();
        orders.push(tokio::spawn(async move {
            client
                .reserve(authed(
                    pb::ReserveRequest {
                        request_id: rid(),
                        order_id: format!("o-{i}"),
                        destination_lat: 1.29,
                        destination_lng: 103.85,
                        lines: vec![pb::OrderLine {
                            product_id: "tee".into(),
                            quantity: 1,
                        }],
                        ttl_seconds: 0,
                    },
                    &token,
                ))
                .await
        }));
    }
    let (mut reserved, mut out) = (0, 0);
    for o in orders {
        match o.await.expect("task") {
            Ok(r) => {
                assert_eq!(r.into_inner().status, "RESERVED");
                reserved += 1;
            }
            Err(s) => {
                assert_eq!(reason_of(&s).as_deref(), Some("OUT_OF_STOCK"), "{s:?}");
                out += 1;
            }
        }
    }
    assert_eq!((reserved, out), (10, 10));

    let stock = on_b
        .get_stock(authed(
            pb::GetStockRequest {
                product_id: "tee".into(),
                page_size: 0,
            },
            &checkout,
        ))
        .await
        .expect("stock")
        .into_inner();
    assert_eq!(
        stock
            .levels
            .iter()
            .map(|l| (l.available, l.reserved))
            .collect::<Vec<_>>(),
        [(0, 10)]
    );
    let moves = on_a
        .list_movements(authed(
            pb::ListMovementsRequest {
                warehouse: "SIN-1".into(),
                product_id: "tee".into(),
                before_id: 0,
                page_size: 0,
            },
            &staff,
        ))
        .await
        .expect("movements")
        .into_inner()
        .movements;
    let reserves = moves.iter().filter(|m| m.r#type == "RESERVE").count();
    assert_eq!((moves.len(), reserves), (11, 10));

    let stream_key = titan_kit::events::stream_key(&cell.redis.handle, "warehouse");
    let on_bus = eventually("ten warehouse.reserved on the bus", || {
        let mut conn = cell.redis.handle.conn.clone();
        let key = stream_key.clone();
        async move {
            let entries: redis::streams::StreamRangeReply =
                redis::AsyncCommands::xrange_all(&mut conn, &key)
                    .await
                    .ok()?;
            let n = entries
                .ids
                .iter()
                .filter(|e| e.get::<String>("type").as_deref() == Some("warehouse.reserved"))
                .count();
            (n == 10).then_some(n)
        }
    })
    .await;
    assert_eq!(on_bus, 10);
}
