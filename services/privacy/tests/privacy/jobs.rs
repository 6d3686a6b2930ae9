//! Jobs end to end through kit's participant: waiting for every service, the export object and
//! its expiry, the erasure's scrubbing, failures, abandoned leases and idempotency.

use std::time::Duration;

use serde_json::{Value, json};
use titan_kit::{
    ErrorCode, ServiceError,
    objects::{ObjectError, ObjectKey},
    privacy::Erasure,
    testing::eventually,
};
use titan_privacy::{
    app::PrivacyError,
    domain::{JobKind, JobState},
};

use crate::{Fake, LONG, TTL, World, no_shutdown, officer, user};

fn states(view: &titan_privacy::app::JobView) -> Vec<(String, bool)> {
    view.job
        .tasks
        .iter()
        .map(|t| (t.service.clone(), t.done))
        .collect()
}

#[tokio::test]
async fn an_export_waits_for_every_service_then_is_one_object_behind_a_url_until_it_expires() {
    let w = World::new().await;
    let (alice, bob) = (user(), user());
    let orders = Fake::with(&[
        (&alice, json!({"order": "o-1", "amount": 1250})),
        (&bob, json!({"order": "o-2", "amount": 990})),
    ]);
    let points = Fake::with(&[(&alice, json!({"points": 40}))]);
    let orders_replica = w.participant("orders", &orders, LONG).await;
    let points_replica = w.participant("points", &points, LONG).await;

    let started = w
        .app
        .request(&officer(), JobKind::Export, "r-1", &alice)
        .await
        .expect("export");
    assert_eq!(started.job.state, JobState::Running);
    assert_eq!(started.job.subject, alice);
    assert_eq!(started.job.requested_by, "dpo-1");
    assert_eq!(
        states(&started),
        vec![("orders".to_owned(), false), ("points".to_owned(), false)]
    );

    assert_eq!(orders_replica.work(&no_shutdown()).await.expect("work"), 1);
    // One service answered: the job still waits, and nothing is gathered yet.
    assert_eq!(w.app.finish().await.expect("finish"), 0);
    assert!(w.gauge("titan_privacy_oldest_running_job_seconds") > 0.0);
    let half = w.app.get(&started.job.id.to_string()).await.expect("get");
    assert_eq!(half.job.state, JobState::Running);
    assert_eq!(
        states(&half),
        vec![("orders".to_owned(), true), ("points".to_owned(), false)]
    );
    assert_eq!(half.export_url, None);

    assert_eq!(points_replica.work(&no_shutdown()).await.expect("work"), 1);
    assert_eq!(w.app.finish().await.expect("finish"), 1);
    let done = w.app.get(&started.job.id.to_string()).await.expect("get");
    assert_eq!(done.job.state, JobState::Completed);
    w.app.finish().await.expect("finish");
    assert_eq!(w.gauge("titan_privacy_oldest_running_job_seconds"), 0.0);
    let (url, until) = done.export_url.clone().expect("a download url");
    assert_eq!(
        until,
        w.clock.now() + chrono::Duration::from_std(TTL).expect("ttl")
    );

    let body: Value = reqwest::get(&url)
        .await
        .expect("download")
        .error_for_status()
        .expect("200")
        .json()
        .await
        .expect("json");
    assert_eq!(body["userId"], json!(alice));
    assert_eq!(body["jobId"], json!(started.job.id.to_string()));
    assert_eq!(
        body["services"],
        json!({
            "orders": {"records": [{"order": "o-1", "amount": 1250}]},
            "points": {"records": [{"points": 40}]},
        })
    );
    assert!(
        !body.to_string().contains(&bob),
        "bob's data is in alice's export"
    );
    // The parts are gone from PostgreSQL once joined.
    let (parts,): (i64,) = sqlx::query_as("SELECT count(*) FROM titan_privacy_exports")
        .fetch_one(&w.db.pool)
        .await
        .expect("count");
    assert_eq!(parts, 0);

    // Past its lifetime the object is deleted and the job says so.
    w.clock
        .advance(chrono::Duration::from_std(TTL).expect("ttl"));
    assert_eq!(w.app.finish().await.expect("finish"), 1);
    let expired = w.app.get(&started.job.id.to_string()).await.expect("get");
    assert_eq!(expired.job.state, JobState::Expired);
    assert_eq!(expired.export_url, None);
    let key = ObjectKey::parse(&format!("privacy/exports/{}.json", started.job.id)).expect("key");
    assert!(matches!(
        w.objects.storage.head(&key).await,
        Err(ObjectError::NotFound { .. })
    ));
}

