//! A person's export and erasure (`titan_kit::privacy`): the export holds the streams they
//! hosted, their comments, their purchases and their entries in the viewer figures; the
//! erasure deletes their comments and rate budgets, keeps their streams, purchases and viewer
//! entries under the pseudonym (viewers' purchases and the figures stay as they were), and
//! runs again harmlessly.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use titan_kit::{
    privacy::{Erasure, PersonalData},
    testing::{caller, mentions, privacy::subject},
};
use titan_livestream::{
    app::PurchaseInput,
    domain::{Stream, viewers::Reaction},
    store::{privacy::PersonalStore, redis::Live},
};

use crate::{World, rid, seller, viewer};

fn handler(w: &World) -> PersonalStore {
    PersonalStore::new(w.db.pool.clone(), Live::new(w.redis.clone()))
}

/// `t` as PostgreSQL keeps it (microseconds).
fn stored(t: DateTime<Utc>) -> Value {
    json!(DateTime::from_timestamp_micros(t.timestamp_micros()).expect("time"))
}

fn stream(s: &Stream) -> Value {
    json!({
        "id": s.id, "title": s.title, "status": s.status.as_str(),
        "scheduled_at": s.scheduled_at, "started_at": s.started_at, "ended_at": s.ended_at,
        "recording_url": s.recording_url, "featured": [],
    })
}

/// (purchases, their total) of the whole service.
async fn books(w: &World) -> (i64, i64) {
    sqlx::query_as("SELECT count(*), sum(amount_minor)::BIGINT FROM livestream_purchases")
        .fetch_one(&w.db.pool)
        .await
        .expect("books")
}

#[tokio::test]
async fn an_erased_person_leaves_their_streams_and_purchases_under_a_pseudonym() {
    let w = World::new().await;
    let (a, b, s) = (
        format!("a-{}", rid()),
        format!("b-{}", rid()),
        format!("s-{}", rid()),
    );
    let checkout = caller("checkout", &["service"]);
    let buy = |stream: &Stream, order: String, buyer: String, amount: i64| {
        let (app, checkout, id) = (w.app.clone(), checkout.clone(), stream.id.to_string());
        async move {
            app.record_purchase(
                &checkout,
                PurchaseInput {
                    stream_id: &id,
                    order_id: &order,
                    buyer_id: &buyer,
                    product_id: "p1",
                    quantity: 1,
                    amount_minor: amount,
                    currency: "USD",
                },
            )
            .await
            .expect("purchase")
        }
    };
    // Ann hosts a show: Bob comments and buys in it, Ann answers.
    let show = w.live(&a).await;
    let show_id = show.id.to_string();
    let bobs = w
        .app
        .post_comment(&viewer(&b), &rid(), &show_id, "how much?")
        .await
        .expect("comment");
    let pinned_bob = w
        .app
        .pin(&seller(&a), &show_id, &bobs.id.to_string(), true)
        .await
        .expect("pin");
    let answer = w
        .app
        .post_comment(&viewer(&a), &rid(), &show_id, "ten dollars")
        .await
        .expect("comment");
    let order_b = format!("o-{}", rid());
    assert!(buy(&show, order_b, b.clone(), 1000).await);
    // Sam's show: Ann and Bob watch, Ann likes, comments (pinned) and buys.
    let other = w.live(&s).await;
    let other_id = other.id.to_string();
    w.app
        .heartbeat(&viewer(&a), &other_id)
        .await
        .expect("heartbeat");
    let watched_at = w.clock.now();
    w.app
        .heartbeat(&viewer(&b), &other_id)
        .await
        .expect("heartbeat");
    w.app
        .react(&viewer(&a), &other_id, Reaction::Like)
        .await
        .expect("like");
    let mine = w
        .app
        .post_comment(&viewer(&a), &rid(), &other_id, "love it")
        .await
        .expect("comment");
    let mine = w
        .app
        .pin(&seller(&s), &other_id, &mine.id.to_string(), true)
        .await
        .expect("pin");
    let order_a = format!("o-{}", rid());
    let bought_at = w.clock.now();
    assert!(buy(&other, order_a.clone(), a.clone(), 2500).await);

    let p = handler(&w);
    let (sa, sb) = (subject(&a), subject(&b));
    let exported = PersonalData::export(&p, &sa).await.expect("export");
    let comment = |c: &titan_livestream::domain::Comment| {
        json!({"stream_id": c.stream_id, "id": c.id, "text": c.text,
               "created_at": c.created_at, "pinned_at": c.pinned_at})
    };
    assert_eq!(
        exported,
        json!({
            "user_id": a,
            "streams": [stream(&show)],
            "comments": [comment(&answer), comment(&mine)],
            "purchases": [{"order_id": order_a, "stream_id": other.id, "product_id": "p1",
                           "quantity": 1, "amount_minor": 2500, "currency": "USD",
                           "created_at": stored(bought_at)}],
            "viewing": [{"stream_id": other.id,
                         "last_heartbeat_at": DateTime::from_timestamp_millis(
                             watched_at.timestamp_millis()),
                         "last_minute": 0}],
        })
    );
    assert!(mine.pinned_at.is_some());
    let text = exported.to_string();
    assert!(!text.contains(&b) && !text.contains(&s), "{text}");
    let bob_before = PersonalData::export(&p, &sb).await.expect("export bob");
    assert_eq!(bob_before["comments"].as_array().map(Vec::len), Some(1));
    assert_eq!(bob_before["viewing"].as_array().map(Vec::len), Some(1));
    let books_before = books(&w).await;
    let figures_before = w.app.stats(&other_id).await.expect("stats");
    assert_eq!(figures_before.concurrent, 2);

    // The searches below find Ann before the erasure.
    assert_eq!(
        mentions::postgres_in(&w.db.pool, "livestream_", &a).await,
        [
            ("livestream_comments".to_owned(), 2),
            ("livestream_purchases".to_owned(), 1),
            ("livestream_streams".to_owned(), 1),
        ]
    );
    assert!(!mentions::redis(&w.redis, &a).await.is_empty());

    let erased = PersonalData::erase(&p, &sa).await.expect("erase");
    assert_eq!(
        erased,
        Erasure::default()
            .removed("comments", 2)
            .removed("rate budgets", 2)
            .pseudonymised("streams", 1)
            .pseudonymised("purchases", 1)
            .pseudonymised("viewer entries", 1)
            .pseudonymised("watched minute markers", 1)
    );
    assert_eq!(
        mentions::postgres_in(&w.db.pool, "livestream_", &a).await,
        vec![]
    );
    assert!(!mentions::redis(&w.redis, &b).await.is_empty());
    assert_eq!(mentions::redis(&w.redis, &a).await, Vec::<String>::new());
    assert_eq!(books(&w).await, books_before);
    assert_eq!(w.app.stats(&other_id).await.expect("stats"), figures_before);
    assert_eq!(
        PersonalData::export(&p, &sb).await.expect("export bob"),
        bob_before
    );
    // The show stays for its buyers, under the pseudonym, with Bob's pinned comment.
    let kept = w.app.get(&show_id).await.expect("the show");
    assert_eq!(
        (kept.seller_id.as_str(), kept.title.as_str()),
        (sa.pseudonym.as_str(), show.title.as_str())
    );
    let pinned: Vec<String> = w
        .app
        .comments(&show_id, true, 0, "")
        .await
        .expect("pinned")
        .0
        .into_iter()
        .map(|c| c.text)
        .collect();
    assert_eq!(pinned, vec![pinned_bob.text]);
    let buyer: String =
        sqlx::query_scalar("SELECT buyer_id FROM livestream_purchases WHERE order_id = $1")
            .bind(&order_a)
            .fetch_one(&w.db.pool)
            .await
            .expect("purchase");
    assert_eq!(buyer, sa.pseudonym);

    let again = PersonalData::erase(&p, &sa).await.expect("erase again");
    assert_eq!(
        again,
        Erasure::default()
            .removed("comments", 0)
            .removed("rate budgets", 0)
            .pseudonymised("streams", 0)
            .pseudonymised("purchases", 0)
            .pseudonymised("viewer entries", 0)
            .pseudonymised("watched minute markers", 0)
    );
    assert_eq!(
        PersonalData::export(&p, &sa).await.expect("export"),
        json!({"user_id": a, "streams": [], "comments": [], "purchases": [], "viewing": []})
    );
}

