//! Experiments through their lifecycle on PostgreSQL: validation, refusals with their codes,
//! idempotent retries, the cache across replicas, and flags.

use serde_json::json;
use titan_abtesting::{
    app::AbError,
    domain::{
        Outcome, Source, Status,
        experiment::{Action, Namespace},
        flag::{Condition, FeatureFlag, Op, Rule},
    },
};
use titan_kit::{ErrorCode, ServiceError};

use crate::{Stores, World, admin, attrs, request_id, service, settings, spec};

fn code(e: &AbError) -> ErrorCode {
    e.code()
}

#[tokio::test]
async fn create_start_pause_stop() {
    let w = World::new(settings()).await;
    let app = &w.app;
    let e = app
        .create_experiment(
            &admin(),
            &request_id(),
            spec("checkout", &[("a", 0.5), ("b", 0.5)]),
        )
        .await
        .expect("create");
    assert_eq!(e.status, Status::Draft);
    let user = attrs(json!({"id": "user-1"}));
    assert_eq!(
        app.assign(Some(&service()), "checkout", &user)
            .expect("assign")
            .outcome,
        Outcome::NotRunning
    );
    let e = app
        .change_status(&admin(), &request_id(), "checkout", Action::Start)
        .await
        .expect("start");
    assert_eq!(e.status, Status::Running);
    let a = app
        .assign(Some(&service()), "checkout", &user)
        .expect("assign");
    assert!(a.in_experiment);
    let e = app
        .change_status(&admin(), &request_id(), "checkout", Action::Pause)
        .await
        .expect("pause");
    assert_eq!(e.status, Status::Paused);
    assert!(
        !app.assign(Some(&service()), "checkout", &user)
            .expect("assign")
            .in_experiment
    );
    app.change_status(&admin(), &request_id(), "checkout", Action::Start)
        .await
        .expect("resume");
    let again = app
        .assign(Some(&service()), "checkout", &user)
        .expect("assign");
    assert_eq!(again.variation_index, a.variation_index, "deterministic");
    app.change_status(&admin(), &request_id(), "checkout", Action::Stop)
        .await
        .expect("stop");
    let err = app
        .change_status(&admin(), &request_id(), "checkout", Action::Start)
        .await
        .expect_err("stopped is final");
    assert_eq!(code(&err), ErrorCode::FailedPrecondition);
    assert_eq!(err.reason(), Some("INVALID_TRANSITION"));
    // The record agrees with the cache.
    let status: String =
        sqlx::query_scalar("SELECT status FROM abtesting_experiments WHERE key = 'checkout'")
            .fetch_one(&w.stores.db.pool)
            .await
            .expect("row");
    assert_eq!(status, "stopped");
}

