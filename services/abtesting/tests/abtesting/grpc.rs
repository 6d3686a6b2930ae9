//! The service as the `titan` binary runs it — kit's runtime, its migrations, JWT auth, the
//! exposure writer and cache refresh tasks — driven over gRPC, with real PostgreSQL, ClickHouse
//! and Redis (where the privacy jobs it takes part in are announced).

use std::{collections::BTreeMap, time::Duration};

use prost_types::{Struct, Value, value::Kind};
use titan_abtesting::service;
use titan_kit::{
    auth::Authenticator,
    config::Config,
    error::reason_of,
    runtime,
    testing::{TestClickHouse, TestPostgres, TestRedis, eventually},
};
use titan_proto::abtesting::v1::{self as pb, ab_testing_service_client::AbTestingServiceClient};
use tokio_util::sync::CancellationToken;
use tonic::{Code, Request, transport::Channel};

use crate::analytics_tables;

const SECRET: &str = "0123456789abcdef0123456789abcdef";

fn config(db: &TestPostgres, ch: &TestClickHouse, redis: &TestRedis) -> Config {
    let yaml = "services:\n  abtesting:\n    exposureBatchSize: 100\n    exposureFlushMillis: 20\n    bayesian: true\n";
    let vars = BTreeMap::from([
        ("TITAN_GRPC_ADDR", "127.0.0.1:0".to_owned()),
        ("TITAN_HTTP_ADDR", "127.0.0.1:0".to_owned()),
        ("TITAN_ADMIN_ADDR", "127.0.0.1:0".to_owned()),
        ("TITAN_AUTH_HS256_SECRET", SECRET.to_owned()),
        ("TITAN_POSTGRES_URL", db.url.clone()),
        ("TITAN_CLICKHOUSE_URL", ch.config.url.clone()),
        ("TITAN_CLICKHOUSE_DATABASE", ch.config.database.clone()),
        ("TITAN_REDIS_URL", redis.url.clone()),
        ("TITAN_REDIS_KEY_PREFIX", redis.handle.prefix().to_owned()),
    ]);
    Config::from_sources(Some(yaml), move |name| vars.get(name).cloned()).expect("config")
}

fn authed<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    request
}

fn attributes(pairs: &[(&str, Kind)]) -> Option<Struct> {
    Some(Struct {
        fields: pairs
            .iter()
            .map(|(k, v)| {
                (
                    (*k).to_owned(),
                    Value {
                        kind: Some(v.clone()),
                    },
                )
            })
            .collect(),
    })
}

fn id(user: &str) -> Option<Struct> {
    attributes(&[("id", Kind::StringValue(user.to_owned()))])
}

fn spec(key: &str, variants: &[(&str, f64)]) -> pb::ExperimentSpec {
    pb::ExperimentSpec {
        key: key.into(),
        variants: variants
            .iter()
            .map(|(k, w)| pb::Variant {
                key: (*k).into(),
                weight: *w,
                is_control: false,
            })
            .collect(),
        hash_version: 1,
        metrics: vec!["purchase".into()],
        ..pb::ExperimentSpec::default()
    }
}

struct Server {
    client: AbTestingServiceClient<Channel>,
    admin: String,
    backend: String,
    user: String,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), titan_kit::KitError>>,
}

async fn serve(db: &TestPostgres, ch: &TestClickHouse, redis: &TestRedis) -> Server {
    let config = config(db, ch, redis);
    runtime::migrate(&config, &[service()])
        .await
        .expect("migrate");
    let auth = Authenticator::new(&config.auth).expect("auth");
    // The web backend assigns for its visitors: a service identity, so exposures are logged.
    let backend = auth
        .mint(
            "web-backend",
            &["service".to_owned()],
            Duration::from_secs(600),
        )
        .expect("mint");
    let admin = auth
        .mint("admin-1", &["admin".to_owned()], Duration::from_secs(600))
        .expect("token");
    let user = auth
        .mint("user-1", &[], Duration::from_secs(600))
        .expect("token");
    let served = titan_kit::testing::serve(config, vec![service()]).await;
    Server {
        client: AbTestingServiceClient::new(served.channel),
        admin,
        backend,
        user,
        stop: served.stop,
        task: served.task,
    }
}

