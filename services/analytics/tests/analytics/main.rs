//! The analytics service on a real ClickHouse (and Redis for the bus): every report against a
//! small dataset whose answers are worked out by hand, de-duplication, and ingestion through a
//! ClickHouse outage; a person's export and erasure.

mod ingest;
mod outage;
mod privacy;
mod reports;
mod rollups;

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use chrono::{DateTime, NaiveDate, Utc};
use prometheus::Registry;
use serde_json::{Value, json};
use titan_analytics::{
    app::{Analytics, IngestOptions, Ingestor},
    config::Settings,
    domain::{RawEvent, SERVICE},
    metrics::Metrics,
    store::{EVENTS, EventRow, METRICS, MIGRATIONS, TableSink, queries::ClickHouseWarehouse},
};
use titan_kit::{
    auth::Caller,
    datastores::clickhouse,
    testing::{TestClickHouse, TestClock, caller},
};
use tokio_util::sync::CancellationToken;

pub type App = Analytics<ClickHouseWarehouse>;

#[derive(Debug)]
pub struct World {
    pub app: Arc<App>,
    pub events: Ingestor<EventRow>,
    pub ch: TestClickHouse,
    pub clock: TestClock,
    pub shutdown: CancellationToken,
}

impl Drop for World {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub fn options() -> IngestOptions {
    IngestOptions {
        batch_rows: 10_000,
        flush_every: Duration::from_millis(20),
        capacity: 100_000,
        insert_timeout: Duration::from_secs(30),
    }
}

impl World {
    pub async fn new(now: DateTime<Utc>) -> Self {
        let ch = TestClickHouse::new().await;
        Self::on(ch, None, options(), now).await
    }

    /// A world whose service reaches ClickHouse at `url` (a proxy) instead of directly.
    pub async fn on(
        ch: TestClickHouse,
        url: Option<String>,
        options: IngestOptions,
        now: DateTime<Utc>,
    ) -> Self {
        clickhouse::migrate(&ch.client, SERVICE, MIGRATIONS)
            .await
            .expect("migrations");
        let mut config = ch.config.clone();
        if let Some(url) = url {
            config.url = url;
        }
        let client = clickhouse::connect(&config).expect("client");
        let shutdown = CancellationToken::new();
        let metrics = Metrics::new(&Registry::new()).expect("metrics");
        let (events, flush_events) = Ingestor::new(
            EVENTS,
            TableSink::new(client.clone(), EVENTS),
            options,
            metrics.clone(),
            shutdown.clone(),
        );
        let (points, flush_points) = Ingestor::new(
            METRICS,
            TableSink::new(client.clone(), METRICS),
            options,
            metrics.clone(),
            shutdown.clone(),
        );
        tokio::spawn(flush_events);
        tokio::spawn(flush_points);
        let clock = TestClock::at(now);
        let app = Arc::new(Analytics::new(
            ClickHouseWarehouse::new(client),
            events.clone(),
            points,
            Settings::default(),
            "sg-1".into(),
            clock.clock(),
            metrics,
        ));
        Self {
            app,
            events,
            ch,
            clock,
            shutdown,
        }
    }

    /// Rows stored, and distinct event ids among them.
    pub async fn stored(&self) -> (u64, u64) {
        self.ch
            .client
            .query("SELECT count(), uniqExact(event_id) FROM analytics_events")
            .fetch_one::<(u64, u64)>()
            .await
            .expect("count")
    }
}

/// A trusted tracker (role service) that may record events for any user.
pub fn tracker() -> Caller {
    caller("web-backend", &["service"])
}

pub fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("rfc3339")
        .with_timezone(&Utc)
}

pub fn day(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date")
}

/// An event of `user` at `time` with `props`.
pub fn event(
    id: &str,
    name: &str,
    user: &str,
    session: &str,
    time: &str,
    props: Value,
) -> RawEvent {
    let properties = match props {
        Value::Object(m) => m,
        _ => serde_json::Map::new(),
    };
    RawEvent {
        event_id: id.into(),
        name: name.into(),
        user_id: user.into(),
        session_id: session.into(),
        timestamp: Some(at(time)),
        properties,
        ..RawEvent::default()
    }
}

pub fn no_props() -> Value {
    json!({})
}

pub fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}
