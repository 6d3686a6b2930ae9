//! A person's data across the real binary: alice buys in a flash sale (points through the bus,
//! revenue in analytics), redeems a coupon, is tracked and exposed to an experiment, as bob is.
//! Her export holds her data from every service and nothing of bob's; her erasure completes
//! although gamification, in a process of its own, is frozen and then killed mid-job and only
//! comes back later; afterwards no PostgreSQL row, Redis key or value, or ClickHouse row of
//! the cell names her, and bob's data is as it was.

use std::time::Duration;

use nix::sys::signal::Signal;
use titan_e2e::{Cell, CellOptions, authed, seconds_from_now as ts};
use titan_kit::testing::{eventually, mentions};
use titan_proto::{
    abtesting::v1::{self as ab, ab_testing_service_client::AbTestingServiceClient},
    analytics::v1::{self as an, analytics_service_client::AnalyticsServiceClient},
    coupon::v1::{self as cp, coupon_service_client::CouponServiceClient},
    gamification::v1::{self as gm, gamification_service_client::GamificationServiceClient},
    privacy::v1::{self as pv, privacy_service_client::PrivacyServiceClient},
};

use crate::analytics::{buy, event};

/// The services of the main process; gamification runs apart.
const MAIN: [&str; 5] = ["privacy", "flashsale", "coupon", "analytics", "abtesting"];

/// What a person did that their export must show.
struct Activity {
    order: String,
    view: String,
}

/// Everything alice and bob do. Every id is made afresh, none contains the user id: an
/// erasure must find the person by what names them, not by luck in how a test named things.
async fn be_active(cell: &Cell, user: &str) -> Activity {
    let token = cell.token(user, &[]);
    let checkout = cell.token("checkout", &["service"]);
    let channel = cell.channel().await;
    let order = buy(cell, &token, user).await;
    let view = uuid::Uuid::now_v7().to_string();

    CouponServiceClient::new(channel.clone())
        .redeem_coupon(authed(
            cp::RedeemCouponRequest {
                request_id: uuid::Uuid::now_v7().to_string(),
                codes: vec!["PRIVACY10".into()],
                cart: Some(cp::Cart {
                    items: vec![cp::CartItem {
                        product_id: "sku-1".into(),
                        category_id: "shoes".into(),
                        unit_price: 1_999,
                        quantity: 1,
                    }],
                    shipping_fee: 0,
                    currency: "USD".into(),
                }),
                order_id: uuid::Uuid::now_v7().to_string(),
                shopper_id: user.into(),
            },
            &checkout,
        ))
        .await
        .expect("redeem");

    let tracked = AnalyticsServiceClient::new(channel.clone())
        .track_events(authed(
            an::TrackEventsRequest {
                events: vec![event(&view, "product_view", "sku-9")],
            },
            &token,
        ))
        .await
        .expect("track")
        .into_inner();
    assert_eq!(tracked.accepted, 1);

    let id = prost_types::Value {
        kind: Some(prost_types::value::Kind::StringValue(user.into())),
    };
    let assigned = AbTestingServiceClient::new(channel)
        .assign(authed(
            ab::AssignRequest {
                experiment_key: "checkout-button".into(),
                attributes: Some(prost_types::Struct {
                    fields: [("id".to_owned(), id)].into_iter().collect(),
                }),
            },
            &token,
        ))
        .await
        .expect("assign")
        .into_inner()
        .assignment
        .expect("assignment");
    assert!(assigned.in_experiment, "{assigned:?}");
    Activity { order, view }
}

