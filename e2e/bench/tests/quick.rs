//! CI's short runs of the load generators: a small sale under concurrent load sells out and
//! nothing is oversold; concurrent event batches are all stored, each once, and the reports
//! answer over the generated history. Figures are printed, never asserted.

#[tokio::test(flavor = "multi_thread")]
async fn the_quick_flashsale_run_never_oversells() {
    let report = titan_bench::flashsale(&titan_bench::Options::quick(), false)
        .await
        .expect("bench");
    println!("{report}");
    assert!(report.attempts > 0);
    assert_eq!(report.oversold, 0, "{report}");
    let server = report.server.expect("server stats");
    assert_eq!(
        server.units_sold + server.units_reserved + server.units_remaining,
        500
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_quick_analytics_run_stores_every_event_once() {
    let options = titan_bench::analytics::AnalyticsOptions::quick();
    let report = titan_bench::analytics::analytics(&options)
        .await
        .expect("bench");
    println!("{report}");
    assert!(report.events > 0);
    assert_eq!(report.stored, report.events, "{report}");
    assert_eq!(report.funnel.len(), 5);
}
