//! The coupon load generator: an admin generates single-use coupons over gRPC, then checkout
//! (role service) redeems each of them once for its own shopper and order against `titan
//! serve coupon` — redemptions of distinct coupons, the figure issue 26 asks for. Every tenth
//! request is then sent again (same request id: the same answer, nothing new) and a sample of
//! coupons is tried by another shopper (COUPON_DEPLETED). At the end the stored redemption
//! rows and the campaign's usage must count each redemption once.

use std::{fmt, time::Duration};

use anyhow::{Context, ensure};
use titan_e2e::{authed, seconds_from_now};
use titan_kit::error::reason_of;
use titan_proto::coupon::v1::{self as pb, coupon_service_client::CouponServiceClient};
use tonic::transport::Channel;

use crate::{Latencies, load};

type Grpc = CouponServiceClient<Channel>;

/// GenerateCoupons' most per call.
const GENERATE_MAX: usize = 10_000;
/// Each coupon takes this much off an order.
const DISCOUNT: i64 = 500;
/// Coupons tried again by another shopper at the end.
const DEPLETED_SAMPLE: usize = 20;
const CAMPAIGN: &str = "bench";

#[derive(Debug, Clone)]
pub struct CouponOptions {
    /// Distinct single-use coupons, each redeemed once.
    pub coupons: usize,
    /// Redemptions in flight.
    pub clients: usize,
    /// HTTP/2 connections they share.
    pub connections: usize,
    pub release: bool,
}

impl CouponOptions {
    /// CI's short mode: the checks, on a few coupons.
    pub fn quick() -> Self {
        Self {
            coupons: 400,
            clients: 8,
            connections: 2,
            release: false,
        }
    }
}

#[derive(Debug, Default)]
pub struct CouponReport {
    pub coupons: usize,
    pub redeemed: u64,
    pub refused: u64,
    pub elapsed: Duration,
    pub latencies: Latencies,
    pub per_second: Vec<u64>,
    pub replays: u64,
    /// Replays answered with the redemption of the first call.
    pub replays_same: u64,
    pub depleted_tries: u64,
    /// Tries by another shopper refused COUPON_DEPLETED.
    pub depleted_refused: u64,
    /// Applied redemption rows in PostgreSQL at the end.
    pub rows: u64,
    /// The campaign's usage as the service reports it.
    pub usage_redemptions: u64,
    pub usage_users: u64,
    pub usage_discount: i64,
}

impl CouponReport {
    pub fn per_second_rate(&self) -> f64 {
        self.redeemed as f64 / self.elapsed.as_secs_f64()
    }

    /// Whether every redemption was granted and is stored and counted once.
    pub fn exact(&self) -> bool {
        let n = self.coupons as u64;
        self.redeemed == n
            && self.refused == 0
            && self.replays_same == self.replays
            && self.depleted_refused == self.depleted_tries
            && self.rows == n
            && self.usage_redemptions == n
            && self.usage_users == n
            && self.usage_discount == DISCOUNT * self.coupons as i64
    }
}

impl fmt::Display for CouponReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "coupon RedeemCoupon over gRPC, distinct single-use coupons"
        )?;
        writeln!(
            f,
            "  redemptions         {:.0}/s ({} of {} in {:.1} s, {} refused)  p50 {:?}  p99 {:?}",
            self.per_second_rate(),
            self.redeemed,
            self.coupons,
            self.elapsed.as_secs_f64(),
            self.refused,
            self.latencies.quantile(0.5),
            self.latencies.quantile(0.99)
        )?;
        writeln!(
            f,
            "  replays             {} of {} answered the first redemption",
            self.replays_same, self.replays
        )?;
        writeln!(
            f,
            "  used coupons        {} of {} tries by another shopper COUPON_DEPLETED",
            self.depleted_refused, self.depleted_tries
        )?;
        write!(
            f,
            "  stored              {} applied rows; campaign usage {} redemptions, {} shoppers, {} off (of {})",
            self.rows, self.usage_redemptions, self.usage_users, self.usage_discount, self.coupons
        )
    }
}

fn cart() -> pb::Cart {
    pb::Cart {
        items: vec![pb::CartItem {
            product_id: "bench-sku".into(),
            category_id: "bench".into(),
            unit_price: 10_000,
            quantity: 1,
        }],
        shipping_fee: 500,
        currency: "USD".into(),
    }
}

/// Shopper `shopper` redeeming `code` for order `order`, under `request_id`.
fn redemption(
    code: &str,
    shopper: usize,
    order: usize,
    request_id: String,
) -> pb::RedeemCouponRequest {
    pb::RedeemCouponRequest {
        request_id,
        codes: vec![code.to_owned()],
        cart: Some(cart()),
        order_id: format!("order-{order}"),
        shopper_id: format!("shopper-{shopper}"),
    }
}

