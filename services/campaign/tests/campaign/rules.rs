//! Segments against a hand-made analytics_events data set, caps, quiet hours, the lifecycle,
//! and bad input refused at the gRPC edge naming the field.

use chrono::Duration;
use titan_campaign::{
    app::CampaignError,
    domain::{Caps, Channel, QuietHours, Rule, Schedule, Segment, Status, Transition},
    grpc::Grpc,
};
use titan_kit::{error::reason_of, testing};
use titan_proto::campaign::v1::{self as pb, campaign_service_server::CampaignService};
use tonic::{Code, Request};

use crate::support::{Ev, Setup, contact, env, events, key, launch, spec, statuses};

#[tokio::test]
async fn segment_rules_select_exactly_the_users_of_the_data_set() {
    let env = env(Setup::default()).await;
    events(
        &env.ch,
        &[
            // a: bought 2 days ago, from FR, viewed p9 and bought it.
            Ev("a", "flashsale.purchased", 48, "p9", 1500, "FR"),
            Ev("a", "product_view", 50, "p9", 0, "FR"),
            // b: viewed p9 twice, never bought; last seen in DE (first in FR).
            Ev("b", "product_view", 100, "p9", 0, "FR"),
            Ev("b", "product_view", 10, "p9", 0, "DE"),
            // c: bought p9 long ago (20 days), viewed it again yesterday.
            Ev("c", "flashsale.purchased", 20 * 24, "p9", 900, "FR"),
            Ev("c", "product_view", 24, "p9", 0, "FR"),
            // d: a client "purchase" (unverified, revenue 0) and 3 page views.
            Ev("d", "purchase", 5, "p9", 0, "FR"),
            Ev("d", "page_view", 5, "", 0, "FR"),
            Ev("d", "page_view", 6, "", 0, "FR"),
            Ev("d", "page_view", 7, "", 0, "FR"),
            // e: only events 60 days old.
            Ev("e", "flashsale.purchased", 60 * 24, "p9", 100, "FR"),
        ],
    )
    .await;
    for (u, level) in [("a", 1), ("b", 5), ("c", 3), ("d", 9), ("e", 1)] {
        env.contacts(&[contact(u, &format!("{u}@shop.test"), "", level)])
            .await;
    }
    let estimate = |rules: Vec<Rule>| {
        let app = env.app.clone();
        async move {
            app.estimate(&Segment::new(rules).expect("segment"))
                .await
                .expect("estimate")
        }
    };
    assert_eq!(
        estimate(vec![Rule::PurchasedWithin { within_days: 7 }]).await,
        1
    );
    assert_eq!(
        estimate(vec![Rule::PurchasedWithin { within_days: 30 }]).await,
        2
    );
    assert_eq!(
        estimate(vec![Rule::PurchasedWithin { within_days: 90 }]).await,
        3
    );
    // Viewed p9 in the week without buying it since: b, and c (its purchase is older than the
    // view), not a.
    let viewed = || Rule::ViewedNotBought {
        product_id: "p9".into(),
        within_days: 7,
    };
    assert_eq!(estimate(vec![viewed()]).await, 2);
    // The newest country in the window: b is DE now.
    let country = |c: &str| Rule::CountryIn {
        countries: vec![c.into()],
        within_days: 30,
    };
    assert_eq!(estimate(vec![viewed(), country("DE")]).await, 1);
    assert_eq!(estimate(vec![country("FR")]).await, 3);
    assert_eq!(
        estimate(vec![Rule::EventCount {
            name: "page_view".into(),
            min_count: 3,
            within_days: 1,
        }])
        .await,
        1
    );
    assert_eq!(
        estimate(vec![Rule::EventCount {
            name: "page_view".into(),
            min_count: 4,
            within_days: 1,
        }])
        .await,
        0
    );
    // Levels filter contacts: of a, c (bought within 30 days) only c is 2..=5.
    assert_eq!(
        estimate(vec![
            Rule::PurchasedWithin { within_days: 30 },
            Rule::LevelBetween { min: 2, max: 5 },
        ])
        .await,
        1
    );
    // The snapshot of a send holds the same users.
    let c = launch(&env, spec(Channel::Banner, vec![viewed()])).await;
    env.app.tick().await.expect("tick");
    let mut members: Vec<String> =
        sqlx::query_scalar("SELECT user_id FROM campaign_deliveries WHERE campaign_id = $1")
            .bind(c.id.uuid())
            .fetch_all(&env.pg.pool)
            .await
            .expect("members");
    members.sort();
    assert_eq!(members, vec!["b", "c"]);
}

