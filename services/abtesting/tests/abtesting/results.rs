//! Exposures in ClickHouse and results computed from them and from `analytics_events`:
//! batching, dropping instead of waiting, per-variant aggregates against a hand count, and
//! the sample-ratio check on a skewed split.

use chrono::{Duration, Utc};
use clickhouse::Row;
use serde::Serialize;
use serde_json::json;
use titan_abtesting::{
    App,
    app::MetricKind,
    config::Settings,
    domain::{experiment::Action, stats},
    store::clickhouse::WriterLimits,
};
use titan_kit::testing::eventually;
use tokio_util::sync::CancellationToken;

use crate::{Stores, World, admin, attrs, request_id, service, settings, spec};

#[derive(Debug, Row, Serialize)]
struct Event {
    event_id: String,
    name: String,
    user_id: String,
    time: u32,
    time_ms: u16,
    date: u16,
    order_id: String,
    revenue: i64,
    currency: String,
    source: String,
    ingested_at: u32,
}

fn event(name: &str, user: &str, at: chrono::DateTime<Utc>, order: Option<(&str, i64)>) -> Event {
    let seconds = u32::try_from(at.timestamp()).expect("time");
    Event {
        event_id: uuid::Uuid::new_v4().to_string(),
        name: name.into(),
        user_id: user.into(),
        time: seconds,
        time_ms: 0,
        date: u16::try_from(at.timestamp() / 86_400).expect("date"),
        order_id: order.map(|o| o.0.to_owned()).unwrap_or_default(),
        revenue: order.map_or(0, |o| o.1),
        currency: if order.is_some() {
            "USD".into()
        } else {
            String::new()
        },
        source: "client".into(),
        ingested_at: seconds,
    }
}

#[tokio::test]
async fn exposures_reach_clickhouse_in_batches() {
    let w = World::new(settings()).await;
    let app = &w.app;
    app.create_experiment(
        &admin(),
        &request_id(),
        spec("batched", &[("a", 0.5), ("b", 0.5)]),
    )
    .await
    .expect("create");
    app.change_status(&admin(), &request_id(), "batched", Action::Start)
        .await
        .expect("start");
    // 250 users: two full batches of 100 and a partial one flushed by time.
    for i in 0..250 {
        app.assign(
            Some(&service()),
            "batched",
            &attrs(json!({ "id": format!("u{i}") })),
        )
        .expect("assign");
    }
    // Not in the experiment: no exposure.
    app.assign(Some(&service()), "batched", &attrs(json!({})))
        .expect("assign");
    eventually("250 exposures", || async {
        (w.count("SELECT count() FROM abtesting_exposures").await == 250).then_some(())
    })
    .await;
    let (users, cells): (u64, u64) = w
        .stores
        .ch
        .client
        .query("SELECT uniqExact(user_id), uniqExact(cell) FROM abtesting_exposures WHERE experiment_key = 'batched'")
        .fetch_one()
        .await
        .expect("query");
    assert_eq!((users, cells), (250, 1));
}

/// An exposure puts a user in an experiment's results, so only a caller who may speak for
/// that user logs one: a service for anyone, a user for themselves. Anonymous callers and
/// users naming someone else still get their answer.
#[tokio::test]
async fn exposures_are_logged_only_for_users_the_caller_speaks_for() {
    // One insert at a time: exposures are written in the order they were logged.
    let w = World::with_limits(
        settings(),
        WriterLimits {
            inserts_in_flight: 1,
            ..WriterLimits::default()
        },
    )
    .await;
    let app = &w.app;
    app.create_experiment(
        &admin(),
        &request_id(),
        spec("vouch", &[("a", 0.5), ("b", 0.5)]),
    )
    .await
    .expect("create");
    app.change_status(&admin(), &request_id(), "vouch", Action::Start)
        .await
        .expect("start");
    let user = |id: &str| attrs(json!({ "id": id }));
    let u11 = titan_kit::testing::caller("u11", &[]);
    for i in 0..10 {
        let a = app
            .assign(None, "vouch", &user(&format!("u{i}")))
            .expect("anonymous");
        assert!(a.in_experiment, "the anonymous caller still gets a variant");
    }
    app.assign_batch(None, &["vouch".into()], &user("u10"))
        .expect("anonymous batch");
    app.assign(Some(&u11), "vouch", &user("u12"))
        .expect("someone else");
    app.assign(Some(&u11), "vouch", &user("u11"))
        .expect("themselves");
    app.assign(Some(&service()), "vouch", &user("u13"))
        .expect("the web backend");
    // Once u13's exposure is there, any logged before it would be too.
    eventually("u13's exposure", || async {
        (w.count("SELECT count() FROM abtesting_exposures WHERE user_id = 'u13'")
            .await
            == 1)
            .then_some(())
    })
    .await;
    let users: Vec<String> = w
        .stores
        .ch
        .client
        .query("SELECT user_id FROM abtesting_exposures ORDER BY user_id")
        .fetch_all()
        .await
        .expect("query");
    assert_eq!(users, ["u11", "u13"]);
}

