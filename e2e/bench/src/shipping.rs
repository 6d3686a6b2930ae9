//! The shipping load generator: concurrent checkouts book shipments over two `titan serve
//! shipping` replicas (each booking a flat-rate quote, a 4×6 in label PDF put in the bucket
//! and one transaction with its outbox event), then every tenth request again on the other
//! replica, which must answer the same shipment. At the end the rows, the events on the bus
//! and a sample of labels behind their signed URLs must match what was booked.

use std::{
    fmt,
    time::{Duration, Instant},
};

use anyhow::{Context, ensure};
use futures::{StreamExt, stream};
use titan_e2e::{Cell, CellOptions, authed};
use titan_kit::{events::stream_key, reexport::redis, testing::eventually};
use titan_proto::shipping::v1::{self as pb, shipping_service_client::ShippingServiceClient};
use tonic::transport::Channel;

use crate::Latencies;

type Grpc = ShippingServiceClient<Channel>;

/// Labels fetched through their signed URLs at the end.
const LABEL_SAMPLE: usize = 20;

#[derive(Debug, Clone)]
pub struct ShippingOptions {
    pub shipments: usize,
    /// Concurrent callers, half on each replica.
    pub clients: usize,
    pub release: bool,
}

impl ShippingOptions {
    /// CI's short mode: the checks, on a few shipments.
    pub fn quick() -> Self {
        Self {
            shipments: 60,
            clients: 4,
            release: false,
        }
    }
}

#[derive(Debug, Default)]
pub struct ShippingReport {
    pub shipments: usize,
    pub booked: u64,
    pub refused: u64,
    pub elapsed: Duration,
    pub latencies: Latencies,
    pub replays: u64,
    /// Replays on the other replica that answered the same shipment id.
    pub replays_same: u64,
    pub replay_latencies: Latencies,
    /// Shipment rows and `shipping.shipment_created` events on the bus at the end.
    pub rows: u64,
    pub events: u64,
    pub labels_checked: u64,
    /// Sampled labels served as PDFs through their signed URLs.
    pub labels_ok: u64,
}

impl ShippingReport {
    /// Whether every check held.
    pub fn exact(&self) -> bool {
        let n = self.shipments as u64;
        self.refused == 0
            && self.booked == n
            && self.replays_same == self.replays
            && self.rows == n
            && self.events == n
            && self.labels_ok == self.labels_checked
    }
}

impl fmt::Display for ShippingReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.elapsed.as_secs_f64();
        writeln!(f, "shipping over two replicas, flat-rate carrier")?;
        writeln!(
            f,
            "  CreateShipment      {:.0}/s ({} booked in {secs:.1} s, {} refused)  p50 {:?}  p99 {:?}",
            self.booked as f64 / secs,
            self.booked,
            self.refused,
            self.latencies.quantile(0.5),
            self.latencies.quantile(0.99)
        )?;
        writeln!(
            f,
            "  replay on the other {} of {} the same shipment  p50 {:?}  p99 {:?}",
            self.replays_same,
            self.replays,
            self.replay_latencies.quantile(0.5),
            self.replay_latencies.quantile(0.99)
        )?;
        writeln!(
            f,
            "  stored              {} rows, {} shipment_created on the bus (of {})",
            self.rows, self.events, self.shipments
        )?;
        write!(
            f,
            "  labels              {} of {} sampled PDFs served by their signed URLs",
            self.labels_ok, self.labels_checked
        )
    }
}

fn address(name: &str, postcode: &str) -> pb::Address {
    pb::Address {
        name: name.into(),
        line1: "1 Harbourfront Walk".into(),
        line2: String::new(),
        city: "Singapore".into(),
        postcode: postcode.into(),
        country: "SG".into(),
    }
}

/// Booking `i`: its own request id and order, a weight that varies with `i`.
fn request(i: usize) -> pb::CreateShipmentRequest {
    pb::CreateShipmentRequest {
        request_id: format!("bench-{i}"),
        order_id: format!("order-{i}"),
        owner_id: format!("buyer-{}", i % 500),
        from: Some(address("Titan Shop", "098585")),
        to: Some(address("Bench Buyer", "530123")),
        parcels: vec![pb::Parcel {
            weight_g: 200 + (i as u32 % 50) * 100,
            length_mm: 300,
            width_mm: 200,
            height_mm: 100,
        }],
        ..Default::default()
    }
}

