//! Benchmarks, ignored by default, in process on the real stores:
//! `cargo test -p titan-chat --release --test chat -- --ignored --nocapture --test-threads 1 bench`
//! - history: pages of 50 from a 1,000,000-message conversation (target p99 < 5 ms);
//! - delivery: messages sent on one replica at a fixed rate to 1:1 conversations and to
//!   50-member groups, received through the feeds of another replica (the path of both
//!   `Subscribe` and the WebSocket, without the socket): latency p50/p99 and messages stored
//!   per second.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use titan_chat::{
    domain::{Conversation, MessageKind, Metadata},
    feed::Event,
};

use crate::{World, rid, settings, user};

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    // Nearest rank: small samples stay on a real observation.
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn report(what: &str, mut samples: Vec<Duration>, target: Option<Duration>) {
    samples.sort();
    let (p50, p99) = (quantile(&samples, 0.5), quantile(&samples, 0.99));
    let target = target.map_or(String::new(), |t| format!(" (target p99 < {t:?})"));
    println!(
        "{what}: {} samples, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms{target}",
        samples.len(),
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        samples.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a benchmark: run it on purpose"]
async fn bench_history() {
    let w = World::new().await;
    let c = w
        .app
        .create_group(&user("ann"), &rid(), "big", &["bob".into()])
        .await
        .expect("group");
    let started = Instant::now();
    // One million messages, ids in time order (UUIDv7 layout), written directly, without
    // the session's statement timeout (it guards serving, not this set-up).
    let mut tx = w.db.pool.begin().await.expect("begin");
    sqlx::query("SET LOCAL statement_timeout = 0")
        .execute(&mut *tx)
        .await
        .expect("no timeout");
    sqlx::query(
        "INSERT INTO chat_messages (conversation_id, id, seq, sender_id, kind, content, sent_at) \
         SELECT $1, ('01900000-0000-7000-8000-' || lpad(to_hex(s), 12, '0'))::uuid, s, \
                CASE WHEN s % 2 = 0 THEN 'ann' ELSE 'bob' END, 'TEXT', 'message number ' || s, now() \
           FROM generate_series(1, 1000000) s",
    )
    .bind(c.id.uuid())
    .execute(&mut *tx)
    .await
    .expect("messages");
    tx.commit().await.expect("commit");
    sqlx::query("UPDATE chat_conversations SET last_seq = 1000000 WHERE id = $1")
        .bind(c.id.uuid())
        .execute(&w.db.pool)
        .await
        .expect("seq");
    sqlx::query("ANALYZE chat_messages")
        .execute(&w.db.pool)
        .await
        .expect("analyze");
    println!(
        "history: 1,000,000 messages written in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let (bob, id) = (user("bob"), c.id.to_string());
    let mut samples = Vec::new();
    for n in 0..2_000u64 {
        // Spread over the whole conversation: a pseudo-random page anchor.
        let s = (n * 7_919 * 127) % 999_900 + 51;
        let anchor = format!("01900000-0000-7000-8000-{s:012x}");
        let t = Instant::now();
        let page = w
            .app
            .history(&bob, &id, &anchor, "", 50)
            .await
            .expect("page");
        samples.push(t.elapsed());
        assert_eq!(page.len(), 50);
    }
    report(
        "history page of 50 (access check + page), 1,000,000-message conversation",
        samples,
        Some(Duration::from_millis(5)),
    );
}

/// Sends `rate` messages a second for `seconds` from replica A over `conversations` (each
/// with its sender and receivers), every receiver reading a feed on replica B.
async fn delivery(
    w: &World,
    what: &str,
    conversations: Vec<(Conversation, String, Vec<String>)>,
    rate: u32,
    seconds: u64,
) {
    let b = w.replica();
    let sent_at: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Duration>();
    let mut readers = Vec::new();
    for (c, _, receivers) in &conversations {
        for r in receivers {
            let mut feed = b.feed(&user(r), &c.id.to_string(), "").await.expect("feed");
            let (tx, sent_at) = (tx.clone(), sent_at.clone());
            readers.push(tokio::spawn(async move {
                while let Ok(event) = feed.next().await {
                    if let Event::Message(m) = event {
                        let start = sent_at
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .get(&m.content)
                            .copied();
                        if let Some(start) = start {
                            let _ = tx.send(start.elapsed());
                        }
                    }
                }
            }));
        }
    }
    drop(tx);
    let total = u64::from(rate) * seconds;
    let mut tick = tokio::time::interval(Duration::from_secs(1) / rate);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut sends = tokio::task::JoinSet::new();
    for n in 0..total {
        tick.tick().await;
        let (c, sender, _) = &conversations[(n as usize) % conversations.len()];
        let (app, id, sender, sent_at) = (
            w.app.clone(),
            c.id.to_string(),
            sender.clone(),
            sent_at.clone(),
        );
        sends.spawn(async move {
            let content = format!("m{n}");
            sent_at
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(content.clone(), Instant::now());
            app.send(
                &user(&sender),
                &rid(),
                &id,
                MessageKind::Text,
                &content,
                Metadata::default(),
            )
            .await
            .is_ok()
        });
    }
    let stored = sends.join_all().await.into_iter().filter(|ok| *ok).count();
    let elapsed = started.elapsed().as_secs_f64();
    let expected: usize = (0..total as usize)
        .map(|n| conversations[n % conversations.len()].2.len())
        .sum();
    let mut samples = Vec::with_capacity(expected);
    while samples.len() < expected {
        match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
            Ok(Some(d)) => samples.push(d),
            _ => break,
        }
    }
    for r in readers {
        r.abort();
    }
    println!(
        "{what}: {stored} of {total} messages stored in {elapsed:.1} s ({:.0} stored/s, {rate}/s offered); {} of {expected} deliveries",
        stored as f64 / elapsed,
        samples.len()
    );
    report(
        &format!("{what} delivery A → B"),
        samples,
        Some(Duration::from_millis(50)),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a benchmark: run it on purpose"]
async fn bench_delivery() {
    let w = World::with(titan_chat::config::Settings {
        max_group_members: 50,
        max_message_bytes: 1024,
        ..settings()
    })
    .await;
    let mut direct = Vec::new();
    for n in 0..1_000 {
        let (a, b) = (format!("u{n}"), format!("v{n}"));
        let c = w.direct(&a, &b).await;
        direct.push((c, a, vec![b]));
    }
    delivery(&w, "1:1 (1,000 conversations)", direct, 1_000, 10).await;
    let mut groups = Vec::new();
    for g in 0..20 {
        let members: Vec<String> = (1..50).map(|m| format!("g{g}m{m}")).collect();
        let c = w
            .app
            .create_group(&user(&format!("g{g}m0")), &rid(), "group", &members)
            .await
            .expect("group");
        groups.push((c, format!("g{g}m0"), members));
    }
    delivery(
        &w,
        "50-member groups (20 groups, 980 readers)",
        groups,
        1_000,
        10,
    )
    .await;
}
