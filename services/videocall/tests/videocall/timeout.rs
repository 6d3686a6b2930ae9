//! The ringing timeout is driven from the store: whichever replica's job runs next misses an
//! overdue call, also when the replica that placed it is gone; replicas racing on one call
//! (two jobs, or a job and an answer) leave exactly one outcome.

use chrono::Duration;
use titan_kit::testing::TestClock;
use titan_videocall::domain::{CallKind, Media, Status};

use crate::{World, reason, rid, user};

#[tokio::test]
async fn a_ringing_call_is_missed_by_another_replica_after_the_first_is_gone() {
    let w = World::new().await;
    let gone = w.replica();
    let (call, _) = gone
        .initiate(
            &user("ann"),
            &rid(),
            "bob",
            CallKind::Consultation,
            Media::Audio,
        )
        .await
        .expect("ring");
    let (queued, _) = gone
        .initiate(&user("cat"), &rid(), "", CallKind::Support, Media::Audio)
        .await
        .expect("queue");
    drop(gone);
    // Not yet due: nothing happens.
    w.clock.advance(Duration::seconds(29));
    assert_eq!(w.app.sweep().await.expect("sweep"), 0);
    assert_eq!(w.status(&call).await, Status::Ringing);
    w.clock.advance(Duration::seconds(1));
    let fresh = w.replica();
    assert_eq!(fresh.sweep().await.expect("sweep"), 2);
    let (missed, _) = fresh
        .get(&user("ann"), &call.id.to_string())
        .await
        .expect("get");
    assert_eq!(
        (missed.status, missed.end_reason.as_deref(), missed.ended_at),
        (Status::Missed, Some("NO_ANSWER"), Some(w.clock.now()))
    );
    let (timed_out, _) = fresh
        .get(&user("cat"), &queued.id.to_string())
        .await
        .expect("get");
    assert_eq!(
        (timed_out.status, timed_out.end_reason.as_deref()),
        (Status::Missed, Some("QUEUE_TIMEOUT"))
    );
    assert_eq!(w.count("SELECT count(*) FROM videocall_busy").await, 0);
    assert_eq!(
        w.count("SELECT count(*) FROM titan_outbox WHERE event_type = 'videocall.call_finished'")
            .await,
        2
    );
    // A second pass finds nothing more.
    assert_eq!(w.app.sweep().await.expect("sweep"), 0);
}

#[tokio::test]
async fn an_answer_after_the_deadline_misses_the_call() {
    let w = World::new().await;
    let call = w.ring("ann", "bob").await;
    w.clock.advance(Duration::seconds(30));
    // No job has run yet: the answer itself finds the call overdue.
    let late = w
        .app
        .answer(&user("bob"), &rid(), &call.id.to_string())
        .await
        .expect_err("late");
    assert_eq!(reason(&late), "ILLEGAL_TRANSITION");
    assert_eq!(late.to_string(), "cannot answer a call that is MISSED");
    assert_eq!(w.status(&call).await, Status::Missed);
}

#[tokio::test]
async fn an_active_call_ends_at_its_longest_duration() {
    let w = World::new().await;
    let call = w.active("ann", "bob").await;
    w.clock.advance(Duration::seconds(599));
    assert_eq!(w.app.sweep().await.expect("sweep"), 0);
    w.clock.advance(Duration::seconds(1));
    assert_eq!(w.app.sweep().await.expect("sweep"), 1);
    let (ended, _) = w
        .app
        .get(&user("ann"), &call.id.to_string())
        .await
        .expect("get");
    assert_eq!(
        (
            ended.status,
            ended.end_reason.as_deref(),
            ended.duration_seconds()
        ),
        (Status::Ended, Some("MAX_DURATION"), Some(600))
    );
}

#[tokio::test]
async fn two_jobs_racing_miss_each_call_once() {
    let w = World::new().await;
    let mut calls = vec![];
    for i in 0..40 {
        calls.push(w.ring(&format!("a{i}"), &format!("b{i}")).await);
    }
    w.clock.advance(Duration::seconds(31));
    let (one, two) = (w.replica(), w.replica());
    let (x, y) = tokio::join!(one.sweep(), two.sweep());
    assert_eq!(x.expect("sweep") + y.expect("sweep"), 40);
    assert_eq!(
        w.count("SELECT count(*) FROM titan_outbox WHERE event_type = 'videocall.call_finished'")
            .await,
        40
    );
    assert_eq!(
        w.count("SELECT count(*) FROM videocall_calls WHERE status = 'MISSED'")
            .await,
        40
    );
}

/// One replica's clock is a second behind the deadline and answers; another's is a second past
/// it and sweeps. Each call ends up either ACTIVE (answered: no event, parties still busy) or
/// MISSED (one event, parties free), and each side's answer agrees with the store.
#[tokio::test]
async fn an_answer_racing_the_job_leaves_one_outcome() {
    let w = World::new().await;
    let mut calls = vec![];
    for i in 0..30 {
        calls.push(w.ring(&format!("a{i}"), &format!("b{i}")).await);
    }
    let early = TestClock::at(w.clock.now() + Duration::seconds(29));
    let late = TestClock::at(w.clock.now() + Duration::seconds(31));
    let answering = w.replica_with(&early);
    let sweeping = w.replica_with(&late);
    let answers = async {
        let mut answered = vec![];
        for (i, call) in calls.iter().enumerate() {
            let outcome = answering
                .answer(&user(&format!("b{i}")), &rid(), &call.id.to_string())
                .await;
            match outcome {
                Ok(c) => answered.push(c.id),
                Err(e) => assert_eq!(e.to_string(), "cannot answer a call that is MISSED"),
            }
        }
        answered
    };
    let (answered, swept) = tokio::join!(answers, sweeping.sweep());
    let swept = swept.expect("sweep");
    assert_eq!(answered.len() as u32 + swept, 30);
    for call in &calls {
        let status = w.status(call).await;
        let events: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM titan_outbox WHERE envelope->'payload'->>'call_id' = $1",
        )
        .bind(call.id.to_string())
        .fetch_one(&w.db.pool)
        .await
        .expect("events");
        let busy: i64 =
            sqlx::query_scalar("SELECT count(*) FROM videocall_busy WHERE call_id = $1")
                .bind(call.id)
                .fetch_one(&w.db.pool)
                .await
                .expect("busy");
        if answered.contains(&call.id) {
            assert_eq!((status, events, busy), (Status::Active, 0, 2));
        } else {
            assert_eq!((status, events, busy), (Status::Missed, 1, 0));
        }
    }
}
