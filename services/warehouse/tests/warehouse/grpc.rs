//! The service as the `titan` binary runs it — kit's runtime, its migrations and JWT auth —
//! driven over gRPC: an admin defines a warehouse and a bin, staff receive stock, a service
//! reserves an order (part of it short), staff pick and ship it; refusals arrive with their
//! codes and ErrorInfo reasons, and a bad request changes nothing.

use std::{collections::BTreeMap, time::Duration};

use titan_kit::{
    auth::Authenticator,
    config::Config,
    error::reason_of,
    runtime,
    testing::{TestPostgres, TestRedis},
};
use titan_proto::warehouse::v1::{self as pb, warehouse_service_client::WarehouseServiceClient};
use titan_warehouse::service;
use tonic::{Code, Request};

use crate::rid;

const SECRET: &str = "warehouse-tests-secret-warehouse-tests";

fn config(db: &TestPostgres, redis: &TestRedis) -> Config {
    let vars = BTreeMap::from([
        ("TITAN_GRPC_ADDR", "127.0.0.1:0".to_owned()),
        ("TITAN_HTTP_ADDR", "127.0.0.1:0".to_owned()),
        ("TITAN_ADMIN_ADDR", "127.0.0.1:0".to_owned()),
        ("TITAN_AUTH_HS256_SECRET", SECRET.to_owned()),
        ("TITAN_POSTGRES_URL", db.url.clone()),
        ("TITAN_REDIS_URL", redis.url.clone()),
        ("TITAN_REDIS_KEY_PREFIX", redis.config.key_prefix.clone()),
    ]);
    Config::from_sources(None, move |name| vars.get(name).cloned()).expect("config")
}

fn authed<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    request
}

fn place(bin: &str, product_id: &str) -> Option<pb::Place> {
    Some(pb::Place {
        warehouse: "SIN-1".into(),
        bin: bin.into(),
        product_id: product_id.into(),
    })
}

