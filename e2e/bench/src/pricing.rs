//! The pricing load generator: `titan serve pricing` (with analytics' tables) over 100,000
//! products in ten categories with a generated week of demand in `analytics_events` and
//! competitor prices; rules on the categories (DYNAMIC, COMPETITIVE, TIME_BASED, SEGMENTED,
//! FIXED); then a full re-optimisation round after every product's stock changed (timed, and
//! checked: the prices the service serves are the ones its history ends with), a second
//! round with nothing to change, and `GetPrices` of 100 random products per call from many
//! concurrent clients.

use std::{
    fmt,
    time::{Duration, Instant},
};

use anyhow::{Context, ensure};
use rand::{Rng, SeedableRng, rngs::StdRng};
use titan_e2e::{Cell, CellOptions, authed};
use titan_kit::reexport::sqlx;
use titan_proto::pricing::v1::{self as pb, pricing_service_client::PricingServiceClient};

use crate::Latencies;

#[derive(Debug, Clone)]
pub struct PricingOptions {
    pub products: u32,
    /// Demand events generated in ClickHouse over the last 7 days.
    pub events: u64,
    /// Concurrent `GetPrices` callers.
    pub clients: usize,
    /// HTTP/2 connections they share.
    pub connections: usize,
    pub duration: Duration,
    pub release: bool,
}

impl PricingOptions {
    /// CI's short mode: a small catalogue, for the checks only.
    pub fn quick() -> Self {
        Self {
            products: 2_000,
            events: 20_000,
            clients: 4,
            connections: 2,
            duration: Duration::from_secs(2),
            release: false,
        }
    }
}

#[derive(Debug, Default)]
pub struct PricingReport {
    pub products: u32,
    pub events: u64,
    pub round: Duration,
    pub round_changed: u64,
    pub quiet_round: Duration,
    pub quiet_changed: u64,
    /// Sampled products whose served price differs from the last price of their history.
    pub mismatches: u64,
    pub calls: u64,
    pub prices: u64,
    pub elapsed: Duration,
    pub latencies: Latencies,
}

impl fmt::Display for PricingReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "pricing over {} products, {} demand events",
            self.products, self.events
        )?;
        writeln!(
            f,
            "  re-optimisation round     {:?}  ({} prices changed; target < 10 s)",
            self.round, self.round_changed
        )?;
        writeln!(
            f,
            "  round with no change      {:?}  ({} changed)",
            self.quiet_round, self.quiet_changed
        )?;
        writeln!(
            f,
            "  served = history          {} mismatches in 1,000 sampled products ({})",
            self.mismatches,
            if self.mismatches == 0 {
                "ok"
            } else {
                "MISMATCH"
            }
        )?;
        let secs = self.elapsed.as_secs_f64();
        writeln!(
            f,
            "  GetPrices (100 per call)  {:.0} prices/s ({} calls in {secs:.1} s; target >= 50,000/s)",
            self.prices as f64 / secs,
            self.calls
        )?;
        write!(
            f,
            "  call latency              p50 {:?}  p99 {:?}  p99.9 {:?}",
            self.latencies.quantile(0.5),
            self.latencies.quantile(0.99),
            self.latencies.quantile(0.999)
        )
    }
}

fn product(i: u32) -> String {
    format!("p{i:06}")
}