#[tokio::test]
async fn an_erasure_completes_after_a_failed_service_recovers_and_leaves_only_the_pseudonym() {
    let w = World::new().await;
    let (alice, bob) = (user(), user());
    let orders = Fake::with(&[
        (&alice, json!({"order": "o-1"})),
        (&alice, json!({"order": "o-3"})),
        (&bob, json!({"order": "o-2"})),
    ]);
    let points = Fake::with(&[(&alice, json!({"points": 40}))]);
    // A short lease, so the failed task is offered again within the test.
    let lease = Duration::from_millis(200);
    let orders_replica = w.participant("orders", &orders, lease).await;
    let points_replica = w.participant("points", &points, lease).await;

    // An earlier export of alice's, completed: the erasure deletes its object too.
    let export = w
        .app
        .request(&officer(), JobKind::Export, "r-export", &alice)
        .await
        .expect("export");
    orders_replica.work(&no_shutdown()).await.expect("work");
    points_replica.work(&no_shutdown()).await.expect("work");
    w.app.finish().await.expect("finish");
    assert!(
        w.app
            .get(&export.job.id.to_string())
            .await
            .expect("get")
            .export_url
            .is_some()
    );

    // Kit's idempotency keys of the orders service: alice's own, a checkout's answer that
    // names her, and one that names bob.
    for (caller, request, answer) in [
        (alice.as_str(), "a-1", r#"{"order": "o-1"}"#.to_owned()),
        ("checkout", "c-1", format!("{{\"buyer\": \"{alice}\"}}")),
        ("checkout", "c-2", format!("{{\"buyer\": \"{bob}\"}}")),
    ] {
        sqlx::query(
            "INSERT INTO titan_idempotency (service, method, user_id, request_id, request_hash, response)
             VALUES ('orders', 'Buy', $1, $2, '\\x00', convert_to($3, 'UTF8'))",
        )
        .bind(caller)
        .bind(request)
        .bind(answer)
        .execute(&w.db.pool)
        .await
        .expect("idempotency key");
    }
    let erasure = w
        .app
        .request(&officer(), JobKind::Erasure, "r-erase", &alice)
        .await
        .expect("erasure");
    points
        .failing
        .store(true, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(orders_replica.work(&no_shutdown()).await.expect("work"), 1);
    // The failure is recorded on the task, which stays pending; the job waits.
    assert_eq!(points_replica.work(&no_shutdown()).await.expect("work"), 0);
    assert_eq!(w.app.finish().await.expect("finish"), 0);
    let waiting = w.app.get(&erasure.job.id.to_string()).await.expect("get");
    let points_task = &waiting.job.tasks[1];
    assert_eq!(
        (
            points_task.service.as_str(),
            points_task.done,
            points_task.attempts
        ),
        ("points", false, 1)
    );
    assert_eq!(
        points_task.last_error.as_deref(),
        Some("the test's store is down")
    );

    points
        .failing
        .store(false, std::sync::atomic::Ordering::SeqCst);
    eventually(
        "the points task to be taken again once its lease ran out",
        || async { (points_replica.work(&no_shutdown()).await.expect("work") == 1).then_some(()) },
    )
    .await;
    assert_eq!(w.app.finish().await.expect("finish"), 1);

    let done = w.app.get(&erasure.job.id.to_string()).await.expect("get");
    assert_eq!(done.job.state, JobState::Completed);
    assert!(done.job.subject.starts_with("p_") && done.job.subject.len() == 34);
    let reports: Vec<_> = done
        .job
        .tasks
        .iter()
        .map(|t| {
            (
                t.service.as_str(),
                t.attempts,
                t.report.clone(),
                t.last_error.clone(),
            )
        })
        .collect();
    let erased = |records, keys| {
        Some(
            Erasure::default()
                .removed("records", records)
                .removed("idempotency keys", keys),
        )
    };
    assert_eq!(
        reports,
        vec![
            ("orders", 1, erased(2, 2), None),
            ("points", 2, erased(1, 0), None)
        ]
    );
    let (kept,): (String,) =
        sqlx::query_as("SELECT request_id FROM titan_idempotency WHERE service = 'orders'")
            .fetch_one(&w.db.pool)
            .await
            .expect("bob's key is the one left");
    assert_eq!(kept, "c-2");
    // The services forgot alice and nobody else; the privacy tables and the bucket too.
    assert!(!orders.records.lock().expect("lock").contains_key(&alice));
    assert!(orders.records.lock().expect("lock").contains_key(&bob));
    assert_eq!(w.rows_mentioning(&alice).await, 0);
    let earlier = w.app.get(&export.job.id.to_string()).await.expect("get");
    assert_eq!(
        (
            earlier.job.state,
            earlier.job.subject.as_str(),
            earlier.export_url
        ),
        (JobState::Expired, done.job.subject.as_str(), None)
    );
    let key = ObjectKey::parse(&format!("privacy/exports/{}.json", export.job.id)).expect("key");
    assert!(matches!(
        w.objects.storage.head(&key).await,
        Err(ObjectError::NotFound { .. })
    ));
}

#[tokio::test]
async fn a_task_a_hung_replica_holds_is_taken_by_another_once_its_lease_runs_out() {
    let w = World::new().await;
    let alice = user();
    let orders = Fake::with(&[(&alice, json!({"order": "o-1"}))]);
    let lease = Duration::from_millis(300);
    let hung = w.participant("orders", &orders, lease).await;
    let job = w
        .app
        .request(&officer(), JobKind::Erasure, "r-1", &alice)
        .await
        .expect("erasure");

    orders
        .hanging
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let stuck = tokio::spawn(async move { hung.work(&no_shutdown()).await });
    let id = job.job.id.to_string();
    eventually("the hung replica to hold the task", || async {
        let view = w.app.get(&id).await.expect("get");
        (view.job.tasks[0].attempts == 1).then_some(())
    })
    .await;
    // The replica is killed mid-task; another one starts.
    stuck.abort();
    orders
        .hanging
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let other = w.participant("orders", &orders, lease).await;
    eventually("the other replica to take the task", || async {
        (other.work(&no_shutdown()).await.expect("work") == 1).then_some(())
    })
    .await;
    w.app.finish().await.expect("finish");
    let view = w.app.get(&id).await.expect("get");
    assert_eq!(
        (
            view.job.state,
            view.job.tasks[0].attempts,
            view.job.tasks[0].done
        ),
        (JobState::Completed, 2, true)
    );
}

#[tokio::test]
async fn a_request_is_idempotent_and_a_running_job_is_answered_again() {
    let w = World::new().await;
    let (alice, bob) = (user(), user());
    let orders = Fake::with(&[]);
    let _replica = w.participant("orders", &orders, LONG).await;
    let first = w
        .app
        .request(&officer(), JobKind::Export, "r-1", &alice)
        .await
        .expect("export");
    let replay = w
        .app
        .request(&officer(), JobKind::Export, "r-1", &alice)
        .await
        .expect("replay");
    let again = w
        .app
        .request(&officer(), JobKind::Export, "r-2", &alice)
        .await
        .expect("another request while it runs");
    assert_eq!((replay.job.id, again.job.id), (first.job.id, first.job.id));
    // An erasure is another job, and bob's export another one.
    let erasure = w
        .app
        .request(&officer(), JobKind::Erasure, "r-3", &alice)
        .await
        .expect("erasure");
    let other = w
        .app
        .request(&officer(), JobKind::Export, "r-4", &bob)
        .await
        .expect("bob");
    assert_ne!(erasure.job.id, first.job.id);
    assert_ne!(other.job.id, first.job.id);
    let (jobs,): (i64,) = sqlx::query_as("SELECT count(*) FROM titan_privacy_jobs")
        .fetch_one(&w.db.pool)
        .await
        .expect("count");
    assert_eq!(jobs, 3);

    let reused = w
        .app
        .request(&officer(), JobKind::Export, "r-1", &bob)
        .await
        .expect_err("the same id for another user");
    assert_eq!(
        (reused.code(), reused.reason()),
        (ErrorCode::FailedPrecondition, Some("REQUEST_ID_REUSED"))
    );
}

#[tokio::test]
async fn a_request_before_any_service_registered_is_refused() {
    let w = World::new().await;
    let err = w
        .app
        .request(&officer(), JobKind::Erasure, "r-1", &user())
        .await
        .expect_err("no participants");
    assert!(matches!(err, PrivacyError::NoParticipants));
    assert_eq!(
        (err.code(), err.reason()),
        (ErrorCode::FailedPrecondition, Some("NO_PARTICIPANTS"))
    );
}
