//! The analytics load generator: `TrackEvents` batches from many concurrent clients into
//! `titan serve analytics` (every event checked afterwards to be stored exactly once), the same
//! rows posted straight to ClickHouse as the baseline, then the latency of the funnel,
//! retention and KPI reports over a large generated history.

use std::{
    fmt,
    time::{Duration, Instant},
};

use anyhow::{Context, ensure};
use chrono::DateTime;
use titan_e2e::{Cell, CellOptions, authed};
use titan_kit::wire::timestamp as ts;
use titan_proto::analytics::v1::{self as pb, analytics_service_client::AnalyticsServiceClient};

use crate::Latencies;

#[derive(Debug, Clone)]
pub struct AnalyticsOptions {
    /// Concurrent `TrackEvents` callers.
    pub clients: usize,
    /// HTTP/2 connections they share.
    pub connections: usize,
    /// Events per `TrackEvents` call (at most 1,000).
    pub batch: usize,
    pub duration: Duration,
    /// Events generated in ClickHouse for the report latencies (0: skip that part).
    pub history: u64,
    pub release: bool,
}

impl AnalyticsOptions {
    /// CI's short mode: a short ingestion run and a small history, for the checks only.
    pub fn quick() -> Self {
        Self {
            clients: 4,
            connections: 2,
            batch: 500,
            duration: Duration::from_secs(2),
            history: 100_000,
            release: false,
        }
    }
}

#[derive(Debug, Default)]
pub struct AnalyticsReport {
    pub events: u64,
    pub calls: u64,
    pub elapsed: Duration,
    pub latencies: Latencies,
    /// Distinct event ids ClickHouse holds after the run; must equal `events`.
    pub stored: u64,
    pub history: u64,
    pub generate: Duration,
    pub funnel: Vec<Duration>,
    pub retention: Vec<Duration>,
    /// Daily KPIs over the history, every run (the first computes the daily rollup).
    pub kpis: Vec<Duration>,
    /// The first daily KPI run: every day of the history computed from the events and stored.
    pub kpis_cold: Duration,
    pub kpis_weekly: Vec<Duration>,
    /// Rows posted straight to ClickHouse's HTTP interface by the same number of clients in
    /// batches of the same size, for the same time: the baseline of `events`.
    pub raw_rows: u64,
    pub raw_elapsed: Duration,
}

fn best_and_median(runs: &[Duration]) -> String {
    let mut sorted = runs.to_vec();
    sorted.sort_unstable();
    match (sorted.first(), sorted.get(sorted.len() / 2)) {
        (Some(best), Some(median)) => format!("best {best:?}, median {median:?} of {}", runs.len()),
        _ => "not run".to_owned(),
    }
}

impl fmt::Display for AnalyticsReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.elapsed.as_secs_f64();
        writeln!(f, "analytics TrackEvents over gRPC, {secs:.1} s")?;
        writeln!(
            f,
            "  events              {:>10}  ({:.0}/s in {} calls)",
            self.events,
            self.events as f64 / secs,
            self.calls
        )?;
        writeln!(
            f,
            "  call latency        p50 {:?}  p99 {:?}  p99.9 {:?}",
            self.latencies.quantile(0.5),
            self.latencies.quantile(0.99),
            self.latencies.quantile(0.999)
        )?;
        if !self.raw_elapsed.is_zero() {
            writeln!(
                f,
                "  raw ClickHouse      {:>10}  ({:.0}/s posted straight to its HTTP interface; TrackEvents {:.2} of it)",
                self.raw_rows,
                self.raw_rows as f64 / self.raw_elapsed.as_secs_f64(),
                (self.events as f64 / secs)
                    / (self.raw_rows as f64 / self.raw_elapsed.as_secs_f64())
            )?;
        }
        writeln!(
            f,
            "  stored once         {} of {} ({})",
            self.stored,
            self.events,
            if self.stored == self.events {
                "ok"
            } else {
                "MISMATCH"
            }
        )?;
        if self.history > 0 {
            writeln!(
                f,
                "reports over {} generated events (generated in {:?}, {:.0} rows/s with the rollup views)",
                self.history,
                self.generate,
                self.history as f64 / self.generate.as_secs_f64()
            )?;
            writeln!(
                f,
                "  funnel (4 steps, 1 day window, 8 weeks)   {}",
                best_and_median(&self.funnel)
            )?;
            writeln!(
                f,
                "  retention (8 cohorts x 4 weeks)           {}",
                best_and_median(&self.retention)
            )?;
            writeln!(
                f,
                "  kpis (daily, 8 weeks)                     {}",
                best_and_median(&self.kpis)
            )?;
            writeln!(
                f,
                "  kpis, first run (computes the rollup)     {:?}",
                self.kpis_cold
            )?;
            writeln!(
                f,
                "  kpis (weekly, 8 weeks)                    {}",
                best_and_median(&self.kpis_weekly)
            )?;
        }
        Ok(())
    }
}