#[tokio::test]
async fn experiments_flags_exposures_and_results_over_grpc() {
    let db = TestPostgres::new().await;
    let ch = TestClickHouse::new().await;
    let redis = TestRedis::new().await;
    analytics_tables(&ch.client).await;
    let Server {
        mut client,
        admin,
        backend,
        user,
        stop,
        task,
    } = serve(&db, &ch, &redis).await;
    // The service holds personal data: the runtime registered it for the privacy jobs.
    let participants: Vec<String> =
        sqlx::query_scalar("SELECT service FROM titan_privacy_participants")
            .fetch_all(&db.pool)
            .await
            .expect("participants");
    assert_eq!(participants, ["abtesting"]);

    // Definitions need the admin role.
    let create = pb::CreateExperimentRequest {
        request_id: "c-1".into(),
        spec: Some(spec("feature", &[("a", 0.0), ("b", 0.0), ("c", 0.0)])),
    };
    let err = client
        .create_experiment(Request::new(create.clone()))
        .await
        .expect_err("no token");
    assert_eq!(err.code(), Code::Unauthenticated);
    let err = client
        .create_experiment(authed(create.clone(), &user))
        .await
        .expect_err("not admin");
    assert_eq!(err.code(), Code::PermissionDenied);
    client
        .create_experiment(authed(create, &admin))
        .await
        .expect("create");
    let bad = pb::CreateExperimentRequest {
        request_id: "c-2".into(),
        spec: Some(spec("bad", &[("a", 0.9), ("b", 0.9)])),
    };
    let err = client
        .create_experiment(authed(bad, &admin))
        .await
        .expect_err("bad weights");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("add up to"), "{}", err.message());
    client
        .start_experiment(authed(
            pb::ChangeExperimentStatusRequest {
                request_id: "s-1".into(),
                key: "feature".into(),
            },
            &admin,
        ))
        .await
        .expect("start");

    // GrowthBook's "empty experiment rule" case: id "123" → bucket 0.863, variation 2; a
    // number 123 hashes the same.
    for attrs in [id("123"), attributes(&[("id", Kind::NumberValue(123.0))])] {
        let a = client
            .assign(authed(
                pb::AssignRequest {
                    experiment_key: "feature".into(),
                    attributes: attrs,
                },
                &backend,
            ))
            .await
            .expect("assign")
            .into_inner()
            .assignment
            .expect("assignment");
        assert!(a.in_experiment && a.hash_used);
        assert_eq!((a.variation_index, a.variation_key.as_str()), (2, "c"));
        assert_eq!(a.hash_value, 0.863);
        assert_eq!(
            (a.hash_attribute.as_str(), a.hash_attribute_value.as_str()),
            ("id", "123")
        );
        assert_eq!(a.outcome, pb::AssignmentOutcome::Assigned as i32);
    }
    let err = client
        .assign(pb::AssignRequest {
            experiment_key: "missing".into(),
            attributes: id("1"),
        })
        .await
        .expect_err("unknown");
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(reason_of(&err).as_deref(), Some("EXPERIMENT_NOT_FOUND"));

    // A running experiment keeps its users unless forced.
    let err = client
        .update_experiment(authed(
            pb::UpdateExperimentRequest {
                request_id: "u-1".into(),
                spec: Some(spec("feature", &[("a", 0.2), ("b", 0.3), ("c", 0.5)])),
                force: false,
            },
            &admin,
        ))
        .await
        .expect_err("would move users");
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(reason_of(&err).as_deref(), Some("WOULD_MOVE_USERS"));

    // Every running experiment at once.
    let mut per_variant = [0u64; 3];
    for i in 0..300 {
        let all = client
            .assign_batch(authed(
                pb::AssignBatchRequest {
                    experiment_keys: vec![],
                    attributes: id(&format!("u{i}")),
                },
                &backend,
            ))
            .await
            .expect("batch")
            .into_inner()
            .assignments;
        assert_eq!(all.len(), 1);
        per_variant[usize::try_from(all[0].variation_index).expect("index")] += 1;
    }
    per_variant[2] += 1; // "123"
    let exposures = || async {
        ch.client
            .query("SELECT count() FROM abtesting_exposures")
            .fetch_one::<u64>()
            .await
            .expect("count")
    };
    // 300 users and "123" — assigned twice above, queued once: the writer starts inserts in
    // the order exposures were queued, so a queued repeat would have gone in one of the first,
    // finished long before the last of the 300 others.
    eventually("301 exposures", || async {
        (exposures().await == 301).then_some(())
    })
    .await;
    let of_123 = ch
        .client
        .query("SELECT count() FROM abtesting_exposures WHERE user_id = '123'")
        .fetch_one::<u64>()
        .await
        .expect("count");
    assert_eq!(of_123, 1);

    // Conversions after exposure, as the analytics service records them.
    ch.client
        .query(
            "INSERT INTO analytics_events (event_id, name, user_id, time, date, source, ingested_at) \
             SELECT concat('e', toString(number)), 'purchase', concat('u', toString(number)), \
             now() + 60, toDate(now() + 60), 'client', now() FROM system.numbers \
             WHERE number % 4 = 0 LIMIT 300",
        )
        .execute()
        .await
        .expect("events");
    let r = client
        .get_results(authed(
            pb::GetResultsRequest {
                experiment_key: "feature".into(),
            },
            &admin,
        ))
        .await
        .expect("results")
        .into_inner();
    assert_eq!(
        r.users.iter().map(|u| u.users).collect::<Vec<_>>(),
        per_variant.to_vec()
    );
    assert!(r.srm.expect("srm").computed);
    assert_eq!(r.metrics.len(), 2);
    let conversion = &r.metrics[0];
    assert_eq!(conversion.metric, "purchase");
    let converted: f64 = conversion
        .variants
        .iter()
        .map(|v| v.mean * v.users as f64)
        .sum();
    assert!((converted - 75.0).abs() < 1e-6, "{converted}");
    assert!(conversion.variants[0].lift.is_none());
    for v in &conversion.variants[1..] {
        let lift = v.lift.expect("lift");
        assert!(lift.ci_low < lift.relative && lift.relative < lift.ci_high);
        assert!((0.0..=1.0).contains(&lift.p_value));
        assert!(lift.chance_to_beat_control > 0.0);
    }
    assert_eq!(r.metrics[1].metric, "revenue");
    assert_eq!(r.metrics[1].variants[1].no_lift_reason, "ZERO_CONTROL_MEAN");

    // Flags: a force rule with conditions, then the experiment.
    client
        .upsert_flag(authed(
            pb::UpsertFlagRequest {
                request_id: "f-1".into(),
                flag: Some(pb::Flag {
                    key: "new-checkout".into(),
                    environment: String::new(),
                    default_value_json: "false".into(),
                    rules: vec![
                        pb::Rule {
                            conditions: vec![pb::Condition {
                                attribute: "country".into(),
                                op: pb::ConditionOp::In as i32,
                                value_json: r#"["SG","MY"]"#.into(),
                            }],
                            kind: Some(pb::rule::Kind::Force(pb::ForceRule {
                                value_json: "true".into(),
                            })),
                        },
                        pb::Rule {
                            conditions: vec![],
                            kind: Some(pb::rule::Kind::Experiment(pb::ExperimentRule {
                                experiment_key: "feature".into(),
                                values_json: vec!["\"A\"".into(), "\"B\"".into(), "\"C\"".into()],
                            })),
                        },
                    ],
                }),
            },
            &admin,
        ))
        .await
        .expect("upsert flag");
    let evaluate = |attrs| {
        let mut client = client.clone();
        async move {
            client
                .evaluate_flags(pb::EvaluateFlagsRequest {
                    attributes: attrs,
                    environment: String::new(),
                })
                .await
                .expect("evaluate")
                .into_inner()
                .flags
        }
    };
    let sg = evaluate(attributes(&[
        ("id", Kind::StringValue("123".into())),
        ("country", Kind::StringValue("SG".into())),
    ]))
    .await;
    assert_eq!(sg.len(), 1);
    assert_eq!(
        (sg[0].value_json.as_str(), sg[0].source, sg[0].rule_index),
        ("true", pb::FlagSource::Force as i32, 0)
    );
    let us = evaluate(attributes(&[
        ("id", Kind::StringValue("123".into())),
        ("country", Kind::StringValue("US".into())),
    ]))
    .await;
    assert_eq!(
        (us[0].value_json.as_str(), us[0].source, us[0].rule_index),
        ("\"C\"", pb::FlagSource::Experiment as i32, 1)
    );
    assert_eq!(
        us[0].assignment.as_ref().expect("assignment").hash_value,
        0.863
    );

    stop.cancel();
    task.await.expect("join").expect("clean stop");
}
