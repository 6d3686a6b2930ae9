//! The coupon gRPC edge: proto ↔ domain, the admin role check, errors → status.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use titan_kit::{
    auth,
    error::to_status,
    money::Money,
    wire::{self, timestamp},
};
use titan_proto::coupon::v1::{self as pb, coupon_service_server::CouponService};
use tonic::{Request, Response, Status};

use crate::{
    app::{CouponCache, CouponError, CouponStore, CouponView, Coupons, Redemption, Usage},
    domain::{Cart, CartItem, CouponKind, CouponSpec, CouponStatus, RawSpec},
};

const DOMAIN: &str = "coupon.titan.dev";
const ADMIN: &str = "admin";

fn status(e: CouponError) -> Status {
    to_status(DOMAIN, &e)
}

fn invalid(msg: impl Into<String>) -> Status {
    status(CouponError::Invalid(msg.into()))
}

fn time(field: &str, t: Option<prost_types::Timestamp>) -> Result<DateTime<Utc>, Status> {
    wire::required_time(field, t.as_ref()).map_err(invalid)
}

fn money(m: Money) -> pb::Money {
    pb::Money {
        currency: m.currency.to_string(),
        minor_units: m.minor_units,
    }
}

fn kind(k: i32) -> Option<CouponKind> {
    match pb::CouponType::try_from(k).ok()? {
        pb::CouponType::Unspecified => None,
        pb::CouponType::Percentage => Some(CouponKind::Percentage),
        pb::CouponType::FixedAmount => Some(CouponKind::FixedAmount),
        pb::CouponType::FreeShipping => Some(CouponKind::FreeShipping),
        pb::CouponType::Bogo => Some(CouponKind::Bogo),
    }
}

fn kind_code(k: CouponKind) -> pb::CouponType {
    match k {
        CouponKind::Percentage => pb::CouponType::Percentage,
        CouponKind::FixedAmount => pb::CouponType::FixedAmount,
        CouponKind::FreeShipping => pb::CouponType::FreeShipping,
        CouponKind::Bogo => pb::CouponType::Bogo,
    }
}

fn raw_spec(spec: Option<pb::CouponSpec>) -> Result<RawSpec, Status> {
    let s = spec.ok_or_else(|| invalid("spec is required"))?;
    Ok(RawSpec {
        code: s.code,
        kind: kind(s.r#type),
        value: s.value,
        currency: s.currency,
        min_order_value: s.min_order_value,
        max_discount: s.max_discount,
        total_limit: s.total_limit,
        per_user_limit: s.per_user_limit,
        valid_from: time("spec.valid_from", s.valid_from)?,
        valid_until: time("spec.valid_until", s.valid_until)?,
        product_ids: s.product_ids,
        category_ids: s.category_ids,
        exclusive: s.exclusive,
        campaign: s.campaign,
        buy_quantity: s.buy_quantity,
        get_quantity: s.get_quantity,
    })
}

fn spec(s: &CouponSpec) -> pb::CouponSpec {
    pb::CouponSpec {
        code: s.code.to_string(),
        r#type: kind_code(s.kind) as i32,
        value: s.value,
        currency: s.currency.map(|c| c.to_string()).unwrap_or_default(),
        min_order_value: s.min_order_value,
        max_discount: s.max_discount,
        total_limit: s.total_limit,
        per_user_limit: s.per_user_limit,
        valid_from: Some(timestamp(s.valid_from)),
        valid_until: Some(timestamp(s.valid_until)),
        product_ids: s.product_ids.clone(),
        category_ids: s.category_ids.clone(),
        exclusive: s.exclusive,
        campaign: s.campaign.clone(),
        buy_quantity: s.buy_quantity,
        get_quantity: s.get_quantity,
    }
}

fn usage(u: Usage) -> pb::Usage {
    pb::Usage {
        redemptions: u.redemptions,
        reversals: u.reversals,
        unique_users: u.unique_users,
        discount_given: u
            .discount_given
            .into_iter()
            .map(|(currency, minor_units)| pb::Money {
                currency,
                minor_units,
            })
            .collect(),
    }
}

fn coupon(v: CouponView) -> pb::Coupon {
    pb::Coupon {
        spec: Some(spec(&v.coupon.spec)),
        status: match v.status {
            CouponStatus::Active => pb::CouponStatus::Active,
            CouponStatus::Paused => pb::CouponStatus::Paused,
            CouponStatus::Expired => pb::CouponStatus::Expired,
            CouponStatus::Depleted => pb::CouponStatus::Depleted,
            CouponStatus::Scheduled => pb::CouponStatus::Scheduled,
        } as i32,
        uses: v.uses,
        usage: Some(usage(v.usage)),
    }
}

fn cart(c: Option<pb::Cart>) -> Result<Cart, Status> {
    let c = c.ok_or_else(|| invalid("cart is required"))?;
    let items = c
        .items
        .into_iter()
        .map(|i| CartItem {
            product_id: i.product_id,
            category_id: i.category_id,
            unit_price: i.unit_price,
            quantity: i.quantity,
        })
        .collect();
    Cart::new(items, c.shipping_fee, &c.currency).map_err(|e| status(e.into()))
}

fn redemption(r: Redemption) -> pb::Redemption {
    pb::Redemption {
        code: r.code.to_string(),
        order_id: r.order_id,
        user_id: r.user_id,
        discount: Some(money(r.discount)),
        reversed: r.reversed,
        redeemed_at: Some(timestamp(r.redeemed_at)),
    }
}

pub struct Grpc<P, C> {
    app: Arc<Coupons<P, C>>,
}

impl<P, C> std::fmt::Debug for Grpc<P, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grpc").finish_non_exhaustive()
    }
}

