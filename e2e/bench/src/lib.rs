//! Load generators over the real binary. Here the flash-sale one: starts `titan serve
//! flashsale` on private datastores, drives `AttemptPurchase` over gRPC with many concurrent
//! simulated buyers, then checks that nothing was oversold; and measures the raw ceiling — the
//! same Lua script driven directly from this process — so the service's throughput is read as
//! a share of what Redis alone does here. The analytics one is in [`analytics`], the
//! WebSocket one in [`ws`].
#![forbid(unsafe_code)]

pub mod abtesting;
pub mod analytics;
pub mod campaign;
pub mod chat;
pub mod coupon;
pub mod driver;
pub mod fraud;
pub mod gamification;
pub mod livestream;
pub mod load;
pub mod plot;
pub mod pricing;
pub mod router;
pub mod routes;
pub mod settle;
pub mod shipping;
pub mod suite;
pub mod tracking;
pub mod videocall;
pub mod ws;

use std::{
    collections::BTreeMap,
    fmt,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, ensure};
use chrono::Utc;
use rand::{Rng, SeedableRng, rngs::StdRng};
use titan_e2e::{Cell, CellOptions, authed};
use titan_flashsale::{
    app::{Attempt, StockStore},
    config::Settings,
    domain::{AdminState, FlashSale, Quantity, ReservationId, SaleId, SaleSpec},
    store::redis::RedisStock,
};
use titan_kit::{error::reason_of, money::Money, testing::TestRedis, wire::timestamp as ts};
use titan_proto::flashsale::v1::{self as pb, flash_sale_service_client::FlashSaleServiceClient};
use tonic::transport::Channel;

#[derive(Debug, Clone)]
pub struct Options {
    /// Concurrent simulated buyers (in-flight requests).
    pub buyers: usize,
    /// HTTP/2 connections they share.
    pub connections: usize,
    pub duration: Duration,
    pub stock: u32,
    /// Distinct users the buyers draw from (per-user limit and rate limit apply to each).
    pub users: u32,
    pub release: bool,
    /// The sale on the test Redis Cluster (`TITAN_TEST_REDIS_CLUSTER_URL`) instead of the
    /// single test Redis; the raw ceiling is then measured on the cluster too.
    pub redis_cluster: bool,
}

impl Options {
    /// CI's short mode: a small stock that sells out, for the correctness checks only.
    pub fn quick() -> Self {
        Self {
            buyers: 32,
            connections: 2,
            duration: Duration::from_secs(2),
            stock: 500,
            users: 2_000,
            release: false,
            redis_cluster: false,
        }
    }
}

#[derive(Debug, Default, Clone)]
pub struct Latencies(Vec<u32>);

impl Latencies {
    pub fn quantile(&self, q: f64) -> Duration {
        if self.0.is_empty() {
            return Duration::ZERO;
        }
        let i = ((self.0.len() - 1) as f64 * q).round() as usize;
        Duration::from_micros(u64::from(self.0[i]))
    }
}

#[derive(Debug, Default)]
pub struct Report {
    pub attempts: u64,
    pub reserved: u64,
    pub reserved_units: u64,
    pub elapsed: Duration,
    pub latencies: Latencies,
    pub outcomes: BTreeMap<String, u64>,
    pub stock: u32,
    pub server: Option<pb::GetSaleStatsResponse>,
    /// Units sold or held beyond the stock, plus any disagreement between what clients were
    /// granted and what the server holds: must be 0.
    pub oversold: u64,
    pub raw_attempts_per_second: f64,
    /// Attempts answered in each second of the run.
    pub per_second: Vec<u64>,
    /// Whether the sale was on the Redis Cluster.
    pub on_cluster: bool,
}

