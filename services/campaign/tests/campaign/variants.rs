//! A/B variants through the abtesting service: abtesting served in this test by kit's
//! runtime (as `titan serve abtesting` runs it) on the test's PostgreSQL and ClickHouse; the
//! campaign asks its `Assign` for each recipient with a service token of its own, sends that
//! variant's content, records the variant per delivery, and the experiment's results count
//! the recipients and a recipient's later purchase.

use std::{collections::BTreeMap, collections::HashMap, time::Duration as StdDuration};

use chrono::{Duration, Utc};
use prost_types::{Struct, Value, value::Kind};
use titan_campaign::{
    domain::{Channel, Rule, Template, Variant, Variants},
    experiments::Experiments,
};
use titan_kit::{
    auth::Authenticator,
    config::Config,
    runtime::{self, Bound},
    testing::{TestPostgres, TestRedis, eventually},
};
use titan_proto::abtesting::v1::{self as pb, ab_testing_service_client::AbTestingServiceClient};
use tokio_util::sync::CancellationToken;
use tonic::{Request, transport::Channel as GrpcChannel};

use crate::support::{Ev, Setup, app_on, env, events, launch, spec, t0};

const SECRET: &str = "campaign-abtesting-test-secret-0123456789";
const EXPERIMENT: &str = "winter-copy";

fn authed<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    request
}

/// abtesting on its own database and the campaign test's ClickHouse (where
/// analytics_events is; its exposures table is migrated there), with an experiment of two
/// variants, running.
async fn abtesting(
    ch: &titan_kit::testing::TestClickHouse,
) -> (
    AbTestingServiceClient<GrpcChannel>,
    String,
    Bound,
    Authenticator,
    TestPostgres,
    CancellationToken,
) {
    let db = TestPostgres::new().await;
    // A/B testing takes part in privacy jobs, which the runtime follows on the Redis bus.
    let redis = TestRedis::new().await;
    let vars = BTreeMap::from([
        ("TITAN_GRPC_ADDR", "127.0.0.1:0".to_owned()),
        ("TITAN_HTTP_ADDR", "127.0.0.1:0".to_owned()),
        ("TITAN_ADMIN_ADDR", "127.0.0.1:0".to_owned()),
        ("TITAN_AUTH_HS256_SECRET", SECRET.to_owned()),
        ("TITAN_POSTGRES_URL", db.url.clone()),
        ("TITAN_REDIS_URL", redis.url.clone()),
        ("TITAN_REDIS_KEY_PREFIX", redis.config.key_prefix.clone()),
        ("TITAN_CLICKHOUSE_URL", ch.config.url.clone()),
        ("TITAN_CLICKHOUSE_DATABASE", ch.config.database.clone()),
    ]);
    let yaml = "services:\n  abtesting:\n    exposureBatchSize: 100\n    exposureFlushMillis: 20\n";
    let config =
        Config::from_sources(Some(yaml), move |name| vars.get(name).cloned()).expect("config");
    runtime::migrate(&config, &[titan_abtesting::service()])
        .await
        .expect("migrate abtesting");
    let auth = Authenticator::new(&config.auth).expect("auth");
    let admin = auth
        .mint(
            "admin-1",
            &["admin".to_owned()],
            StdDuration::from_secs(600),
        )
        .expect("token");
    let served = titan_kit::testing::serve(config, vec![titan_abtesting::service()]).await;
    let mut client = AbTestingServiceClient::new(served.channel);
    client
        .create_experiment(authed(
            pb::CreateExperimentRequest {
                request_id: "c-1".into(),
                spec: Some(pb::ExperimentSpec {
                    key: EXPERIMENT.into(),
                    variants: ["a", "b"]
                        .map(|k| pb::Variant {
                            key: k.into(),
                            weight: 0.5,
                            is_control: false,
                        })
                        .to_vec(),
                    hash_version: 1,
                    metrics: vec!["flashsale.purchased".into()],
                    ..pb::ExperimentSpec::default()
                }),
            },
            &admin,
        ))
        .await
        .expect("create experiment");
    client
        .start_experiment(authed(
            pb::ChangeExperimentStatusRequest {
                request_id: "s-1".into(),
                key: EXPERIMENT.into(),
            },
            &admin,
        ))
        .await
        .expect("start experiment");
    (client, admin, served.bound, auth, db, served.stop)
}