/// The `n` single-use coupons of the campaign, generated over gRPC.
async fn generate(grpc: &mut Grpc, admin: &str, n: usize) -> anyhow::Result<Vec<String>> {
    let template = pb::CouponSpec {
        r#type: pb::CouponType::FixedAmount as i32,
        value: DISCOUNT,
        currency: "USD".into(),
        total_limit: 1,
        per_user_limit: 1,
        valid_from: Some(seconds_from_now(-60)),
        valid_until: Some(seconds_from_now(86_400)),
        campaign: CAMPAIGN.into(),
        ..pb::CouponSpec::default()
    };
    let mut codes = Vec::with_capacity(n);
    while codes.len() < n {
        let count = (n - codes.len()).min(GENERATE_MAX);
        let answer = grpc
            .generate_coupons(authed(
                pb::GenerateCouponsRequest {
                    request_id: uuid::Uuid::new_v4().to_string(),
                    template: Some(template.clone()),
                    prefix: "BENCH".into(),
                    count: u32::try_from(count)?,
                },
                admin,
            ))
            .await
            .context("GenerateCoupons")?;
        codes.extend(answer.into_inner().codes);
    }
    ensure!(codes.len() == n, "{} coupons generated of {n}", codes.len());
    Ok(codes)
}

/// Runs the scenario.
pub async fn coupon(options: &CouponOptions) -> anyhow::Result<CouponReport> {
    ensure!(options.coupons >= 1, "--coupons must be at least 1");
    ensure!(
        options.clients >= 1 && options.connections >= 1,
        "--clients and --connections must be positive"
    );
    let (cell, channels) = crate::serve_one("coupon", options.release, options.connections).await;
    let admin = cell.token("bench-admin", &["admin"]);
    let checkout = cell.token("checkout", &["service"]);
    let mut grpc = Grpc::new(channels[0].clone());
    let codes = generate(&mut grpc, &admin, options.coupons).await?;
    let request_ids: Vec<String> = (0..codes.len())
        .map(|_| uuid::Uuid::new_v4().to_string())
        .collect();

    let redeem = |i: usize, request: pb::RedeemCouponRequest| {
        let mut grpc = Grpc::new(channels[i % channels.len()].clone());
        let checkout = checkout.clone();
        async move {
            grpc.redeem_coupon(authed(request, &checkout))
                .await
                .map(tonic::Response::into_inner)
        }
    };
    let run = load::calls(codes.len(), options.clients, |i| {
        redeem(i, redemption(&codes[i], i, i, request_ids[i].clone()))
    })
    .await;
    let mut report = CouponReport {
        coupons: options.coupons,
        elapsed: run.elapsed,
        latencies: run.latencies,
        per_second: run.per_second,
        ..CouponReport::default()
    };
    for (i, answer) in run.answers.iter().enumerate() {
        match answer {
            Ok(_) => report.redeemed += 1,
            Err(e) => {
                report.refused += 1;
                eprintln!("redemption of {} refused: {e}", codes[i]);
            }
        }
    }

    // Every tenth request again: the stored answer, no second use.
    let replayed: Vec<usize> = (0..codes.len()).step_by(10).collect();
    let replays = load::calls(replayed.len(), options.clients, |k| {
        let i = replayed[k];
        redeem(i, redemption(&codes[i], i, i, request_ids[i].clone()))
    })
    .await;
    for (k, answer) in replays.answers.iter().enumerate() {
        report.replays += 1;
        let first = run.answers[replayed[k]].as_ref().ok();
        if answer.as_ref().ok().zip(first).is_some_and(|(a, b)| a == b) {
            report.replays_same += 1;
        }
    }
    // A used coupon for another shopper and order: the budget of one is spent.
    let sample = codes.len().min(DEPLETED_SAMPLE);
    let tries = load::calls(sample, options.clients, |i| {
        let other = codes.len() + i;
        redeem(
            i,
            redemption(&codes[i], other, other, uuid::Uuid::new_v4().to_string()),
        )
    })
    .await;
    for answer in &tries.answers {
        report.depleted_tries += 1;
        if answer
            .as_ref()
            .err()
            .and_then(reason_of)
            .is_some_and(|r| r == "COUPON_DEPLETED")
        {
            report.depleted_refused += 1;
        }
    }

    let rows: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM coupon_redemptions WHERE campaign = $1 AND status = 'applied'",
    )
    .bind(CAMPAIGN)
    .fetch_one(&cell.db.pool)
    .await
    .context("count redemption rows")?;
    report.rows = u64::try_from(rows).unwrap_or_default();
    let usage = grpc
        .get_campaign_usage(authed(
            pb::GetCampaignUsageRequest {
                campaign: CAMPAIGN.into(),
            },
            &admin,
        ))
        .await
        .context("GetCampaignUsage")?
        .into_inner()
        .usage
        .context("no usage in the answer")?;
    report.usage_redemptions = usage.redemptions;
    report.usage_users = usage.unique_users;
    report.usage_discount = usage
        .discount_given
        .iter()
        .filter(|m| m.currency == "USD")
        .map(|m| m.minor_units)
        .sum();
    Ok(report)
}