/// Products, demand and competitor prices straight into the stores: the measurement is the
/// round, not 100,000 registrations. No event is within an hour of now or of 24 hours ago, so
/// the demand of the two rounds is the same however long apart they run.
async fn generate(cell: &Cell, options: &PricingOptions) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO pricing_products (product_id, category, inventory_bps, updated_at)
         SELECT 'p' || lpad(i::text, 6, '0'), 'c' || (i % 10), (i * 37) % 10001, now()
           FROM generate_series(0, $1 - 1) AS i",
    )
    .bind(i64::from(options.products))
    .execute(&cell.db.pool)
    .await
    .context("products")?;
    // Competitor prices for the COMPETITIVE category (c1): three competitors, one stale.
    sqlx::query(
        "INSERT INTO pricing_competitor_prices
            (product_id, competitor, source, currency, amount, observed_at, recorded_at)
         SELECT 'p' || lpad(i::text, 6, '0'), c, 'bench', 'USD', 9000 + (i * 7 + length(c) * 131) % 2000,
                now() - make_interval(mins => (CASE c WHEN 'stale' THEN 600 ELSE i % 50 END)::int), now()
           FROM generate_series(0, $1 - 1) AS i, unnest(ARRAY['alpha', 'beta', 'stale']) AS c
          WHERE i % 10 = 1",
    )
    .bind(i64::from(options.products))
    .execute(&cell.db.pool)
    .await
    .context("competitor prices")?;
    let now = u32::try_from(chrono::Utc::now().timestamp()).context("time")?;
    cell.clickhouse
        .client
        .query(
            "INSERT INTO analytics_events (event_id, name, user_id, session_id, time, time_ms,
                 date, properties, device, platform, country, city, cell, product_id, order_id,
                 page, revenue, currency, source, ingested_at)
             SELECT concat('e', toString(number)) AS event_id,
                    multiIf(h < 80, 'product_view', h < 95, 'add_to_cart', 'flashsale.purchased') AS name,
                    concat('u', toString(number % 50000)) AS user_id, '' AS session_id,
                    toDateTime(? - if(cityHash64(number, 1) % 10 < 3,
                                      3600 + cityHash64(number, 3) % (20 * 3600),
                                      26 * 3600 + cityHash64(number, 3) % (5 * 86400))) AS time,
                    toUInt16(0) AS time_ms, toDate(time) AS date, '{}' AS properties,
                    '' AS device, '' AS platform, '' AS country, '' AS city, 'bench' AS cell,
                    concat('p', substring(toString(1000000 + cityHash64(number, 2) % ?), 2)) AS product_id,
                    if(h >= 95, concat('o', toString(number)), '') AS order_id, '' AS page,
                    if(h >= 95, toInt64(1000), toInt64(0)) AS revenue,
                    if(h >= 95, 'USD', '') AS currency, 'bus' AS source, now() AS ingested_at
             FROM (SELECT number, cityHash64(number) % 100 AS h FROM system.numbers LIMIT ?)",
        )
        .bind(now)
        .bind(options.products)
        .bind(options.events)
        .execute()
        .await
        .context("demand events")?;
    Ok(())
}

fn rule(category: &str, strategy: pb::StrategyKind) -> pb::Rule {
    pb::Rule {
        category: category.into(),
        strategy: strategy as i32,
        currency: "USD".into(),
        base_price: 10_000,
        min_price: 7_000,
        max_price: 14_000,
        price_ending: "99".into(),
        min_step: 10,
        ..pb::Rule::default()
    }
}

fn rules() -> Vec<pb::Rule> {
    let mut out: Vec<pb::Rule> = ["c0", "c2", "c3", "c4", "c5", "c6"]
        .into_iter()
        .map(|c| rule(c, pb::StrategyKind::Dynamic))
        .collect();
    out.push(pb::Rule {
        competitive: Some(pb::CompetitiveParams {
            position: pb::CompetitorPosition::Average as i32,
            margin_bps: -150,
            max_age_seconds: 3_600,
        }),
        ..rule("c1", pb::StrategyKind::Competitive)
    });
    out.push(pb::Rule {
        time_based: Some(pb::TimeBasedParams {
            utc_offset_minutes: 480,
            slots: vec![pb::TimeSlot {
                weekdays: vec![],
                start_hour: 0,
                end_hour: 24,
                multiplier_bps: 10_500,
            }],
        }),
        ..rule("c7", pb::StrategyKind::TimeBased)
    });
    out.push(pb::Rule {
        segmented: Some(pb::SegmentedParams {
            segments: vec![pb::SegmentPrice {
                segment: "vip".into(),
                multiplier_bps: 9_000,
            }],
        }),
        ..rule("c8", pb::StrategyKind::Segmented)
    });
    out.push(rule("c9", pb::StrategyKind::Fixed));
    out
}

