//! A person's export and erasure (`titan_kit::privacy`): the export holds their calls (without
//! the other party), their quality samples and the recordings of their calls; the erasure
//! deletes those recordings from the bucket (also an object no row names) and the table,
//! withdraws their consent so nothing can be recorded of those calls afterwards, keeps the
//! calls and samples under the pseudonym, and runs again harmlessly.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use titan_kit::{
    objects::ObjectKey,
    privacy::{Erasure, PersonalData},
    testing::{mentions, privacy::subject},
};
use titan_videocall::{
    app::{UploadHeader, VideocallError},
    domain::{Call, recording::Recording},
    store::privacy::PersonalStore,
};

use crate::{World, objects_of, reason, rid, user};

/// caller, callee and their consents as stored.
type Parties = (String, String, Option<DateTime<Utc>>, Option<DateTime<Utc>>);

fn handler(w: &World) -> PersonalStore {
    PersonalStore::new(w.db.pool.clone(), w.objects.clone())
}

fn time(t: Option<DateTime<Utc>>) -> Value {
    serde_json::to_value(t).expect("time")
}

async fn consented(w: &World, from: &str, to: &str) -> Call {
    let call = w.active(from, to).await;
    let mut last = call;
    for who in [from, to] {
        last = w
            .app
            .consent(&user(who), &rid(), &last.id.to_string(), true)
            .await
            .expect("consent");
    }
    last
}

async fn upload(
    w: &World,
    who: &str,
    call: &Call,
    bytes: &[u8],
) -> Result<Recording, VideocallError> {
    let parts = vec![Ok::<_, VideocallError>(Bytes::copy_from_slice(bytes))];
    w.app
        .upload_recording(
            &user(who),
            UploadHeader {
                request_id: rid(),
                call_id: call.id.to_string(),
                content_type: "video/webm".to_owned(),
            },
            stream::iter(parts),
        )
        .await
}

fn recording(r: &Recording, mine: bool, bytes: &[u8]) -> Value {
    json!({
        "id": r.id, "call_id": r.call_id, "uploaded_by_me": mine, "object_key": r.key,
        "content_type": "video/webm", "bytes": bytes.len(),
        "sha256": hex::encode(Sha256::digest(bytes)), "created_at": r.created_at,
    })
}

