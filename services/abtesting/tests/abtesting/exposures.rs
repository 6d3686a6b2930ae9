//! The exposure writer on real ClickHouse: a burst far larger than one insert stored in full
//! with the service's own limits, what is queued written on shutdown, and a failed insert tried
//! again until ClickHouse takes it or counted lost when it never does.

use std::time::Duration;

use chrono::Utc;
use titan_abtesting::{
    app::{Exposure, ExposureSink},
    config::Settings,
    metrics::Metrics,
    store::clickhouse::{ExposureWriter, Exposures, MIGRATIONS, WriterLimits, exposures_with},
};
use titan_kit::{
    datastores::clickhouse,
    testing::{TestClickHouse, eventually},
};
use tokio_util::sync::CancellationToken;

/// The `i`-th distinct exposure: ten experiments, a user each.
fn exposure(i: usize) -> Exposure {
    Exposure {
        experiment_key: format!("burst-{}", i % 10),
        variation_index: 1,
        variation_key: "b".into(),
        hash_attribute: "id".into(),
        user: format!("user-{i}"),
        bucket: 0.5,
        at: Utc::now(),
    }
}

/// A sink and writer on `ch`, and the metrics they count in.
fn writer(
    ch: &TestClickHouse,
    settings: &Settings,
    limits: WriterLimits,
) -> (Exposures, ExposureWriter, Metrics) {
    let metrics = Metrics::new(&prometheus::Registry::new()).expect("metrics");
    let (sink, writer) = exposures_with(
        ch.client.clone(),
        settings,
        "test".into(),
        metrics.clone(),
        limits,
    );
    (sink, writer, metrics)
}

/// A ClickHouse database with the exposures table.
async fn migrated() -> TestClickHouse {
    let ch = TestClickHouse::new().await;
    clickhouse::migrate(&ch.client, "abtesting", MIGRATIONS)
        .await
        .expect("migrate clickhouse");
    ch
}

/// Distinct (experiment, user) pairs stored, and rows in all.
async fn stored(ch: &TestClickHouse) -> (u64, u64) {
    ch.client
        .query("SELECT uniqExact(experiment_key, user_id), count() FROM abtesting_exposures")
        .fetch_one::<(u64, u64)>()
        .await
        .expect("count exposures")
}

/// The case: exposures arriving faster than one insert per round trip can take them
/// (`titan-bench abtesting` logs ~340,000 a second). With the service's own settings and
/// limits, every one of a 200,000 burst recorded as fast as a loop can is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_200_000_exposures_is_stored_in_full() {
    let n = 200_000;
    let ch = migrated().await;
    let (sink, writer, metrics) = writer(&ch, &Settings::default(), WriterLimits::default());
    let stop = CancellationToken::new();
    let _stop_on_drop = stop.clone().drop_guard();
    tokio::spawn(writer.run(stop));
    for i in 0..n {
        sink.record(exposure(i));
    }
    assert_eq!(metrics.dropped_count(), 0, "Assign dropped exposures");
    eventually("every exposure written", || async {
        (metrics.written_count() == n as u64).then_some(())
    })
    .await;
    assert_eq!(stored(&ch).await, (n as u64, n as u64));
    assert_eq!(
        (metrics.lost_count(), metrics.insert_retries_count()),
        (0, 0)
    );
}

/// Shutdown closes the queue and writes all it holds — more than one insert's worth, none of
/// it due yet — before `run` returns; an exposure recorded after that is dropped and counted.
#[tokio::test]
async fn shutdown_writes_what_is_queued() {
    let n = 5_000;
    let ch = migrated().await;
    // Nothing is due before shutdown: a batch larger than the burst and a minute's wait.
    let settings = Settings {
        exposure_batch_size: 100_000,
        exposure_flush_millis: 60_000,
        ..Settings::default()
    };
    let limits = WriterLimits {
        rows_per_insert: 1_000,
        ..WriterLimits::default()
    };
    let (sink, writer, metrics) = writer(&ch, &settings, limits);
    let stop = CancellationToken::new();
    let running = tokio::spawn(writer.run(stop.clone()));
    for i in 0..n {
        sink.record(exposure(i));
    }
    assert_eq!(metrics.written_count(), 0);
    stop.cancel();
    running
        .await
        .expect("writer task")
        .expect("writer stopped cleanly");
    assert_eq!(metrics.written_count(), n as u64);
    assert_eq!(stored(&ch).await, (n as u64, n as u64));
    sink.record(exposure(n));
    assert_eq!(metrics.dropped_count(), 1);
}

/// A ClickHouse blip: inserts fail (here the table is missing) and are tried again; once
/// ClickHouse takes them every exposure is there, none lost.
#[tokio::test]
async fn a_failed_insert_is_tried_again_until_clickhouse_takes_it() {
    let n = 500;
    let ch = TestClickHouse::new().await;
    let settings = Settings {
        exposure_batch_size: 100,
        exposure_flush_millis: 20,
        ..Settings::default()
    };
    // Tries enough for the test to create the table however slowly it runs.
    let limits = WriterLimits {
        retry_delays: vec![Duration::from_millis(20); 3_000],
        ..WriterLimits::default()
    };
    let (sink, writer, metrics) = writer(&ch, &settings, limits);
    let stop = CancellationToken::new();
    let _stop_on_drop = stop.clone().drop_guard();
    tokio::spawn(writer.run(stop));
    for i in 0..n {
        sink.record(exposure(i));
    }
    eventually("a failed insert tried again", || async {
        (metrics.insert_retries_count() > 0).then_some(())
    })
    .await;
    clickhouse::migrate(&ch.client, "abtesting", MIGRATIONS)
        .await
        .expect("migrate clickhouse");
    eventually("every exposure written", || async {
        (metrics.written_count() == n as u64).then_some(())
    })
    .await;
    assert_eq!(stored(&ch).await, (n as u64, n as u64));
    assert_eq!((metrics.lost_count(), metrics.dropped_count()), (0, 0));
}

/// An insert that fails on every try counts its rows lost, once, after its last retry.
#[tokio::test]
async fn an_insert_failing_every_try_counts_its_rows_lost() {
    let n = 10;
    // No exposures table: every insert fails.
    let ch = TestClickHouse::new().await;
    let settings = Settings {
        exposure_batch_size: 10,
        ..Settings::default()
    };
    let limits = WriterLimits {
        retry_delays: vec![Duration::from_millis(1); 2],
        ..WriterLimits::default()
    };
    let (sink, writer, metrics) = writer(&ch, &settings, limits);
    let stop = CancellationToken::new();
    let running = tokio::spawn(writer.run(stop.clone()));
    for i in 0..n {
        sink.record(exposure(i));
    }
    eventually("the rows counted lost", || async {
        (metrics.lost_count() == n as u64).then_some(())
    })
    .await;
    stop.cancel();
    running
        .await
        .expect("writer task")
        .expect("writer stopped cleanly");
    assert_eq!(
        (
            metrics.insert_retries_count(),
            metrics.written_count(),
            metrics.lost_count()
        ),
        (2, 0, n as u64)
    );
}
