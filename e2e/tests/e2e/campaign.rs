//! Campaigns against the real binary: `titan serve campaign analytics` with a real SMTP
//! server (aiosmtpd); contacts from a service, a segment of analytics_events estimated and
//! sent to on schedule by the replica's sender, messages arriving rendered with their
//! unsubscribe header, the click redirect on the HTTP port counted once, the report, roles
//! and field-named refusals.

use titan_campaign::testing::SmtpServer;
use titan_e2e::{Cell, CellOptions, authed, seconds_from_now};
use titan_kit::{error::reason_of, testing::eventually};
use titan_proto::campaign::v1::{self as pb, campaign_service_client::CampaignServiceClient};
use tonic::Code;

fn segment() -> Option<pb::Segment> {
    Some(pb::Segment {
        rules: vec![pb::SegmentRule {
            rule: Some(pb::segment_rule::Rule::PurchasedWithin(
                pb::PurchasedWithin { within_days: 30 },
            )),
        }],
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn an_email_campaign_is_sent_tracked_and_reported() {
    let smtp = SmtpServer::start().await;
    let cell = Cell::start_with(CellOptions {
        // analytics owns analytics_events, which segments read.
        services: vec!["campaign".into(), "analytics".into()],
        config: Some(format!(
            "services:\n  campaign:\n    publicBaseUrl: http://links.test\n    smtp:\n      host: 127.0.0.1\n      port: {}\n      from: shop@titan.test\n",
            smtp.port
        )),
        ..CellOptions::default()
    })
    .await;
    let mut client = CampaignServiceClient::new(cell.channel().await);
    let (admin, service, buyer) = (
        cell.token("ops", &["admin"]),
        cell.token("accounts", &["service"]),
        cell.token("u1", &[]),
    );
    // Two buyers with a verified purchase last week, one without.
    let now = chrono::Utc::now().timestamp();
    cell.clickhouse
        .client
        .query(&format!(
            "INSERT INTO analytics_events (event_id, name, user_id, time, date, order_id, revenue, source) VALUES \
             ('e1', 'flashsale.purchased', 'u1', toDateTime({t}), toDate(toDateTime({t})), 'o1', 1999, 'bus'), \
             ('e2', 'flashsale.purchased', 'u2', toDateTime({t}), toDate(toDateTime({t})), 'o2', 2999, 'bus'), \
             ('e3', 'page_view', 'u3', toDateTime({t}), toDate(toDateTime({t})), '', 0, 'client')",
            t = now - 7 * 86_400
        ))
        .execute()
        .await
        .expect("events");
    for user in ["u1", "u2", "u3"] {
        client
            .put_contact(authed(
                pb::PutContactRequest {
                    user_id: user.into(),
                    email: format!("{user}@shop.test"),
                    first_name: format!("Ann-{user}"),
                    ..Default::default()
                },
                &service,
            ))
            .await
            .expect("contact");
    }
    let denied = client
        .put_contact(authed(
            pb::PutContactRequest {
                user_id: "u1".into(),
                ..Default::default()
            },
            &buyer,
        ))
        .await
        .expect_err("a buyer registers no contacts");
    assert_eq!(denied.code(), Code::PermissionDenied);

    let create = |request_id: &str, body: &str| pb::CreateCampaignRequest {
        request_id: request_id.into(),
        name: "Winter".into(),
        channel: pb::Channel::Email.into(),
        content: Some(pb::Content {
            subject: "Hello {{ first_name }}".into(),
            body: body.into(),
            click_url: "https://shop.test/winter".into(),
        }),
        segment: segment(),
        caps: None,
        quiet_hours: None,
        budget: 1_000,
        cost_per_message: 5,
        currency: "USD".into(),
        trigger: None,
        variants: None,
    };
    let bad = client
        .create_campaign(authed(create("c0", "Hi {{ nickname }}"), &admin))
        .await
        .expect_err("an unknown variable");
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(
        bad.message().starts_with("content.body: uses \"nickname\""),
        "{}",
        bad.message()
    );
    assert_eq!(reason_of(&bad).as_deref(), Some("INVALID_ARGUMENT"));

    let estimate = client
        .estimate_segment(authed(
            pb::EstimateSegmentRequest { segment: segment() },
            &admin,
        ))
        .await
        .expect("estimate")
        .into_inner();
    assert_eq!(estimate.users, 2);
    let campaign = client
        .create_campaign(authed(
            create(
                "c1",
                "<p>Hi {{ first_name }}</p><a href=\"{{ click_url }}\">shop</a> <a href=\"{{ unsubscribe_url }}\">stop</a>",
            ),
            &admin,
        ))
        .await
        .expect("create")
        .into_inner()
        .campaign
        .expect("campaign");
    assert_eq!(campaign.status, pb::Status::Draft as i32);
    let scheduled = client
        .schedule_campaign(authed(
            pb::ScheduleCampaignRequest {
                request_id: "s1".into(),
                campaign_id: campaign.id.clone(),
                schedule: Some(pb::Schedule {
                    start_at: Some(seconds_from_now(0)),
                    repeat_every_hours: 0,
                    end_at: None,
                }),
            },
            &admin,
        ))
        .await
        .expect("schedule")
        .into_inner()
        .campaign
        .expect("campaign");
    assert_eq!(scheduled.status, pb::Status::Scheduled as i32);

    eventually("both messages at the SMTP server", || async {
        (smtp.count() == 2).then_some(())
    })
    .await;
    let mails = smtp.messages();
    let u1 = mails
        .iter()
        .find(|m| m.headers["to"] == "u1@shop.test")
        .expect("u1's message");
    assert_eq!(u1.headers["subject"], "Hello Ann-u1");
    assert!(u1.body.starts_with("<p>Hi Ann-u1</p>"), "{}", u1.body);
    assert!(u1.headers["list-unsubscribe"].starts_with("<http://links.test/v1/campaign/u/"));

    // The click link, on the replica's HTTP port: a redirect to the landing page, counted once.
    let body = u1.body.replace("&#x2f;", "/");
    let start = body
        .find("http://links.test/v1/campaign/c/")
        .expect("click link");
    let link = &body[start..];
    let link = &link[..link.find('"').expect("end of link")];
    let path = link.trim_start_matches("http://links.test");
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    for _ in 0..2 {
        let r = http
            .get(format!("http://{}{path}", cell.http))
            .send()
            .await
            .expect("click");
        assert_eq!(r.status().as_u16(), 303);
        assert_eq!(r.headers()["location"], "https://shop.test/winter");
    }
    let forged = http
        .get(format!("http://{}/v1/campaign/c/00.00", cell.http))
        .send()
        .await
        .expect("forged click");
    assert_eq!(forged.status().as_u16(), 404);

    let done = eventually("the campaign to complete", || {
        let mut c = client.clone();
        let admin = admin.clone();
        let id = campaign.id.clone();
        async move {
            let got = c
                .get_campaign(authed(pb::GetCampaignRequest { campaign_id: id }, &admin))
                .await
                .ok()?
                .into_inner()
                .campaign?;
            (got.status == pb::Status::Completed as i32).then_some(got)
        }
    })
    .await;
    assert_eq!(done.spent, 10);
    let report = client
        .get_campaign_report(authed(
            pb::GetCampaignReportRequest {
                campaign_id: campaign.id.clone(),
                attribution: pb::Attribution::Unspecified.into(),
            },
            &admin,
        ))
        .await
        .expect("report")
        .into_inner();
    assert_eq!(
        (report.sent, report.delivered, report.clicked, report.cost),
        (2, 2, 1, 10)
    );
    assert_eq!(report.attribution, pb::Attribution::LastTouch as i32);
    // Nothing bought since: ROI (0 − 10) / 10.
    assert_eq!(report.roi, Some(-1.0));
    let refused = client
        .pause_campaign(authed(
            pb::PauseCampaignRequest {
                request_id: "p1".into(),
                campaign_id: campaign.id,
            },
            &admin,
        ))
        .await
        .expect_err("a completed campaign does not pause");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(reason_of(&refused).as_deref(), Some("INVALID_TRANSITION"));
}
