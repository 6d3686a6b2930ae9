//! The tracking load generator over two `titan serve tracking` replicas: shipments announced
//! on the bus become records; subscribers (a service identity, which gets the full event)
//! follow some of them on replica A while concurrent carriers post signed webhook scans to
//! replica B; every scan of a followed record must reach its subscriber exactly once (the
//! fan-out latency is measured from the POST to the update, the send time riding in the
//! event's internal note); then concurrent `Track` lookups on both replicas. At the end the
//! records hold exactly the events sent, each once.

use std::{
    collections::HashSet,
    fmt,
    time::{Duration, Instant},
};

use anyhow::{Context, ensure};
use futures::{StreamExt, stream};
use titan_e2e::{Cell, CellOptions, authed};
use titan_kit::{events::Envelope, testing::publish};
use titan_proto::tracking::v1::{self as pb, tracking_service_client::TrackingServiceClient};
use titan_tracking::{
    domain::signature::sign,
    web::{SIGNATURE_HEADER, TIMESTAMP_HEADER},
};
use tonic::transport::Channel;

use crate::Latencies;

type Grpc = TrackingServiceClient<Channel>;

const SECRET: &str = "bench-carrier-webhook-secret-bench-carrier";

#[derive(Debug, Clone)]
pub struct TrackingOptions {
    /// Tracking records (shipments announced on the bus).
    pub shipments: usize,
    /// Records followed by a subscriber on replica A (the first ones).
    pub subscribers: usize,
    /// Concurrent carriers posting to replica B, one event per call.
    pub clients: usize,
    pub duration: Duration,
    /// `Track` lookups after the webhook phase.
    pub lookups: usize,
    pub release: bool,
}

impl TrackingOptions {
    /// CI's short mode: the checks, on a few records.
    pub fn quick() -> Self {
        Self {
            shipments: 50,
            subscribers: 10,
            clients: 4,
            duration: Duration::from_secs(2),
            lookups: 200,
            release: false,
        }
    }
}

#[derive(Debug, Default)]
pub struct TrackingReport {
    pub shipments: usize,
    pub subscribers: usize,
    /// Webhook events appended, and calls refused.
    pub appended: u64,
    pub refused: u64,
    pub elapsed: Duration,
    pub webhook_latencies: Latencies,
    /// Events appended to followed records, and received by their subscribers (each once).
    pub followed_sent: u64,
    pub followed_received: u64,
    pub duplicates_received: u64,
    pub fanout_latencies: Latencies,
    pub lookups: u64,
    pub lookup_elapsed: Duration,
    pub lookup_latencies: Latencies,
    /// Events the records hold at the end, and what they should hold (a CREATED each and
    /// every appended scan).
    pub stored: i64,
    pub expected: i64,
}

impl TrackingReport {
    /// Whether every check held.
    pub fn exact(&self) -> bool {
        self.refused == 0
            && self.followed_received == self.followed_sent
            && self.duplicates_received == 0
            && self.stored == self.expected
    }
}

impl fmt::Display for TrackingReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.elapsed.as_secs_f64();
        writeln!(
            f,
            "tracking over two replicas, {} records, {} followed on A",
            self.shipments, self.subscribers
        )?;
        writeln!(
            f,
            "  signed webhook on B  {:.0} events/s ({} in {secs:.1} s, {} refused)  p50 {:?}  p99 {:?}",
            self.appended as f64 / secs,
            self.appended,
            self.refused,
            self.webhook_latencies.quantile(0.5),
            self.webhook_latencies.quantile(0.99)
        )?;
        writeln!(
            f,
            "  Subscribe on A       {} of {} events received, {} twice ({})  POST→update p50 {:?}  p99 {:?}",
            self.followed_received,
            self.followed_sent,
            self.duplicates_received,
            if self.followed_received == self.followed_sent && self.duplicates_received == 0 {
                "ok"
            } else {
                "LOST OR DUPLICATED"
            },
            self.fanout_latencies.quantile(0.5),
            self.fanout_latencies.quantile(0.99)
        )?;
        let s = self.lookup_elapsed.as_secs_f64();
        writeln!(
            f,
            "  Track                {:.0}/s ({} in {s:.1} s)  p50 {:?}  p99 {:?}",
            self.lookups as f64 / s,
            self.lookups,
            self.lookup_latencies.quantile(0.5),
            self.lookup_latencies.quantile(0.99)
        )?;
        write!(
            f,
            "  stored events        {} of {} ({})",
            self.stored,
            self.expected,
            if self.stored == self.expected {
                "ok"
            } else {
                "MISMATCH"
            }
        )
    }
}

