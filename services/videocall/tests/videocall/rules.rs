//! The state machine on PostgreSQL, who may move it, refused input, busy users, the support
//! queue, quality, consent, ICE servers, history and analytics.

use chrono::Duration;
use titan_kit::{events::Envelope, testing::caller, turn};
use titan_videocall::{
    app::VideocallError,
    domain::{CallFinished, CallKind, Media, Status},
};

use crate::{TURN_SECRET, World, agent, reason, rid, user};

#[tokio::test]
async fn a_call_rings_is_answered_and_ends_with_its_duration_and_one_event() {
    let w = World::new().await;
    let call = w.ring("ann", "bob").await;
    assert_eq!(call.ringing_at, Some(w.clock.now()));
    w.clock.advance(Duration::seconds(4));
    let active = w
        .app
        .answer(&user("bob"), &rid(), &call.id.to_string())
        .await
        .expect("answer");
    assert_eq!(active.status, Status::Active);
    assert_eq!(active.answered_at, Some(w.clock.now()));
    w.clock.advance(Duration::seconds(95));
    let ended = w
        .app
        .end(&user("bob"), &rid(), &call.id.to_string())
        .await
        .expect("end");
    assert_eq!(ended.status, Status::Ended);
    assert_eq!(ended.duration_seconds(), Some(95));
    assert_eq!(ended.end_reason.as_deref(), Some("HANGUP"));
    // Both parties are free again, and one event says how it ended.
    assert_eq!(w.count("SELECT count(*) FROM videocall_busy").await, 0);
    let events: Vec<serde_json::Value> = sqlx::query_scalar(
        "SELECT envelope FROM titan_outbox WHERE service = 'videocall' ORDER BY seq",
    )
    .fetch_all(&w.db.pool)
    .await
    .expect("outbox");
    assert_eq!(events.len(), 1);
    let envelope: Envelope = serde_json::from_value(events[0].clone()).expect("envelope");
    assert_eq!(envelope.kind, "videocall.call_finished");
    let finished: CallFinished = envelope.payload_as().expect("payload");
    assert_eq!(finished.status, Status::Ended);
    assert_eq!(finished.duration_seconds, Some(95));
    assert_eq!(finished.callee_id.as_deref(), Some("bob"));
}

#[tokio::test]
async fn every_illegal_transition_is_refused_with_the_current_status() {
    let w = World::new().await;
    // A call in each status the parties can bring about.
    let ringing = w.ring("r1", "r2").await;
    let active = w.active("a1", "a2").await;
    let ended = w.active("e1", "e2").await;
    w.app
        .end(&user("e1"), &rid(), &ended.id.to_string())
        .await
        .expect("end");
    let rejected = w.ring("j1", "j2").await;
    w.app
        .reject(&user("j2"), &rid(), &rejected.id.to_string())
        .await
        .expect("reject");
    let failed = w.active("f1", "f2").await;
    w.app
        .fail(&user("f1"), &rid(), &failed.id.to_string(), "ice failed")
        .await
        .expect("fail");
    let missed = w.ring("m1", "m2").await;
    w.clock.advance(Duration::seconds(31));
    assert_eq!(
        w.app.sweep().await.expect("sweep"),
        2,
        "missed and the other ringing one"
    );
    assert_eq!(w.status(&ringing).await, Status::Missed);

    // (call, its status, the callee, the caller)
    let cases = [
        (&ringing, Status::Missed, "r2", "r1"),
        (&missed, Status::Missed, "m2", "m1"),
        (&active, Status::Active, "a2", "a1"),
        (&ended, Status::Ended, "e2", "e1"),
        (&rejected, Status::Rejected, "j2", "j1"),
        (&failed, Status::Failed, "f2", "f1"),
    ];
    for (call, status, callee, caller_name) in cases {
        let id = call.id.to_string();
        let mut outcomes = vec![
            ("answer", w.app.answer(&user(callee), &rid(), &id).await),
            ("reject", w.app.reject(&user(callee), &rid(), &id).await),
        ];
        // Ending or failing an active call is legal; from a final status nothing is.
        if status.is_final() {
            outcomes.push(("end", w.app.end(&user(caller_name), &rid(), &id).await));
            outcomes.push((
                "fail",
                w.app.fail(&user(caller_name), &rid(), &id, "x").await,
            ));
        }
        for (what, outcome) in outcomes {
            match outcome {
                Err(e @ VideocallError::Illegal(_)) => {
                    assert_eq!(reason(&e), "ILLEGAL_TRANSITION");
                    assert_eq!(
                        e.to_string(),
                        format!("cannot {what} a call that is {status}")
                    );
                }
                other => panic!("{what} on a {status} call: {other:?}"),
            }
        }
        assert_eq!(w.status(call).await, status, "refusals changed nothing");
    }
}

