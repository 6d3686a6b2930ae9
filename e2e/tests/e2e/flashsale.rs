//! A flash sale over gRPC against the real binary: admin set-up, a purchase, a typed refusal,
//! the role check and the watch stream.

use titan_e2e::{Cell, CellOptions, authed, seconds_from_now as ts};
use titan_kit::error::reason_of;
use titan_proto::flashsale::v1::{self as pb, flash_sale_service_client::FlashSaleServiceClient};
use tonic::Code;

#[tokio::test(flavor = "multi_thread")]
async fn a_sale_over_grpc() {
    let cell = Cell::start_with(CellOptions {
        services: vec!["flashsale".into()],
        ..CellOptions::default()
    })
    .await;
    let mut client = FlashSaleServiceClient::new(cell.channel().await);
    let admin = cell.token("admin-1", &["admin"]);
    let alice = cell.token("alice", &[]);
    let bob = cell.token("bob", &[]);
    let payments = cell.token("payments", &["service"]);
    let spec = pb::SaleSpec {
        product_id: "sku-1".into(),
        original_price: Some(pb::Money {
            currency: "USD".into(),
            minor_units: 1_000,
        }),
        sale_price: Some(pb::Money {
            currency: "USD".into(),
            minor_units: 700,
        }),
        total_quantity: 3,
        max_per_user: 3,
        starts_at: Some(ts(-1)),
        ends_at: Some(ts(3600)),
        pow_difficulty: 0,
    };

    let denied = client
        .create_sale(authed(
            pb::CreateSaleRequest {
                request_id: "c1".into(),
                spec: Some(spec.clone()),
            },
            &alice,
        ))
        .await
        .expect_err("buyers cannot create sales");
    assert_eq!(denied.code(), Code::PermissionDenied);

    let sale = client
        .create_sale(authed(
            pb::CreateSaleRequest {
                request_id: "c1".into(),
                spec: Some(spec),
            },
            &admin,
        ))
        .await
        .expect("create")
        .into_inner()
        .sale
        .expect("sale");
    assert_eq!(sale.discount_percent, 30);
    client
        .warm_up_sale(authed(
            pb::WarmUpSaleRequest {
                sale_id: sale.id.clone(),
            },
            &admin,
        ))
        .await
        .expect("warm up");

    let mut watch = client
        .watch_sale(authed(
            pb::WatchSaleRequest {
                sale_id: sale.id.clone(),
            },
            &bob,
        ))
        .await
        .expect("watch")
        .into_inner();
    let first = watch
        .message()
        .await
        .expect("update")
        .expect("first update");
    assert_eq!(
        (first.remaining, first.status),
        (3, pb::SaleStatus::Active as i32)
    );

    let attempt = |request_id: &str, quantity: u32, token: &str| {
        authed(
            pb::AttemptPurchaseRequest {
                request_id: request_id.into(),
                sale_id: sale.id.clone(),
                quantity,
                challenge: String::new(),
                nonce: String::new(),
            },
            token,
        )
    };
    let reserved = client
        .attempt_purchase(attempt("a1", 3, &alice))
        .await
        .expect("reserve")
        .into_inner();
    assert_eq!((reserved.quantity, reserved.remaining), (3, 0));

    let refused = client
        .attempt_purchase(attempt("b1", 1, &bob))
        .await
        .expect_err("sold out");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(reason_of(&refused).as_deref(), Some("SOLD_OUT"));

    let moved = loop {
        let update = watch
            .message()
            .await
            .expect("update")
            .expect("an update after the purchase");
        if update.remaining == 0 {
            break update;
        }
    };
    assert_eq!(
        moved.status,
        pb::SaleStatus::Active as i32,
        "units held by a reservation may come back"
    );

    let confirm = |token: &str| {
        authed(
            pb::ConfirmPurchaseRequest {
                request_id: "p1".into(),
                reservation_id: reserved.reservation_id.clone(),
                payment_reference: "pay-1".into(),
                buyer_id: "alice".into(),
            },
            token,
        )
    };
    let refused = client
        .confirm_purchase(confirm(&alice))
        .await
        .expect_err("a buyer naming her own payment");
    assert_eq!(
        (refused.code(), reason_of(&refused).as_deref()),
        (Code::PermissionDenied, Some("SERVICE_ONLY"))
    );
    let order = client
        .confirm_purchase(confirm(&payments))
        .await
        .expect("confirm")
        .into_inner()
        .order
        .expect("order");
    assert_eq!(order.total.map(|m| m.minor_units), Some(2_100));

    let stats = client
        .get_sale_stats(authed(
            pb::GetSaleStatsRequest {
                sale_id: sale.id.clone(),
            },
            &admin,
        ))
        .await
        .expect("stats")
        .into_inner();
    assert_eq!(
        (stats.units_sold, stats.units_remaining, stats.confirmations),
        (3, 0, 1)
    );
    assert_eq!(stats.refusals.get("SOLD_OUT"), Some(&1));

    let (_, metrics) = cell.get("/metrics").await;
    assert!(
        metrics.contains(r#"titan_flashsale_attempts_total{outcome="SOLD_OUT"} 1"#),
        "{metrics}"
    );
}
