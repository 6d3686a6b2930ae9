//! An event written through the outbox of the running binary reaches a consumer process exactly
//! once, also when consumers are killed before they commit and after they commit but before
//! they acknowledge; one a group gave up on is listed and re-driven with `titan events
//! dead-letters`.

use std::process::Command;

use nix::sys::signal::Signal;
use redis::AsyncCommands;
use titan_e2e::Process;
use titan_proto::ping::v1::{EmitRequest, ping_service_client::PingServiceClient};

use titan_e2e::{Cell, authed};

use titan_kit::{
    config::EventsConfig,
    events::{ConsumerOptions, Outcome, StreamReader, consumer::Message},
    testing::eventually,
};

fn consumer(cell: &Cell, name: &str, mode: &str) -> Process {
    let mut process = Process::spawn(
        Command::new(env!("CARGO_BIN_EXE_e2e-consumer"))
            .args([
                "--postgres-url",
                &cell.db.url,
                "--redis-url",
                &cell.redis.url,
            ])
            .args([
                "--key-prefix",
                cell.redis.handle.prefix(),
                "--name",
                name,
                "--mode",
                mode,
            ]),
    );
    process.drain_stderr();
    tokio::task::block_in_place(|| process.stdout_line("ready"));
    process
}

async fn emit(cell: &Cell, request_id: &str) -> String {
    let mut ping = PingServiceClient::new(cell.channel().await);
    let request = authed(
        EmitRequest {
            request_id: request_id.into(),
            message: "event".into(),
        },
        &cell.token("u-1", &[]),
    );
    ping.emit(request)
        .await
        .expect("emit")
        .into_inner()
        .event_id
}

async fn received(cell: &Cell, event_id: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM e2e_received WHERE event_id::text = $1")
        .bind(event_id)
        .fetch_one(&cell.db.pool)
        .await
        .expect("count received")
}

async fn pending(cell: &Cell) -> usize {
    let mut conn = cell.redis.handle.conn.clone();
    let stream = titan_kit::events::stream_key(&cell.redis.handle, "ping");
    let reply: redis::streams::StreamPendingReply =
        conn.xpending(&stream, "e2e").await.expect("xpending");
    reply.count()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_event_arrives_exactly_once_across_consumer_kills() {
    let cell = Cell::start().await;

    // The first consumer is killed in its handler, before it commits.
    let mut before_commit = consumer(&cell, "first", "hang-before-commit");
    let event_id = emit(&cell, "r-1").await;
    let handling = tokio::task::block_in_place(|| before_commit.stdout_line("handling"));
    assert_eq!(handling, event_id);
    before_commit.signal(Signal::SIGKILL);
    tokio::task::block_in_place(|| before_commit.wait_exit(std::time::Duration::from_secs(30)));
    assert_eq!(
        received(&cell, &event_id).await,
        0,
        "the killed attempt left no effect"
    );

    // The second claims it once idle, commits its effect, and is killed before acknowledging.
    let mut after_commit = consumer(&cell, "second", "hang-after-commit");
    let committed = tokio::task::block_in_place(|| after_commit.stdout_line("committed"));
    assert_eq!(committed, "Handled");
    after_commit.signal(Signal::SIGKILL);
    tokio::task::block_in_place(|| after_commit.wait_exit(std::time::Duration::from_secs(30)));
    assert_eq!(received(&cell, &event_id).await, 1);
    assert_eq!(pending(&cell).await, 1, "committed but never acknowledged");

    // The restarted consumer claims it again, sees it was done, and only acknowledges it; then
    // it handles the next event normally.
    let _restarted = consumer(&cell, "third", "normal");
    eventually("the message to be acknowledged", || async {
        (pending(&cell).await == 0).then_some(())
    })
    .await;
    assert_eq!(received(&cell, &event_id).await, 1, "handled exactly once");

    let next = emit(&cell, "r-2").await;
    eventually("the next event", || async {
        (received(&cell, &next).await == 1).then_some(())
    })
    .await;
    eventually("everything acknowledged", || async {
        (pending(&cell).await == 0).then_some(())
    })
    .await;
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM e2e_received")
        .fetch_one(&cell.db.pool)
        .await
        .expect("total");
    assert_eq!(total, 2);
}

/// The next message the group `reader` reads (the first read may wait for the relay).
async fn next_message(reader: &mut StreamReader) -> Message {
    let read = async {
        loop {
            if let Some(message) = reader.next_batch().await.expect("read").into_iter().next() {
                return message;
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(60), read)
        .await
        .expect("a message within a minute")
}

/// `titan events dead-letters <args>` against the cell's Redis: its output, one JSON object
/// per line.
fn dead_letters(cell: &Cell, args: &[&str]) -> Vec<serde_json::Value> {
    let out = Command::new(titan_e2e::titan_binary(false))
        .args(["events", "dead-letters"])
        .args(args)
        .env("TITAN_CELL", "e2e")
        .env("TITAN_REDIS_URL", &cell.redis.url)
        .env("TITAN_REDIS_KEY_PREFIX", cell.redis.handle.prefix())
        // The configuration is validated whole, as in the pod the command is run in.
        .env(
            "TITAN_AUTH_HS256_SECRET",
            "a-secret-the-command-never-uses-0123456789",
        )
        .output()
        .expect("run titan events dead-letters");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect()
}

/// An operator lists what a group gave up on and, once the cause is fixed, replays it: the
/// event is back on the source stream for the group, and gone from its dead letters.
#[tokio::test(flavor = "multi_thread")]
async fn dead_letters_are_listed_and_replayed_with_the_cli() {
    let cell = Cell::start().await;
    let mut options = ConsumerOptions::new("ping", "auditor", "a-1", &EventsConfig::default());
    options.block = std::time::Duration::from_millis(100);
    let mut auditor = StreamReader::new(cell.redis.handle.clone(), options)
        .await
        .expect("group");
    let event_id = emit(&cell, "r-dead").await;
    let message = next_message(&mut auditor).await;
    auditor
        .settle(&message, &Outcome::Rejected("no parser for it".into()))
        .await
        .expect("dead-letter");

    let source = ["--source", "ping", "--group", "auditor"];
    let listed = dead_letters(&cell, &[&["list"][..], &source].concat());
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        (
            listed[0]["event_id"].as_str(),
            listed[0]["event_type"].as_str(),
            listed[0]["error"].as_str(),
            listed[0]["stream_id"].as_str(),
        ),
        (
            Some(event_id.as_str()),
            Some("ping.emitted"),
            Some("no parser for it"),
            Some(message.stream_id.as_str())
        )
    );

    let replayed = dead_letters(&cell, &[&["replay"][..], &source, &["--all"]].concat());
    assert_eq!(replayed, listed, "replay prints what it re-drove");
    assert_eq!(
        dead_letters(&cell, &[&["list"][..], &source].concat()),
        Vec::<serde_json::Value>::new(),
        "nothing left"
    );
    let again = next_message(&mut auditor).await;
    assert_eq!(
        again.event.map(|e| e.id.to_string()),
        Ok(event_id),
        "the group reads the event again"
    );
}
