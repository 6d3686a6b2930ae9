//! Sending through real providers: email at a real SMTP server with the rendered body,
//! headers and a working unsubscribe link; an HTTP provider that fails twice; a sender that
//! stops mid-send and a replica that resumes without sending anyone a message twice; the
//! global send rate across replicas; an SMTP relay that requires a login.

use std::{
    collections::{HashMap, HashSet},
    sync::atomic::Ordering,
};

use chrono::Duration;
use titan_campaign::{
    domain::{Channel, Rule, Status},
    testing::SmtpServer,
};
use titan_kit::testing::eventually;

use crate::support::{BASE, Ev, Setup, Stub, app_on, contact, env, events, launch, spec, statuses};

fn bought() -> Vec<Rule> {
    vec![Rule::PurchasedWithin { within_days: 30 }]
}

#[tokio::test]
async fn email_arrives_rendered_with_its_headers_and_a_working_unsubscribe_link() {
    let env = env(Setup {
        smtp: true,
        ..Setup::default()
    })
    .await;
    events(
        &env.ch,
        &[
            Ev("u1", "flashsale.purchased", 24, "p1", 1000, "FR"),
            Ev("u2", "flashsale.purchased", 48, "p1", 500, "FR"),
            // Bought 40 days ago: outside the 30-day rule.
            Ev("u3", "flashsale.purchased", 40 * 24, "p1", 500, "FR"),
        ],
    )
    .await;
    env.contacts(&[contact("u1", "u1@shop.test", "", 1)]).await;
    let mut u2 = contact("u2", "u2@shop.test", "", 2);
    u2.first_name = "<b>Bo</b>".into();
    env.app.put_contact(&u2).await.expect("contact");
    env.contacts(&[contact("u3", "u3@shop.test", "", 1)]).await;

    let c = launch(&env, spec(Channel::Email, bought())).await;
    let tick = env.app.tick().await.expect("tick");
    assert_eq!((tick.snapshots, tick.sent, tick.completed), (1, 2, 1));
    let smtp = env.smtp.as_ref().expect("smtp");
    let mails = smtp.messages();
    assert_eq!(mails.len(), 2);
    let to_u2 = mails
        .iter()
        .find(|m| m.headers["to"] == "u2@shop.test")
        .expect("u2's message");
    assert_eq!(to_u2.headers["from"], "shop@titan.test");
    assert_eq!(to_u2.headers["subject"], "Hello <b>Bo</b>");
    assert!(to_u2.headers["content-type"].starts_with("text/html"));
    // The name is escaped in the HTML body; the template's own text is the admin's HTML.
    assert!(
        to_u2
            .body
            .starts_with("<p>Hi &lt;b&gt;Bo&lt;&#x2f;b&gt; & welcome, level 2.</p>"),
        "{}",
        to_u2.body
    );
    let unsubscribe = to_u2.headers["list-unsubscribe"]
        .trim_matches(|c| c == '<' || c == '>')
        .to_owned();
    assert!(unsubscribe.starts_with(&format!("{BASE}/v1/campaign/u/")));
    assert_eq!(
        to_u2.headers["list-unsubscribe-post"],
        "List-Unsubscribe=One-Click"
    );
    // The body carries the same link (HTML-escaped), the click redirect and the open pixel.
    let unescaped = to_u2.body.replace("&#x2f;", "/");
    assert!(unescaped.contains(&format!("href=\"{unsubscribe}\"")));
    assert!(unescaped.contains(&format!("href=\"{BASE}/v1/campaign/c/")));
    assert!(
        to_u2
            .body
            .contains(&format!("<img src=\"{BASE}/v1/campaign/o/"))
    );
    assert_eq!(
        env.app.get(c.id).await.expect("campaign").status,
        Status::Completed
    );
    // 2 messages at 10 each.
    assert_eq!(env.app.get(c.id).await.expect("campaign").spent, 20);

    // The link unsubscribes u2 from email; the next campaign skips u2 and records why.
    let token = unsubscribe.rsplit('/').next().expect("token");
    assert_eq!(
        env.app.unsubscribe(token).await.expect("unsubscribe"),
        Some(Channel::Email)
    );
    assert_eq!(env.app.unsubscribe("00.00").await.expect("forged"), None);
    let again = launch(&env, spec(Channel::Email, bought())).await;
    env.app.tick().await.expect("tick");
    assert_eq!(
        statuses(&env, again.id).await,
        [("SENT".to_string(), 1), ("SUPPRESSED".to_string(), 1)].into()
    );
    assert_eq!(smtp.count(), 3);
    assert_eq!(env.app.get(again.id).await.expect("campaign").spent, 10);
}

