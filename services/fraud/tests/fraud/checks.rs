//! Checks through the real stores: each signal fires on its scenario and not on its
//! neighbour, velocity windows age out, degraded answers, rules and shadow rules, idempotency,
//! and the decision log (replays before its sink stored them, a full log, a bad entry).

use std::time::{Duration, Instant};

use titan_crds::config::FraudDecision as Decision;
use titan_fraud::{
    app::{Decided, FraudError, NewDecision, RuleInput},
    config::Settings,
    domain::{
        Facts, Level, Transaction,
        rules::{Action, Mode},
    },
    store::{
        log::GROUP,
        redis::{LOG_SOURCE, RedisHot},
    },
};
use titan_kit::{
    events::{dead_letter_key, stream_key},
    testing::TestRedis,
};

use chrono::{DateTime, Utc};

use crate::*;

fn codes(d: &titan_fraud::app::Decided) -> Vec<&str> {
    d.reasons.iter().map(|r| r.code.as_str()).collect()
}

/// The user has checked out before on this device, IP and card, at these amounts.
async fn history(w: &World, user: &str, amounts: &[i64]) {
    for (i, a) in amounts.iter().enumerate() {
        // A day apart, so the history stays within every velocity limit.
        w.clock.advance(chrono::Duration::days(1));
        w.app
            .check(&service(), txn(&format!("{user}-h{i}"), user, *a))
            .await
            .expect("history check");
    }
}

#[tokio::test]
async fn first_seen_device_and_ip_fire_once() {
    let w = World::new().await;
    let first = w
        .app
        .check(&service(), txn("t1", "u1", 1000))
        .await
        .expect("check");
    assert_eq!(codes(&first), ["new_device", "new_ip"]);
    assert!((first.score - 0.25).abs() < 1e-12, "{}", first.score);
    assert_eq!(
        (first.level, first.decision),
        (Level::Low, Decision::Approve)
    );
    let again = w
        .app
        .check(&service(), txn("t2", "u1", 1000))
        .await
        .expect("check");
    assert_eq!(codes(&again), Vec::<&str>::new());
    assert_eq!(again.score, 0.0);
    let mut other_device = txn("t3", "u1", 1000);
    other_device.device = Some("dev-2".into());
    let d = w.app.check(&service(), other_device).await.expect("check");
    assert_eq!(codes(&d), ["new_device"]);
}