#[tokio::test]
async fn only_the_callee_answers_and_a_stranger_touches_nothing() {
    let w = World::new().await;
    let call = w.ring("ann", "bob").await;
    let id = call.id.to_string();
    let by_caller = w
        .app
        .answer(&user("ann"), &rid(), &id)
        .await
        .expect_err("caller");
    assert_eq!(reason(&by_caller), "NOT_THE_CALLEE");
    let reject_by_caller = w
        .app
        .reject(&user("ann"), &rid(), &id)
        .await
        .expect_err("caller");
    assert_eq!(reason(&reject_by_caller), "NOT_THE_CALLEE");
    // The callee declines rather than cancels a ringing call.
    let cancel_by_callee = w
        .app
        .end(&user("bob"), &rid(), &id)
        .await
        .expect_err("callee");
    assert_eq!(reason(&cancel_by_callee), "NOT_THE_CALLER");
    for e in [
        w.app
            .answer(&user("eve"), &rid(), &id)
            .await
            .expect_err("eve"),
        w.app.end(&user("eve"), &rid(), &id).await.expect_err("eve"),
        w.app
            .fail(&user("eve"), &rid(), &id, "x")
            .await
            .expect_err("eve"),
        w.app.get(&user("eve"), &id).await.expect_err("eve"),
        w.app.ice_servers(&user("eve"), &id).await.expect_err("eve"),
        w.app
            .report_quality(&user("eve"), &rid(), &id, [1, 1, 1, 1, 1, 1])
            .await
            .expect_err("eve"),
    ] {
        assert_eq!(reason(&e), "NOT_A_PARTICIPANT");
    }
    // An analyst reads it; the caller cancels it.
    assert!(w.app.get(&caller("an", &["analyst"]), &id).await.is_ok());
    let cancelled = w.app.end(&user("ann"), &rid(), &id).await.expect("cancel");
    assert_eq!(
        (cancelled.status, cancelled.end_reason.as_deref()),
        (Status::Ended, Some("CANCELLED"))
    );
    assert_eq!(cancelled.duration_seconds(), None);
}