#[tokio::test]
async fn a_provider_that_fails_twice_is_retried_and_delivers_once() {
    let (stub, url) = Stub::start(2).await;
    let env = env(Setup {
        push_url: Some(url),
        push_token: Some("push-t0ken".into()),
        ..Setup::default()
    })
    .await;
    events(
        &env.ch,
        &[Ev("u1", "flashsale.purchased", 1, "p1", 100, "FR")],
    )
    .await;
    env.contacts(&[contact("u1", "", "", 1)]).await;
    let c = launch(&env, spec(Channel::Push, bought())).await;
    let tick = env.app.tick().await.expect("tick");
    assert_eq!(tick.sent, 1);
    assert_eq!(stub.requests.load(Ordering::SeqCst), 3);
    // Every attempt carries the provider's token.
    assert_eq!(
        *stub.authorizations.lock().expect("lock"),
        vec!["Bearer push-t0ken"; 3]
    );
    let accepted = stub.accepted.lock().expect("lock").clone();
    assert_eq!(accepted.len(), 1);
    assert_eq!(accepted[0].1["to"], "push-u1");
    assert_eq!(accepted[0].1["subject"], "Hello Ann");
    assert_eq!(accepted[0].0, format!("{}.0.{}", c.id, hex_of("u1")));
    assert_eq!(statuses(&env, c.id).await, [("SENT".to_string(), 1)].into());
    let attempts: i32 = sqlx::query_scalar("SELECT attempts FROM campaign_deliveries")
        .fetch_one(&env.pg.pool)
        .await
        .expect("attempts");
    assert_eq!(attempts, 3);
}

#[tokio::test]
async fn a_provider_that_keeps_failing_is_recorded_failed_and_refunded() {
    let (stub, url) = Stub::start(100).await;
    let env = env(Setup {
        push_url: Some(url),
        ..Setup::default()
    })
    .await;
    events(
        &env.ch,
        &[Ev("u1", "flashsale.purchased", 1, "p1", 100, "FR")],
    )
    .await;
    env.contacts(&[contact("u1", "", "", 1)]).await;
    let c = launch(&env, spec(Channel::Push, bought())).await;
    env.app.tick().await.expect("tick");
    // One first attempt and three retries.
    assert_eq!(stub.requests.load(Ordering::SeqCst), 4);
    assert_eq!(
        statuses(&env, c.id).await,
        [("FAILED".to_string(), 1)].into()
    );
    let error: String = sqlx::query_scalar("SELECT error FROM campaign_deliveries")
        .fetch_one(&env.pg.pool)
        .await
        .expect("error");
    assert!(
        error.ends_with("answered 500 Internal Server Error"),
        "{error}"
    );
    assert_eq!(env.app.get(c.id).await.expect("campaign").spent, 0);
}