#[tokio::test]
async fn every_other_signal_fires_on_its_scenario_and_not_on_its_neighbour() {
    let settings = Settings {
        high_risk_countries: vec!["KP".into()],
        known_bad: titan_crds::config::FraudKnownBad {
            email_domains: vec!["bad.example".into()],
            ..Default::default()
        },
        ..settings()
    };
    let w = World::with(settings).await;
    history(&w, "u", &[1000, 1100, 900, 1000, 1050, 950]).await;
    let check = |id: &str, f: &dyn Fn(&mut titan_fraud::domain::Transaction, DateTime<Utc>)| {
        // Two hours apart, so these checks stay within every velocity limit.
        w.clock.advance(chrono::Duration::hours(2));
        let mut t = txn(id, "u", 1000);
        f(&mut t, w.clock.now());
        let app = w.app.clone();
        async move { app.check(&service(), t).await.expect("check") }
    };
    let d = check("hr", &|t, _| t.country = Some("KP".into())).await;
    assert_eq!(codes(&d), ["high_risk_country", "country_mismatch"]);
    let d = check("hr-n", &|t: &mut titan_fraud::domain::Transaction, _| {
        t.country = Some("DE".into());
        t.billing_country = Some("DE".into());
        t.shipping_country = Some("DE".into());
    })
    .await;
    assert_eq!(codes(&d), Vec::<&str>::new());
    let d = check("mm", &|t, _| t.shipping_country = Some("US".into())).await;
    assert_eq!(codes(&d), ["country_mismatch"]);
    let d = check("bad", &|t, _| t.email_domain = Some("bad.example".into())).await;
    assert_eq!(codes(&d), ["known_bad"]);
    let d = check("bad-n", &|t, _| {
        t.email_domain = Some("good.example".into())
    })
    .await;
    assert_eq!(codes(&d), Vec::<&str>::new());
    let d = check("young", &|t, now| {
        t.account_created_at = Some(now - chrono::Duration::days(6))
    })
    .await;
    assert_eq!(codes(&d), ["new_account"]);
    let d = check("young-n", &|t, now| {
        t.account_created_at = Some(now - chrono::Duration::days(7))
    })
    .await;
    assert_eq!(codes(&d), Vec::<&str>::new());
    // The usual amount is about 1,000: 5,000 is far outside it, 1,100 is not.
    let d = check("big", &|t, _| t.amount = 5000).await;
    assert_eq!(codes(&d), ["amount_anomaly"]);
    let d = check("big-n", &|t, _| t.amount = 1100).await;
    assert_eq!(codes(&d), Vec::<&str>::new());

    for i in 0..2 {
        w.app
            .payment_failure(&service(), &format!("p{i}"), "u")
            .await
            .expect("failure");
    }
    let d = check("fp-n", &|_, _| {}).await;
    assert_eq!(
        codes(&d),
        Vec::<&str>::new(),
        "2 failures is not more than 2"
    );
    let n = w
        .app
        .payment_failure(&service(), "p2", "u")
        .await
        .expect("failure");
    assert_eq!(n, 3);
    assert_eq!(
        w.app
            .payment_failure(&service(), "p2", "u")
            .await
            .expect("replay"),
        3
    );
    let d = check("fp", &|_, _| {}).await;
    assert_eq!(codes(&d), ["failed_payments"]);
    w.clock.advance(chrono::Duration::days(7));
    let d = check("fp-aged", &|_, _| {}).await;
    assert_eq!(codes(&d), Vec::<&str>::new(), "failures older than 7 days");

    // A chargeback names a stored decision.
    w.stored().await;
    let n = w
        .app
        .chargeback(&service(), "fp", "u", 1000, "stolen card")
        .await
        .expect("chargeback");
    assert_eq!(n, 1);
    assert_eq!(
        w.app
            .chargeback(&service(), "fp", "u", 1000, "stolen card")
            .await
            .expect("replay"),
        1
    );
    let d = check("cb", &|_, _| {}).await;
    assert_eq!(codes(&d), ["chargebacks"]);
    let trust = w.app.trust(&service(), "u").await.expect("trust");
    assert_eq!((trust.chargebacks, trust.successful_orders), (1, 0));
    assert!((trust.trust - 0.15).abs() < 1e-12, "{}", trust.trust);
    assert!(matches!(
        w.app
            .chargeback(&service(), "fp", "someone-else", 1000, "")
            .await,
        Err(FraudError::UserMismatch { .. })
    ));
    assert!(matches!(
        w.app.chargeback(&service(), "nope", "u", 1000, "").await,
        Err(FraudError::UnknownTransaction(_))
    ));
}

#[tokio::test]
async fn velocity_windows_age_out() {
    let w = World::new().await;
    // Five in the hour is the limit; the sixth on the same card passes it.
    for i in 0..5 {
        let mut t = txn(&format!("v{i}"), &format!("user-{i}"), 100);
        t.device = Some(format!("d{i}"));
        t.ip = Some(format!("198.51.100.{i}"));
        let d = w.app.check(&service(), t).await.expect("check");
        assert!(!codes(&d).contains(&"velocity"), "{i}: {:?}", d.reasons);
        w.clock.advance(chrono::Duration::minutes(1));
    }
    let mut sixth = txn("v5", "user-5", 100);
    sixth.device = Some("d5".into());
    sixth.ip = Some("198.51.100.5".into());
    let d = w.app.check(&service(), sixth).await.expect("check");
    let v = d
        .reasons
        .iter()
        .find(|r| r.code == "velocity")
        .expect("velocity fires");
    assert_eq!(v.message, "6 transactions in 1h per card (limit 5)");
    assert!((v.contribution - 0.2 * 0.2).abs() < 1e-12);
    // An hour after the first five, only the sixth is in the card's hour.
    w.clock.advance(chrono::Duration::minutes(56));
    let mut later = txn("v6", "user-6", 100);
    later.device = Some("d6".into());
    later.ip = Some("198.51.100.6".into());
    let d = w.app.check(&service(), later).await.expect("check");
    assert!(!codes(&d).contains(&"velocity"), "{:?}", d.reasons);
    // A retried check does not count twice.
    for _ in 0..10 {
        let mut again = txn("v6", "user-6", 100);
        again.device = Some("d6".into());
        again.ip = Some("198.51.100.6".into());
        w.app.check(&service(), again).await.expect("replay");
    }
    // A minute later the card's hour holds v3..v6 and this one: five, at the limit. Counted
    // twice, the replays would have pushed it past.
    w.clock.advance(chrono::Duration::minutes(1));
    let mut next = txn("v7", "user-7", 100);
    next.device = Some("d7".into());
    next.ip = Some("198.51.100.7".into());
    let d = w.app.check(&service(), next).await.expect("check");
    assert!(!codes(&d).contains(&"velocity"), "{:?}", d.reasons);
    // After 7 days the sets are trimmed to what is in the week.
    w.clock.advance(chrono::Duration::days(8));
    let mut week = txn("v8", "user-8", 100);
    week.device = Some("d8".into());
    week.ip = Some("198.51.100.8".into());
    w.app.check(&service(), week).await.expect("check");
    w.stored().await;
    // The card's tallies (second dimension) of v8: nothing else in any window.
    let windows: serde_json::Value = sqlx::query_scalar(
        "SELECT facts->'velocity'->'tallies'->1->'windows' FROM fraud_decisions WHERE transaction_id = 'v8'",
    )
    .fetch_one(&w.db.pool)
    .await
    .expect("facts");
    assert_eq!(
        windows,
        serde_json::json!([{"count": 1, "amount": 100}, {"count": 1, "amount": 100}, {"count": 1, "amount": 100}])
    );
}