#[tokio::test]
async fn bad_input_is_invalid_argument_naming_the_field_and_stores_nothing() {
    let w = World::new().await;
    let ann = user("ann");
    let cases: Vec<(VideocallError, &str)> = vec![
        (
            w.app
                .initiate(&ann, &rid(), "", CallKind::Sales, Media::Video)
                .await
                .expect_err("no callee"),
            "callee_id",
        ),
        (
            w.app
                .initiate(&ann, &rid(), "ann", CallKind::Support, Media::Audio)
                .await
                .expect_err("self"),
            "callee_id",
        ),
        (
            w.app
                .initiate(&ann, &rid(), "bo b", CallKind::Sales, Media::Audio)
                .await
                .expect_err("space"),
            "callee_id",
        ),
        (
            w.app.answer(&ann, &rid(), "nope").await.expect_err("id"),
            "call_id",
        ),
        (
            w.app.end(&ann, &rid(), "").await.expect_err("id"),
            "call_id",
        ),
        (
            w.app
                .fail(&ann, &rid(), &uuid::Uuid::nil().to_string(), "")
                .await
                .expect_err("reason"),
            "reason",
        ),
        (
            w.app
                .report_quality(
                    &ann,
                    &rid(),
                    &uuid::Uuid::nil().to_string(),
                    [0, 10_001, 0, 0, 0, 0],
                )
                .await
                .expect_err("loss"),
            "packet_loss_bp",
        ),
        (
            w.app
                .report_quality(
                    &ann,
                    &rid(),
                    &uuid::Uuid::nil().to_string(),
                    [0, 0, 0, 0, 8_000, 0],
                )
                .await
                .expect_err("width"),
            "width",
        ),
        (
            w.app.history(&ann, "", 101, "").await.expect_err("page"),
            "page_size",
        ),
        (
            w.app.history(&ann, "", 10, "x").await.expect_err("token"),
            "page_token",
        ),
        (
            w.app
                .agent_analytics(&ann, "ann", "2026-13-01", "2026-12-01")
                .await
                .expect_err("day"),
            "from_day",
        ),
        (
            w.app
                .agent_analytics(&ann, "ann", "2026-01-01", "2026-06-01")
                .await
                .expect_err("range"),
            "to_day",
        ),
    ];
    for (e, field) in cases {
        match &e {
            VideocallError::Invalid(input) => assert_eq!(input.field, field, "{e}"),
            other => panic!("expected InvalidArgument on {field}: {other:?}"),
        }
        assert_eq!(
            titan_kit::error::to_status("videocall.titan.dev", &e).code(),
            tonic::Code::InvalidArgument
        );
    }
    let missing_request_id = w
        .app
        .initiate(&ann, "", "bob", CallKind::Sales, Media::Video)
        .await
        .expect_err("request id");
    assert!(matches!(missing_request_id, VideocallError::Idempotency(_)));
    assert_eq!(w.count("SELECT count(*) FROM videocall_calls").await, 0);
}

#[tokio::test]
async fn a_user_is_in_one_call_at_a_time_and_retries_replay() {
    let w = World::new().await;
    let request = rid();
    let (first, _) = w
        .app
        .initiate(&user("ann"), &request, "bob", CallKind::Sales, Media::Video)
        .await
        .expect("call");
    // The same request again is the same call.
    let (again, _) = w
        .app
        .initiate(&user("ann"), &request, "bob", CallKind::Sales, Media::Video)
        .await
        .expect("replay");
    assert_eq!(again.id, first.id);
    // The same id with another body is refused.
    let reused = w
        .app
        .initiate(&user("ann"), &request, "bob", CallKind::Sales, Media::Audio)
        .await
        .expect_err("reused");
    assert_eq!(reason(&reused), "REQUEST_ID_REUSED");
    // Bob is ringing: carl cannot call him, nor can ann call carl.
    let busy = w
        .app
        .initiate(&user("carl"), &rid(), "bob", CallKind::Sales, Media::Video)
        .await
        .expect_err("busy");
    assert_eq!(reason(&busy), "BUSY");
    assert_eq!(
        busy.to_string(),
        format!(
            "user bob is already in call {}, which has not ended",
            first.id
        )
    );
    let busy_caller = w
        .app
        .initiate(&user("ann"), &rid(), "carl", CallKind::Sales, Media::Video)
        .await
        .expect_err("busy");
    assert_eq!(reason(&busy_caller), "BUSY");
    assert_eq!(w.count("SELECT count(*) FROM videocall_calls").await, 1);
    // Once rejected, both are free.
    w.app
        .reject(&user("bob"), &rid(), &first.id.to_string())
        .await
        .expect("reject");
    w.ring("carl", "bob").await;
}

