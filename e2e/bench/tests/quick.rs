//! CI's run of every load generator: `titan-bench all --quick` (what `cargo xtask bench
//! --quick` runs), through the same library path — each scenario's short mode on the debug
//! build, in sequence, with its correctness checks (see `titan_bench::suite`): a small sale
//! never oversells; every event, redemption, award, exposure, message, frame, position, scan
//! and shipment is stored or delivered exactly once; pricing serves what its history says;
//! every fraud check is answered; the solver's routes pass the checker; the PNGs are drawn.
//! Figures are printed, never asserted.

use titan_bench::suite;

#[tokio::test(flavor = "multi_thread")]
async fn every_quick_scenario_holds_its_correctness_checks() {
    let out = tempfile::tempdir().expect("temp dir");
    let jobs = suite::quick_jobs(&[], out.path()).expect("every scenario has a quick mode");
    assert_eq!(jobs.len(), suite::SCENARIOS.len());
    let report = suite::run(jobs, out.path(), true).await.expect("suite");
    println!("{report}");
    assert!(report.held(), "{report}");
    assert_eq!(report.took.len(), suite::SCENARIOS.len());
    // Quick figures are never judged: a short debug run says nothing about throughput.
    assert_eq!(report.short(), 0, "{report}");
    assert!(report.json.is_file());
    for png in &report.pngs {
        let bytes = std::fs::read(png).expect("drawn");
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{}", png.display());
    }
}
