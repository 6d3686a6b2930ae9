//! The gRPC edge: the caller comes from the token, admin calls need the admin role, bad input is
//! InvalidArgument, refusals carry their reason.

use titan_coupon::grpc::Grpc;
use titan_kit::{auth::Caller, error::reason_of};
use titan_proto::coupon::v1::{self as pb, coupon_service_server::CouponService};
use tonic::{Code, Request};

use crate::{World, admin, checkout, epoch, shopper};

fn as_caller<T>(caller: Option<Caller>, body: T) -> Request<T> {
    let mut r = Request::new(body);
    if let Some(c) = caller {
        r.extensions_mut().insert(c);
    }
    r
}

fn ts(t: chrono::DateTime<chrono::Utc>) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: 0,
    })
}

fn pb_spec(code: &str) -> pb::CouponSpec {
    pb::CouponSpec {
        code: code.into(),
        r#type: pb::CouponType::Percentage as i32,
        value: 1500,
        total_limit: 1,
        valid_from: ts(epoch()),
        valid_until: ts(epoch() + chrono::Duration::days(30)),
        ..Default::default()
    }
}

fn pb_cart(price: i64) -> Option<pb::Cart> {
    Some(pb::Cart {
        items: vec![pb::CartItem {
            product_id: "a".into(),
            category_id: "x".into(),
            unit_price: price,
            quantity: 1,
        }],
        shipping_fee: 0,
        currency: "USD".into(),
    })
}

#[tokio::test]
async fn the_edge_maps_callers_inputs_and_refusals() {
    let w = World::new().await;
    let g = Grpc::new(w.app.clone());
    let create = |caller, code: &str| {
        as_caller(
            caller,
            pb::CreateCouponRequest {
                request_id: "c-1".into(),
                spec: Some(pb_spec(code)),
            },
        )
    };
    let e = g
        .create_coupon(create(None, "G"))
        .await
        .expect_err("anonymous");
    assert_eq!(e.code(), Code::Unauthenticated);
    let e = g
        .create_coupon(create(Some(shopper(1)), "G"))
        .await
        .expect_err("not admin");
    assert_eq!(e.code(), Code::PermissionDenied);
    let mut no_type = pb_spec("G");
    no_type.r#type = 0;
    let e = g
        .create_coupon(as_caller(
            Some(admin()),
            pb::CreateCouponRequest {
                request_id: "c-0".into(),
                spec: Some(no_type),
            },
        ))
        .await
        .expect_err("no type");
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains("coupon type is required"),
        "{}",
        e.message()
    );
    let made = g
        .create_coupon(create(Some(admin()), " g15 "))
        .await
        .expect("create");
    let made = made.into_inner().coupon.expect("coupon");
    assert_eq!(made.status, pb::CouponStatus::Active as i32);
    assert_eq!(made.spec.expect("spec").code, "G15");

    // 15% of 19.99 = 3.00, half-up.
    let v = g
        .validate_coupon(as_caller(
            Some(shopper(1)),
            pb::ValidateCouponRequest {
                code: "g15".into(),
                cart: pb_cart(1999),
            },
        ))
        .await
        .expect("validate")
        .into_inner();
    assert!(v.valid);
    assert_eq!(v.discount.map(|d| d.minor_units), Some(300));
    let v = g
        .validate_coupon(as_caller(
            Some(shopper(1)),
            pb::ValidateCouponRequest {
                code: "none".into(),
                cart: pb_cart(1999),
            },
        ))
        .await
        .expect("validate")
        .into_inner();
    assert_eq!((v.valid, v.reason.as_str()), (false, "COUPON_NOT_FOUND"));
    let e = g
        .validate_coupon(as_caller(
            Some(shopper(1)),
            pb::ValidateCouponRequest {
                code: "G15".into(),
                cart: pb_cart(-5),
            },
        ))
        .await
        .expect_err("negative price");
    assert_eq!(e.code(), Code::InvalidArgument);

    let redeem = |by: Caller, who: Caller, order: &str| {
        as_caller(
            Some(by),
            pb::RedeemCouponRequest {
                request_id: format!("r-{order}"),
                codes: vec!["G15".into()],
                cart: pb_cart(1999),
                order_id: order.into(),
                shopper_id: who.user_id,
            },
        )
    };
    // The shopper's own token may preview (ValidateCoupon) but never redeem with its own prices.
    let e = g
        .redeem_coupon(redeem(shopper(1), shopper(1), "o-1"))
        .await
        .expect_err("a shopper redeeming");
    assert_eq!(
        (e.code(), reason_of(&e).as_deref()),
        (Code::PermissionDenied, Some("SERVICE_ONLY"))
    );
    let done = g
        .redeem_coupon(redeem(checkout(), shopper(1), "o-1"))
        .await
        .expect("redeem")
        .into_inner();
    assert_eq!(done.total_discount.map(|d| d.minor_units), Some(300));
    let e = g
        .redeem_coupon(redeem(checkout(), shopper(2), "o-2"))
        .await
        .expect_err("depleted");
    assert_eq!(
        (e.code(), reason_of(&e).as_deref()),
        (Code::FailedPrecondition, Some("COUPON_DEPLETED"))
    );
    let e = g
        .reverse_redemption(as_caller(
            Some(shopper(2)),
            pb::ReverseRedemptionRequest {
                request_id: "x".into(),
                order_id: "o-1".into(),
            },
        ))
        .await
        .expect_err("a shopper reversing");
    assert_eq!(
        (e.code(), reason_of(&e).as_deref()),
        (Code::PermissionDenied, Some("SERVICE_ONLY"))
    );
    let back = g
        .reverse_redemption(as_caller(
            Some(admin()),
            pb::ReverseRedemptionRequest {
                request_id: "x".into(),
                order_id: "o-1".into(),
            },
        ))
        .await
        .expect("an admin may reverse")
        .into_inner();
    assert_eq!(back.reversed.len(), 1);
    let usage = g
        .get_coupon_usage(as_caller(
            Some(admin()),
            pb::GetCouponUsageRequest { code: "G15".into() },
        ))
        .await
        .expect("usage")
        .into_inner()
        .usage
        .expect("usage");
    assert_eq!((usage.redemptions, usage.reversals), (0, 1));
    let e = g
        .get_coupon_usage(as_caller(
            Some(admin()),
            pb::GetCouponUsageRequest {
                code: "NOPE".into(),
            },
        ))
        .await
        .expect_err("unknown");
    assert_eq!(e.code(), Code::NotFound);
}