impl Report {
    pub fn attempts_per_second(&self) -> f64 {
        self.attempts as f64 / self.elapsed.as_secs_f64()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.elapsed.as_secs_f64();
        let redis = if self.on_cluster {
            "a Redis Cluster"
        } else {
            "one Redis"
        };
        writeln!(
            f,
            "flashsale AttemptPurchase over gRPC, {secs:.1} s, the sale on {redis}"
        )?;
        writeln!(
            f,
            "  attempts            {:>10}  ({:.0}/s)",
            self.attempts,
            self.attempts_per_second()
        )?;
        writeln!(
            f,
            "  reservations        {:>10}  ({:.0}/s, {} units)",
            self.reserved,
            self.reserved as f64 / secs,
            self.reserved_units
        )?;
        writeln!(
            f,
            "  latency             p50 {:?}  p99 {:?}  p99.9 {:?}",
            self.latencies.quantile(0.5),
            self.latencies.quantile(0.99),
            self.latencies.quantile(0.999)
        )?;
        for (outcome, n) in &self.outcomes {
            writeln!(f, "  {outcome:<20}{n:>10}")?;
        }
        if let Some(s) = &self.server {
            writeln!(
                f,
                "  server              stock {}: sold {} + reserved {} + remaining {}",
                self.stock, s.units_sold, s.units_reserved, s.units_remaining
            )?;
        }
        writeln!(
            f,
            "  oversell check      {}",
            if self.oversold == 0 {
                "0 (ok)".to_owned()
            } else {
                format!("{} VIOLATIONS", self.oversold)
            }
        )?;
        if self.raw_attempts_per_second > 0.0 {
            writeln!(
                f,
                "  raw Redis ceiling   {:.0}/s (same Lua script, in process); service = {:.2} of raw",
                self.raw_attempts_per_second,
                self.attempts_per_second() / self.raw_attempts_per_second
            )?;
        }
        Ok(())
    }
}

/// A cell serving `service` alone (release or debug build), with `connections` HTTP/2
/// connections to it for the load to share.
pub async fn serve_one(service: &str, release: bool, connections: usize) -> (Cell, Vec<Channel>) {
    serve_one_on(service, None, release, connections, TestRedis::new().await).await
}

/// [`serve_one`] with `config` (the cell's extra YAML) and the cell's keys under `redis`.
pub async fn serve_one_on(
    service: &str,
    config: Option<String>,
    release: bool,
    connections: usize,
    redis: TestRedis,
) -> (Cell, Vec<Channel>) {
    let cell = Cell::start_on(
        CellOptions {
            services: vec![service.into()],
            config,
            release,
        },
        redis,
    )
    .await;
    let mut channels = Vec::with_capacity(connections);
    for _ in 0..connections {
        channels.push(cell.channel().await);
    }
    (cell, channels)
}

