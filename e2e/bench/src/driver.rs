//! The driver load generator: registered AVAILABLE drivers report positions from concurrent
//! clients over two `titan serve driver` replicas while a dispatcher on replica B watches one
//! of them (every one of its positions must arrive, in order), then concurrent
//! `NearbyDrivers` searches; at the end one search over the whole city must find every
//! driver, so the Redis GEO set followed every report.

use std::{
    fmt,
    time::{Duration, Instant},
};

use anyhow::{Context, ensure};
use futures::{StreamExt, stream};
use titan_e2e::{Cell, CellOptions, authed};
use titan_kit::wire::timestamp;
use titan_proto::driver::v1::{self as pb, driver_service_client::DriverServiceClient};
use tonic::transport::Channel;

use crate::Latencies;

type Grpc = DriverServiceClient<Channel>;

/// The city the drivers move in: 20 km square around this point.
const CENTER: (f64, f64) = (1.35, 103.82);
const SPAN_DEG: f64 = 0.18;

#[derive(Debug, Clone)]
pub struct DriverOptions {
    /// Registered AVAILABLE drivers (at most 1,000: one city-wide search must list them).
    pub drivers: usize,
    /// Concurrent callers, half on each replica.
    pub clients: usize,
    pub duration: Duration,
    /// `NearbyDrivers` searches after the reporting phase.
    pub searches: usize,
    pub release: bool,
}

impl DriverOptions {
    /// CI's short mode: the checks, on a small fleet.
    pub fn quick() -> Self {
        Self {
            drivers: 50,
            clients: 4,
            duration: Duration::from_secs(2),
            searches: 200,
            release: false,
        }
    }
}

#[derive(Debug, Default)]
pub struct DriverReport {
    pub drivers: usize,
    pub reports: u64,
    pub refused: u64,
    pub elapsed: Duration,
    pub report_latencies: Latencies,
    /// Positions of the watched driver reported, and received on the watch.
    pub watched_sent: u64,
    pub watched_received: u64,
    pub searches: u64,
    pub search_elapsed: Duration,
    pub search_latencies: Latencies,
    /// Drivers a city-wide search finds at the end; must equal `drivers`.
    pub found: usize,
}

impl DriverReport {
    /// Whether every check held.
    pub fn exact(&self) -> bool {
        self.refused == 0
            && self.watched_received == self.watched_sent
            && self.found == self.drivers
    }
}

impl fmt::Display for DriverReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.elapsed.as_secs_f64();
        writeln!(
            f,
            "driver over two replicas, {} AVAILABLE drivers",
            self.drivers
        )?;
        writeln!(
            f,
            "  ReportPosition      {:.0}/s ({} in {secs:.1} s, {} refused)  p50 {:?}  p99 {:?}",
            self.reports as f64 / secs,
            self.reports,
            self.refused,
            self.report_latencies.quantile(0.5),
            self.report_latencies.quantile(0.99)
        )?;
        writeln!(
            f,
            "  WatchDriver on B    {} of {} positions received in order ({})",
            self.watched_received,
            self.watched_sent,
            if self.watched_received == self.watched_sent {
                "ok"
            } else {
                "LOST"
            }
        )?;
        let s = self.search_elapsed.as_secs_f64();
        writeln!(
            f,
            "  NearbyDrivers 2 km  {:.0}/s ({} in {s:.1} s)  p50 {:?}  p99 {:?}",
            self.searches as f64 / s,
            self.searches,
            self.search_latencies.quantile(0.5),
            self.search_latencies.quantile(0.99)
        )?;
        write!(
            f,
            "  city-wide search    {} of {} drivers ({})",
            self.found,
            self.drivers,
            if self.found == self.drivers {
                "ok"
            } else {
                "MISSING"
            }
        )
    }
}

fn subject(i: usize) -> String {
    format!("driver-{i:04}")
}

/// A deterministic point of the city for driver `i` at step `n`.
fn point(i: usize, n: u64) -> (f64, f64) {
    let h = (i as u64)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(n.wrapping_mul(0xBF58_476D_1CE4_E5B9));
    let x = (h >> 11) as f64 / (1u64 << 53) as f64;
    let y = ((h.rotate_left(29)) >> 11) as f64 / (1u64 << 53) as f64;
    (
        CENTER.0 + (x - 0.5) * SPAN_DEG,
        CENTER.1 + (y - 0.5) * SPAN_DEG,
    )
}

async fn register(grpc: &mut Grpc, token: &str) -> anyhow::Result<String> {
    let d = grpc
        .register_driver(authed(
            pb::RegisterDriverRequest {
                request_id: uuid::Uuid::new_v4().to_string(),
                name: "Bench".into(),
                phone: "+6561234567".into(),
                email: "bench@example.com".into(),
                vehicle_type: "VAN".into(),
                capacity: 100,
            },
            token,
        ))
        .await
        .context("register")?
        .into_inner();
    grpc.set_status(authed(
        pb::SetStatusRequest {
            request_id: uuid::Uuid::new_v4().to_string(),
            status: "AVAILABLE".into(),
        },
        token,
    ))
    .await
    .context("available")?;
    Ok(d.id)
}