fn number(i: usize) -> String {
    format!("BENCH{i:08}")
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

pub async fn tracking(options: &TrackingOptions) -> anyhow::Result<TrackingReport> {
    ensure!(options.shipments >= 1, "--shipments must be at least 1");
    ensure!(
        options.subscribers <= options.shipments,
        "--subscribers must be at most --shipments"
    );
    ensure!(options.clients >= 1, "--clients must be at least 1");
    let cell = Cell::start_with(CellOptions {
        services: vec!["tracking".into()],
        config: Some("services:\n  tracking: { subscriberBuffer: 10000 }\n".into()),
        release: options.release,
    })
    .await;
    let b = cell.replica_with(&[("TITAN_TRACKING_BENCH_WEBHOOK_SECRET", SECRET)]);
    let channels = [cell.channel().await, b.channel().await];
    let service = cell.token("bench", &["service"]);

    for i in 0..options.shipments {
        let created = Envelope::new(
            "bench",
            "shipping.shipment_created",
            1,
            &serde_json::json!({
                "shipment_id": format!("shp-{i}"),
                "order_id": format!("ord-{i}"),
                "tracking_number": number(i),
                "carrier": "bench",
                "service_level": "standard",
                "owner_id": "merchant",
                "created_at": chrono::Utc::now(),
            }),
        )?;
        publish(&cell.redis.handle, "shipping", &created).await;
    }
    let want = i64::try_from(options.shipments)?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM tracking_records")
            .fetch_one(&cell.db.pool)
            .await?;
        if n == want {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "only {n} of {want} records after 120 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Subscribers on A, each past its history (the CREATED event) before the load starts.
    let began = Instant::now();
    let mut followers = Vec::new();
    for i in 0..options.subscribers {
        let mut s = Grpc::new(channels[0].clone())
            .subscribe(authed(
                pb::SubscribeRequest {
                    tracking_number: number(i),
                    carrier: String::new(),
                },
                &service,
            ))
            .await
            .context("subscribe")?
            .into_inner();
        s.message().await?.context("the history")?;
        followers.push(tokio::spawn(follow(s, began)));
    }

    let load_began = Instant::now();
    let deadline = load_began + options.duration;
    let url = format!("http://{}/webhooks/tracking/bench", b.http);
    let carriers: Vec<_> = (0..options.clients)
        .map(|c| {
            tokio::spawn(post_loop(
                url.clone(),
                c,
                options.clients,
                options.shipments,
                options.subscribers,
                began,
                deadline,
            ))
        })
        .collect();
    let mut report = TrackingReport {
        shipments: options.shipments,
        subscribers: options.subscribers,
        ..TrackingReport::default()
    };
    let mut latencies = Vec::new();
    for c in carriers {
        let (appended, refused, followed, lat) = c.await.context("carrier")??;
        report.appended += appended;
        report.refused += refused;
        report.followed_sent += followed;
        latencies.extend(lat);
    }
    report.elapsed = load_began.elapsed();
    latencies.sort_unstable();
    report.webhook_latencies = Latencies(latencies);

    // Each follower stops when its stream is quiet for 5 s: every event was sent by now.
    let mut fanout = Vec::new();
    for f in followers {
        let (received, duplicates, lat) = f.await.context("follower")?;
        report.followed_received += received;
        report.duplicates_received += duplicates;
        fanout.extend(lat);
    }
    fanout.sort_unstable();
    report.fanout_latencies = Latencies(fanout);

    let began = Instant::now();
    let lookups: Vec<anyhow::Result<u32>> = stream::iter(0..options.lookups)
        .map(|n| {
            let mut grpc = Grpc::new(channels[n % 2].clone());
            let token = service.clone();
            let i = n.wrapping_mul(7919) % options.shipments;
            async move {
                let t = Instant::now();
                grpc.track(authed(
                    pb::TrackRequest {
                        tracking_number: number(i),
                        ..Default::default()
                    },
                    &token,
                ))
                .await
                .context("track")?;
                Ok(micros(t.elapsed()))
            }
        })
        .buffer_unordered(options.clients.max(2) * 4)
        .collect()
        .await;
    report.lookup_elapsed = began.elapsed();
    let mut lat = lookups.into_iter().collect::<anyhow::Result<Vec<u32>>>()?;
    lat.sort_unstable();
    report.lookups = lat.len() as u64;
    report.lookup_latencies = Latencies(lat);

    report.stored = sqlx::query_scalar("SELECT count(*) FROM tracking_events")
        .fetch_one(&cell.db.pool)
        .await?;
    report.expected = want + i64::try_from(report.appended)?;
    Ok(report)
}

/// One carrier: IN_TRANSIT scans, one per signed call, to records `c, c + clients, …` in
/// turn until the deadline, the send time (µs since `began`) in the note. Answers (appended,
/// refused, appended to followed records, latencies µs).
async fn post_loop(
    url: String,
    c: usize,
    clients: usize,
    shipments: usize,
    followed: usize,
    began: Instant,
    deadline: Instant,
) -> anyhow::Result<(u64, u64, u64, Vec<u32>)> {
    let http = reqwest::Client::new();
    let (mut appended, mut refused, mut to_followed) = (0, 0, 0);
    let mut latencies = Vec::new();
    let mut n = 0usize;
    while Instant::now() < deadline {
        let i = (c + n * clients) % shipments;
        let sent = began.elapsed();
        let body = serde_json::to_vec(&serde_json::json!({"events": [{
            "id": format!("c{c}-{n}"),
            "tracking_number": number(i),
            "type": "IN_TRANSIT",
            "location": "hub",
            "at": chrono::Utc::now().to_rfc3339(),
            "note": sent.as_micros().to_string(),
        }]}))?;
        let ts = chrono::Utc::now().timestamp().to_string();
        let t = Instant::now();
        let response = http
            .post(&url)
            .header(TIMESTAMP_HEADER, &ts)
            .header(SIGNATURE_HEADER, sign(SECRET.as_bytes(), &ts, &body))
            .body(body)
            .send()
            .await
            .context("webhook")?;
        latencies.push(micros(t.elapsed()));
        if response.status().is_success() {
            appended += 1;
            if i < followed {
                to_followed += 1;
            }
        } else {
            refused += 1;
        }
        n += 1;
    }
    Ok((appended, refused, to_followed, latencies))
}

/// A subscriber: counts updates, each once by event id, and their POST→update latency,
/// until its stream is quiet for 5 s.
async fn follow(
    mut stream: tonic::Streaming<pb::TrackingUpdate>,
    began: Instant,
) -> (u64, u64, Vec<u32>) {
    let (mut received, mut duplicates) = (0, 0);
    let mut seen = HashSet::new();
    let mut latencies = Vec::new();
    while let Ok(Ok(Some(u))) = tokio::time::timeout(Duration::from_secs(5), stream.message()).await
    {
        let Some(detail) = u.detail else { continue };
        if !seen.insert(detail.id) {
            duplicates += 1;
            continue;
        }
        received += 1;
        if let Ok(sent) = detail.note.parse::<u64>() {
            let now = began.elapsed();
            latencies.push(micros(now.saturating_sub(Duration::from_micros(sent))));
        }
    }
    (received, duplicates, latencies)
}