#[tokio::test]
async fn concurrent_calls_to_one_user_ring_once() {
    let w = World::new().await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..8 {
        let app = if i % 2 == 0 {
            w.app.clone()
        } else {
            w.replica()
        };
        tasks.spawn(async move {
            app.initiate(
                &user(&format!("c{i}")),
                &rid(),
                "bob",
                CallKind::Sales,
                Media::Video,
            )
            .await
        });
    }
    let outcomes = tasks.join_all().await;
    let rung = outcomes.iter().filter(|o| o.is_ok()).count();
    let busy = outcomes
        .iter()
        .filter(|o| matches!(o, Err(e) if reason(e) == "BUSY"))
        .count();
    assert_eq!((rung, busy), (1, 7));
    assert_eq!(w.count("SELECT count(*) FROM videocall_calls").await, 1);
}

#[tokio::test]
async fn support_calls_queue_first_come_first_served_for_agents() {
    let w = World::new().await;
    let mut queued = vec![];
    for (i, name) in ["q1", "q2", "q3"].into_iter().enumerate() {
        let (call, position) = w
            .app
            .initiate(&user(name), &rid(), "", CallKind::Support, Media::Audio)
            .await
            .expect("queue");
        assert_eq!((call.status, position), (Status::Initiated, i as u32 + 1));
        assert_eq!(call.callee_id, None);
        queued.push(call);
        w.clock.advance(Duration::seconds(1));
    }
    let not_agent = w.app.take_next(&user("x"), &rid()).await.expect_err("role");
    assert_eq!(reason(&not_agent), "NOT_AN_AGENT");
    let taken = w
        .app
        .take_next(&agent("ag1"), &rid())
        .await
        .expect("take")
        .expect("a call");
    assert_eq!(taken.id, queued[0].id);
    assert_eq!(
        (taken.status, taken.callee_id.as_deref()),
        (Status::Ringing, Some("ag1"))
    );
    // The agent is busy with it; another agent gets the next one.
    let busy = w
        .app
        .take_next(&agent("ag1"), &rid())
        .await
        .expect_err("busy");
    assert_eq!(reason(&busy), "BUSY");
    let second = w
        .app
        .take_next(&agent("ag2"), &rid())
        .await
        .expect("take")
        .expect("a call");
    assert_eq!(second.id, queued[1].id);
    // The last caller hangs up while queued: the queue is empty.
    w.app
        .end(&user("q3"), &rid(), &queued[2].id.to_string())
        .await
        .expect("cancel");
    assert_eq!(
        w.app.take_next(&agent("ag3"), &rid()).await.expect("take"),
        None
    );
    // The agent answers; the caller hears it.
    let active = w
        .app
        .answer(&agent("ag1"), &rid(), &taken.id.to_string())
        .await
        .expect("answer");
    assert_eq!(active.status, Status::Active);
}

#[tokio::test]
async fn two_agents_taking_at_once_take_different_calls() {
    let w = World::new().await;
    for name in ["q1", "q2"] {
        w.app
            .initiate(&user(name), &rid(), "", CallKind::Support, Media::Video)
            .await
            .expect("queue");
    }
    let other = w.replica();
    let (ag1, ag2, r1, r2) = (agent("ag1"), agent("ag2"), rid(), rid());
    let (a, b) = tokio::join!(w.app.take_next(&ag1, &r1), other.take_next(&ag2, &r2));
    let (a, b) = (a.expect("a").expect("call"), b.expect("b").expect("call"));
    assert_ne!(a.id, b.id);
    assert_eq!(
        w.count("SELECT count(*) FROM videocall_calls WHERE status = 'RINGING'")
            .await,
        2
    );
}