#[tokio::test]
async fn a_viewer_who_comes_back_merges_into_their_pseudonym_in_the_figures() {
    let w = World::new().await;
    let (a, s) = (format!("a-{}", rid()), format!("s-{}", rid()));
    let show = w.live(&s).await;
    let id = show.id.to_string();
    let p = handler(&w);
    let sa = subject(&a);
    w.app.heartbeat(&viewer(&a), &id).await.expect("heartbeat");
    PersonalData::erase(&p, &sa).await.expect("erase");
    // The same id watches again within the viewer window: the pseudonym is among the viewers
    // already, and keeps the later heartbeat.
    w.clock.advance(chrono::Duration::seconds(20));
    w.app.heartbeat(&viewer(&a), &id).await.expect("heartbeat");
    let erased = PersonalData::erase(&p, &sa).await.expect("erase again");
    assert_eq!(erased.pseudonymised.get("viewer entries"), Some(&1));
    assert_eq!(erased.pseudonymised.get("watched minute markers"), Some(&1));
    let mut conn = w.redis.conn.clone();
    let viewers: Vec<(String, f64)> = redis::cmd("ZRANGE")
        .arg(w.redis.key(&format!("livestream:{{{id}}}:viewers")))
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query_async(&mut conn)
        .await
        .expect("viewers");
    assert_eq!(
        viewers,
        vec![(
            sa.pseudonym.clone(),
            w.clock.now().timestamp_millis() as f64
        )]
    );
    let minute: Option<u32> = redis::cmd("HGET")
        .arg(w.redis.key(&format!("livestream:{{{id}}}:minutes")))
        .arg(&sa.pseudonym)
        .query_async(&mut conn)
        .await
        .expect("minute");
    assert_eq!(minute, Some(0));
    assert_eq!(w.app.stats(&id).await.expect("stats").concurrent, 1);
    assert_eq!(mentions::redis(&w.redis, &a).await, Vec::<String>::new());
}