impl<P, C> Grpc<P, C> {
    pub fn new(app: Arc<Coupons<P, C>>) -> Self {
        Self { app }
    }
}

#[tonic::async_trait]
impl<P: CouponStore, C: CouponCache> CouponService for Grpc<P, C> {
    async fn create_coupon(
        &self,
        request: Request<pb::CreateCouponRequest>,
    ) -> Result<Response<pb::CreateCouponResponse>, Status> {
        let (caller, r) = auth::caller_with_role(request, ADMIN)?;
        let view = self
            .app
            .create(&caller, &r.request_id, raw_spec(r.spec)?)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::CreateCouponResponse {
            coupon: Some(coupon(view)),
        }))
    }

    async fn generate_coupons(
        &self,
        request: Request<pb::GenerateCouponsRequest>,
    ) -> Result<Response<pb::GenerateCouponsResponse>, Status> {
        let (caller, r) = auth::caller_with_role(request, ADMIN)?;
        let codes = self
            .app
            .generate(
                &caller,
                &r.request_id,
                raw_spec(r.template)?,
                &r.prefix,
                r.count,
            )
            .await
            .map_err(status)?;
        Ok(Response::new(pb::GenerateCouponsResponse {
            codes: codes.into_iter().map(|c| c.to_string()).collect(),
        }))
    }

    async fn update_coupon(
        &self,
        request: Request<pb::UpdateCouponRequest>,
    ) -> Result<Response<pb::UpdateCouponResponse>, Status> {
        let (caller, r) = auth::caller_with_role(request, ADMIN)?;
        let view = self
            .app
            .update(&caller, &r.request_id, raw_spec(r.spec)?)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::UpdateCouponResponse {
            coupon: Some(coupon(view)),
        }))
    }

    async fn set_coupon_paused(
        &self,
        request: Request<pb::SetCouponPausedRequest>,
    ) -> Result<Response<pb::SetCouponPausedResponse>, Status> {
        let (caller, r) = auth::caller_with_role(request, ADMIN)?;
        let view = self
            .app
            .set_paused(&caller, &r.request_id, &r.code, r.paused)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::SetCouponPausedResponse {
            coupon: Some(coupon(view)),
        }))
    }

    async fn list_coupons(
        &self,
        request: Request<pb::ListCouponsRequest>,
    ) -> Result<Response<pb::ListCouponsResponse>, Status> {
        let (_, r) = auth::caller_with_role(request, ADMIN)?;
        let (views, next) = self
            .app
            .list(&r.campaign, r.page_size, &r.page_token)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ListCouponsResponse {
            coupons: views.into_iter().map(coupon).collect(),
            next_page_token: next.map(|c| c.to_string()).unwrap_or_default(),
        }))
    }

    async fn get_coupon_usage(
        &self,
        request: Request<pb::GetCouponUsageRequest>,
    ) -> Result<Response<pb::GetCouponUsageResponse>, Status> {
        let (_, r) = auth::caller_with_role(request, ADMIN)?;
        let u = self.app.usage(&r.code).await.map_err(status)?;
        Ok(Response::new(pb::GetCouponUsageResponse {
            usage: Some(usage(u)),
        }))
    }

    async fn get_campaign_usage(
        &self,
        request: Request<pb::GetCampaignUsageRequest>,
    ) -> Result<Response<pb::GetCampaignUsageResponse>, Status> {
        let (_, r) = auth::caller_with_role(request, ADMIN)?;
        let (u, coupons) = self.app.campaign_usage(&r.campaign).await.map_err(status)?;
        Ok(Response::new(pb::GetCampaignUsageResponse {
            usage: Some(usage(u)),
            coupons,
        }))
    }

    async fn validate_coupon(
        &self,
        request: Request<pb::ValidateCouponRequest>,
    ) -> Result<Response<pb::ValidateCouponResponse>, Status> {
        let caller = auth::caller(&request)?;
        let r = request.into_inner();
        let cart = cart(r.cart)?;
        let v = self
            .app
            .validate(&caller, &r.code, &cart)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ValidateCouponResponse {
            valid: v.refusal.is_none(),
            discount: Some(money(v.discount)),
            reason: v
                .refusal
                .as_ref()
                .map(|r| r.reason().to_owned())
                .unwrap_or_default(),
            message: v.refusal.map(|r| r.to_string()).unwrap_or_default(),
        }))
    }

    async fn redeem_coupon(
        &self,
        request: Request<pb::RedeemCouponRequest>,
    ) -> Result<Response<pb::RedeemCouponResponse>, Status> {
        let caller = auth::caller(&request)?;
        let r = request.into_inner();
        let cart = cart(r.cart)?;
        let done = self
            .app
            .redeem(
                &caller,
                &r.request_id,
                &r.shopper_id,
                &r.codes,
                &cart,
                &r.order_id,
            )
            .await
            .map_err(status)?;
        let total = done.iter().map(|d| d.discount.minor_units).sum();
        Ok(Response::new(pb::RedeemCouponResponse {
            redemptions: done.into_iter().map(redemption).collect(),
            total_discount: Some(pb::Money {
                currency: cart.currency().to_string(),
                minor_units: total,
            }),
        }))
    }

    async fn reverse_redemption(
        &self,
        request: Request<pb::ReverseRedemptionRequest>,
    ) -> Result<Response<pb::ReverseRedemptionResponse>, Status> {
        let caller = auth::caller(&request)?;
        let r = request.into_inner();
        let reversed = self
            .app
            .reverse(&caller, &r.request_id, &r.order_id)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ReverseRedemptionResponse {
            reversed: reversed.into_iter().map(redemption).collect(),
        }))
    }
}