#[tokio::test]
async fn an_order_from_receipt_to_shipment_over_grpc() {
    let db = TestPostgres::new().await;
    let redis = TestRedis::new().await;
    let config = config(&db, &redis);
    runtime::migrate(&config, &[service()])
        .await
        .expect("migrate");
    let auth = Authenticator::new(&config.auth).expect("auth");
    let ttl = Duration::from_secs(600);
    let admin = auth
        .mint("root", &["admin".to_owned()], ttl)
        .expect("token");
    let staff = auth
        .mint("picker", &["warehouse".to_owned()], ttl)
        .expect("token");
    let checkout = auth
        .mint("checkout", &["service".to_owned()], ttl)
        .expect("token");
    let served = titan_kit::testing::serve(config, vec![service()]).await;
    let mut client = WarehouseServiceClient::new(served.channel);

    let w = client
        .create_warehouse(authed(
            pb::CreateWarehouseRequest {
                request_id: rid(),
                code: "sin-1".into(),
                name: "Jurong".into(),
                address: "1 Pioneer Rd".into(),
                lat: 1.3521,
                lng: 103.8198,
                capacity: 5000,
                priority: 10,
            },
            &admin,
        ))
        .await
        .expect("warehouse")
        .into_inner();
    assert_eq!((w.code.as_str(), w.status.as_str()), ("SIN-1", "ACTIVE"));
    client
        .create_bin(authed(
            pb::CreateBinRequest {
                request_id: rid(),
                warehouse: "SIN-1".into(),
                zone: "A".into(),
                bin: "A-01".into(),
                capacity: 500,
            },
            &admin,
        ))
        .await
        .expect("bin");
    let got = client
        .receive_stock(authed(
            pb::ReceiveStockRequest {
                request_id: rid(),
                place: place("A-01", "tee"),
                r#type: "INBOUND".into(),
                quantity: 10,
                reference: "po-1".into(),
            },
            &staff,
        ))
        .await
        .expect("receive")
        .into_inner();
    assert_eq!(got.levels[0].available, 10);

    let bad = client
        .receive_stock(authed(
            pb::ReceiveStockRequest {
                request_id: rid(),
                place: place("A-01", "tee"),
                r#type: "INBOUND".into(),
                quantity: 0,
                reference: String::new(),
            },
            &staff,
        ))
        .await
        .expect_err("zero units");
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert_eq!(
        bad.message(),
        "quantity: is 0; it must be 1 to 1000000 units"
    );
    assert_eq!(reason_of(&bad).as_deref(), Some("INVALID_ARGUMENT"));
    let no_place = client
        .adjust_stock(authed(
            pb::AdjustStockRequest {
                request_id: rid(),
                place: None,
                delta: -1,
                reason: "count".into(),
            },
            &staff,
        ))
        .await
        .expect_err("no place");
    assert_eq!(no_place.message(), "place: is required");

    let order = |request_id: String| pb::ReserveRequest {
        request_id,
        order_id: "o-1".into(),
        destination_lat: 1.29,
        destination_lng: 103.85,
        lines: vec![pb::OrderLine {
            product_id: "tee".into(),
            quantity: 12,
        }],
        ttl_seconds: 0,
    };
    let denied = client
        .reserve(authed(order(rid()), &staff))
        .await
        .expect_err("staff do not reserve");
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert_eq!(reason_of(&denied).as_deref(), Some("ROLE_REQUIRED"));
    let unauthenticated = client
        .reserve(Request::new(order(rid())))
        .await
        .expect_err("no token");
    assert_eq!(unauthenticated.code(), Code::Unauthenticated);

    let id = rid();
    let r = client
        .reserve(authed(order(id.clone()), &checkout))
        .await
        .expect("reserve")
        .into_inner();
    assert_eq!(r.status, "RESERVED");
    assert_eq!(
        r.lines,
        [pb::ReservedLine {
            warehouse: "SIN-1".into(),
            bin: "A-01".into(),
            product_id: "tee".into(),
            quantity: 10,
        }]
    );
    assert_eq!(
        r.short,
        [pb::Shortage {
            product_id: "tee".into(),
            requested: 12,
            short: 2,
        }]
    );
    let again = client
        .reserve(authed(order(id), &checkout))
        .await
        .expect("replay")
        .into_inner();
    assert_eq!(
        again, r,
        "a retried request id answers the first reservation"
    );

    let list = client
        .get_pick_list(authed(
            pb::GetPickListRequest {
                warehouse: "SIN-1".into(),
            },
            &staff,
        ))
        .await
        .expect("pick list")
        .into_inner();
    assert_eq!(list.lines.len(), 1);
    assert_eq!(list.lines[0].reservation_id, r.id);
    let early = client
        .ship_reservation(authed(
            pb::ShipReservationRequest {
                request_id: rid(),
                reservation_id: r.id.clone(),
            },
            &staff,
        ))
        .await
        .expect_err("not picked");
    assert_eq!(early.code(), Code::FailedPrecondition);
    assert_eq!(
        early.message(),
        "cannot SHIP a reservation that is RESERVED"
    );
    client
        .pick_reservation(authed(
            pb::PickReservationRequest {
                request_id: rid(),
                reservation_id: r.id.clone(),
            },
            &staff,
        ))
        .await
        .expect("pick");
    let shipped = client
        .ship_reservation(authed(
            pb::ShipReservationRequest {
                request_id: rid(),
                reservation_id: r.id.clone(),
            },
            &staff,
        ))
        .await
        .expect("ship")
        .into_inner();
    assert_eq!(shipped.status, "SHIPPED");
    let stock = client
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
        stock.levels,
        [pb::StockLevel {
            warehouse: "SIN-1".into(),
            bin: "A-01".into(),
            product_id: "tee".into(),
            available: 0,
            reserved: 0,
        }]
    );
    let moves = client
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
        .into_inner();
    let kinds: Vec<(&str, i64, i64)> = moves
        .movements
        .iter()
        .map(|m| (m.r#type.as_str(), m.available_delta, m.reserved_delta))
        .collect();
    assert_eq!(
        kinds,
        [
            ("OUTBOUND", 0, -10),
            ("RESERVE", -10, 10),
            ("INBOUND", 10, 0)
        ]
    );
}