fn hex_of(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn a_sender_stopped_mid_send_is_resumed_by_another_replica_without_duplicates() {
    let setup = Setup {
        smtp: true,
        batch: 20,
        ..Setup::default()
    };
    let env = env(setup).await;
    let users: Vec<String> = (0..300).map(|i| format!("user-{i:03}")).collect();
    let rows: Vec<Ev<'_>> = users
        .iter()
        .map(|u| Ev(u, "flashsale.purchased", 2, "p1", 100, "FR"))
        .collect();
    events(&env.ch, &rows).await;
    for u in &users {
        env.contacts(&[contact(u, &format!("{u}@shop.test"), "", 1)])
            .await;
    }
    let c = launch(&env, spec(Channel::Email, bought())).await;
    let smtp = env.smtp.as_ref().expect("smtp");
    let first = env.app.clone();
    let sender = tokio::spawn(async move { first.tick().await });
    eventually("the first replica to send 40 messages", || async {
        (smtp.count() >= 40).then_some(())
    })
    .await;
    // The replica stops in the middle of a batch, its claims unrecorded.
    sender.abort();
    assert!(sender.await.is_err_and(|e| e.is_cancelled()));
    let at_stop = smtp.count();
    assert!(at_stop < 300, "the stop came too late to test anything");

    // Another replica takes over once the claims are older than its timeout.
    env.clock.advance(Duration::seconds(1));
    let second = app_on(
        &env.pg,
        &env.ch,
        &env.clock,
        Some(smtp),
        &Setup {
            smtp: true,
            batch: 20,
            claim_timeout: Duration::zero(),
            ..Setup::default()
        },
    );
    let tick = second.tick().await.expect("tick");
    assert_eq!(tick.completed, 1);
    let s = statuses(&env, c.id).await;
    let sent = s.get("SENT").copied().unwrap_or(0);
    let unknown = s.get("UNKNOWN").copied().unwrap_or(0);
    assert_eq!(sent + unknown, 300, "{s:?}");
    assert_eq!(u64::try_from(unknown).expect("count"), tick.recovered);
    let mails = smtp.messages();
    let recipients: HashSet<&str> = mails.iter().map(|m| m.headers["to"].as_str()).collect();
    // Nobody got the message twice…
    assert_eq!(recipients.len(), mails.len());
    // …every SENT delivery arrived, and at most the UNKNOWN ones besides (sent, maybe, as
    // the first replica stopped).
    let received = i64::try_from(mails.len()).expect("count");
    assert!(
        received >= sent && received <= sent + unknown,
        "{received} {s:?}"
    );
    assert_eq!(
        env.app.get(c.id).await.expect("campaign").status,
        Status::Completed
    );
}

#[tokio::test]
async fn the_global_send_rate_is_shared_by_every_replica_each_second() {
    let setup = Setup {
        smtp: true,
        rate: 3,
        ..Setup::default()
    };
    let env = env(setup).await;
    let setup = Setup {
        rate: 3,
        ..Setup::default()
    };
    env.buyers(&["u1", "u2", "u3", "u4", "u5", "u6", "u7", "u8"])
        .await;
    let other = app_on(&env.pg, &env.ch, &env.clock, env.smtp.as_ref(), &setup);
    let c = launch(&env, spec(Channel::Email, bought())).await;
    // The clock stands still: 3 sends in this second, whichever replica takes them.
    assert_eq!(env.app.tick().await.expect("tick").sent, 3);
    assert_eq!(other.tick().await.expect("tick").sent, 0);
    assert_eq!(env.app.tick().await.expect("tick").sent, 0);
    env.clock.advance(Duration::seconds(1));
    assert_eq!(other.tick().await.expect("tick").sent, 3);
    assert_eq!(env.app.tick().await.expect("tick").sent, 0);
    env.clock.advance(Duration::seconds(1));
    // The last 2: the third send taken for this second is given back.
    assert_eq!(env.app.tick().await.expect("tick").sent, 2);
    assert_eq!(statuses(&env, c.id).await["SENT"], 8);
    let left: i32 = sqlx::query_scalar("SELECT used FROM campaign_send_window WHERE second = $1")
        .bind(env.clock.now().timestamp())
        .fetch_one(&env.pg.pool)
        .await
        .expect("window");
    assert_eq!(left, 2);
    assert_eq!(env.smtp.as_ref().expect("smtp").count(), 8);
}

#[tokio::test]
async fn email_logs_in_to_a_relay_that_requires_it_and_a_refused_login_bounces_nobody() {
    let mut env = env(Setup::default()).await;
    env.smtp = Some(SmtpServer::start_with_login("shop", "s3cret").await);
    env.buyers(&["u1", "u2"]).await;
    let login = |password: &str| Setup {
        smtp_login: Some(("shop".into(), password.into())),
        ..Setup::default()
    };
    // A wrong password: the relay answers 535, which fails the deliveries without
    // suppressing anyone (it is the relay's refusal, not the recipients').
    env.app = app_on(
        &env.pg,
        &env.ch,
        &env.clock,
        env.smtp.as_ref(),
        &login("wrong"),
    );
    let refused = launch(&env, spec(Channel::Email, bought())).await;
    assert_eq!(env.app.tick().await.expect("tick").sent, 0);
    assert_eq!(
        statuses(&env, refused.id).await,
        HashMap::from([("FAILED".into(), 2)])
    );
    let error: String = sqlx::query_scalar(
        "SELECT error FROM campaign_deliveries WHERE campaign_id = $1 AND user_id = 'u1'",
    )
    .bind(refused.id.uuid())
    .fetch_one(&env.pg.pool)
    .await
    .expect("error");
    assert!(error.contains("535"), "{error}");
    let suppressed: i64 = sqlx::query_scalar("SELECT count(*) FROM campaign_suppressions")
        .fetch_one(&env.pg.pool)
        .await
        .expect("count");
    assert_eq!(suppressed, 0);
    assert_eq!(env.smtp.as_ref().expect("smtp").count(), 0);

    env.app = app_on(
        &env.pg,
        &env.ch,
        &env.clock,
        env.smtp.as_ref(),
        &login("s3cret"),
    );
    let sent = launch(&env, spec(Channel::Email, bought())).await;
    assert_eq!(env.app.tick().await.expect("tick").sent, 2);
    assert_eq!(
        statuses(&env, sent.id).await,
        HashMap::from([("SENT".into(), 2)])
    );
    assert_eq!(env.smtp.as_ref().expect("smtp").count(), 2);
}

#[tokio::test]
async fn a_bounce_reported_after_the_send_marks_the_delivery_and_suppresses_the_address() {
    use titan_campaign::grpc::Grpc;
    use titan_kit::testing::caller;
    use titan_proto::campaign::v1::{self as pb, campaign_service_server::CampaignService};
    use tonic::{Code, Request};

    let env = env(Setup {
        smtp: true,
        ..Setup::default()
    })
    .await;
    env.buyers(&["u1", "u2"]).await;
    let first = launch(&env, spec(Channel::Email, bought())).await;
    assert_eq!(env.app.tick().await.expect("tick").sent, 2);
    // The Message-ID at the relay is what a DSN returns.
    let to_u1 = env
        .smtp
        .as_ref()
        .expect("smtp")
        .messages()
        .into_iter()
        .find(|m| m.headers["to"] == "u1@shop.test")
        .expect("u1's message");
    let message_id = to_u1.headers["message-id"].clone();

    let grpc = Grpc::new(env.app.clone());
    let bounce = |who: titan_kit::auth::Caller, message_id: &str, permanent: bool| {
        let mut r = Request::new(pb::RecordBounceRequest {
            message_id: message_id.into(),
            permanent,
            diagnostic: "smtp; 550 5.1.1 user unknown".into(),
        });
        r.extensions_mut().insert(who);
        r
    };
    let bouncer = || caller("bounce-processor", &["service"]);
    assert_eq!(
        grpc.record_bounce(bounce(caller("u1", &[]), &message_id, true))
            .await
            .expect_err("a buyer")
            .code(),
        Code::PermissionDenied
    );
    let e = grpc
        .record_bounce(bounce(bouncer(), "<x@example.com>", true))
        .await
        .expect_err("not ours");
    assert!(e.message().starts_with("message_id: "), "{}", e.message());
    // A transient bounce is noted and changes nothing else.
    grpc.record_bounce(bounce(bouncer(), &message_id, false))
        .await
        .expect("transient");
    assert_eq!(statuses(&env, first.id).await["SENT"], 2);
    for _ in 0..2 {
        grpc.record_bounce(bounce(bouncer(), &message_id, true))
            .await
            .expect("permanent, twice");
    }
    assert_eq!(
        statuses(&env, first.id).await,
        HashMap::from([("SENT".into(), 1), ("BOUNCED".into(), 1)])
    );
    let report = env.app.report(first.id, None).await.expect("report");
    assert_eq!((report.counts.sent, report.counts.bounced), (1, 1));
    // The next campaign skips the bounced address.
    let next = launch(&env, spec(Channel::Email, bought())).await;
    assert_eq!(env.app.tick().await.expect("tick").sent, 1);
    assert_eq!(
        statuses(&env, next.id).await,
        HashMap::from([("SENT".into(), 1), ("SUPPRESSED".into(), 1)])
    );
    // A message this service never sent.
    let unknown = message_id.replacen(".0.", ".7.", 1);
    assert_eq!(
        grpc.record_bounce(bounce(bouncer(), &unknown, true))
            .await
            .expect_err("no such delivery")
            .code(),
        Code::NotFound
    );
}