#[tokio::test]
async fn without_redis_the_check_answers_degraded_within_its_budget() {
    for delay in [None, Some(Duration::from_secs(5))] {
        let w = World::over(Unreachable { delay }, Settings::default()).await;
        // A known user on a known device: LOW, which alone would be approved.
        w.app
            .check(&service(), txn("warm", "u", 1000))
            .await
            .expect("warm");
        let started = Instant::now();
        let d = w
            .app
            .check(&service(), txn("t", "u", 1000))
            .await
            .expect("check");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert!(d.degraded);
        assert_eq!(d.level, Level::Low);
        assert_eq!(
            d.decision,
            Decision::Review,
            "the configured degraded decision"
        );
        assert_eq!(codes(&d), ["degraded"]);
    }
}

#[tokio::test]
async fn rules_apply_in_priority_order_and_shadow_rules_change_nothing() {
    let w = World::new().await;
    let rule = |name: &str, priority: i32, condition: &str, action: Action, mode: Mode| RuleInput {
        name: name.into(),
        priority,
        condition: condition.into(),
        action: Some(action),
        mode: Some(mode),
    };
    let bad = w
        .app
        .save_rule(
            &admin(),
            rule("x", 1, "amount >> 5", Action::Block, Mode::Enforce),
        )
        .await;
    match bad {
        Err(FraudError::Condition(e)) => {
            assert_eq!(
                (e.column, e.message.as_str()),
                (9, "expected a value, found an operator")
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(rules_of(&store(&w)).await, 0, "nothing stored");
    assert!(matches!(
        w.app
            .save_rule(
                &analyst(),
                rule("x", 1, "amount > 5", Action::Block, Mode::Enforce)
            )
            .await,
        Err(FraudError::Forbidden { .. })
    ));

    let before = w
        .app
        .check(&service(), txn("a", "u", 900))
        .await
        .expect("check");
    let shadow = w
        .app
        .save_rule(
            &admin(),
            rule("big-block", 1, "amount > 500", Action::Block, Mode::Shadow),
        )
        .await
        .expect("save");
    assert_eq!(shadow.rule.version, 1);
    let mut same = txn("b", "u", 900);
    same.device = Some("dev-b".into());
    same.ip = Some("192.0.2.99".into());
    let with_shadow = w.app.check(&service(), same).await.expect("check");
    assert_eq!(
        (with_shadow.score, with_shadow.decision),
        (before.score, before.decision)
    );
    assert_eq!(with_shadow.rule_hits.len(), 1);
    assert!(with_shadow.rule_hits[0].shadow);

    // Enforced: the same rule now blocks; saving it twice adds no version.
    let enforced = rule("big-block", 1, "amount > 500", Action::Block, Mode::Enforce);
    let v2 = w
        .app
        .save_rule(&admin(), enforced.clone())
        .await
        .expect("save");
    let again = w.app.save_rule(&admin(), enforced).await.expect("save");
    assert_eq!((v2.rule.version, again.rule.version), (2, 2));
    w.app
        .save_rule(
            &admin(),
            rule(
                "trusted",
                0,
                "amount > 800 and not new_device",
                Action::Allow,
                Mode::Enforce,
            ),
        )
        .await
        .expect("save");
    w.app
        .save_rule(
            &admin(),
            rule(
                "bump",
                -1,
                "amount > 500",
                Action::AddScore(0.3),
                Mode::Enforce,
            ),
        )
        .await
        .expect("save");
    let d = w
        .app
        .check(&service(), txn("c", "u", 900))
        .await
        .expect("check");
    assert_eq!(
        d.decision,
        Decision::Approve,
        "trusted (priority 0) decides before big-block"
    );
    assert!((d.score - 0.3).abs() < 1e-12, "{}", d.score);
    assert_eq!(codes(&d), ["rule:bump", "rule:trusted"]);
    let d = w
        .app
        .check(&service(), txn("d", "u", 600))
        .await
        .expect("check");
    assert_eq!(d.decision, Decision::Reject);
    assert_eq!(codes(&d), ["rule:bump", "rule:big-block"]);
    let listed = w.app.rules(&analyst()).await.expect("list");
    assert_eq!(
        listed
            .iter()
            .map(|r| (r.rule.name.as_str(), r.rule.version))
            .collect::<Vec<_>>(),
        [("bump", 1), ("trusted", 1), ("big-block", 2)]
    );
}

#[tokio::test]
async fn checks_are_idempotent_by_transaction_id() {
    let w = World::new().await;
    let first = w
        .app
        .check(&service(), txn("t", "u", 1000))
        .await
        .expect("check");
    w.clock.advance(chrono::Duration::minutes(5));
    let again = w
        .app
        .check(&service(), txn("t", "u", 1000))
        .await
        .expect("replay");
    assert_eq!(again, first);
    assert!(matches!(
        w.app.check(&service(), txn("t", "u", 2000)).await,
        Err(FraudError::TransactionReused(_))
    ));
    // The first check logged the decision; the replays found it.
    assert_eq!(w.stored().await, 1);
    assert_eq!(w.count("SELECT count(*) FROM fraud_decisions").await, 1);
    assert_eq!(
        w.count("SELECT count(*) FROM titan_outbox WHERE event_type = 'fraud.decided'")
            .await,
        1
    );
    assert!(matches!(
        w.app
            .check(&caller("buyer", &[]), txn("t2", "u", 1000))
            .await,
        Err(FraudError::Forbidden { .. })
    ));
}

/// A decision as scoring would hand it to the store.
fn new_decision(t: Transaction, level: Level, case: bool) -> NewDecision {
    NewDecision {
        decided: Decided {
            transaction_id: t.transaction_id.clone(),
            user_id: t.user_id.clone(),
            amount: t.amount,
            score: 0.65,
            level,
            decision: Decision::Review,
            reasons: Vec::new(),
            rule_hits: Vec::new(),
            degraded: false,
            model_version: None,
            case_id: case.then(uuid::Uuid::now_v7),
            decided_at: epoch(),
        },
        transaction: t,
        facts: Facts::default(),
        features: vec![0.5, 1e-7, 3.0],
    }
}

#[tokio::test]
async fn a_batch_stores_each_decision_once_with_its_user_device_ip_case_and_event() {
    let w = World::new().await;
    let s = store(&w);
    let earlier = new_decision(txn("old", "u1", 500), Level::Low, false);
    s.record_batch(std::slice::from_ref(&earlier))
        .await
        .expect("earlier batch");

    // The same user three times (upserted once), a transaction id twice, a replay of the
    // earlier batch with another amount, and one case.
    let mut second = txn("b", "u1", 700);
    second.device = Some("dev-2".into());
    second.account_created_at = None;
    let batch = vec![
        new_decision(txn("a", "u1", 600), Level::High, true),
        new_decision(second, Level::Low, false),
        new_decision(txn("a", "u1", 600), Level::High, true),
        new_decision(txn("c", "u2", 800), Level::Low, false),
        new_decision(txn("old", "u1", 999), Level::Low, false),
    ];
    let answers = s.record_batch(&batch).await.expect("batch");
    let ids: Vec<(&str, i64)> = answers
        .iter()
        .map(|d| (d.transaction_id.as_str(), d.amount))
        .collect();
    assert_eq!(
        ids,
        [("a", 600), ("b", 700), ("a", 600), ("c", 800), ("old", 500)],
        "the replay answers what was stored first"
    );
    assert_eq!(answers[0], answers[2]);
    assert_eq!(answers[0].case_id, batch[0].decided.case_id);
    assert_eq!(w.count("SELECT count(*) FROM fraud_decisions").await, 4);
    assert_eq!(
        w.count("SELECT count(*) FROM titan_outbox WHERE event_type = 'fraud.decided'")
            .await,
        4
    );
    assert_eq!(w.count("SELECT count(*) FROM fraud_users").await, 2);
    assert_eq!(w.count("SELECT count(*) FROM fraud_cases").await, 1);
    // u1: dev-1, dev-2 and the IP; u2: dev-1 and the IP.
    assert_eq!(w.count("SELECT count(*) FROM fraud_seen").await, 5);
    let features: Vec<f64> =
        sqlx::query_scalar("SELECT features FROM fraud_decisions WHERE transaction_id = 'c'")
            .fetch_one(&w.db.pool)
            .await
            .expect("features");
    assert_eq!(features, [0.5, 1e-7, 3.0], "features round-trip exactly");
}

#[tokio::test]
async fn concurrent_checks_each_get_their_own_stored_answer() {
    let w = World::new().await;
    let mut tasks = Vec::new();
    for i in 0..60 {
        let app = w.app.clone();
        // 20 users, and every transaction id sent twice at once.
        let t = txn(&format!("t{}", i / 2), &format!("u{}", (i / 2) % 20), 1_000);
        tasks.push(tokio::spawn(async move { app.check(&service(), t).await }));
    }
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.expect("task").expect("check"));
    }
    for pair in answers.chunks(2) {
        assert_eq!(
            pair[0], pair[1],
            "both sends of a transaction id get one answer"
        );
    }
    assert_eq!(
        w.stored().await,
        30,
        "one logged decision per transaction id"
    );
    assert_eq!(w.count("SELECT count(*) FROM fraud_decisions").await, 30);
    assert_eq!(
        w.count("SELECT count(*) FROM titan_outbox WHERE event_type = 'fraud.decided'")
            .await,
        30
    );
    assert_eq!(w.count("SELECT count(*) FROM fraud_users").await, 20);
}

#[tokio::test]
async fn a_full_log_sends_checks_to_postgresql_and_their_replays_still_match() {
    let redis = TestRedis::new().await.handle;
    let hot = RedisHot::new(redis.clone(), "test".into()).with_log_cap(2);
    let w = World::with_hot(hot, redis, settings()).await;
    let mut answers = Vec::new();
    for i in 0..3 {
        let t = txn(&format!("t{i}"), "u", 1_000);
        answers.push(w.app.check(&service(), t).await.expect("check"));
    }
    // Two logged; the third found the log full and was stored before its answer.
    assert_eq!(
        w.count("SELECT count(*) FROM fraud_decisions WHERE transaction_id = 't2'")
            .await,
        1
    );
    assert_eq!(w.count("SELECT count(*) FROM fraud_decisions").await, 1);
    // Its replay is answered from Redis like a logged one's.
    let again = w
        .app
        .check(&service(), txn("t2", "u", 1_000))
        .await
        .expect("replay");
    assert_eq!(again, answers[2]);
    assert_eq!(w.stored().await, 2);
    assert_eq!(w.count("SELECT count(*) FROM fraud_decisions").await, 3);
    assert_eq!(
        w.count("SELECT count(*) FROM titan_outbox WHERE event_type = 'fraud.decided'")
            .await,
        3
    );
}

#[tokio::test]
async fn a_log_entry_that_is_not_a_decision_is_dead_lettered_and_the_rest_is_stored() {
    let redis = TestRedis::new().await.handle;
    let w = World::with_redis(redis.clone(), settings()).await;
    w.app
        .check(&service(), txn("t0", "u", 1_000))
        .await
        .expect("check");
    let log = stream_key(&redis, LOG_SOURCE);
    let mut conn = redis.conn.clone();
    let _: String = titan_kit::reexport::redis::cmd("XADD")
        .arg(&log)
        .arg("*")
        .arg("envelope")
        .arg("{not json")
        .query_async(&mut conn)
        .await
        .expect("xadd");
    w.app
        .check(&service(), txn("t1", "u", 1_000))
        .await
        .expect("check");
    assert_eq!(w.stored().await, 3, "three entries read");
    assert_eq!(w.count("SELECT count(*) FROM fraud_decisions").await, 2);
    let dead: u64 = titan_kit::reexport::redis::cmd("XLEN")
        .arg(dead_letter_key(&redis, LOG_SOURCE, GROUP))
        .query_async(&mut conn)
        .await
        .expect("xlen");
    assert_eq!(dead, 1);
    let left: u64 = titan_kit::reexport::redis::cmd("XLEN")
        .arg(&log)
        .query_async(&mut conn)
        .await
        .expect("xlen");
    assert_eq!(left, 0, "stored entries leave the log");
}