#[tokio::test]
async fn an_erased_person_keeps_their_calls_under_a_pseudonym_and_loses_every_recording() {
    let w = World::new().await;
    let (a, b, d, e) = (
        format!("a-{}", rid()),
        format!("b-{}", rid()),
        format!("d-{}", rid()),
        format!("e-{}", rid()),
    );
    // Ann calls Bob; both consent, both upload, both report quality; Bob hangs up.
    let call1 = consented(&w, &a, &b).await;
    let (mine, theirs) = (vec![1_u8; 1500], vec![2_u8; 900]);
    let ann_rec = upload(&w, &a, &call1, &mine).await.expect("ann uploads");
    w.clock.advance(chrono::Duration::seconds(1));
    let bob_rec = upload(&w, &b, &call1, &theirs).await.expect("bob uploads");
    let id1 = call1.id.to_string();
    w.app
        .report_quality(&user(&a), &rid(), &id1, [80, 25, 5, 1200, 1280, 720])
        .await
        .expect("ann's sample");
    w.app
        .report_quality(&user(&b), &rid(), &id1, [90, 0, 3, 900, 640, 480])
        .await
        .expect("bob's sample");
    // An object of the call no row names, as an upload cut off between its two writes leaves.
    let orphan = ObjectKey::new(["videocall", "recordings", &id1, "orphan.webm"]).expect("key");
    w.objects
        .put(&orphan, "video/webm", Bytes::from_static(b"half"))
        .await
        .expect("orphan");
    w.clock.advance(chrono::Duration::seconds(30));
    let call1 = w.app.end(&user(&b), &rid(), &id1).await.expect("end");
    // Dan rings Ann (both busy); Bob's own recorded call with Eve.
    w.clock.advance(chrono::Duration::seconds(5));
    let call2 = w.ring(&d, &a).await;
    let call3 = consented(&w, &b, &e).await;
    let bob_only = vec![3_u8; 700];
    let bob_own = upload(&w, &b, &call3, &bob_only).await.expect("bob's own");

    let p = handler(&w);
    let (sa, sb) = (subject(&a), subject(&b));
    let exported = PersonalData::export(&p, &sa).await.expect("export");
    assert_eq!(
        exported,
        json!({
            "user_id": a,
            "calls": [
                {"id": call1.id, "role": "caller", "kind": "SALES", "media": "VIDEO",
                 "status": "ENDED", "created_at": call1.created_at,
                 "ringing_at": time(call1.ringing_at), "answered_at": time(call1.answered_at),
                 "ended_at": time(call1.ended_at), "end_reason": call1.end_reason,
                 "consent_at": time(call1.caller_consent_at)},
                {"id": call2.id, "role": "callee", "kind": "SALES", "media": "VIDEO",
                 "status": "RINGING", "created_at": call2.created_at,
                 "ringing_at": time(call2.ringing_at), "answered_at": null, "ended_at": null,
                 "end_reason": null, "consent_at": null},
            ],
            "quality_samples": [{"call_id": call1.id, "seq": 1, "rtt_ms": 80, "packet_loss_bp": 25,
                                 "jitter_ms": 5, "bitrate_kbps": 1200, "width": 1280,
                                 "height": 720, "reported_at": bob_rec.created_at}],
            "recordings": [recording(&ann_rec, true, &mine), recording(&bob_rec, false, &theirs)],
        })
    );
    assert!(call1.end_reason.is_some() && call1.caller_consent_at.is_some());
    let text = exported.to_string();
    assert!(
        !text.contains(&b) && !text.contains(&d),
        "others named: {text}"
    );
    let bob_before = PersonalData::export(&p, &sb).await.expect("export bob");
    assert_eq!(bob_before["recordings"].as_array().map(Vec::len), Some(3));
    assert_eq!(objects_of(&w.objects, &call1).await, {
        let mut keys = vec![ann_rec.key.clone(), bob_rec.key.clone(), orphan.to_string()];
        keys.sort();
        keys
    });
    let totals = "SELECT (SELECT count(*) FROM videocall_calls) * 1000
                       + (SELECT count(*) FROM videocall_quality)";
    let totals_before = w.count(totals).await;

    // The search below finds Ann before the erasure.
    assert_eq!(
        mentions::postgres_in(&w.db.pool, "videocall_", &a).await,
        [
            ("videocall_busy".to_owned(), 1),
            ("videocall_calls".to_owned(), 2),
            ("videocall_quality".to_owned(), 1),
            ("videocall_recordings".to_owned(), 1),
        ]
    );

    let erased = PersonalData::erase(&p, &sa).await.expect("erase");
    assert_eq!(
        erased,
        Erasure::default()
            .removed("recordings", 2)
            .removed("recording objects", 3)
            .removed("recording consents", 1)
            .removed("busy marks", 1)
            .pseudonymised("calls", 2)
            .pseudonymised("quality samples", 1)
    );
    assert_eq!(
        mentions::postgres_in(&w.db.pool, "videocall_", &a).await,
        vec![]
    );
    assert_eq!(mentions::redis(&w.redis, &a).await, Vec::<String>::new());
    assert_eq!(objects_of(&w.objects, &call1).await, Vec::<String>::new());
    assert_eq!(
        objects_of(&w.objects, &call3).await,
        vec![bob_own.key.clone()]
    );
    assert_eq!(w.count(totals).await, totals_before);
    // Bob keeps his calls, consents and samples; only the recordings that showed Ann are gone.
    let mut bob_after = bob_before.clone();
    bob_after["recordings"] = json!([recording(&bob_own, true, &bob_only)]);
    assert_eq!(
        PersonalData::export(&p, &sb).await.expect("export bob"),
        bob_after
    );
    // The calls as kept: the pseudonym in Ann's place, her consent withdrawn, Bob's kept.
    let kept: Vec<Parties> = sqlx::query_as(
        "SELECT caller_id, callee_id, caller_consent_at, callee_consent_at
               FROM videocall_calls WHERE id = ANY($1) ORDER BY created_at",
    )
    .bind(vec![call1.id, call2.id])
    .fetch_all(&w.db.pool)
    .await
    .expect("kept");
    assert_eq!(
        kept,
        vec![
            (
                sa.pseudonym.clone(),
                b.clone(),
                None,
                call1.callee_consent_at
            ),
            (d.clone(), sa.pseudonym.clone(), None, None),
        ]
    );
    // Nothing more can be recorded of Ann's call.
    let refused = upload(&w, &b, &call1, &theirs).await.expect_err("refused");
    assert_eq!(reason(&refused), "CONSENT_MISSING");
    assert_eq!(objects_of(&w.objects, &call1).await, Vec::<String>::new());

    let again = PersonalData::erase(&p, &sa).await.expect("erase again");
    assert_eq!(
        again,
        Erasure::default()
            .removed("recordings", 0)
            .removed("recording objects", 0)
            .removed("recording consents", 0)
            .removed("busy marks", 0)
            .pseudonymised("calls", 0)
            .pseudonymised("quality samples", 0)
    );
    assert_eq!(
        PersonalData::export(&p, &sa).await.expect("export"),
        json!({"user_id": a, "calls": [], "quality_samples": [], "recordings": []})
    );
    assert_eq!(
        PersonalData::export(&p, &sb).await.expect("export bob"),
        bob_after
    );
}
