//! CI's short runs of the load generators: a small sale under concurrent load sells out and
//! nothing is oversold; concurrent event batches are all stored, each once, and the reports
//! answer over the generated history; WebSocket messages published on two replicas reach every
//! subscriber once and in order, and the latency histogram is drawn; pricing serves the prices
//! its history ends with and a second round changes nothing; fraud answers every check of a
//! fixed-rate run over seeded histories, none degraded; a campaign emails each member of its
//! segment exactly once through a real SMTP server; videocall's pairs end every call ENDED
//! and every signaling frame crosses the two replicas once, in order; drivers' positions all
//! land, a watch on the other replica sees every one of its driver's, in order, and the nearby
//! set finds the whole fleet; tracking's signed webhook scans on one replica reach the
//! subscribers on the other once each and are stored once; shipments booked on two replicas
//! are each stored once with one event, a replay on the other replica answers the same one,
//! and the sampled labels are served by their signed URLs. Figures are printed, never
//! asserted.

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

#[tokio::test(flavor = "multi_thread")]
async fn the_quick_ws_run_delivers_every_message_once_in_order_and_draws_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let png = dir.path().join("fanout.png");
    let options = titan_bench::ws::WsOptions::quick(png.clone());
    let report = titan_bench::ws::ws(&options).await.expect("bench");
    println!("{report}");
    let idle = report.idle.as_ref().expect("idle part");
    assert_eq!(idle.held, 500, "{report}");
    // 200 messages over 20 topics of 10 subscribers each.
    assert_eq!(report.fanout.expected, 2_000, "{report}");
    assert_eq!(report.fanout.delivered, 2_000, "{report}");
    assert_eq!(report.fanout.disordered, 0, "{report}");
    let bytes = std::fs::read(&png).expect("histogram written");
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    // The IHDR chunk: width and height as drawn.
    assert_eq!(&bytes[16..24], &[0, 0, 3, 232, 0, 0, 2, 88]);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_quick_pricing_run_serves_what_history_says_and_a_second_round_changes_nothing() {
    let options = titan_bench::pricing::PricingOptions::quick();
    let report = titan_bench::pricing::pricing(&options)
        .await
        .expect("bench");
    println!("{report}");
    assert!(report.round_changed > 0, "{report}");
    assert_eq!(report.quiet_changed, 0, "{report}");
    assert_eq!(report.mismatches, 0, "{report}");
    assert_eq!(report.prices, report.calls * 100, "{report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_quick_fraud_run_answers_every_check() {
    let options = titan_bench::fraud::FraudOptions::quick();
    let report = titan_bench::fraud::fraud(&options).await.expect("bench");
    println!("{report}");
    assert_eq!(report.sent, 400, "{report}");
    // Every check answered. Whether one answered degraded depends on Redis answering within
    // its 50 ms budget, i.e. on the machine's load while the suite runs: timing, so reported,
    // not asserted (a debug build under the parallel suite saw server p99 past 100 ms).
    assert_eq!(report.failed, 0, "{report}");
    assert_eq!(
        report.from_redis + report.from_postgres,
        report.sent,
        "each check scored from one history: {report}"
    );
    assert!(
        report.server_p99.is_some(),
        "the service observed the checks: {report}"
    );
    assert!(report.max_checks > 0 && report.max_failed == 0, "{report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_quick_campaign_run_sends_each_member_exactly_one_email() {
    let options = titan_bench::campaign::CampaignOptions::quick();
    let report = titan_bench::campaign::campaign(&options)
        .await
        .expect("bench");
    println!("{report}");
    assert!(report.exact(), "{report}");
    assert_eq!(report.estimates.len(), 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_quick_videocall_run_ends_every_call_and_relays_every_frame_once() {
    let options = titan_bench::videocall::VideocallOptions::quick();
    let report = titan_bench::videocall::videocall(&options)
        .await
        .expect("bench");
    println!("{report}");
    // 4 pairs of 5 cycles, every call ENDED, none failed.
    assert_eq!(report.setup.cycles, 20, "{report}");
    assert_eq!(report.setup.ended, 20, "{report}");
    assert!(report.setup.failed.is_empty(), "{report}");
    // 200 frames over 4 active calls, each delivered once and in order, none refused.
    assert_eq!(report.relay.sent, 200, "{report}");
    assert_eq!(report.relay.delivered, 200, "{report}");
    assert_eq!(
        (report.relay.disordered, report.relay.refused),
        (0, 0),
        "{report}"
    );
    assert_eq!(report.relay.ended, 4, "{report}");
    assert!(report.exact());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_quick_driver_run_lands_every_position_and_finds_every_driver() {
    let options = titan_bench::driver::DriverOptions::quick();
    let report = titan_bench::driver::driver(&options).await.expect("bench");
    println!("{report}");
    assert_eq!(report.drivers, 50, "{report}");
    assert_eq!(report.refused, 0, "{report}");
    assert!(report.reports > 0, "{report}");
    // Every position of the watched driver crossed to the watch on the other replica.
    assert!(report.watched_sent > 0, "{report}");
    assert_eq!(report.watched_received, report.watched_sent, "{report}");
    assert_eq!(report.searches, 200, "{report}");
    // The GEO set followed every report: a city-wide search lists the whole fleet.
    assert_eq!(report.found, 50, "{report}");
    assert!(report.exact());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_quick_tracking_run_fans_every_scan_out_once_and_stores_it_once() {
    let options = titan_bench::tracking::TrackingOptions::quick();
    let report = titan_bench::tracking::tracking(&options)
        .await
        .expect("bench");
    println!("{report}");
    assert_eq!(report.refused, 0, "{report}");
    assert!(report.appended > 0, "{report}");
    // Every scan of a followed record crossed from B's webhook to A's subscriber, once.
    assert!(report.followed_sent > 0, "{report}");
    assert_eq!(report.followed_received, report.followed_sent, "{report}");
    assert_eq!(report.duplicates_received, 0, "{report}");
    assert_eq!(report.lookups, 200, "{report}");
    // A CREATED per record and every appended scan, nothing twice.
    assert_eq!(
        report.expected,
        50 + i64::try_from(report.appended).expect("fits")
    );
    assert_eq!(report.stored, report.expected, "{report}");
    assert!(report.exact());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_quick_shipping_run_books_each_shipment_once_with_its_label_and_event() {
    let options = titan_bench::shipping::ShippingOptions::quick();
    let report = titan_bench::shipping::shipping(&options)
        .await
        .expect("bench");
    println!("{report}");
    let n = options.shipments as u64;
    assert_eq!((report.booked, report.refused), (n, 0), "{report}");
    assert_eq!((report.rows, report.events), (n, n), "{report}");
    assert!(report.replays > 0, "{report}");
    assert_eq!(report.replays_same, report.replays, "{report}");
    assert!(report.labels_checked > 0, "{report}");
    assert_eq!(report.labels_ok, report.labels_checked, "{report}");
    assert!(report.exact());
}