#[tokio::test]
async fn a_full_queue_drops_exposures_instead_of_waiting() {
    let stores = Stores::new().await;
    // The writer never runs: the queue (1024 places) fills and stays full.
    let (app, _writer, metrics) = stores.replica_with(
        Settings {
            exposure_queue_rows: 1024,
            ..settings()
        },
        WriterLimits::default(),
    );
    app.create_experiment(
        &admin(),
        &request_id(),
        spec("flood", &[("a", 0.5), ("b", 0.5)]),
    )
    .await
    .expect("create");
    app.change_status(&admin(), &request_id(), "flood", Action::Start)
        .await
        .expect("start");
    for i in 0..3000 {
        assert!(
            app.assign(
                Some(&service()),
                "flood",
                &attrs(json!({ "id": format!("u{i}") }))
            )
            .expect("assign")
            .in_experiment
        );
    }
    // The loop never yields, so nothing was written: the first 1024 wait in the queue and the
    // rest were dropped without Assign ever waiting.
    assert_eq!(metrics.dropped_count(), 3000 - 1024);
}

#[tokio::test]
async fn results_aggregate_exposures_and_events() {
    // The loop below never yields, so the queue must hold every exposure until the writer runs.
    let w = World::new(Settings {
        exposure_batch_size: 1000,
        ..settings()
    })
    .await;
    let app = &w.app;
    let mut raw = spec("results", &[("control", 0.2), ("b", 0.3), ("c", 0.5)]);
    raw.metrics = vec!["purchase".into()];
    app.create_experiment(&admin(), &request_id(), raw)
        .await
        .expect("create");
    app.change_status(&admin(), &request_id(), "results", Action::Start)
        .await
        .expect("start");
    let n = 2000;
    let mut variant = Vec::with_capacity(n);
    for i in 0..n {
        let a = app
            .assign(
                Some(&service()),
                "results",
                &attrs(json!({ "id": format!("user-{i}") })),
            )
            .expect("assign");
        assert!(a.in_experiment);
        variant.push(a.variation_index);
    }
    let again = |app: &App, i: usize| {
        app.assign(
            Some(&service()),
            "results",
            &attrs(json!({ "id": format!("user-{i}") })),
        )
        .expect("assign");
    };
    // Seen again on the same replica: not queued again.
    for i in 0..100 {
        again(app, i);
    }
    assert_eq!(w.metrics.deduplicated_count(), 100);
    // Seen again on another replica, which remembers only its own: a second row each, and
    // still counted once, in the variant of the first exposure.
    let (other, writer, _) = w.stores.replica(Settings {
        exposure_batch_size: 1000,
        ..settings()
    });
    other.refresh().await.expect("refresh");
    let stop = CancellationToken::new();
    let _stop_on_drop = stop.clone().drop_guard();
    tokio::spawn(writer.run(stop));
    for i in 0..100 {
        again(&other, i);
    }
    eventually("all exposures", || async {
        (w.count("SELECT count() FROM abtesting_exposures").await == 2100).then_some(())
    })
    .await;

    let after = Utc::now() + Duration::seconds(120);
    let before = Utc::now() - Duration::days(1);
    let mut events = Vec::new();
    let mut conversions = [0u64; 3];
    let mut revenue = [(0.0f64, 0.0f64); 3];
    for (i, v) in variant.iter().enumerate() {
        let user = format!("user-{i}");
        if i % 7 == 0 {
            events.push(event("purchase", &user, after, None));
            events.push(event("purchase", &user, after, None));
            conversions[*v] += 1;
        } else if i % 11 == 0 {
            // Before the user was exposed: not a conversion.
            events.push(event("purchase", &user, before, None));
        }
        if i % 5 == 0 {
            let amount = i64::try_from(i % 13 + 1).expect("small") * 100;
            let order = format!("order-{i}");
            // The same order from the client and from the bus: counted once.
            events.push(event("purchase", &user, after, Some((&order, amount))));
            events.push(event(
                "flashsale.purchased",
                &user,
                after,
                Some((&order, amount)),
            ));
            #[allow(clippy::cast_precision_loss)]
            let x = amount as f64;
            revenue[*v].0 += x;
            revenue[*v].1 += x * x;
            if i % 7 != 0 {
                conversions[*v] += 1;
            }
        }
    }
    events.push(event(
        "purchase",
        "not-exposed",
        after,
        Some(("order-x", 999)),
    ));
    let mut insert = w
        .stores
        .ch
        .client
        .insert::<Event>("analytics_events")
        .await
        .expect("insert");
    for e in &events {
        insert.write(e).await.expect("write");
    }
    insert.end().await.expect("end");

    let r = app.results("results").await.expect("results");
    let users: Vec<u64> = (0..3)
        .map(|k| variant.iter().filter(|v| **v == k).count() as u64)
        .collect();
    assert_eq!(r.users.iter().map(|u| u.users).collect::<Vec<_>>(), users);
    let srm = r.srm.expect("srm computed");
    assert_eq!(
        Some(srm),
        stats::sample_ratio_mismatch(&users, &[0.2, 0.3, 0.5])
    );
    assert_eq!(r.metrics.len(), 2);
    let conversion = &r.metrics[0];
    assert_eq!(conversion.kind, MetricKind::Conversion("purchase".into()));
    let rev = &r.metrics[1];
    assert_eq!(rev.kind, MetricKind::Revenue);
    for k in 0..3 {
        let c = conversion.variants[k].sample;
        #[allow(clippy::cast_precision_loss)]
        let converted = conversions[k] as f64;
        assert_eq!(
            (c.n, c.sum, c.sum_sq),
            (users[k], converted, converted),
            "variant {k}"
        );
        let s = rev.variants[k].sample;
        assert_eq!(
            (s.n, s.sum, s.sum_sq),
            (users[k], revenue[k].0, revenue[k].1),
            "variant {k}"
        );
    }
    assert!(conversion.variants[0].lift.is_none(), "control has no lift");
    for k in 1..3 {
        let expected = stats::relative_lift(
            &conversion.variants[0].sample,
            &conversion.variants[k].sample,
            0.95,
        )
        .expect("lift");
        assert_eq!(conversion.variants[k].lift, Some(Ok(expected)));
        assert!(expected.chance_to_beat_control > 0.0, "bayesian is on");
    }
}

