//! Coupons and gamification over gRPC against the real binary: a coupon validated, redeemed to
//! its limit and given back; a flash-sale purchase that earns points through the bus
//! (`flashsale.purchased` → outbox → relay → the gamification consumer) and reaches the
//! leaderboard.

use titan_e2e::{Cell, CellOptions, authed, seconds_from_now as ts};
use titan_kit::{error::reason_of, testing::eventually};
use titan_proto::{
    coupon::v1::{self as cpb, coupon_service_client::CouponServiceClient},
    flashsale::v1::{self as fpb, flash_sale_service_client::FlashSaleServiceClient},
    gamification::v1::{self as gpb, gamification_service_client::GamificationServiceClient},
};
use tonic::Code;

fn cart() -> Option<cpb::Cart> {
    Some(cpb::Cart {
        items: vec![cpb::CartItem {
            product_id: "sku-1".into(),
            category_id: "shoes".into(),
            unit_price: 1_999,
            quantity: 1,
        }],
        shipping_fee: 500,
        currency: "USD".into(),
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn coupons_and_points_over_grpc() {
    let cell = Cell::start_with(CellOptions {
        services: vec!["flashsale".into(), "coupon".into(), "gamification".into()],
        ..CellOptions::default()
    })
    .await;
    let channel = cell.channel().await;
    let admin = cell.token("admin-1", &["admin"]);
    let alice = cell.token("alice", &[]);
    let bob = cell.token("bob", &[]);
    // Checkout and payment: the service identity that decides money for shoppers.
    let checkout = cell.token("checkout", &["service"]);

    // A 10% coupon with one use: 10% of 19.99 is 2.00 (1.999 rounded half-up).
    let mut coupons = CouponServiceClient::new(channel.clone());
    coupons
        .create_coupon(authed(
            cpb::CreateCouponRequest {
                request_id: "c-1".into(),
                spec: Some(cpb::CouponSpec {
                    code: " welcome10 ".into(),
                    r#type: cpb::CouponType::Percentage as i32,
                    value: 1_000,
                    total_limit: 1,
                    valid_from: Some(ts(-60)),
                    valid_until: Some(ts(3_600)),
                    ..Default::default()
                }),
            },
            &admin,
        ))
        .await
        .expect("create coupon");
    let v = coupons
        .validate_coupon(authed(
            cpb::ValidateCouponRequest {
                code: "WELCOME10".into(),
                cart: cart(),
            },
            &alice,
        ))
        .await
        .expect("validate")
        .into_inner();
    assert!(v.valid, "{v:?}");
    assert_eq!(v.discount.map(|d| d.minor_units), Some(200));
    let redeem = |token: &str, shopper: &str, order: &str| {
        authed(
            cpb::RedeemCouponRequest {
                request_id: format!("r-{order}"),
                codes: vec!["welcome10".into()],
                cart: cart(),
                order_id: order.into(),
                shopper_id: shopper.into(),
            },
            token,
        )
    };
    let refused = coupons
        .redeem_coupon(redeem(&alice, "alice", "o-1"))
        .await
        .expect_err("a shopper redeeming with her own prices");
    assert_eq!(
        (refused.code(), reason_of(&refused).as_deref()),
        (Code::PermissionDenied, Some("SERVICE_ONLY"))
    );
    let done = coupons
        .redeem_coupon(redeem(&checkout, "alice", "o-1"))
        .await
        .expect("redeem")
        .into_inner();
    assert_eq!(done.total_discount.map(|d| d.minor_units), Some(200));
    let refused = coupons
        .redeem_coupon(redeem(&checkout, "bob", "o-2"))
        .await
        .expect_err("used up");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(reason_of(&refused).as_deref(), Some("COUPON_DEPLETED"));
    let back = coupons
        .reverse_redemption(authed(
            cpb::ReverseRedemptionRequest {
                request_id: "x-1".into(),
                order_id: "o-1".into(),
            },
            &checkout,
        ))
        .await
        .expect("reverse")
        .into_inner();
    assert_eq!(back.reversed.len(), 1);
    coupons
        .redeem_coupon(redeem(&checkout, "bob", "o-2"))
        .await
        .expect("the use came back");

    // Alice buys 3 × 7.00 in a flash sale: 21 points, through the bus.
    let mut sales = FlashSaleServiceClient::new(channel.clone());
    let sale = sales
        .create_sale(authed(
            fpb::CreateSaleRequest {
                request_id: "s-1".into(),
                spec: Some(fpb::SaleSpec {
                    product_id: "sku-1".into(),
                    original_price: Some(fpb::Money {
                        currency: "USD".into(),
                        minor_units: 1_000,
                    }),
                    sale_price: Some(fpb::Money {
                        currency: "USD".into(),
                        minor_units: 700,
                    }),
                    total_quantity: 10,
                    max_per_user: 5,
                    starts_at: Some(ts(-1)),
                    ends_at: Some(ts(3_600)),
                    pow_difficulty: 0,
                }),
            },
            &admin,
        ))
        .await
        .expect("create sale")
        .into_inner()
        .sale
        .expect("sale");
    sales
        .warm_up_sale(authed(
            fpb::WarmUpSaleRequest {
                sale_id: sale.id.clone(),
            },
            &admin,
        ))
        .await
        .expect("warm up");
    let reservation = sales
        .attempt_purchase(authed(
            fpb::AttemptPurchaseRequest {
                request_id: "a-1".into(),
                sale_id: sale.id.clone(),
                quantity: 3,
                challenge: String::new(),
                nonce: String::new(),
            },
            &alice,
        ))
        .await
        .expect("reserve")
        .into_inner();
    sales
        .confirm_purchase(authed(
            fpb::ConfirmPurchaseRequest {
                request_id: "p-1".into(),
                reservation_id: reservation.reservation_id,
                payment_reference: "pay-1".into(),
                buyer_id: "alice".into(),
            },
            &checkout,
        ))
        .await
        .expect("confirm");

    let mut game = GamificationServiceClient::new(channel);
    let account = eventually("alice's purchase points", || {
        let mut game = game.clone();
        let alice = alice.clone();
        async move {
            let a = game
                .get_account(authed(gpb::GetAccountRequest::default(), &alice))
                .await
                .ok()?
                .into_inner()
                .account?;
            (a.balance > 0).then_some(a)
        }
    })
    .await;
    assert_eq!(
        (account.balance, account.purchases, account.level),
        (21, 1, 1)
    );
    let top = eventually("alice on the leaderboard", || {
        let mut game = game.clone();
        let bob = bob.clone();
        async move {
            let page = game
                .get_leaderboard(authed(
                    gpb::GetLeaderboardRequest {
                        period: gpb::Period::AllTime as i32,
                        page: 0,
                    },
                    &bob,
                ))
                .await
                .ok()?
                .into_inner();
            page.entries.into_iter().next()
        }
    })
    .await;
    assert_eq!(
        (top.rank, top.user_id.as_str(), top.points),
        (1, "alice", 21)
    );
    let denied = game
        .award(authed(
            gpb::AwardRequest {
                user_id: "alice".into(),
                action: gpb::Action::Review as i32,
                source_id: "rev-1".into(),
                purchase_total: None,
            },
            &alice,
        ))
        .await
        .expect_err("shoppers cannot award points");
    assert_eq!(denied.code(), Code::PermissionDenied);
}
