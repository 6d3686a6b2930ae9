//! Fraud against the real binary: `titan serve fraud` scores checkout transactions for
//! services only, names the field of bad input, opens a case at HIGH that only analysts list
//! and decide, refuses a rule whose condition does not parse (naming the column), applies a
//! saved rule on the next checks, and — on a replica whose private Redis is killed — still
//! answers within the deadline, degraded, with the configured decision.

use std::{
    net::TcpListener,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use titan_e2e::{Cell, CellOptions, authed};
use titan_kit::{error::reason_of, testing::eventually};
use titan_proto::fraud::v1::{self as pb, fraud_service_client::FraudServiceClient};
use tonic::{Code, transport::Channel};

const CONFIG: &str =
    "services:\n  fraud: { knownBad: { devices: [evil-device] }, redisBudgetMillis: 50 }\n";

fn check(id: &str, user: &str, device: &str) -> pb::CheckTransactionRequest {
    pb::CheckTransactionRequest {
        transaction_id: id.into(),
        user_id: user.into(),
        amount: 4_999,
        currency: "EUR".into(),
        ip: "192.0.2.7".into(),
        device_fingerprint: device.into(),
        country: "FR".into(),
        billing_country: "FR".into(),
        shipping_country: "FR".into(),
        account_created_at: Some(titan_e2e::seconds_from_now(-400 * 86_400)),
        ..pb::CheckTransactionRequest::default()
    }
}

async fn fraud_cell() -> Cell {
    Cell::start_with(CellOptions {
        services: vec!["fraud".into()],
        config: Some(CONFIG.into()),
        ..CellOptions::default()
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn checks_cases_and_rules_with_roles() {
    let cell = fraud_cell().await;
    let mut client = FraudServiceClient::new(cell.channel().await);
    let (service, analyst, admin, buyer) = (
        cell.token("checkout", &["service"]),
        cell.token("ana", &["analyst"]),
        cell.token("ops", &["admin"]),
        cell.token("buyer-1", &[]),
    );

    for token in [&buyer, &analyst] {
        let denied = client
            .check_transaction(authed(check("t0", "u1", "d1"), token))
            .await
            .expect_err("only services check");
        assert_eq!(denied.code(), Code::PermissionDenied);
    }
    for (mut bad, field) in [
        (check("t0", "u1", "d1"), "amount"),
        (check("t0", "u1", "d1"), "billing_country"),
        (check("t0", "", "d1"), "user_id"),
        (check("t0", "u1", "d1"), "ip"),
    ] {
        match field {
            "amount" => bad.amount = 0,
            "billing_country" => bad.billing_country = "fr".into(),
            "ip" => bad.ip = "300.1.1.1".into(),
            _ => {}
        }
        let refused = client
            .check_transaction(authed(bad, &service))
            .await
            .expect_err("bad input");
        assert_eq!(refused.code(), Code::InvalidArgument, "{field}");
        assert!(
            refused.message().starts_with(&format!("{field}: ")),
            "{}",
            refused.message()
        );
    }

    // A first purchase on a new device and IP: LOW, approved.
    let first = client
        .check_transaction(authed(check("t1", "u1", "d1"), &service))
        .await
        .expect("check")
        .into_inner();
    assert_eq!(first.level(), pb::Level::Low);
    assert_eq!(first.decision(), pb::Decision::Approve);
    let codes: Vec<&str> = first.reasons.iter().map(|r| r.code.as_str()).collect();
    assert_eq!(codes, ["new_device", "new_ip"]);
    assert!((first.score - 0.25).abs() < 1e-9);
    let replay = client
        .check_transaction(authed(check("t1", "u1", "d1"), &service))
        .await
        .expect("replay")
        .into_inner();
    assert_eq!(replay, first);

    // A known-bad device on top: 0.15 + 0.5 = 0.65, HIGH, reviewed, with a case.
    let high = client
        .check_transaction(authed(check("t2", "u1", "evil-device"), &service))
        .await
        .expect("check")
        .into_inner();
    assert_eq!(high.level(), pb::Level::High);
    assert_eq!(high.decision(), pb::Decision::Review);
    assert!(!high.case_id.is_empty());

    let list = |token: &str| {
        authed(
            pb::ListCasesRequest {
                status: pb::CaseStatus::Open as i32,
                ..Default::default()
            },
            token,
        )
    };
    for token in [&service, &admin, &buyer] {
        let denied = client
            .list_cases(list(token))
            .await
            .expect_err("analysts only");
        assert_eq!(denied.code(), Code::PermissionDenied);
    }
    // The case is stored by the decision log's sink, a moment after the answer.
    let cases = eventually("the case stored", || {
        let mut client = client.clone();
        let request = list(&analyst);
        async move {
            let cases = client
                .list_cases(request)
                .await
                .expect("list")
                .into_inner()
                .cases;
            (!cases.is_empty()).then_some(cases)
        }
    })
    .await;
    assert_eq!(cases.len(), 1);
    assert_eq!(
        (cases[0].id.as_str(), cases[0].transaction_id.as_str()),
        (high.case_id.as_str(), "t2")
    );
    let decided = client
        .decide_case(authed(
            pb::DecideCaseRequest {
                case_id: high.case_id.clone(),
                verdict: pb::Verdict::Fraud as i32,
                reason: "device on the bad list".into(),
            },
            &analyst,
        ))
        .await
        .expect("decide")
        .into_inner()
        .case
        .expect("case");
    assert_eq!(decided.status(), pb::CaseStatus::Decided);
    assert_eq!(decided.assignee, "ana");

    let rule = |condition: &str| pb::SaveRuleRequest {
        rule: Some(pb::Rule {
            name: "big-eur".into(),
            priority: 10,
            condition: condition.into(),
            action: pb::RuleAction::Block as i32,
            mode: pb::RuleMode::Enforce as i32,
            ..Default::default()
        }),
    };
    let refused = client
        .save_rule(authed(rule("amount > 1000 and currency = \"EUR\""), &admin))
        .await
        .expect_err("bad condition");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(
        refused.message(),
        "condition: at column 28: unexpected character '='"
    );
    assert_eq!(reason_of(&refused).as_deref(), Some("INVALID_ARGUMENT"));
    let denied = client
        .save_rule(authed(rule("amount > 1000"), &analyst))
        .await
        .expect_err("admins only");
    assert_eq!(denied.code(), Code::PermissionDenied);
    let saved = client
        .save_rule(authed(
            rule("amount > 1000 and currency == \"EUR\""),
            &admin,
        ))
        .await
        .expect("save")
        .into_inner()
        .rule
        .expect("rule");
    assert_eq!(saved.version, 1);
    let blocked = client
        .check_transaction(authed(check("t3", "u1", "d1"), &service))
        .await
        .expect("check")
        .into_inner();
    assert_eq!(blocked.decision(), pb::Decision::Reject);
    assert_eq!(blocked.rules.len(), 1);
    assert_eq!(
        (blocked.rules[0].rule.as_str(), blocked.rules[0].shadow),
        ("big-eur", false)
    );

    let chargebacks = client
        .record_chargeback(authed(
            pb::RecordChargebackRequest {
                transaction_id: "t2".into(),
                user_id: "u1".into(),
                amount: 4_999,
                reason: "stolen card".into(),
            },
            &service,
        ))
        .await
        .expect("chargeback")
        .into_inner()
        .chargebacks;
    assert_eq!(chargebacks, 1);
    let trust = client
        .get_trust(authed(
            pb::GetTrustRequest {
                user_id: "u1".into(),
            },
            &analyst,
        ))
        .await
        .expect("trust")
        .into_inner();
    assert_eq!((trust.chargebacks, trust.account_age_days), (1, 400));
}

/// A free local port for a private Redis.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A private `redis-server` this test may kill.
struct PrivateRedis(Child);

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn fraud_client(replica: &titan_e2e::Replica) -> FraudServiceClient<Channel> {
    FraudServiceClient::new(replica.channel().await)
}

#[tokio::test(flavor = "multi_thread")]
async fn without_redis_checks_answer_degraded_within_the_deadline() {
    let cell = fraud_cell().await;
    let port = free_port();
    let mut redis = PrivateRedis(
        Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("start redis-server"),
    );
    let url = format!("redis://127.0.0.1:{port}");
    eventually("the private redis answers", || async {
        std::net::TcpStream::connect(("127.0.0.1", port))
            .is_ok()
            .then_some(())
    })
    .await;
    let replica = cell.replica_with(&[("TITAN_REDIS_URL", url.as_str())]);
    let mut client = fraud_client(&replica).await;
    let service = cell.token("checkout", &["service"]);
    let warm = client
        .check_transaction(authed(check("w1", "u9", "d9"), &service))
        .await
        .expect("check")
        .into_inner();
    assert!(!warm.degraded);
    // The degraded check reads the history from PostgreSQL: wait until the decision log's
    // sink has stored w1 there, or the check would rightly find device and IP new.
    eventually("w1 stored by the decision log's sink", || async {
        let stored: i64 =
            sqlx::query_scalar("SELECT count(*) FROM fraud_decisions WHERE transaction_id = 'w1'")
                .fetch_one(&cell.db.pool)
                .await
                .expect("count decisions");
        (stored == 1).then_some(())
    })
    .await;

    let _ = redis.0.kill();
    let _ = redis.0.wait();
    let mut request = authed(check("w2", "u9", "d9"), &service);
    request.set_timeout(Duration::from_secs(2));
    let started = Instant::now();
    let answer = client
        .check_transaction(request)
        .await
        .expect("answers without redis")
        .into_inner();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(answer.degraded);
    assert_eq!(answer.level(), pb::Level::Low);
    assert_eq!(
        answer.decision(),
        pb::Decision::Review,
        "fraud.degradedDecision"
    );
    assert_eq!(
        answer
            .reasons
            .iter()
            .map(|r| r.code.as_str())
            .collect::<Vec<_>>(),
        ["degraded"]
    );
}
