//! A user's export and erasure (`titan_kit::privacy`) on the real stores: the export holds
//! exactly the user's records; the erasure keeps decisions, cases and chargebacks under the
//! pseudonym with the requests' identifiers blanked, deletes the trust profile, first-seen
//! history, failed payments, cached history, velocity and replay keys, leaves no trace of the
//! user, their device or card in any table or key, leaves another user and the training labels
//! as they were, waits for decisions still in the log, and is idempotent.

use titan_crds::config::FraudKnownBad;
use titan_fraud::{
    config::Settings,
    privacy::{Privacy, PrivacyError},
    store::{pg::PgFraud, redis::RedisHot},
};
use titan_kit::{
    privacy::{Erasure, PersonalData},
    testing::{TestRedis, mentions, privacy::subject},
};

use crate::*;

fn id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// What stays countable after an erasure: decisions, cases, chargebacks and their amounts, and
/// the training labels.
async fn totals(w: &World) -> (i64, i64, i64, i64, Vec<(String, Vec<f64>, bool)>) {
    let labels = PgFraud::new(w.db.pool.clone(), "test".into())
        .labelled(epoch() + chrono::Duration::days(400), 1000)
        .await
        .expect("labels");
    (
        w.count("SELECT count(*) FROM fraud_decisions").await,
        w.count("SELECT count(*) FROM fraud_cases").await,
        w.count("SELECT count(*) FROM fraud_chargebacks").await,
        w.count("SELECT COALESCE(sum(amount), 0)::BIGINT FROM fraud_chargebacks")
            .await,
        labels,
    )
}

fn nothing() -> Erasure {
    Erasure::default()
        .pseudonymised("decisions", 0)
        .pseudonymised("cases", 0)
        .pseudonymised("case audit entries", 0)
        .pseudonymised("chargebacks", 0)
        .removed("trust profiles", 0)
        .removed("first-seen devices and ips", 0)
        .removed("payment failures", 0)
        .removed("cached history keys", 0)
        .removed("velocity keys", 0)
        .removed("velocity entries", 0)
        .removed("replay decisions", 0)
}

/// Transaction `tx` of `user` on `device`, `card` and the shared IP.
fn of(tx: &str, user: &str, amount: i64, device: &str, card: &str) -> Transaction {
    Transaction {
        device: Some(device.to_owned()),
        card: Some(card.to_owned()),
        ip: Some("192.0.2.77".into()),
        email_domain: Some("mail-a.example".into()),
        user_agent: "agent-of-a".into(),
        ..txn(tx, user, amount)
    }
}