#[tokio::test]
async fn a_skewed_split_is_flagged() {
    let w = World::new(settings()).await;
    for key in ["skewed", "fair"] {
        w.app
            .create_experiment(
                &admin(),
                &request_id(),
                spec(key, &[("a", 0.5), ("b", 0.5)]),
            )
            .await
            .expect("create");
    }
    for (key, first) in [("skewed", 5300), ("fair", 5020)] {
        w.stores
            .ch
            .client
            .query(&format!(
                "INSERT INTO abtesting_exposures (experiment_key, variation_index, variation_key, \
                 hash_attribute, user_id, bucket, time, time_ms, date, cell) \
                 SELECT '{key}', if(number < {first}, 0, 1), if(number < {first}, 'a', 'b'), 'id', \
                 concat('u', toString(number)), 0.5, toDateTime(1764000000), 0, \
                 toDate(toDateTime(1764000000)), 'test' FROM system.numbers LIMIT 10000"
            ))
            .execute()
            .await
            .expect("insert");
    }
    let skewed = w.app.results("skewed").await.expect("results");
    assert_eq!(
        skewed.users.iter().map(|u| u.users).collect::<Vec<_>>(),
        vec![5300, 4700]
    );
    assert!(skewed.srm_mismatch, "{:?}", skewed.srm);
    assert!(skewed.srm.expect("srm").p_value < 0.001);
    let fair = w.app.results("fair").await.expect("results");
    assert!(!fair.srm_mismatch, "{:?}", fair.srm);
}