/// The first day of the generated history: eight weeks starting on a Monday.
const HISTORY_START: i64 = 1_759_104_000; // 2025-09-29T00:00:00Z, a Monday
const HISTORY_SECONDS: i64 = 56 * 86_400;

/// `history` events over eight weeks, 200,000 users, a funnel-shaped mix of names; generated
/// by ClickHouse itself so the figure measures the queries, not the loading.
async fn generate(cell: &Cell, history: u64) -> anyhow::Result<Duration> {
    let started = Instant::now();
    cell.clickhouse
        .client
        .query(
            "INSERT INTO analytics_events (event_id, name, user_id, session_id, time, time_ms,
                 date, properties, device, platform, country, city, cell, product_id, order_id,
                 page, revenue, currency, source, ingested_at)
             SELECT concat('h', toString(number)) AS event_id,
                    multiIf(h < 50, 'page_view', h < 80, 'product_view', h < 92, 'add_to_cart',
                            h < 97, 'checkout', 'purchase') AS name,
                    concat('u', toString(intHash32(number) % 200000)) AS user_id,
                    concat('s', toString(intHash32(number) % 1000000)) AS session_id,
                    toDateTime(? + intDiv(number * ?, ?)) AS time,
                    toUInt16(number % 1000) AS time_ms,
                    toDate(time) AS date,
                    '{}' AS properties, '' AS device, 'web' AS platform, 'SG' AS country,
                    '' AS city, 'bench' AS cell,
                    concat('p', toString(intHash32(number + 7) % 5000)) AS product_id,
                    if(h >= 97, concat('o', toString(number)), '') AS order_id,
                    '' AS page,
                    if(h >= 97, toInt64(1000 + number % 9000), toInt64(0)) AS revenue,
                    if(h >= 97, 'USD', '') AS currency,
                    'bench' AS source, now() AS ingested_at
             FROM (SELECT number, cityHash64(number) % 100 AS h FROM system.numbers LIMIT ?)",
        )
        .bind(HISTORY_START)
        .bind(HISTORY_SECONDS)
        .bind(history)
        .bind(history)
        .execute()
        .await
        .context("generating the history")?;
    Ok(started.elapsed())
}

async fn time_reports(
    cell: &Cell,
    report: &mut AnalyticsReport,
    runs: usize,
) -> anyhow::Result<()> {
    let mut client = AnalyticsServiceClient::new(cell.channel().await);
    let analyst = cell.token("bench-analyst", &["analyst"]);
    // What the KPIs must find, counted once here from the events themselves.
    let users: u64 = cell
        .clickhouse
        .client
        .query("SELECT uniqExact(user_id) FROM analytics_events WHERE source = 'bench'")
        .fetch_one()
        .await?;
    let from = DateTime::from_timestamp(HISTORY_START, 0).context("start")?;
    let to = DateTime::from_timestamp(HISTORY_START + HISTORY_SECONDS, 0).context("end")?;
    let period = Some(pb::Period {
        from: Some(ts(from)),
        to: Some(ts(to)),
    });
    for _ in 0..runs {
        let started = Instant::now();
        let funnel = client
            .get_funnel(authed(
                pb::GetFunnelRequest {
                    period,
                    steps: vec![
                        "page_view".into(),
                        "product_view".into(),
                        "add_to_cart".into(),
                        "purchase".into(),
                    ],
                    window_seconds: 86_400,
                },
                &analyst,
            ))
            .await?
            .into_inner();
        report.funnel.push(started.elapsed());
        ensure!(funnel.steps.len() == 4, "the funnel has its four steps");

        let started = Instant::now();
        let retention = client
            .get_retention(authed(
                pb::GetRetentionRequest { period, weeks: 4 },
                &analyst,
            ))
            .await?
            .into_inner();
        report.retention.push(started.elapsed());
        ensure!(!retention.cohorts.is_empty(), "cohorts were found");

        for granularity in [pb::Granularity::Day, pb::Granularity::Week] {
            let started = Instant::now();
            let kpis = client
                .get_kpis(authed(
                    pb::GetKpisRequest {
                        period,
                        granularity: granularity as i32,
                        cell: String::new(),
                    },
                    &analyst,
                ))
                .await?
                .into_inner();
            let took = started.elapsed();
            if granularity == pb::Granularity::Day {
                if report.kpis.is_empty() {
                    report.kpis_cold = took;
                }
                report.kpis.push(took);
            } else {
                report.kpis_weekly.push(took);
            }
            let total = kpis.totals.first().and_then(|t| t.kpis.as_ref());
            let days: u64 = kpis
                .buckets
                .iter()
                .filter_map(|b| b.kpis.as_ref())
                .map(|k| k.events)
                .sum();
            ensure!(
                total.map(|t| (t.events, t.unique_users)) == Some((report.history, users))
                    && days == report.history,
                "the KPIs count every generated event once and all {users} users: {total:?}"
            );
        }
    }
    Ok(())
}