/// Sampled products' served price against the newest price of their history.
async fn check(
    cell: &Cell,
    client: &mut PricingServiceClient<tonic::transport::Channel>,
    products: u32,
) -> anyhow::Result<u64> {
    let sample: Vec<String> = (0..1_000).map(|i| product(i * products / 1_000)).collect();
    let newest: Vec<(String, i64)> = sqlx::query_as(
        "SELECT DISTINCT ON (product_id) product_id, new_amount FROM pricing_history
          WHERE product_id = ANY($1) AND segment = '' ORDER BY product_id, id DESC",
    )
    .bind(&sample)
    .fetch_all(&cell.db.pool)
    .await?;
    let newest: std::collections::HashMap<String, i64> = newest.into_iter().collect();
    let mut mismatches = 0;
    for chunk in sample.chunks(100) {
        let served = client
            .get_prices(tonic::Request::new(pb::GetPricesRequest {
                product_ids: chunk.to_vec(),
                segment: String::new(),
            }))
            .await?
            .into_inner();
        ensure!(served.missing_product_ids.is_empty(), "unpriced products");
        for p in served.prices {
            let amount = p.price.map_or(0, |m| m.minor_units);
            if newest.get(&p.product_id) != Some(&amount) {
                mismatches += 1;
            }
        }
    }
    Ok(mismatches)
}

/// Runs the scenario.
pub async fn pricing(options: &PricingOptions) -> anyhow::Result<PricingReport> {
    ensure!(
        (1_000..1_000_000).contains(&options.products)
            && options.clients > 0
            && options.connections > 0,
        "products must be 1,000 to 999,999 (six-digit ids), clients and connections positive"
    );
    let cell = Cell::start_with(CellOptions {
        services: vec!["pricing".into(), "analytics".into()],
        // Rounds run on demand here; the schedule would add one while measuring.
        config: Some(
            "requestTimeoutSeconds: 300\nservices:\n  pricing:\n    reoptimizeIntervalSeconds: 86400\n  analytics:\n    sources: []\n"
                .into(),
        ),
        release: options.release,
    })
    .await;
    generate(&cell, options).await?;
    let admin = cell.token("bench-admin", &["admin"]);
    let mut client = PricingServiceClient::new(cell.channel().await);
    for (i, r) in rules().into_iter().enumerate() {
        client
            .create_rule(authed(
                pb::CreateRuleRequest {
                    request_id: format!("bench-rule-{i}"),
                    rule: Some(r),
                },
                &admin,
            ))
            .await
            .context("create rule")?;
    }
    // Every product's stock moves, so the DYNAMIC prices move by more than their step.
    sqlx::query("UPDATE pricing_products SET inventory_bps = 10000 - inventory_bps")
        .execute(&cell.db.pool)
        .await?;
    let mut report = PricingReport {
        products: options.products,
        events: options.events,
        ..PricingReport::default()
    };
    for (took, changed) in [
        (&mut report.round, &mut report.round_changed),
        (&mut report.quiet_round, &mut report.quiet_changed),
    ] {
        let started = Instant::now();
        let r = client
            .reoptimize(authed(
                pb::ReoptimizeRequest {
                    product_ids: vec![],
                },
                &admin,
            ))
            .await
            .context("reoptimize")?
            .into_inner();
        *took = started.elapsed();
        *changed = r.changed;
        ensure!(
            r.products == u64::from(options.products),
            "the round saw {} products",
            r.products
        );
    }
    report.mismatches = check(&cell, &mut client, options.products).await?;

    let mut channels = Vec::new();
    for _ in 0..options.connections {
        channels.push(cell.channel().await);
    }
    let started = Instant::now();
    let deadline = started + options.duration;
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..options.clients {
        let mut client = PricingServiceClient::new(channels[c % channels.len()].clone());
        let products = options.products;
        tasks.spawn(async move {
            let mut rng = StdRng::seed_from_u64(c as u64);
            let (mut latencies, mut calls, mut prices) = (Vec::new(), 0u64, 0u64);
            while Instant::now() < deadline {
                let ids = (0..100)
                    .map(|_| product(rng.random_range(0..products)))
                    .collect();
                let sent = Instant::now();
                let answer = client
                    .get_prices(tonic::Request::new(pb::GetPricesRequest {
                        product_ids: ids,
                        segment: String::new(),
                    }))
                    .await?
                    .into_inner();
                latencies.push(u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX));
                calls += 1;
                prices += answer.prices.len() as u64;
            }
            anyhow::Ok((latencies, calls, prices))
        });
    }
    for done in tasks.join_all().await {
        let (latencies, calls, prices) = done?;
        report.latencies.0.extend(latencies);
        report.calls += calls;
        report.prices += prices;
    }
    report.elapsed = started.elapsed();
    report.latencies.0.sort_unstable();
    Ok(report)
}
