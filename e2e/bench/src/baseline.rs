//! Same-run baselines without the service: what the datastore alone takes on this machine, so
//! a service's figure reads as a share of it (absolute numbers move between machines). The
//! flash sale's (its Lua script driven in process) lives with its scenario; here the raw
//! ClickHouse insert analytics' `TrackEvents` is compared with.

use std::{
    fmt::Write as _,
    time::{Duration, Instant},
};

use anyhow::Context;
use titan_e2e::{Cell, CellOptions};

use crate::analytics::AnalyticsOptions;

/// Events per second ClickHouse takes as `INSERT … FORMAT JSONEachRow` batches of
/// `options.batch` events of the same shape `TrackEvents` stores, from `options.clients`
/// concurrent callers for `options.duration`, into the analytics table of a fresh cell.
pub async fn clickhouse_insert(options: &AnalyticsOptions) -> anyhow::Result<f64> {
    // The cell migrates the analytics schema (views included) into its own database.
    let cell = Cell::start_with(CellOptions {
        services: vec!["analytics".into()],
        config: Some("services:\n  analytics:\n    sources: []\n".into()),
        release: options.release,
    })
    .await;
    let started = Instant::now();
    let deadline = started + options.duration;
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..options.clients {
        let (client, batch) = (cell.clickhouse.client.clone(), options.batch);
        tasks.spawn(async move {
            let mut events = 0u64;
            let mut seq = 0u64;
            while Instant::now() < deadline {
                let now = chrono::Utc::now();
                let (time, date) = (
                    now.format("%Y-%m-%d %H:%M:%S").to_string(),
                    now.format("%Y-%m-%d").to_string(),
                );
                let mut sql = String::from("INSERT INTO analytics_events FORMAT JSONEachRow\n");
                for i in 0..batch {
                    seq += 1;
                    let name = if i % 3 == 0 {
                        "product_view"
                    } else {
                        "page_view"
                    };
                    let _ = writeln!(
                        sql,
                        r#"{{"event_id":"raw-c{c}-{seq}","name":"{name}","user_id":"u{}","session_id":"s{c}-{}","time":"{time}","time_ms":{},"date":"{date}","properties":"{{}}","platform":"web","country":"SG","cell":"bench","source":"bench","ingested_at":"{time}"}}"#,
                        seq % 50_000,
                        seq / 20,
                        now.timestamp_subsec_millis(),
                    );
                }
                client
                    .query(&sql)
                    .execute()
                    .await
                    .context("raw ClickHouse insert")?;
                events += batch as u64;
            }
            anyhow::Ok(events)
        });
    }
    let mut events = 0;
    for done in tasks.join_all().await {
        events += done?;
    }
    Ok(events as f64
        / started
            .elapsed()
            .as_secs_f64()
            .max(Duration::from_millis(1).as_secs_f64()))
}
