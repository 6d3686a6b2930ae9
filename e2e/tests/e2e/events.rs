//! An event written through the outbox of the running binary reaches a consumer process exactly
//! once, also when consumers are killed before they commit and after they commit but before
//! they acknowledge.

use std::process::Command;

use nix::sys::signal::Signal;
use redis::AsyncCommands;
use titan_e2e::Process;
use titan_proto::ping::v1::{EmitRequest, ping_service_client::PingServiceClient};

use titan_e2e::{Cell, authed};

use titan_kit::testing::eventually;

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
