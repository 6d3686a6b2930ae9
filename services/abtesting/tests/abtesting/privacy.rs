//! A user's export and erasure (`titan_kit::privacy`): the export holds exactly their exposures
//! and the flag rules that target them; the erasure moves their exposures to the pseudonym (the
//! analytics service moves their events to the same one), so every experiment's results are
//! what they were, and takes them out of the flags without changing what anyone else gets.

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};
use titan_abtesting::{
    domain::{
        FeatureFlag,
        experiment::Action,
        flag::{Condition, Op, Rule},
    },
    store::privacy::PersonalStore,
};
use titan_kit::{
    privacy::{Erasure, PersonalData, Subject},
    testing::{eventually, mentions, privacy::subject},
};

use crate::{World, admin, attrs, request_id, service, settings, spec};

fn id_is(op: Op, operand: Value) -> Condition {
    Condition {
        attribute: "id".into(),
        op,
        operand,
    }
}

/// The export with each exposure's time checked to lie in `[from, to]` and taken out.
async fn export(p: &PersonalStore, s: &Subject, from: DateTime<Utc>, to: DateTime<Utc>) -> Value {
    let mut doc = p.export(s).await.expect("export");
    for e in doc["exposures"].as_array_mut().expect("exposures") {
        let time = e
            .as_object_mut()
            .and_then(|e| e.remove("time"))
            .and_then(|t| serde_json::from_value::<DateTime<Utc>>(t).ok())
            .expect("an exposure's time");
        assert!(from <= time && time <= to, "{time} within {from}..{to}");
    }
    doc
}