#[tokio::test]
async fn refusals_and_their_codes() {
    let w = World::new(settings()).await;
    let app = &w.app;
    let bad = [
        spec("x", &[("a", 0.7), ("b", 0.6)]),
        spec("x", &[("a", 1.0)]),
        {
            let mut s = spec("x", &[("a", 0.5), ("b", 0.5)]);
            s.coverage = Some(1.5);
            s
        },
        {
            let mut s = spec("x", &[("a", 0.5), ("b", 0.5)]);
            s.coverage = Some(-0.1);
            s
        },
        {
            let mut s = spec("x", &[("a", 0.5), ("b", 0.5)]);
            s.namespace = Some(Namespace {
                id: "ns".into(),
                start: 0.5,
                end: 0.5,
            });
            s
        },
    ];
    for raw in bad {
        let err = app
            .create_experiment(&admin(), &request_id(), raw.clone())
            .await
            .expect_err("invalid");
        assert_eq!(code(&err), ErrorCode::InvalidArgument, "{raw:?}: {err}");
    }

    let err = app
        .assign(Some(&service()), "nope", &attrs(json!({"id": "1"})))
        .expect_err("unknown");
    assert_eq!(code(&err), ErrorCode::NotFound);
    let err = app
        .change_status(&admin(), &request_id(), "nope", Action::Start)
        .await
        .expect_err("unknown");
    assert_eq!(code(&err), ErrorCode::NotFound);
    let err = app
        .update_experiment(
            &admin(),
            &request_id(),
            spec("nope", &[("a", 0.5), ("b", 0.5)]),
            false,
        )
        .await
        .expect_err("unknown");
    assert_eq!(code(&err), ErrorCode::NotFound);

    app.create_experiment(
        &admin(),
        &request_id(),
        spec("x", &[("a", 0.5), ("b", 0.5)]),
    )
    .await
    .expect("create");
    let err = app
        .create_experiment(
            &admin(),
            &request_id(),
            spec("x", &[("a", 0.5), ("b", 0.5)]),
        )
        .await
        .expect_err("exists");
    assert_eq!(code(&err), ErrorCode::AlreadyExists);

    // A draft can change freely; a running experiment cannot move its users unless forced.
    app.update_experiment(
        &admin(),
        &request_id(),
        spec("x", &[("a", 0.4), ("b", 0.6)]),
        false,
    )
    .await
    .expect("draft change");
    app.change_status(&admin(), &request_id(), "x", Action::Start)
        .await
        .expect("start");
    let err = app
        .update_experiment(
            &admin(),
            &request_id(),
            spec("x", &[("a", 0.5), ("b", 0.5)]),
            false,
        )
        .await
        .expect_err("would move users");
    assert_eq!(code(&err), ErrorCode::FailedPrecondition);
    assert_eq!(err.reason(), Some("WOULD_MOVE_USERS"));
    let mut reseeded = spec("x", &[("a", 0.4), ("b", 0.6)]);
    reseeded.seed = "other".into();
    let err = app
        .update_experiment(&admin(), &request_id(), reseeded, false)
        .await
        .expect_err("seed moves users");
    assert!(err.to_string().contains("seed"), "{err}");
    let e = app
        .update_experiment(
            &admin(),
            &request_id(),
            spec("x", &[("a", 0.5), ("b", 0.5)]),
            true,
        )
        .await
        .expect("forced");
    assert_eq!(e.spec.weights(), vec![0.5, 0.5]);
    assert_eq!(
        app.experiment("x").expect("cached").spec.weights(),
        vec![0.5, 0.5]
    );
}

#[tokio::test]
async fn retries_with_the_same_request_id_replay() {
    let w = World::new(settings()).await;
    let app = &w.app;
    let id = request_id();
    let raw = spec("retry", &[("a", 0.5), ("b", 0.5)]);
    let first = app
        .create_experiment(&admin(), &id, raw.clone())
        .await
        .expect("create");
    let again = app
        .create_experiment(&admin(), &id, raw)
        .await
        .expect("replay");
    assert_eq!(first, again);
    let err = app
        .create_experiment(&admin(), &id, spec("retry", &[("a", 0.2), ("b", 0.8)]))
        .await
        .expect_err("same id, other body");
    assert_eq!(err.reason(), Some("REQUEST_ID_REUSED"));
    let start = request_id();
    app.change_status(&admin(), &start, "retry", Action::Start)
        .await
        .expect("start");
    app.change_status(&admin(), &start, "retry", Action::Start)
        .await
        .expect("replayed start");
}

#[tokio::test]
async fn another_replica_sees_changes_after_a_refresh() {
    let stores = Stores::new().await;
    let (a, _wa, _) = stores.replica(settings());
    let (b, _wb, _) = stores.replica(settings());
    a.create_experiment(
        &admin(),
        &request_id(),
        spec("shared", &[("a", 0.5), ("b", 0.5)]),
    )
    .await
    .expect("create");
    a.change_status(&admin(), &request_id(), "shared", Action::Start)
        .await
        .expect("start");
    // B has not reloaded yet: its copy is at most one refresh interval old.
    assert!(
        b.assign(Some(&service()), "shared", &attrs(json!({"id": "u"})))
            .is_err()
    );
    b.refresh().await.expect("refresh");
    for i in 0..50 {
        let user = attrs(json!({ "id": format!("user-{i}") }));
        assert_eq!(
            a.assign(Some(&service()), "shared", &user).expect("a"),
            b.assign(Some(&service()), "shared", &user).expect("b"),
            "replicas agree"
        );
    }
    b.change_status(&admin(), &request_id(), "shared", Action::Pause)
        .await
        .expect("pause through b");
    a.refresh().await.expect("refresh");
    assert_eq!(
        a.experiment("shared").expect("known").status,
        Status::Paused
    );
}

