//! CI's short run of the load generator: a small sale under concurrent load sells out and
//! nothing is oversold. Figures are printed, never asserted.

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