#[tokio::test]
async fn an_erased_user_leaves_every_result_as_it_was_and_is_named_nowhere() {
    let w = World::new(settings()).await;
    let app = &w.app;
    for (key, metric) in [("checkout", "purchase"), ("banner", "click")] {
        let mut raw = spec(key, &[("a", 0.5), ("b", 0.5)]);
        raw.metrics = vec![metric.into()];
        app.create_experiment(&admin(), &request_id(), raw)
            .await
            .expect("create");
        app.change_status(&admin(), &request_id(), key, Action::Start)
            .await
            .expect("start");
    }
    let (a, b) = (
        format!("a-{}", uuid::Uuid::new_v4()),
        format!("b-{}", uuid::Uuid::new_v4()),
    );
    // A beta flag forced for Ann alone, and for Ann and Bob in Singapore.
    app.upsert_flag(
        &admin(),
        &request_id(),
        FeatureFlag {
            key: "beta".into(),
            environment: "production".into(),
            default_value: json!("off"),
            rules: vec![
                Rule::Force {
                    conditions: vec![id_is(Op::Eq, json!(a))],
                    value: json!("ann"),
                },
                Rule::Force {
                    conditions: vec![
                        id_is(Op::In, json!([a, b])),
                        Condition {
                            attribute: "country".into(),
                            op: Op::Eq,
                            operand: json!("SG"),
                        },
                    ],
                    value: json!("sg"),
                },
            ],
        },
    )
    .await
    .expect("flag");

    // Ann sees both experiments, Bob and 20 others the checkout.
    let from = Utc::now() - Duration::seconds(1);
    let mut ann = Vec::new();
    for key in ["checkout", "banner"] {
        ann.push(
            app.assign(Some(&service()), key, &attrs(json!({ "id": a })))
                .expect("assign"),
        );
    }
    let others: Vec<String> = (0..20).map(|i| format!("u{i}")).collect();
    let mut bob = None;
    for user in std::iter::once(&b).chain(&others) {
        let assigned = app
            .assign(Some(&service()), "checkout", &attrs(json!({ "id": user })))
            .expect("assign");
        bob.get_or_insert(assigned);
    }
    let to = Utc::now() + Duration::seconds(1);
    eventually("23 exposures", || async {
        (w.count("SELECT count() FROM abtesting_exposures").await == 23).then_some(())
    })
    .await;
    // Conversions after the exposures: Ann, Bob and every third other user buy; Ann clicks.
    let later = u32::try_from((Utc::now() + Duration::seconds(60)).timestamp()).expect("time");
    let mut converted: Vec<(&str, &str)> = vec![("purchase", &a), ("purchase", &b), ("click", &a)];
    converted.extend(others.iter().step_by(3).map(|u| ("purchase", u.as_str())));
    for (i, (name, user)) in converted.iter().enumerate() {
        w.stores
            .ch
            .client
            .query(
                "INSERT INTO analytics_events (event_id, name, user_id, time, date, source, ingested_at)
                 SELECT ?, ?, ?, toDateTime(?), toDate(toDateTime(?)), 'client', toDateTime(?)",
            )
            .bind(format!("e-{i}"))
            .bind(*name)
            .bind(*user)
            .bind(later)
            .bind(later)
            .bind(later)
            .execute()
            .await
            .expect("event");
    }
    let results = || async {
        let mut all = Vec::new();
        for key in ["checkout", "banner"] {
            all.push(app.results(key).await.expect("results"));
        }
        all
    };
    let before = results().await;
    assert_eq!(before[0].users.iter().map(|v| v.users).sum::<u64>(), 22);
    assert_eq!(before[1].users.iter().map(|v| v.users).sum::<u64>(), 1);

    let p = PersonalStore::new(w.stores.db.pool.clone(), w.stores.ch.client.clone());
    let (sa, sb) = (subject(&a), subject(&b));
    let exposure = |x: &titan_abtesting::domain::Assignment| {
        json!({"experiment_key": x.experiment_key, "variation_index": x.variation_index,
               "variation_key": x.variation_key, "hash_attribute": "id",
               "bucket": x.bucket.expect("hashed"), "cell": "test"})
    };
    // Exposures by experiment: banner, then checkout.
    assert_eq!(
        export(&p, &sa, from, to).await,
        json!({"user_id": a, "exposures": [exposure(&ann[1]), exposure(&ann[0])],
        "flag_targeting": [
            {"flag": "beta", "environment": "production", "rule": 0, "attribute": "id",
             "op": "Eq"},
            {"flag": "beta", "environment": "production", "rule": 1, "attribute": "id",
             "op": "In"},
        ]})
    );
    let bob_export = json!({"user_id": b,
        "exposures": [exposure(bob.as_ref().expect("bob"))],
        "flag_targeting": [{"flag": "beta", "environment": "production", "rule": 1,
                            "attribute": "id", "op": "In"}]});
    assert_eq!(export(&p, &sb, from, to).await, bob_export);

    // The searches below find Ann before her erasure.
    assert_eq!(
        mentions::postgres_in(&w.stores.db.pool, "abtesting", &a).await,
        vec![("abtesting_flags".into(), 1)]
    );
    assert_eq!(
        mentions::clickhouse(&w.stores.ch.client, &a)
            .await
            .into_iter()
            .map(|(t, _)| t)
            .collect::<Vec<_>>(),
        [
            "abtesting_exposures",
            "analytics_events",
            "analytics_user_days"
        ]
    );

    assert_eq!(
        PersonalData::erase(&p, &sa).await.expect("erase"),
        Erasure::default()
            .pseudonymised("exposures", 2)
            .removed("flag targeting conditions", 2)
    );
    // The analytics service erases the same person under the same pseudonym.
    let analytics =
        titan_analytics::store::privacy::PersonalEvents::new(w.stores.ch.client.clone());
    PersonalData::erase(&analytics, &sa)
        .await
        .expect("analytics erase");

    assert_eq!(
        mentions::postgres_in(&w.stores.db.pool, "abtesting", &a).await,
        vec![]
    );
    assert_eq!(mentions::clickhouse(&w.stores.ch.client, &a).await, vec![]);
    let kept: Vec<(String, f64)> = w
        .stores
        .ch
        .client
        .query(
            "SELECT experiment_key, bucket FROM abtesting_exposures WHERE user_id = ?
             ORDER BY experiment_key",
        )
        .bind(&sa.pseudonym)
        .fetch_all()
        .await
        .expect("kept");
    assert_eq!(
        kept,
        vec![("banner".to_owned(), 0.0), ("checkout".to_owned(), 0.0)],
        "kept with the bucket zeroed"
    );
    assert_eq!(results().await, before, "every result as it was");
    // Bob's records are as they were; the rule that names him moved up, Ann's own one gone.
    let mut bob_after = bob_export.clone();
    bob_after["flag_targeting"][0]["rule"] = json!(0);
    assert_eq!(export(&p, &sb, from, to).await, bob_after);
    // Bob keeps his forced value; nobody gets Ann's any more.
    app.refresh().await.expect("refresh");
    let beta = |user: &str| {
        app.evaluate_flags(
            None,
            "production",
            &attrs(json!({"id": user, "country": "SG"})),
        )
        .into_iter()
        .map(|e| e.value)
        .collect::<Vec<_>>()
    };
    assert_eq!(beta(&b), vec![json!("sg")]);
    assert_eq!(beta(&a), vec![json!("off")]);

    assert_eq!(
        PersonalData::erase(&p, &sa).await.expect("erase again"),
        Erasure::default()
            .pseudonymised("exposures", 0)
            .removed("flag targeting conditions", 0)
    );
    assert_eq!(
        export(&p, &sa, from, to).await,
        json!({"user_id": a, "exposures": [], "flag_targeting": []})
    );
    assert_eq!(results().await, before);
}