#[tokio::test]
async fn quality_is_reported_while_active_and_aggregated() {
    let w = World::new().await;
    let ringing = w.ring("ann", "bob").await;
    let early = w
        .app
        .report_quality(
            &user("ann"),
            &rid(),
            &ringing.id.to_string(),
            [10, 0, 1, 900, 640, 360],
        )
        .await
        .expect_err("ringing");
    assert_eq!(reason(&early), "CALL_NOT_LIVE");
    w.app
        .answer(&user("bob"), &rid(), &ringing.id.to_string())
        .await
        .expect("answer");
    let id = ringing.id.to_string();
    for rtt in 1..=20 {
        let who = if rtt % 2 == 0 { "ann" } else { "bob" };
        w.app
            .report_quality(
                &user(who),
                &rid(),
                &id,
                [rtt, rtt * 10, 2, 2_000 - rtt, 1280, 720],
            )
            .await
            .expect("report");
    }
    // A retried report counts once.
    let request = rid();
    let n = w
        .app
        .report_quality(&user("ann"), &request, &id, [5, 0, 0, 1_000, 1280, 720])
        .await
        .expect("report");
    let again = w
        .app
        .report_quality(&user("ann"), &request, &id, [5, 0, 0, 1_000, 1280, 720])
        .await
        .expect("replay");
    assert_eq!((n, again), (21, 21));
    let (_, q) = w.app.get(&user("ann"), &id).await.expect("get");
    assert_eq!(q.samples, 21);
    // RTT 1..=20 and 5: sorted, the 20th of 21 (nearest rank ⌈0.95·21⌉) is 19.
    assert_eq!(q.rtt_ms.worst, 20.0);
    assert_eq!(q.rtt_ms.p95, 19.0);
    assert!((q.rtt_ms.mean - 215.0 / 21.0).abs() < 1e-9);
    // Bitrate: lower is worse.
    assert_eq!(q.bitrate_kbps.worst, 1_000.0);
    assert_eq!(q.packet_loss_bp.worst, 200.0);
}

#[tokio::test]
async fn recording_needs_both_consents_and_the_cell() {
    let w = World::new().await;
    let call = w.active("ann", "bob").await;
    let id = call.id.to_string();
    let one = w
        .app
        .consent(&user("ann"), &rid(), &id, true)
        .await
        .expect("consent");
    assert_eq!(one.caller_consent_at, Some(w.clock.now()));
    assert!(!w.app.recording(&one));
    w.clock.advance(Duration::seconds(3));
    let both = w
        .app
        .consent(&user("bob"), &rid(), &id, true)
        .await
        .expect("consent");
    assert_eq!(both.callee_consent_at, Some(w.clock.now()));
    assert!(w.app.recording(&both));
    let withdrawn = w
        .app
        .consent(&user("bob"), &rid(), &id, false)
        .await
        .expect("withdraw");
    assert!(!w.app.recording(&withdrawn));
    assert_eq!(withdrawn.callee_consent_at, None);

    let mut no_recording = crate::settings();
    no_recording.recording_allowed = false;
    let w = World::with(no_recording).await;
    let call = w.active("ann", "bob").await;
    let refused = w
        .app
        .consent(&user("ann"), &rid(), &call.id.to_string(), true)
        .await
        .expect_err("not allowed");
    assert_eq!(reason(&refused), "RECORDING_NOT_ALLOWED");
}

#[tokio::test]
async fn ice_credentials_never_outlive_the_call() {
    let w = World::new().await;
    let call = w.ring("ann", "bob").await;
    let ice = w
        .app
        .ice_servers(&user("bob"), &call.id.to_string())
        .await
        .expect("ice");
    assert_eq!(ice.servers.len(), 2);
    assert_eq!(ice.servers[0].urls, vec!["stun:turn.test:3478".to_owned()]);
    assert_eq!(ice.servers[0].username, None);
    // Settings: ring 30 s, longest call 600 s, TTL 3,600 s: the call bounds it.
    let expiry = w.clock.now() + Duration::seconds(630);
    assert_eq!(ice.expires_at, expiry);
    let expected = turn::mint(TURN_SECRET.as_bytes(), "bob", expiry.timestamp() as u64);
    assert_eq!(
        ice.servers[1].username.as_deref(),
        Some(expected.username.as_str())
    );
    assert_eq!(
        ice.servers[1].credential.as_deref(),
        Some(expected.password.as_str())
    );
    // Once over, none are handed out.
    w.app
        .reject(&user("bob"), &rid(), &call.id.to_string())
        .await
        .expect("reject");
    let over = w
        .app
        .ice_servers(&user("bob"), &call.id.to_string())
        .await
        .expect_err("over");
    assert_eq!(reason(&over), "CALL_NOT_LIVE");
}