/// `clients` tasks post `batch` rows at a time to ClickHouse's HTTP interface for `duration`:
/// the rows TrackEvents would store, without the service. Returns the rows stored and the time.
async fn raw_insert(cell: &Cell, options: &AnalyticsOptions) -> anyhow::Result<(u64, Duration)> {
    let config = &cell.clickhouse.config;
    let http = reqwest::Client::new();
    let url = format!("{}/", config.url.trim_end_matches('/'));
    let query = "INSERT INTO analytics_events (event_id, name, user_id, session_id, time, date, \
                 platform, country, cell, source, ingested_at) FORMAT TabSeparated";
    let started = Instant::now();
    let deadline = started + options.duration;
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..options.clients {
        let (http, url, database, batch) = (
            http.clone(),
            url.clone(),
            config.database.clone(),
            options.batch,
        );
        tasks.spawn(async move {
            let mut rows = 0u64;
            let mut seq = 0u64;
            while Instant::now() < deadline {
                let now = chrono::Utc::now();
                let (time, date) = (now.format("%Y-%m-%d %H:%M:%S"), now.format("%Y-%m-%d"));
                let mut body = String::with_capacity(batch * 96);
                for i in 0..batch {
                    seq += 1;
                    let name = if i % 3 == 0 { "product_view" } else { "page_view" };
                    body.push_str(&format!(
                        "raw{c}-{seq}\t{name}\tu{}\ts{c}-{}\t{time}\t{date}\tweb\tSG\tbench\tclient\t{time}\n",
                        seq % 50_000,
                        seq / 20
                    ));
                }
                http.post(&url)
                    .query(&[("database", database.as_str()), ("query", query)])
                    .body(body)
                    .send()
                    .await?
                    .error_for_status()?;
                rows += batch as u64;
            }
            anyhow::Ok(rows)
        });
    }
    let mut rows = 0;
    for done in tasks.join_all().await {
        rows += done?;
    }
    Ok((rows, started.elapsed()))
}

/// Runs the scenario.
pub async fn analytics(options: &AnalyticsOptions) -> anyhow::Result<AnalyticsReport> {
    ensure!(
        options.clients > 0 && options.connections > 0 && (1..=1000).contains(&options.batch),
        "clients and connections must be positive and batch 1 to 1000"
    );
    let cell = Cell::start_with(CellOptions {
        services: vec!["analytics".into()],
        // The bus is not part of this measurement.
        config: Some("services:\n  analytics:\n    sources: []\n".into()),
        release: options.release,
    })
    .await;
    let mut channels = Vec::new();
    for _ in 0..options.connections {
        channels.push(cell.channel().await);
    }
    let tracker = cell.token("bench-tracker", &["service"]);
    let started = Instant::now();
    let deadline = started + options.duration;
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..options.clients {
        let mut client = AnalyticsServiceClient::new(channels[c % channels.len()].clone());
        let (tracker, batch) = (tracker.clone(), options.batch);
        tasks.spawn(async move {
            let mut part = AnalyticsReport::default();
            let mut seq = 0u64;
            while Instant::now() < deadline {
                let events: Vec<pb::Event> = (0..batch)
                    .map(|i| {
                        seq += 1;
                        pb::Event {
                            event_id: format!("c{c}-{seq}"),
                            name: if i % 3 == 0 {
                                "product_view"
                            } else {
                                "page_view"
                            }
                            .into(),
                            user_id: format!("u{}", seq % 50_000),
                            session_id: format!("s{c}-{}", seq / 20),
                            platform: "web".into(),
                            country: "SG".into(),
                            ..pb::Event::default()
                        }
                    })
                    .collect();
                let sent = Instant::now();
                let accepted = client
                    .track_events(authed(pb::TrackEventsRequest { events }, &tracker))
                    .await?
                    .into_inner()
                    .accepted;
                part.latencies
                    .0
                    .push(u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX));
                part.events += u64::from(accepted);
                part.calls += 1;
            }
            anyhow::Ok(part)
        });
    }
    let mut report = AnalyticsReport::default();
    for done in tasks.join_all().await {
        let part = done?;
        report.events += part.events;
        report.calls += part.calls;
        report.latencies.0.extend(part.latencies.0);
    }
    report.elapsed = started.elapsed();
    report.latencies.0.sort_unstable();
    report.stored = cell
        .clickhouse
        .client
        .query("SELECT uniqExact(event_id) FROM analytics_events")
        .fetch_one::<u64>()
        .await?;
    (report.raw_rows, report.raw_elapsed) = raw_insert(&cell, options).await?;
    if options.history > 0 {
        report.history = options.history;
        report.generate = generate(&cell, options.history).await?;
        time_reports(&cell, &mut report, 5).await?;
    }
    Ok(report)
}