/// Runs the scenario; `raw` also measures the in-process Redis ceiling.
pub async fn flashsale(options: &Options, raw: bool) -> anyhow::Result<Report> {
    ensure!(
        options.buyers > 0 && options.connections > 0 && options.users > 0,
        "buyers, connections and users must be positive"
    );
    let redis = if options.redis_cluster {
        TestRedis::cluster().await
    } else {
        TestRedis::new().await
    };
    let (cell, channels) = crate::serve_one_on(
        "flashsale",
        None,
        options.release,
        options.connections,
        redis,
    )
    .await;
    let admin = cell.token("bench-admin", &["admin"]);
    let mut client = FlashSaleServiceClient::new(channels[0].clone());
    let now = Utc::now();
    let spec = pb::SaleSpec {
        product_id: "bench-sku".into(),
        original_price: Some(pb::Money {
            currency: "USD".into(),
            minor_units: 10_000,
        }),
        sale_price: Some(pb::Money {
            currency: "USD".into(),
            minor_units: 1_000,
        }),
        total_quantity: options.stock,
        max_per_user: 5,
        starts_at: Some(ts(now - chrono::Duration::seconds(1))),
        ends_at: Some(ts(now + chrono::Duration::hours(1))),
        pow_difficulty: 0,
    };
    let sale = client
        .create_sale(authed(
            pb::CreateSaleRequest {
                request_id: uuid::Uuid::new_v4().to_string(),
                spec: Some(spec),
            },
            &admin,
        ))
        .await?
        .into_inner()
        .sale
        .context("no sale in the answer")?;
    client
        .warm_up_sale(authed(
            pb::WarmUpSaleRequest {
                sale_id: sale.id.clone(),
            },
            &admin,
        ))
        .await?;

    // Tokens are minted up front so the load measures the server, not the client's signing.
    let tokens: Arc<Vec<String>> = Arc::new(
        (0..options.users)
            .map(|u| cell.token(&format!("user-{u}"), &[]))
            .collect(),
    );
    let started = Instant::now();
    let deadline = started + options.duration;
    let mut tasks = tokio::task::JoinSet::new();
    for b in 0..options.buyers {
        let mut client = FlashSaleServiceClient::new(channels[b % channels.len()].clone());
        let (tokens, sale_id) = (tokens.clone(), sale.id.clone());
        tasks.spawn(async move {
            let mut rng = StdRng::seed_from_u64(b as u64);
            let mut report = Report::default();
            while Instant::now() < deadline {
                let token = &tokens[rng.random_range(0..tokens.len())];
                let request = pb::AttemptPurchaseRequest {
                    request_id: uuid::Uuid::new_v4().to_string(),
                    sale_id: sale_id.clone(),
                    quantity: rng.random_range(1..=2),
                    challenge: String::new(),
                    nonce: String::new(),
                };
                let sent = Instant::now();
                let result = client.attempt_purchase(authed(request, token)).await;
                report
                    .latencies
                    .0
                    .push(u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX));
                report.attempts += 1;
                let second = started.elapsed().as_secs() as usize;
                if report.per_second.len() <= second {
                    report.per_second.resize(second + 1, 0);
                }
                report.per_second[second] += 1;
                let outcome = match result {
                    Ok(r) => {
                        report.reserved += 1;
                        report.reserved_units += u64::from(r.into_inner().quantity);
                        "reserved".to_owned()
                    }
                    Err(status) => {
                        reason_of(&status).unwrap_or_else(|| format!("{:?}", status.code()))
                    }
                };
                *report.outcomes.entry(outcome).or_default() += 1;
            }
            anyhow::Ok(report)
        });
    }
    let mut report = Report {
        stock: options.stock,
        on_cluster: options.redis_cluster,
        ..Report::default()
    };
    for done in tasks.join_all().await {
        let part = done?;
        report.attempts += part.attempts;
        report.reserved += part.reserved;
        report.reserved_units += part.reserved_units;
        report.latencies.0.extend(part.latencies.0);
        if report.per_second.len() < part.per_second.len() {
            report.per_second.resize(part.per_second.len(), 0);
        }
        for (total, n) in report.per_second.iter_mut().zip(part.per_second) {
            *total += n;
        }
        for (k, v) in part.outcomes {
            *report.outcomes.entry(k).or_default() += v;
        }
    }
    report.elapsed = started.elapsed();
    report.latencies.0.sort_unstable();

    let stats = client
        .get_sale_stats(authed(pb::GetSaleStatsRequest { sale_id: sale.id }, &admin))
        .await?
        .into_inner();
    let held = u64::from(stats.units_sold) + u64::from(stats.units_reserved);
    let beyond_stock = held.saturating_sub(u64::from(options.stock));
    let unaccounted = (u64::from(options.stock)).abs_diff(held + u64::from(stats.units_remaining));
    report.oversold = beyond_stock + unaccounted + report.reserved_units.abs_diff(held);
    report.server = Some(stats);

    if raw {
        report.raw_attempts_per_second = raw_ceiling(&cell, options).await?;
    }
    Ok(report)
}

/// The same reserve script driven straight from this process, with the same concurrency.
async fn raw_ceiling(cell: &Cell, options: &Options) -> anyhow::Result<f64> {
    let stock = RedisStock::new(cell.redis.handle.clone());
    let now = Utc::now();
    let spec = SaleSpec {
        product_id: "raw".into(),
        original_price: Money::parse(10_000, "USD")?,
        sale_price: Money::parse(1_000, "USD")?,
        total_quantity: options.stock,
        max_per_user: 5,
        starts_at: now - chrono::Duration::seconds(1),
        ends_at: now + chrono::Duration::hours(1),
        pow_difficulty: 0,
    };
    let sale = FlashSale {
        id: SaleId::new(),
        spec,
        state: AdminState::Scheduled,
        warmed_up: true,
    };
    stock.warm(&sale, Duration::from_secs(300), &[]).await?;
    let settings = Arc::new(Settings::default());
    let started = Instant::now();
    let deadline = started + options.duration;
    let mut tasks = tokio::task::JoinSet::new();
    for b in 0..options.buyers {
        let (stock, settings, users) = (stock.clone(), settings.clone(), options.users);
        tasks.spawn(async move {
            let mut rng = StdRng::seed_from_u64(b as u64 + 1_000_000);
            let mut n = 0u64;
            while Instant::now() < deadline {
                let user = format!("user-{}", rng.random_range(0..users));
                let request_id = uuid::Uuid::new_v4().to_string();
                let attempt = Attempt {
                    sale: sale.id,
                    user: &user,
                    quantity: Quantity::new(rng.random_range(1..=2), 5)?,
                    request_id: &request_id,
                    reservation: ReservationId::new(sale.id),
                    challenge: None,
                    now: Utc::now(),
                };
                let _ = stock.reserve(&attempt, &settings).await?;
                n += 1;
            }
            anyhow::Ok(n)
        });
    }
    let mut total = 0;
    for n in tasks.join_all().await {
        total += n?;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}