#[tokio::test]
async fn quiet_hours_hold_a_message_until_morning_in_the_users_zone() {
    let env = env(Setup {
        smtp: true,
        ..Setup::default()
    })
    .await;
    events(
        &env.ch,
        &[
            Ev("tokyo", "flashsale.purchased", 1, "p", 100, "JP"),
            Ev("paris", "flashsale.purchased", 1, "p", 100, "FR"),
        ],
    )
    .await;
    env.contacts(&[
        contact("tokyo", "tokyo@shop.test", "Asia/Tokyo", 1),
        contact("paris", "paris@shop.test", "Europe/Paris", 1),
    ])
    .await;
    let mut s = spec(
        Channel::Email,
        vec![Rule::PurchasedWithin { within_days: 7 }],
    );
    s.quiet_hours = QuietHours::new(21, 8).expect("quiet hours");
    let c = launch(&env, s).await;
    // 12:00 UTC: 21:00 in Tokyo (quiet), 13:00 in Paris.
    env.app.tick().await.expect("tick");
    let smtp = env.smtp.as_ref().expect("smtp");
    assert_eq!(smtp.count(), 1);
    assert_eq!(smtp.messages()[0].headers["to"], "paris@shop.test");
    assert_eq!(
        env.app.get(c.id).await.expect("campaign").status,
        Status::Running
    );
    // 22:59 UTC is 07:59 in Tokyo: still quiet.
    env.clock.advance(Duration::minutes(10 * 60 + 59));
    env.app.tick().await.expect("tick");
    assert_eq!(smtp.count(), 1);
    // 23:00 UTC is 08:00 in Tokyo.
    env.clock.advance(Duration::minutes(1));
    let tick = env.app.tick().await.expect("tick");
    assert_eq!((tick.sent, tick.completed), (1, 1));
    assert_eq!(smtp.count(), 2);
    assert_eq!(statuses(&env, c.id).await, [("SENT".to_string(), 2)].into());
}

#[tokio::test]
async fn a_frequency_cap_counts_messages_of_every_campaign() {
    let env = env(Setup {
        smtp: true,
        ..Setup::default()
    })
    .await;
    events(
        &env.ch,
        &[
            Ev("a", "flashsale.purchased", 1, "p", 100, "FR"),
            Ev("b", "flashsale.purchased", 1, "p", 100, "FR"),
        ],
    )
    .await;
    env.contacts(&[
        contact("a", "a@shop.test", "", 1),
        contact("b", "b@shop.test", "", 4),
    ])
    .await;
    // The first campaign reaches only b (level 4).
    let first = launch(
        &env,
        spec(
            Channel::Email,
            vec![
                Rule::PurchasedWithin { within_days: 7 },
                Rule::LevelBetween { min: 3, max: 10 },
            ],
        ),
    )
    .await;
    env.app.tick().await.expect("tick");
    assert_eq!(
        statuses(&env, first.id).await,
        [("SENT".to_string(), 1)].into()
    );
    // The second allows one message per user per day: b already had one.
    let mut capped = spec(
        Channel::Email,
        vec![Rule::PurchasedWithin { within_days: 7 }],
    );
    capped.caps = Caps::new(1, 24).expect("caps");
    let second = launch(&env, capped.clone()).await;
    env.app.tick().await.expect("tick");
    assert_eq!(
        statuses(&env, second.id).await,
        [("SENT".to_string(), 1), ("CAPPED".to_string(), 1)].into()
    );
    // A day later the window has passed for both.
    env.clock.advance(Duration::hours(25));
    let third = launch(&env, capped).await;
    env.app.tick().await.expect("tick");
    assert_eq!(
        statuses(&env, third.id).await,
        [("SENT".to_string(), 2)].into()
    );
    let report = env.app.report(second.id, None).await.expect("report");
    assert_eq!((report.counts.sent, report.counts.capped), (1, 1));
}