#[tokio::test]
async fn a_user_is_exported_then_erased_and_the_fraud_records_stay_under_the_pseudonym() {
    let settings = Settings {
        known_bad: FraudKnownBad {
            devices: vec!["evil".into()],
            ..Default::default()
        },
        ..settings()
    };
    let redis = TestRedis::new().await;
    let w = World::with_redis(redis.handle.clone(), settings).await;
    let handler = Privacy::new(
        w.db.pool.clone(),
        RedisHot::new(redis.handle.clone(), "test".into()),
    );
    let (a, b) = (format!("a-{}", id()), format!("b-{}", id()));
    let (device_a, card_a) = (format!("dev-{}", id()), format!("card-{}", id()));
    let (t1, t2, t3, tb) = (id(), id(), id(), id());

    // A: an ordinary check, one on a known-bad device (HIGH: a case), a chargeback and a
    // failed payment, then a check after them (the history cached again).
    w.app
        .check(&service(), of(&t1, &a, 1000, &device_a, &card_a))
        .await
        .expect("check");
    let high = w
        .app
        .check(&service(), of(&t2, &a, 2000, "evil", &card_a))
        .await
        .expect("check");
    // B shares the IP (and its velocity set) with A.
    w.app
        .check(
            &service(),
            Transaction {
                email_domain: Some("mail-b.example".into()),
                user_agent: "agent-of-b".into(),
                ..of(&tb, &b, 500, &format!("dev-{}", id()), "card-b")
            },
        )
        .await
        .expect("check");
    assert_eq!(w.stored().await, 3);
    let case = high.case_id.expect("a case");
    w.app
        .assign(&analyst(), &case.to_string(), "")
        .await
        .expect("assign");
    w.app
        .decide_case(
            &analyst(),
            &case.to_string(),
            Some(titan_fraud::domain::Verdict::Fraud),
            &format!("the bank confirmed {a} did not buy this"),
        )
        .await
        .expect("decide");
    w.app
        .chargeback(&service(), &t1, &a, 1000, &format!("stolen card, {a} says"))
        .await
        .expect("chargeback");
    w.app
        .payment_failure(&service(), &format!("pay-{t1}"), &a)
        .await
        .expect("failure");
    w.app
        .payment_failure(&service(), &format!("pay-{tb}"), &b)
        .await
        .expect("failure");
    w.app
        .check(&service(), of(&t3, &a, 1500, &device_a, &card_a))
        .await
        .expect("check");
    assert_eq!(w.stored().await, 1);

    // The export: exactly A's records.
    let records = handler.export_of(&a).await.expect("export");
    let profile = records.profile.clone().expect("a profile");
    assert_eq!(
        (
            profile.first_seen_at,
            profile.account_created_at,
            profile.successful_orders,
            profile.chargebacks
        ),
        (epoch(), Some(epoch() - chrono::Duration::days(400)), 0, 1)
    );
    let mut seen: Vec<(String, String)> = records
        .seen
        .iter()
        .map(|s| (s.kind.clone(), s.value.clone()))
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        vec![
            ("device".to_owned(), device_a.clone()),
            ("device".to_owned(), "evil".to_owned()),
            ("ip".to_owned(), "192.0.2.77".to_owned()),
        ]
    );
    let mut decisions: Vec<(String, i64, String, String)> = records
        .decisions
        .iter()
        .map(|d| {
            (
                d.transaction_id.clone(),
                d.amount,
                d.request["device"].as_str().unwrap_or_default().to_owned(),
                d.request["card"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    decisions.sort();
    let mut expected = vec![
        (t1.clone(), 1000, device_a.clone(), card_a.clone()),
        (t2.clone(), 2000, "evil".to_owned(), card_a.clone()),
        (t3.clone(), 1500, device_a.clone(), card_a.clone()),
    ];
    expected.sort();
    assert_eq!(decisions, expected);
    assert!(records.decisions.iter().all(|d| {
        d.request["ip"] == "192.0.2.77"
            && d.request["email_domain"] == "mail-a.example"
            && d.request["user_agent"] == "agent-of-a"
    }));
    assert_eq!(records.cases.len(), 1);
    assert_eq!(
        (
            records.cases[0].id,
            records.cases[0].transaction_id.as_str(),
            records.cases[0].status.as_str(),
            records.cases[0].verdict.as_deref(),
            records.cases[0].reason.clone(),
        ),
        (
            case,
            t2.as_str(),
            "DECIDED",
            Some("FRAUD"),
            Some(format!("the bank confirmed {a} did not buy this"))
        )
    );
    assert_eq!(records.chargebacks.len(), 1);
    assert_eq!(
        (
            records.chargebacks[0].transaction_id.as_str(),
            records.chargebacks[0].amount,
            records.chargebacks[0].reason.clone()
        ),
        (t1.as_str(), 1000, format!("stolen card, {a} says"))
    );
    let failures: Vec<&str> = records
        .payment_failures
        .iter()
        .map(|f| f.payment_id.as_str())
        .collect();
    assert_eq!(failures, vec![format!("pay-{t1}").as_str()]);
    let document = handler.export(&subject(&a)).await.expect("export");
    assert_eq!(document, serde_json::to_value(&records).expect("json"));
    let text = document.to_string();
    assert!(!text.contains(&b) && !text.contains(&tb), "{text}");

    let b_before = handler.export_of(&b).await.expect("export b");
    let b_keys = mentions::redis(&redis.handle, &b).await;
    let kept = totals(&w).await;
    assert!(
        !kept.4.is_empty(),
        "the chargeback and the verdict are labels"
    );

    // The searches that must come back empty find A before the erasure.
    assert_eq!(
        mentions::postgres_in(&w.db.pool, "fraud_", &a).await,
        [
            ("fraud_case_audit", 1),
            ("fraud_cases", 1),
            ("fraud_chargebacks", 1),
            ("fraud_decisions", 3),
            ("fraud_payment_failures", 1),
            ("fraud_seen", 3),
            ("fraud_users", 1),
        ]
        .map(|(t, n)| (t.to_owned(), n))
    );
    assert!(!mentions::redis(&redis.handle, &a).await.is_empty());

    // The erasure.
    let s = subject(&a);
    let report = handler.erase(&s).await.expect("erase");
    assert_eq!(
        report,
        Erasure::default()
            .pseudonymised("decisions", 3)
            .pseudonymised("cases", 1)
            // The decision's reason names A; the assignment's detail is the analyst.
            .pseudonymised("case audit entries", 1)
            .pseudonymised("chargebacks", 1)
            .removed("trust profiles", 1)
            .removed("first-seen devices and ips", 3)
            .removed("payment failures", 1)
            // The scalars, the devices and IPs, the newest amounts and the epoch.
            .removed("cached history keys", 4)
            .removed("velocity keys", 1)
            // Three transactions, each in its card's, device's and IP's set.
            .removed("velocity entries", 9)
            .removed("replay decisions", 3)
    );

    for needle in [&a, &device_a, &card_a, &"mail-a.example".to_owned()] {
        assert_eq!(
            mentions::postgres_in(&w.db.pool, "fraud_", needle).await,
            vec![],
            "{needle}"
        );
        assert_eq!(
            mentions::redis(&redis.handle, needle).await,
            Vec::<String>::new(),
            "{needle}"
        );
    }
    // What stays, under the pseudonym.
    assert_eq!(
        w.count(&format!(
            "SELECT count(*) FROM fraud_decisions WHERE user_id = '{}'
               AND request->>'device' IS NULL AND request->>'ip' IS NULL
               AND request->>'card' IS NULL AND request->>'email_domain' IS NULL
               AND request->>'user_agent' = '' AND request->>'country' = 'FR'",
            s.pseudonym
        ))
        .await,
        3
    );
    assert_eq!(
        w.count(&format!(
            "SELECT count(*) FROM fraud_cases WHERE user_id = '{0}'
               AND reason = 'the bank confirmed {0} did not buy this'",
            s.pseudonym
        ))
        .await,
        1
    );
    assert_eq!(
        w.count(&format!(
            "SELECT count(*) FROM fraud_chargebacks WHERE user_id = '{0}'
               AND reason = 'stolen card, {0} says'",
            s.pseudonym
        ))
        .await,
        1
    );
    assert_eq!(
        totals(&w).await,
        kept,
        "decisions, cases, chargebacks and labels stay"
    );
    // B, who shares the IP, keeps their entry in its velocity set and everything else.
    let mut conn = redis.handle.conn.clone();
    let shared: Vec<String> = redis::cmd("ZRANGE")
        .arg(redis.handle.key("fraud:v:ip:192.0.2.77"))
        .arg(0)
        .arg(-1)
        .query_async(&mut conn)
        .await
        .expect("zrange");
    assert_eq!(shared, vec![format!("500:{tb}")]);
    assert_eq!(handler.export_of(&b).await.expect("export b"), b_before);
    assert_eq!(mentions::redis(&redis.handle, &b).await, b_keys);
    let after = handler.export_of(&a).await.expect("export");
    assert_eq!(
        (
            after.profile,
            after.seen.len(),
            after.decisions.len(),
            after.cases.len()
        ),
        (None, 0, 0, 0)
    );

    // Again: nothing more.
    assert_eq!(handler.erase(&s).await.expect("erase again"), nothing());
    assert_eq!(totals(&w).await, kept);
}

#[tokio::test]
async fn an_erasure_waits_for_decisions_still_in_the_log() {
    let redis = TestRedis::new().await;
    let w = World::with_redis(redis.handle.clone(), settings()).await;
    let handler = Privacy::new(
        w.db.pool.clone(),
        RedisHot::new(redis.handle.clone(), "test".into()),
    );
    let a = format!("a-{}", id());
    let t = id();
    w.app
        .check(&service(), txn(&t, &a, 1000))
        .await
        .expect("check");
    let s = subject(&a);
    // The sink has not stored the decision: erasing now would miss it.
    assert!(matches!(
        handler.erase_user(&s.user_id, &s.pseudonym).await,
        Err(PrivacyError::Unstored(1))
    ));
    assert_eq!(w.count("SELECT count(*) FROM fraud_decisions").await, 0);
    assert_eq!(w.stored().await, 1);
    let report = handler.erase(&s).await.expect("erase");
    assert_eq!(
        (
            report.pseudonymised.get("decisions"),
            report.removed.get("trust profiles"),
            report.removed.get("velocity keys"),
            report.removed.get("replay decisions"),
        ),
        (Some(&1), Some(&1), Some(&1), Some(&1))
    );
    assert_eq!(
        mentions::postgres_in(&w.db.pool, "fraud_", &a).await,
        vec![]
    );
    assert_eq!(
        mentions::redis(&redis.handle, &a).await,
        Vec::<String>::new()
    );
}