/// Runs `calls` requests with `clients` in flight, request `i` on replica `i % 2`; answers
/// each outcome with its latency in µs.
async fn run(
    channels: &[Channel; 2],
    token: &str,
    clients: usize,
    calls: Vec<(usize, pb::CreateShipmentRequest)>,
) -> Vec<(usize, Result<pb::Shipment, tonic::Status>, u32)> {
    stream::iter(calls)
        .map(|(i, r)| {
            let mut grpc = Grpc::new(channels[i % 2].clone());
            let token = token.to_owned();
            async move {
                let t = Instant::now();
                let answer = grpc
                    .create_shipment(authed(r, &token))
                    .await
                    .map(|a| a.into_inner());
                let micros = u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX);
                (i, answer, micros)
            }
        })
        .buffer_unordered(clients)
        .collect()
        .await
}

pub async fn shipping(options: &ShippingOptions) -> anyhow::Result<ShippingReport> {
    ensure!(options.shipments >= 1, "--shipments must be at least 1");
    ensure!(options.clients >= 2, "--clients must be at least 2");
    let cell = Cell::start_with(CellOptions {
        services: vec!["shipping".into()],
        config: None,
        release: options.release,
    })
    .await;
    let b = cell.replica();
    let channels = [cell.channel().await, b.channel().await];
    let checkout = cell.token("checkout", &["service"]);
    let mut report = ShippingReport {
        shipments: options.shipments,
        ..ShippingReport::default()
    };

    let started = Instant::now();
    let answers = run(
        &channels,
        &checkout,
        options.clients,
        (0..options.shipments).map(|i| (i, request(i))).collect(),
    )
    .await;
    report.elapsed = started.elapsed();
    let mut ids = vec![String::new(); options.shipments];
    let mut urls = Vec::new();
    let mut latencies = Vec::with_capacity(answers.len());
    for (i, answer, micros) in answers {
        latencies.push(micros);
        match answer {
            Ok(s) => {
                report.booked += 1;
                if urls.len() < LABEL_SAMPLE {
                    urls.push(s.label_url);
                }
                ids[i] = s.id;
            }
            Err(e) => {
                report.refused += 1;
                eprintln!("booking {i} refused: {e}");
            }
        }
    }
    latencies.sort_unstable();
    report.latencies = Latencies(latencies);

    // Every tenth booking again, on the other replica: the stored answer, no new booking.
    let replays: Vec<(usize, pb::CreateShipmentRequest)> = (0..options.shipments)
        .step_by(10)
        .map(|i| (i + 1, request(i)))
        .collect();
    let mut latencies = Vec::new();
    for (other, answer, micros) in run(&channels, &checkout, options.clients, replays).await {
        report.replays += 1;
        latencies.push(micros);
        if answer.is_ok_and(|s| s.id == ids[other - 1]) {
            report.replays_same += 1;
        }
    }
    latencies.sort_unstable();
    report.replay_latencies = Latencies(latencies);

    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM shipping_shipments")
        .fetch_one(&cell.db.pool)
        .await
        .context("count rows")?;
    report.rows = u64::try_from(rows).unwrap_or_default();
    // Events: once the relay has moved the whole outbox to the stream.
    let pool = cell.db.pool.clone();
    eventually("the outbox relayed", || {
        let pool = pool.clone();
        async move {
            let left: i64 = sqlx::query_scalar("SELECT count(*) FROM titan_outbox")
                .fetch_one(&pool)
                .await
                .ok()?;
            (left == 0).then_some(())
        }
    })
    .await;
    let mut conn = cell.redis.handle.conn.clone();
    let events: u64 = redis::cmd("XLEN")
        .arg(stream_key(&cell.redis.handle, "shipping"))
        .query_async(&mut conn)
        .await
        .context("xlen")?;
    report.events = events;

    let http = reqwest::Client::new();
    for url in urls {
        report.labels_checked += 1;
        let got = http.get(&url).send().await.context("GET a label")?;
        if got.status().is_success() && got.bytes().await?.starts_with(b"%PDF-") {
            report.labels_ok += 1;
        }
    }
    Ok(report)
}