#[tokio::test]
async fn the_lifecycle_allows_only_its_moves_and_a_paused_campaign_sends_nothing() {
    let env = env(Setup {
        smtp: true,
        ..Setup::default()
    })
    .await;
    events(
        &env.ch,
        &[Ev("a", "flashsale.purchased", 1, "p", 100, "FR")],
    )
    .await;
    env.contacts(&[contact("a", "a@shop.test", "", 1)]).await;
    let s = spec(
        Channel::Email,
        vec![Rule::PurchasedWithin { within_days: 7 }],
    );
    let c = env
        .app
        .create(&key("CreateCampaign"), s)
        .await
        .expect("create");
    assert_eq!(c.status, Status::Draft);
    let refused = env
        .app
        .transition(&key("PauseCampaign"), c.id, Transition::Pause, None)
        .await
        .expect_err("a draft does not pause");
    assert!(matches!(
        refused,
        CampaignError::InvalidTransition {
            what: "pause",
            from: "DRAFT"
        }
    ));
    let schedule = Schedule::new(env.clock.now() + Duration::hours(1), 0, None).expect("schedule");
    let c = env
        .app
        .transition(
            &key("ScheduleCampaign"),
            c.id,
            Transition::Schedule,
            Some(schedule),
        )
        .await
        .expect("schedule");
    assert_eq!(c.status, Status::Scheduled);
    // Not due yet.
    assert_eq!(env.app.tick().await.expect("tick").snapshots, 0);
    env.clock.advance(Duration::hours(1));
    // Snapshot taken (RUNNING) but paused before the send: set the deliveries aside.
    assert!(env.app.snapshot_one().await.expect("snapshot"));
    let c = env
        .app
        .transition(&key("PauseCampaign"), c.id, Transition::Pause, None)
        .await
        .expect("pause");
    assert_eq!(c.status, Status::Paused);
    env.app.tick().await.expect("tick");
    assert_eq!(env.smtp.as_ref().expect("smtp").count(), 0);
    let c = env
        .app
        .transition(&key("ResumeCampaign"), c.id, Transition::Resume, None)
        .await
        .expect("resume");
    assert_eq!(c.status, Status::Running);
    env.app.tick().await.expect("tick");
    assert_eq!(env.smtp.as_ref().expect("smtp").count(), 1);
    let c = env.app.get(c.id).await.expect("campaign");
    assert_eq!(c.status, Status::Completed);
    let refused = env
        .app
        .transition(&key("CancelCampaign"), c.id, Transition::Cancel, None)
        .await
        .expect_err("a completed campaign is not cancelled");
    assert!(matches!(refused, CampaignError::InvalidTransition { .. }));
    // The same request id again replays the first answer without a second move.
    let k = key("CancelCampaign");
    let other = env
        .app
        .create(
            &key("CreateCampaign"),
            spec(
                Channel::Email,
                vec![Rule::PurchasedWithin { within_days: 7 }],
            ),
        )
        .await
        .expect("create");
    let cancelled = env
        .app
        .transition(&k, other.id, Transition::Cancel, None)
        .await
        .expect("cancel");
    assert_eq!(cancelled.status, Status::Cancelled);
    let replayed = env
        .app
        .transition(&k, other.id, Transition::Cancel, None)
        .await
        .expect("replay");
    assert_eq!(replayed.status, Status::Cancelled);
}

/// Breaks one field of a valid request.
type Breaker = Box<dyn Fn(&mut pb::CreateCampaignRequest)>;

fn as_admin<T>(body: T) -> Request<T> {
    let mut r = Request::new(body);
    r.extensions_mut().insert(testing::admin());
    r
}

fn valid_create() -> pb::CreateCampaignRequest {
    pb::CreateCampaignRequest {
        request_id: "r1".into(),
        name: "Winter".into(),
        channel: pb::Channel::Banner.into(),
        content: Some(pb::Content {
            subject: "Hi {{ first_name }}".into(),
            body: "Sale".into(),
            click_url: String::new(),
        }),
        segment: Some(pb::Segment {
            rules: vec![pb::SegmentRule {
                rule: Some(pb::segment_rule::Rule::PurchasedWithin(
                    pb::PurchasedWithin { within_days: 30 },
                )),
            }],
        }),
        caps: None,
        quiet_hours: None,
        budget: 1000,
        cost_per_message: 1,
        currency: "USD".into(),
        trigger: None,
        variants: None,
    }
}