pub async fn driver(options: &DriverOptions) -> anyhow::Result<DriverReport> {
    ensure!(
        (1..=1000).contains(&options.drivers),
        "--drivers must be 1 to 1000"
    );
    ensure!(options.clients >= 2, "--clients must be at least 2");
    let cell = Cell::start_with(CellOptions {
        services: vec!["driver".into()],
        config: Some("services:\n  driver: { nearbyLimit: 1000, watchBuffer: 10000 }\n".into()),
        release: options.release,
    })
    .await;
    let b = cell.replica();
    let channels = [cell.channel().await, b.channel().await];
    let tokens: Vec<String> = (0..options.drivers)
        .map(|i| cell.token(&subject(i), &[]))
        .collect();
    let ids: Vec<String> = stream::iter(tokens.iter().enumerate())
        .map(|(i, token)| {
            let mut grpc = Grpc::new(channels[i % 2].clone());
            async move { register(&mut grpc, token).await }
        })
        .buffered(32)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    let disp = cell.token("dispatcher", &["dispatcher"]);

    // A dispatcher on B watches driver 0, whose reports go through A.
    let mut watch = Grpc::new(channels[1].clone())
        .watch_driver(authed(
            pb::WatchDriverRequest {
                driver_id: ids[0].clone(),
            },
            &disp,
        ))
        .await
        .context("watch")?
        .into_inner();

    let began = Instant::now();
    let deadline = began + options.duration;
    let tasks: Vec<_> = (0..options.clients)
        .map(|c| {
            let grpc = Grpc::new(channels[c % 2].clone());
            let mine: Vec<(usize, String)> = (0..options.drivers)
                .filter(|i| i % options.clients == c)
                .map(|i| (i, tokens[i].clone()))
                .collect();
            tokio::spawn(report_loop(grpc, mine, deadline))
        })
        .collect();
    let mut report = DriverReport {
        drivers: options.drivers,
        ..DriverReport::default()
    };
    let mut latencies = Vec::new();
    for t in tasks {
        let (sent, refused, lat, watched) = t.await.context("reporter")?;
        report.reports += sent;
        report.refused += refused;
        report.watched_sent += watched;
        latencies.extend(lat);
    }
    report.elapsed = began.elapsed();
    latencies.sort_unstable();
    report.report_latencies = Latencies(latencies);

    // Every position of driver 0 reaches the watch, each later than the one before.
    let mut last = None;
    while report.watched_received < report.watched_sent {
        let Ok(Ok(Some(p))) = tokio::time::timeout(Duration::from_secs(10), watch.message()).await
        else {
            break;
        };
        let at = p.at.map(|t| (t.seconds, t.nanos));
        // The first is the latest known when the watch opened: the registration had none.
        ensure!(last < at, "positions out of order on the watch");
        last = at;
        report.watched_received += 1;
    }

    let began = Instant::now();
    let searches: Vec<anyhow::Result<u32>> = stream::iter(0..options.searches)
        .map(|n| {
            let mut grpc = Grpc::new(channels[n % 2].clone());
            let disp = disp.clone();
            async move {
                let (lat, lng) = point(usize::MAX - n, 0);
                let t = Instant::now();
                grpc.nearby_drivers(authed(
                    pb::NearbyDriversRequest {
                        lat,
                        lng,
                        radius_m: 2_000,
                        limit: 50,
                    },
                    &disp,
                ))
                .await
                .context("nearby")?;
                Ok(u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX))
            }
        })
        .buffer_unordered(options.clients)
        .collect()
        .await;
    report.search_elapsed = began.elapsed();
    let mut lat = searches.into_iter().collect::<anyhow::Result<Vec<u32>>>()?;
    lat.sort_unstable();
    report.searches = lat.len() as u64;
    report.search_latencies = Latencies(lat);

    report.found = Grpc::new(channels[0].clone())
        .nearby_drivers(authed(
            pb::NearbyDriversRequest {
                lat: CENTER.0,
                lng: CENTER.1,
                radius_m: 100_000,
                limit: 1000,
            },
            &disp,
        ))
        .await
        .context("city-wide search")?
        .into_inner()
        .drivers
        .len();
    Ok(report)
}

/// One client: its drivers in turn, each reporting a new point at the current time, until
/// the deadline. Answers (accepted, refused, latencies µs, accepted for driver 0).
async fn report_loop(
    mut grpc: Grpc,
    drivers: Vec<(usize, String)>,
    deadline: Instant,
) -> (u64, u64, Vec<u32>, u64) {
    let (mut sent, mut refused, mut watched) = (0, 0, 0);
    let mut latencies = Vec::new();
    let mut last = vec![chrono::DateTime::<chrono::Utc>::MIN_UTC; drivers.len()];
    let mut n = 0u64;
    while Instant::now() < deadline && !drivers.is_empty() {
        for (k, (i, token)) in drivers.iter().enumerate() {
            // Strictly later than this driver's last report, in whole microseconds.
            let now = chrono::Utc::now();
            let at = std::cmp::max(
                now - chrono::Duration::nanoseconds(i64::from(now.timestamp_subsec_nanos() % 1000)),
                last[k] + chrono::Duration::microseconds(1),
            );
            last[k] = at;
            let (lat, lng) = point(*i, n);
            let t = Instant::now();
            let r = grpc
                .report_position(authed(
                    pb::ReportPositionRequest {
                        lat,
                        lng,
                        at: Some(timestamp(at)),
                    },
                    token,
                ))
                .await;
            latencies.push(u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX));
            match r {
                Ok(_) => {
                    sent += 1;
                    if *i == 0 {
                        watched += 1;
                    }
                }
                Err(_) => refused += 1,
            }
        }
        n += 1;
    }
    (sent, refused, latencies, watched)
}