/// The admin's side: a coupon with room for both, and a running experiment.
async fn define(cell: &Cell) {
    let admin = cell.token("admin-1", &["admin"]);
    let channel = cell.channel().await;
    CouponServiceClient::new(channel.clone())
        .create_coupon(authed(
            cp::CreateCouponRequest {
                request_id: "coupon-1".into(),
                spec: Some(cp::CouponSpec {
                    code: "PRIVACY10".into(),
                    r#type: cp::CouponType::Percentage as i32,
                    value: 1_000,
                    total_limit: 10,
                    valid_from: Some(ts(-60)),
                    valid_until: Some(ts(3_600)),
                    ..Default::default()
                }),
            },
            &admin,
        ))
        .await
        .expect("coupon");
    let mut experiments = AbTestingServiceClient::new(channel);
    experiments
        .create_experiment(authed(
            ab::CreateExperimentRequest {
                request_id: "exp-1".into(),
                spec: Some(ab::ExperimentSpec {
                    key: "checkout-button".into(),
                    variants: ["control", "green"]
                        .into_iter()
                        .map(|key| ab::Variant {
                            key: key.into(),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                }),
            },
            &admin,
        ))
        .await
        .expect("experiment");
    experiments
        .start_experiment(authed(
            ab::ChangeExperimentStatusRequest {
                request_id: "exp-start".into(),
                key: "checkout-button".into(),
            },
            &admin,
        ))
        .await
        .expect("start");
}

async fn postgres_mentions(cell: &Cell, text: &str) -> Vec<(String, i64)> {
    mentions::postgres(&cell.db.pool, text).await
}

async fn clickhouse_mentions(cell: &Cell, text: &str) -> Vec<(String, u64)> {
    mentions::clickhouse(&cell.clickhouse.client, text).await
}

async fn redis_mentions(cell: &Cell, text: &str) -> Vec<String> {
    mentions::redis(&cell.redis.handle, text).await
}

async fn job(
    client: &mut PrivacyServiceClient<tonic::transport::Channel>,
    officer: &str,
    id: &str,
) -> pv::Job {
    client
        .get_job(authed(pv::GetJobRequest { job_id: id.into() }, officer))
        .await
        .expect("get job")
        .into_inner()
}

async fn completed(
    client: &PrivacyServiceClient<tonic::transport::Channel>,
    officer: &str,
    id: &str,
) -> pv::Job {
    eventually(&format!("privacy job {id} to complete"), || {
        let mut client = client.clone();
        async move {
            let job = job(&mut client, officer, id).await;
            (job.state == pv::JobState::Completed as i32).then_some(job)
        }
    })
    .await
}

/// The flash sale's consumer groups have acknowledged everything: what an erasure may delete
/// from the bus is all of it.
async fn bus_settled(cell: &Cell) {
    let stream = titan_kit::events::stream_key(&cell.redis.handle, "flashsale");
    eventually(
        "the purchases to be acknowledged by every group",
        || async {
            let mut conn = cell.redis.handle.conn.clone();
            let groups: Vec<std::collections::HashMap<String, redis::Value>> = redis::cmd("XINFO")
                .arg("GROUPS")
                .arg(&stream)
                .query_async(&mut conn)
                .await
                .ok()?;
            let settled = groups.len() == 2
                && groups.iter().all(|g| {
                    g.get("pending")
                        .and_then(|v| redis::from_redis_value_ref::<u64>(v).ok())
                        == Some(0)
                        && g.get("lag")
                            .and_then(|v| redis::from_redis_value_ref::<u64>(v).ok())
                            == Some(0)
                });
            settled.then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_person_is_exported_and_erased_everywhere_with_a_service_killed_mid_job() {
    let cell = Cell::start_with(CellOptions {
        services: MAIN.iter().map(|s| (*s).to_owned()).collect(),
        config: Some(
            "events: { claimIdleSeconds: 2 }\n\
             services:\n  analytics:\n    sources: [flashsale]\n    flushIntervalMillis: 20\n  \
             abtesting:\n    exposureFlushMillis: 20\n"
                .into(),
        ),
        ..CellOptions::default()
    })
    .await;
    let mut gamification = cell.serve_apart(&["gamification"]);
    let alice = format!("alice-{}", uuid::Uuid::now_v7());
    let bob = format!("bob-{}", uuid::Uuid::now_v7());
    define(&cell).await;
    let activity = be_active(&cell, &alice).await;
    be_active(&cell, &bob).await;

    // The bus has done its work: points for both, their purchases and views and exposures in
    // ClickHouse.
    let game = GamificationServiceClient::new(gamification.channel().await);
    for user in [&alice, &bob] {
        let token = cell.token(user, &[]);
        eventually(&format!("{user}'s purchase points"), || {
            let mut game = game.clone();
            let token = token.clone();
            async move {
                let account = game
                    .get_account(authed(gm::GetAccountRequest::default(), &token))
                    .await
                    .ok()?
                    .into_inner()
                    .account?;
                (account.lifetime_points > 0).then_some(())
            }
        })
        .await;
        eventually(
            &format!("{user}'s events and exposure in ClickHouse"),
            || async {
                let tables: Vec<String> = clickhouse_mentions(&cell, user)
                    .await
                    .into_iter()
                    .map(|(table, _)| table)
                    .collect();
                (tables.iter().any(|t| t == "analytics_events")
                    && tables.iter().any(|t| t.contains("exposure")))
                .then_some(())
            },
        )
        .await;
    }
    bus_settled(&cell).await;
    let bob_before = (
        postgres_mentions(&cell, &bob).await,
        clickhouse_mentions(&cell, &bob).await,
    );

    let officer = cell.token("dpo-1", &["privacy"]);
    let mut privacy = PrivacyServiceClient::new(cell.channel().await);

    // The export: one document with every service's part.
    let export = privacy
        .request_export(authed(
            pv::RequestExportRequest {
                request_id: "export-1".into(),
                user_id: alice.clone(),
            },
            &officer,
        ))
        .await
        .expect("export")
        .into_inner();
    let services: Vec<&str> = export.services.iter().map(|s| s.service.as_str()).collect();
    assert_eq!(
        services,
        [
            "abtesting",
            "analytics",
            "coupon",
            "flashsale",
            "gamification"
        ]
    );
    let export = completed(&privacy, &officer, &export.job_id).await;
    let document: serde_json::Value = reqwest::get(&export.export_url)
        .await
        .expect("download")
        .error_for_status()
        .expect("200")
        .json()
        .await
        .expect("json");
    assert_eq!(document["userId"], serde_json::json!(alice));
    let parts: Vec<&str> = document["services"]
        .as_object()
        .expect("services")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(parts, services);
    for (service, part) in document["services"].as_object().expect("services") {
        let text = part.to_string();
        assert!(!text.contains(&bob), "{service}'s part names bob: {text}");
    }
    let text = document.to_string();
    for own in [
        &activity.order,
        &activity.view,
        "checkout-button",
        "PRIVACY10",
    ] {
        assert!(text.contains(own), "the export lacks {own}: {text}");
    }

    // The erasure, while gamification is frozen: every other service answers, the job waits.
    gamification.process.signal(Signal::SIGSTOP);
    let erasure = privacy
        .request_erasure(authed(
            pv::RequestErasureRequest {
                request_id: "erase-1".into(),
                user_id: alice.clone(),
            },
            &officer,
        ))
        .await
        .expect("erasure")
        .into_inner();
    let waiting = eventually("every service but gamification to answer", || {
        let mut privacy = privacy.clone();
        let officer = officer.clone();
        let id = erasure.job_id.clone();
        async move {
            let job = job(&mut privacy, &officer, &id).await;
            let pending: Vec<&str> = job
                .services
                .iter()
                .filter(|s| s.state == pv::TaskState::Pending as i32)
                .map(|s| s.service.as_str())
                .collect();
            (pending == ["gamification"]).then_some(job.clone())
        }
    })
    .await;
    assert_eq!(waiting.state, pv::JobState::Running as i32);
    // Killed mid-job; the job goes on waiting for it, and completes once it is back.
    gamification.process.signal(Signal::SIGKILL);
    tokio::task::block_in_place(|| gamification.process.wait_exit(Duration::from_secs(30)));
    assert_eq!(
        job(&mut privacy, &officer, &erasure.job_id).await.state,
        pv::JobState::Running as i32
    );
    let _gamification = cell.serve_apart(&["gamification"]);
    let done = completed(&privacy, &officer, &erasure.job_id).await;
    assert!(done.subject.starts_with("p_"), "{}", done.subject);
    let pseudonymised: Vec<(&str, bool)> = done
        .services
        .iter()
        .map(|s| {
            (
                s.service.as_str(),
                s.pseudonymised.values().sum::<u64>() > 0,
            )
        })
        .collect();
    // Money and points stay under the pseudonym; the experiment's exposure and the events too.
    assert_eq!(
        pseudonymised,
        [
            ("abtesting", true),
            ("analytics", true),
            ("coupon", true),
            ("flashsale", true),
            ("gamification", true)
        ]
    );

    // Nothing of alice anywhere; bob as he was.
    assert_eq!(postgres_mentions(&cell, &alice).await, vec![]);
    assert_eq!(clickhouse_mentions(&cell, &alice).await, vec![]);
    // Rate-limit budgets that name her expire within seconds of her last call.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut left = redis_mentions(&cell, &alice).await;
    while !left.is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        left = redis_mentions(&cell, &alice).await;
    }
    assert_eq!(left, Vec::<String>::new(), "redis keys still naming alice");
    assert_eq!(
        (
            postgres_mentions(&cell, &bob).await,
            clickhouse_mentions(&cell, &bob).await
        ),
        bob_before
    );
    // Her earlier export is gone with her.
    let earlier = job(&mut privacy, &officer, &export.job_id).await;
    assert_eq!(
        (
            earlier.state,
            earlier.export_url.as_str(),
            earlier.subject.as_str()
        ),
        (pv::JobState::Expired as i32, "", done.subject.as_str())
    );
}