#[tokio::test]
async fn each_recipient_gets_the_variant_abtesting_assigns_and_the_experiment_counts_them() {
    let env = env(Setup {
        smtp: true,
        ..Setup::default()
    })
    .await;
    let (mut ab, admin, bound, auth, _ab_db, stop) = abtesting(&env.ch).await;
    let users: Vec<String> = (1..=8).map(|i| format!("u{i}")).collect();
    let names: Vec<&str> = users.iter().map(String::as_str).collect();
    env.buyers(&names).await;
    let experiments = Experiments::new(
        tonic::transport::Endpoint::from_shared(format!("http://{}", bound.grpc)).expect("url"),
        auth.clone(),
    );
    let app = app_on(
        &env.pg,
        &env.ch,
        &env.clock,
        env.smtp.as_ref(),
        &Setup {
            experiments: Some(experiments),
            ..Setup::default()
        },
    );
    let main = spec(
        Channel::Email,
        vec![Rule::PurchasedWithin { within_days: 30 }],
    );
    let variant = |key: &str| Variant {
        key: key.into(),
        template: Template::new(
            "Hello {{ first_name }}",
            &format!("<p>Variant {key}</p><a href=\"{{{{ unsubscribe_url }}}}\">unsubscribe</a>"),
            main.template.click_url(),
        )
        .expect("template"),
    };
    let variants = Variants::new(EXPERIMENT, vec![variant("a"), variant("b")]).expect("variants");
    let with_variants = main.with_variants(variants).expect("campaign");
    let mut env = env;
    env.app = app;
    let c = launch(&env, with_variants).await;
    assert_eq!(env.app.tick().await.expect("tick").sent, 8);

    // The oracle: what abtesting assigns each user (asked as a service, like the campaign).
    let backend = auth
        .mint(
            "web-backend",
            &["service".to_owned()],
            StdDuration::from_secs(600),
        )
        .expect("token");
    let mut expected: HashMap<String, String> = HashMap::new();
    for u in &users {
        let a = ab
            .assign(authed(
                pb::AssignRequest {
                    experiment_key: EXPERIMENT.into(),
                    attributes: Some(Struct {
                        fields: [(
                            "id".to_owned(),
                            Value {
                                kind: Some(Kind::StringValue(u.clone())),
                            },
                        )]
                        .into(),
                    }),
                },
                &backend,
            ))
            .await
            .expect("assign")
            .into_inner()
            .assignment
            .expect("assignment");
        expected.insert(u.clone(), a.variation_key);
    }
    let mut per_variant: BTreeMap<String, u64> = BTreeMap::new();
    for v in expected.values() {
        *per_variant.entry(v.clone()).or_default() += 1;
    }
    // With 8 users both variants are met (a fixed hash: the same split every run).
    assert_eq!(per_variant.len(), 2, "{per_variant:?}");

    let mails = env.smtp.as_ref().expect("smtp").messages();
    assert_eq!(mails.len(), 8);
    for m in &mails {
        let user = m.headers["to"].trim_end_matches("@shop.test");
        let key = &expected[user];
        assert!(
            m.body.starts_with(&format!("<p>Variant {key}</p>")),
            "{user}: {}",
            m.body
        );
    }
    let recorded: Vec<(String, String)> = sqlx::query_as(
        "SELECT user_id, variant FROM campaign_deliveries WHERE campaign_id = $1 AND status = 'SENT'",
    )
    .bind(c.id.uuid())
    .fetch_all(&env.pg.pool)
    .await
    .expect("deliveries");
    assert_eq!(recorded.into_iter().collect::<HashMap<_, _>>(), expected);
    let report = env.app.report(c.id, None).await.expect("report");
    assert_eq!(
        report
            .counts
            .variants
            .iter()
            .map(|v| (v.key.clone(), v.sent))
            .collect::<BTreeMap<_, _>>(),
        per_variant
    );

    // A recipient buys after the campaign: the experiment counts the conversion in its
    // variant (events after the user's first exposure, which the campaign's Assign logged).
    let ahead = (t0() - Utc::now()).num_hours() - 2;
    events(
        &env.ch,
        &[Ev("u1", "flashsale.purchased", ahead, "p1", 2500, "FR")],
    )
    .await;
    assert!(t0() - Duration::hours(ahead) > Utc::now());
    let results = eventually("the experiment's results to count 8 users", || {
        let mut ab = ab.clone();
        let admin = admin.clone();
        async move {
            let r = ab
                .get_results(authed(
                    pb::GetResultsRequest {
                        experiment_key: EXPERIMENT.into(),
                    },
                    &admin,
                ))
                .await
                .ok()?
                .into_inner();
            (r.users.iter().map(|u| u.users).sum::<u64>() == 8).then_some(r)
        }
    })
    .await;
    assert_eq!(
        results
            .users
            .iter()
            .map(|u| (u.key.clone(), u.users))
            .collect::<BTreeMap<_, _>>(),
        per_variant
    );
    let conversions = results
        .metrics
        .iter()
        .find(|m| m.metric == "flashsale.purchased")
        .expect("the purchase metric");
    let converted: BTreeMap<String, u64> = conversions
        .variants
        .iter()
        .map(|v| (v.key.clone(), (v.mean * v.users as f64).round() as u64))
        .collect();
    let mut want: BTreeMap<String, u64> = per_variant.keys().map(|k| (k.clone(), 0)).collect();
    want.insert(expected["u1"].clone(), 1);
    assert_eq!(converted, want);
    stop.cancel();
}
