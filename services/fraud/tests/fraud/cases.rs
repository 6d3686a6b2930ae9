//! Review cases: HIGH and above open one, analysts (and only they) list, assign and decide
//! them with an audit reason; a decided case only repeats.

use titan_crds::config::{FraudDecision as Decision, FraudKnownBad};
use titan_fraud::{
    app::FraudError,
    config::Settings,
    domain::{CaseStatus, Level, Verdict},
};

use crate::*;

#[tokio::test]
async fn high_opens_a_case_that_analysts_decide() {
    let settings = Settings {
        known_bad: FraudKnownBad {
            devices: vec!["evil".into()],
            ..Default::default()
        },
        ..settings()
    };
    let w = World::with(settings).await;
    // New device (0.15) + new IP (0.10) + known bad (0.5) = 0.75: HIGH.
    let mut t = txn("t-high", "u", 1000);
    t.device = Some("evil".into());
    let d = w.app.check(&service(), t).await.expect("check");
    assert_eq!((d.level, d.decision), (Level::High, Decision::Review));
    let case_id = d.case_id.expect("a case");
    let low = w
        .app
        .check(&service(), txn("t-low", "u2", 1000))
        .await
        .expect("check");
    assert_eq!(low.case_id, None);
    assert_eq!(
        w.stored().await,
        2,
        "the sink stores both decisions and their cases"
    );

    for who in [service(), admin(), caller("buyer", &[])] {
        assert!(matches!(
            w.app.cases(&who, None, 0, "").await,
            Err(FraudError::Forbidden { .. })
        ));
        assert!(matches!(
            w.app
                .decide_case(&who, &case_id.to_string(), Some(Verdict::Fraud), "x")
                .await,
            Err(FraudError::Forbidden { .. })
        ));
    }
    let (cases, next) = w
        .app
        .cases(&analyst(), Some(CaseStatus::Open), 0, "")
        .await
        .expect("list");
    assert_eq!((cases.len(), next), (1, None));
    assert_eq!(cases[0].transaction_id, "t-high");
    assert!(matches!(
        w.app.cases(&analyst(), None, 101, "").await,
        Err(FraudError::Invalid(e)) if e.field == "page_size"
    ));

    let c = w
        .app
        .assign(&analyst(), &case_id.to_string(), "")
        .await
        .expect("assign");
    assert_eq!(
        (c.status, c.assignee.as_deref()),
        (CaseStatus::Assigned, Some("ana"))
    );
    assert!(matches!(
        w.app.decide_case(&analyst(), &case_id.to_string(), Some(Verdict::Fraud), " ").await,
        Err(FraudError::Invalid(e)) if e.field == "reason"
    ));
    let c = w
        .app
        .decide_case(
            &analyst(),
            &case_id.to_string(),
            Some(Verdict::Fraud),
            "device on the bad list",
        )
        .await
        .expect("decide");
    assert_eq!(
        (c.status, c.verdict),
        (CaseStatus::Decided, Some(Verdict::Fraud))
    );
    let same = w
        .app
        .decide_case(
            &analyst(),
            &case_id.to_string(),
            Some(Verdict::Fraud),
            "device on the bad list",
        )
        .await
        .expect("repeat");
    assert_eq!(same, c);
    assert!(matches!(
        w.app
            .decide_case(
                &analyst(),
                &case_id.to_string(),
                Some(Verdict::Legitimate),
                "ok"
            )
            .await,
        Err(FraudError::Case(_))
    ));
    assert!(matches!(
        w.app.assign(&analyst(), &case_id.to_string(), "bob").await,
        Err(FraudError::Case(_))
    ));
    assert_eq!(
        w.count("SELECT count(*) FROM fraud_case_audit").await,
        2,
        "assign and decide, not the repeat"
    );
    assert!(matches!(
        w.app
            .assign(&analyst(), &uuid::Uuid::now_v7().to_string(), "")
            .await,
        Err(FraudError::UnknownCase(_))
    ));
}

#[tokio::test]
async fn cases_are_paged_oldest_first() {
    let settings = Settings {
        known_bad: FraudKnownBad {
            ips: vec!["203.0.113.1".into()],
            ..Default::default()
        },
        ..settings()
    };
    let w = World::with(settings).await;
    for i in 0..5 {
        let mut t = txn(&format!("t{i}"), &format!("u{i}"), 1000);
        t.ip = Some("203.0.113.1".into());
        let d = w.app.check(&service(), t).await.expect("check");
        assert!(d.case_id.is_some());
    }
    w.stored().await;
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let (page, next) = w
            .app
            .cases(&analyst(), None, 2, &token)
            .await
            .expect("page");
        seen.extend(page.into_iter().map(|c| c.transaction_id));
        match next {
            Some(n) => token = n.to_string(),
            None => break,
        }
    }
    assert_eq!(seen, ["t0", "t1", "t2", "t3", "t4"]);
}