#[tokio::test]
async fn bad_input_is_invalid_argument_naming_the_field_and_stores_nothing() {
    let env = env(Setup::default()).await;
    let grpc = Grpc::new(env.app.clone());
    let cases: Vec<(&str, Breaker)> = vec![
        ("name", Box::new(|r| r.name = String::new())),
        ("channel", Box::new(|r| r.channel = 0)),
        (
            "content.body",
            Box::new(|r| {
                if let Some(c) = r.content.as_mut() {
                    c.body = "{{ coupon_code }}".into();
                }
            }),
        ),
        (
            "content.subject",
            Box::new(|r| {
                if let Some(c) = r.content.as_mut() {
                    c.subject = "{% if %}".into();
                }
            }),
        ),
        (
            "segment.rules[0].within_days",
            Box::new(|r| {
                r.segment = Some(pb::Segment {
                    rules: vec![pb::SegmentRule {
                        rule: Some(pb::segment_rule::Rule::PurchasedWithin(
                            pb::PurchasedWithin { within_days: 0 },
                        )),
                    }],
                });
            }),
        ),
        (
            "caps.window_hours",
            Box::new(|r| {
                r.caps = Some(pb::Caps {
                    max_per_user: 2,
                    window_hours: 0,
                });
            }),
        ),
        (
            "quiet_hours.end_hour",
            Box::new(|r| {
                r.quiet_hours = Some(pb::QuietHours {
                    start_hour: 22,
                    end_hour: 24,
                });
            }),
        ),
        // A trigger replaces the segment: both together are refused.
        (
            "segment",
            Box::new(|r| {
                r.trigger = Some(pb::Trigger {
                    event: "flashsale.purchased".into(),
                    ..Default::default()
                });
            }),
        ),
        (
            "trigger.event",
            Box::new(|r| {
                r.segment = None;
                r.trigger = Some(pb::Trigger {
                    event: "cart.emptied".into(),
                    ..Default::default()
                });
            }),
        ),
        (
            "trigger.cancel_event",
            Box::new(|r| {
                r.segment = None;
                r.trigger = Some(pb::Trigger {
                    event: "cart.updated".into(),
                    delay_hours: 0,
                    cancel_event: "flashsale.purchased".into(),
                });
            }),
        ),
        (
            "variants.contents[0].content.click_url",
            Box::new(|r| {
                r.variants = Some(pb::Variants {
                    experiment_key: "winter-copy".into(),
                    contents: vec![pb::VariantContent {
                        key: "b".into(),
                        content: Some(pb::Content {
                            subject: "Hi".into(),
                            body: "B".into(),
                            click_url: "https://elsewhere.test".into(),
                        }),
                    }],
                });
            }),
        ),
        (
            "variants.experiment_key",
            Box::new(|r| {
                r.variants = Some(pb::Variants {
                    experiment_key: String::new(),
                    contents: vec![],
                });
            }),
        ),
        ("budget", Box::new(|r| r.budget = 0)),
        ("currency", Box::new(|r| r.currency = "usd".into())),
    ];
    for (field, break_it) in cases {
        let mut r = valid_create();
        break_it(&mut r);
        let e = grpc
            .create_campaign(as_admin(r))
            .await
            .expect_err("refused");
        assert_eq!(e.code(), Code::InvalidArgument, "{field}: {e:?}");
        assert!(
            e.message().starts_with(&format!("{field}: ")),
            "{field}: {}",
            e.message()
        );
        assert_eq!(reason_of(&e).as_deref(), Some("INVALID_ARGUMENT"));
    }
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM campaigns")
        .fetch_one(&env.pg.pool)
        .await
        .expect("count");
    assert_eq!(stored, 0);
    // A buyer may not create campaigns; the valid request from an admin is stored.
    let mut buyer = Request::new(valid_create());
    buyer.extensions_mut().insert(testing::caller("u1", &[]));
    assert_eq!(
        grpc.create_campaign(buyer)
            .await
            .expect_err("refused")
            .code(),
        Code::PermissionDenied
    );
    let created = grpc
        .create_campaign(as_admin(valid_create()))
        .await
        .expect("created");
    let id = created.into_inner().campaign.expect("campaign").id;
    // A schedule ending before it starts.
    let now = titan_kit::wire::timestamp(env.clock.now());
    let e = grpc
        .schedule_campaign(as_admin(pb::ScheduleCampaignRequest {
            request_id: "r2".into(),
            campaign_id: id.clone(),
            schedule: Some(pb::Schedule {
                start_at: Some(now),
                repeat_every_hours: 0,
                end_at: Some(titan_kit::wire::timestamp(
                    env.clock.now() - Duration::hours(1),
                )),
            }),
        }))
        .await
        .expect_err("refused");
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().starts_with("schedule.end_at: "),
        "{}",
        e.message()
    );
    let e = grpc
        .put_contact(as_admin(pb::PutContactRequest {
            user_id: "u1".into(),
            time_zone: "Moon/Base".into(),
            ..Default::default()
        }))
        .await
        .expect_err("refused");
    assert!(e.message().starts_with("time_zone: "), "{}", e.message());
    let e = grpc
        .get_campaign(as_admin(pb::GetCampaignRequest {
            campaign_id: "nope".into(),
        }))
        .await
        .expect_err("refused");
    assert!(e.message().starts_with("campaign_id: "), "{}", e.message());
}