#[tokio::test]
async fn history_pages_and_agent_analytics() {
    let w = World::new().await;
    // Day 1: ag answers two calls (waits 2 s and 4 s, durations 60 s and 120 s) and misses one.
    let mut ids = vec![];
    for (wait, duration) in [(2, 60), (4, 120)] {
        let call = w
            .app
            .initiate(&user("cust"), &rid(), "ag", CallKind::Support, Media::Video)
            .await
            .expect("call")
            .0;
        w.clock.advance(Duration::seconds(wait));
        w.app
            .answer(&agent("ag"), &rid(), &call.id.to_string())
            .await
            .expect("answer");
        w.clock.advance(Duration::seconds(duration));
        w.app
            .end(&user("cust"), &rid(), &call.id.to_string())
            .await
            .expect("end");
        ids.push(call.id);
    }
    let missed = w.ring("cust", "ag").await;
    w.clock.advance(Duration::seconds(31));
    w.app.sweep().await.expect("sweep");
    assert_eq!(w.status(&missed).await, Status::Missed);
    ids.push(missed.id);
    // Day 2: one rejected.
    w.clock.advance(Duration::days(1));
    let rejected = w.ring("other", "ag").await;
    w.app
        .reject(&agent("ag"), &rid(), &rejected.id.to_string())
        .await
        .expect("reject");
    ids.push(rejected.id);

    // The agent's history, newest first, two per page.
    let mut seen = vec![];
    let mut token = String::new();
    loop {
        let (page, next) = w
            .app
            .history(&agent("ag"), "ag", 2, &token)
            .await
            .expect("page");
        assert!(page.len() <= 2);
        seen.extend(page.iter().map(|c| c.id));
        match next {
            Some(n) => token = n.to_string(),
            None => break,
        }
    }
    ids.reverse();
    assert_eq!(seen, ids);
    // cust sees only its three calls; a stranger may not read the agent's.
    let (own, next) = w.app.history(&user("cust"), "", 10, "").await.expect("own");
    assert_eq!((own.len(), next), (3, None));
    let refused = w
        .app
        .history(&user("cust"), "ag", 10, "")
        .await
        .expect_err("agent");
    assert_eq!(reason(&refused), "NOT_AN_ANALYST");

    let day1 = w.clock.now().date_naive() - chrono::Days::new(1);
    let days = w
        .app
        .agent_analytics(
            &caller("boss", &["analyst"]),
            "ag",
            &day1.to_string(),
            &(day1 + chrono::Days::new(1)).to_string(),
        )
        .await
        .expect("analytics");
    assert_eq!(days.len(), 2);
    let d1 = &days[0];
    assert_eq!(
        (d1.day, d1.calls, d1.answered, d1.missed, d1.rejected),
        (day1, 3, 2, 1, 0)
    );
    assert!((d1.answer_rate() - 2.0 / 3.0).abs() < 1e-9);
    assert!((d1.missed_rate() - 1.0 / 3.0).abs() < 1e-9);
    assert_eq!(d1.average_wait_seconds(), 3.0);
    assert_eq!(d1.average_duration_seconds(), 90.0);
    let d2 = &days[1];
    assert_eq!((d2.calls, d2.rejected, d2.answer_rate()), (1, 1, 0.0));
}