#[tokio::test]
async fn flags_evaluate_rules_in_order() {
    let w = World::new(settings()).await;
    let app = &w.app;
    let mut three = spec("feature", &[("a", 0.0), ("b", 0.0), ("c", 0.0)]);
    three.hash_version = 1;
    app.create_experiment(&admin(), &request_id(), three)
        .await
        .expect("create");
    app.change_status(&admin(), &request_id(), "feature", Action::Start)
        .await
        .expect("start");
    let flag = FeatureFlag {
        key: "new-checkout".into(),
        environment: String::new(),
        default_value: json!(false),
        rules: vec![
            Rule::Force {
                conditions: vec![
                    Condition {
                        attribute: "country".into(),
                        op: Op::In,
                        operand: json!(["SG", "MY"]),
                    },
                    Condition {
                        attribute: "appVersion".into(),
                        op: Op::VersionGte,
                        operand: json!("2.1.0"),
                    },
                ],
                value: json!(true),
            },
            Rule::Experiment {
                conditions: vec![Condition {
                    attribute: "beta".into(),
                    op: Op::Eq,
                    operand: json!(true),
                }],
                experiment_key: "feature".into(),
                values: vec![json!("a"), json!("b"), json!("c")],
            },
            Rule::Rollout {
                conditions: vec![],
                value: json!("rolled"),
                coverage: 1.0,
                hash_attribute: "id".into(),
                seed: String::new(),
                hash_version: 2,
            },
        ],
    };
    let saved = app
        .upsert_flag(&admin(), &request_id(), flag)
        .await
        .expect("upsert");
    assert_eq!(saved.environment, "production");
    let eval = |a| {
        let all = app.evaluate_flags(Some(&service()), "", &a);
        assert_eq!(all.len(), 1);
        all.into_iter().next().expect("one flag")
    };
    let e = eval(attrs(
        json!({"id": "123", "country": "SG", "appVersion": "2.10.1"}),
    ));
    assert_eq!(
        (e.value, e.source, e.rule),
        (json!(true), Source::Force, Some(0))
    );
    let e = eval(attrs(
        json!({"id": "123", "country": "SG", "appVersion": "2.0.9", "beta": true}),
    ));
    assert_eq!(
        (e.value, e.source, e.rule),
        (json!("c"), Source::Experiment, Some(1))
    );
    let e = eval(attrs(json!({"id": "123", "country": "US"})));
    assert_eq!(
        (e.value, e.source, e.rule),
        (json!("rolled"), Source::Rollout, Some(2))
    );
    let e = eval(attrs(json!({"country": "US"})));
    assert_eq!(
        (e.value, e.source, e.rule),
        (json!(false), Source::Default, None)
    );
    assert!(
        app.evaluate_flags(Some(&service()), "staging", &attrs(json!({})))
            .is_empty()
    );

    let broken = FeatureFlag {
        key: "broken".into(),
        environment: "production".into(),
        default_value: json!(0),
        rules: vec![Rule::Experiment {
            conditions: vec![],
            experiment_key: "missing".into(),
            values: vec![json!(1), json!(2)],
        }],
    };
    let err = app
        .upsert_flag(&admin(), &request_id(), broken)
        .await
        .expect_err("unknown experiment");
    assert_eq!(code(&err), ErrorCode::InvalidArgument);
}
