//! The chat load generator: `titan serve chat` on two replicas sharing PostgreSQL and Redis,
//! every user connected over the WebSocket (`/v1/chat/ws`, half of them on each replica, the
//! two sides of every DIRECT conversation on different replicas) and subscribed to its
//! conversations; messages sent over gRPC on replica A at a fixed rate, first to 1:1
//! conversations, then to 50-member groups. It prints delivery latency p50/p99 (gRPC send
//! called → frame parsed by the receiving socket, one clock: this process), messages stored
//! per second, each replica's resident memory, and the p99 of a page of 50 from a
//! 1,000,000-message conversation.

use std::{
    fmt,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, ensure};
use futures::{SinkExt, StreamExt, stream};
use serde_json::{Value, json};
use titan_e2e::{Cell, CellOptions, authed};
use titan_kit::reexport::sqlx;
use titan_proto::chat::v1::{self as pb, chat_service_client::ChatServiceClient};
use tokio::{sync::mpsc, task::JoinSet};
use tokio_tungstenite::tungstenite::Message;
use tonic::transport::Channel;

use crate::{
    Latencies,
    ws::{Socket, connect, raise_file_limit, rss},
};

const PATH: &str = "/v1/chat/ws";
/// Connection limits raised past what is measured; sends limited only by the store.
const CONFIG: &str = "realtime: { allowMissingOrigin: true, maxConnections: 1000000 }\nservices:\n  chat: { sendBurst: 10000, sendIntervalMs: 1, maxGroupMembers: 50 }\n";
/// Handshakes (and set-up calls) in flight at once.
const CONCURRENCY: usize = 128;
/// How long the benchmark waits for every delivery before it reports what it has.
const PATIENCE: Duration = Duration::from_secs(60);
/// Messages of the conversation the history pages are read from.
const HISTORY_MESSAGES: i64 = 1_000_000;

#[derive(Debug, Clone)]
pub struct ChatOptions {
    /// Connected users (even), half on each replica.
    pub users: usize,
    /// Members of each group (the users are split into groups of this size).
    pub group_size: usize,
    /// Messages sent per second in each phase.
    pub rate: u32,
    pub duration: Duration,
    /// Client source addresses 127.0.0.1 ..= 127.0.0.N.
    pub sources: u8,
    /// History pages read (0 skips the 1,000,000-message conversation).
    pub pages: usize,
    pub release: bool,
}

impl ChatOptions {
    /// CI's short mode: a few users, a few seconds, a small history.
    pub fn quick() -> Self {
        Self {
            users: 200,
            group_size: 50,
            rate: 100,
            duration: Duration::from_secs(2),
            sources: 1,
            pages: 0,
            release: false,
        }
    }
}

#[derive(Debug, Default)]
pub struct Phase {
    pub sent: u64,
    /// Sends refused or failed, by gRPC code.
    pub failed: std::collections::BTreeMap<String, u64>,
    pub stored_per_second: f64,
    pub expected: u64,
    pub delivered: u64,
    pub latencies: Latencies,
}

#[derive(Debug, Default)]
pub struct ChatReport {
    pub users: usize,
    pub direct: Phase,
    pub groups: Phase,
    pub rss: (u64, u64),
    pub history: Option<Latencies>,
}

impl ChatReport {
    /// Every message reached every receiver once.
    pub fn exact(&self) -> bool {
        [&self.direct, &self.groups]
            .iter()
            .all(|p| p.delivered == p.expected)
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} sent ({} failed: {:?}), {:.0} stored/s, {} of {} deliveries; latency p50 {:.2} ms, p99 {:.2} ms (target p99 < 50 ms)",
            self.sent,
            self.failed.values().sum::<u64>(),
            self.failed,
            self.stored_per_second,
            self.delivered,
            self.expected,
            ms(self.latencies.quantile(0.5)),
            ms(self.latencies.quantile(0.99)),
        )
    }
}

impl fmt::Display for ChatReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "chat: {} users connected over two replicas", self.users)?;
        writeln!(f, "  1:1:    {}", self.direct)?;
        writeln!(f, "  groups: {}", self.groups)?;
        writeln!(
            f,
            "  replica RSS: A {:.0} MiB, B {:.0} MiB",
            self.rss.0 as f64 / 1048576.0,
            self.rss.1 as f64 / 1048576.0
        )?;
        if let Some(h) = &self.history {
            writeln!(
                f,
                "  history page of 50 from a {HISTORY_MESSAGES}-message conversation over gRPC: p50 {:.2} ms, p99 {:.2} ms (target p99 < 5 ms)",
                ms(h.quantile(0.5)),
                ms(h.quantile(0.99))
            )?;
        }
        Ok(())
    }
}

type Grpc = ChatServiceClient<Channel>;

fn user(i: usize) -> String {
    format!("u{i}")
}

/// Subscribes `ws` to `conversations` and waits for every ack.
async fn subscribe(ws: &mut Socket, conversations: &[String]) -> anyhow::Result<()> {
    for (n, c) in conversations.iter().enumerate() {
        let frame = json!({"type": "subscribe", "id": n, "payload": {"conversationId": c}});
        ws.send(Message::Text(frame.to_string().into())).await?;
    }
    let mut acks = 0;
    while acks < conversations.len() {
        let next = tokio::time::timeout(PATIENCE, ws.next())
            .await
            .context("no subscribe ack in time")?;
        if let Some(Ok(Message::Text(text))) = next {
            let frame: Value = serde_json::from_str(text.as_str())?;
            ensure!(frame["type"] != "error", "subscribe refused: {frame}");
            acks += usize::from(frame["type"] == "ack");
        }
    }
    Ok(())
}

/// Reads a socket until it closes: for each message of another user, the microseconds since
/// `start` written in it, subtracted from now.
async fn read(mut ws: Socket, me: String, start: Instant, out: mpsc::UnboundedSender<u32>) {
    while let Some(Ok(message)) = ws.next().await {
        let Message::Text(text) = message else {
            continue;
        };
        let Ok(frame) = serde_json::from_str::<Value>(text.as_str()) else {
            continue;
        };
        if frame["type"] != "message" || frame["payload"]["senderId"] == me.as_str() {
            continue;
        }
        let sent = frame["payload"]["content"]
            .as_str()
            .and_then(|c| c.strip_prefix("t="))
            .and_then(|t| t.parse::<u128>().ok());
        if let Some(sent) = sent {
            let now = start.elapsed().as_micros();
            let _ = out.send(u32::try_from(now.saturating_sub(sent)).unwrap_or(u32::MAX));
        }
    }
}

/// Sends `rate` messages a second for `duration` over gRPC, round-robin over `targets`
/// (conversation, sender token), and collects `receivers_each` deliveries per message.
async fn phase(
    client: &Grpc,
    targets: &[(String, String)],
    receivers_each: u64,
    options: &ChatOptions,
    start: Instant,
    deliveries: &mut mpsc::UnboundedReceiver<u32>,
) -> anyhow::Result<Phase> {
    let total = u64::from(options.rate) * options.duration.as_secs();
    let mut tick = tokio::time::interval(Duration::from_secs(1) / options.rate.max(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let began = Instant::now();
    let mut sends = JoinSet::new();
    for n in 0..total {
        tick.tick().await;
        let (conversation, token) = targets[usize::try_from(n)? % targets.len()].clone();
        let mut client = client.clone();
        sends.spawn(async move {
            let content = format!("t={}", start.elapsed().as_micros());
            client
                .send_message(authed(
                    pb::SendMessageRequest {
                        request_id: uuid::Uuid::new_v4().to_string(),
                        conversation_id: conversation,
                        r#type: pb::MessageType::Text as i32,
                        content,
                        metadata: None,
                    },
                    &token,
                ))
                .await
                .map(drop)
                .map_err(|status| format!("{:?}", status.code()))
        });
    }
    let mut failed = std::collections::BTreeMap::new();
    let mut stored = 0u64;
    for outcome in sends.join_all().await {
        match outcome {
            Ok(()) => stored += 1,
            Err(code) => *failed.entry(code).or_insert(0) += 1,
        }
    }
    let elapsed = began.elapsed().as_secs_f64();
    let expected = stored * receivers_each;
    let mut all = Vec::with_capacity(usize::try_from(expected)?);
    while (all.len() as u64) < expected {
        match tokio::time::timeout(PATIENCE, deliveries.recv()).await {
            Ok(Some(micros)) => all.push(micros),
            _ => break,
        }
    }
    all.sort_unstable();
    Ok(Phase {
        sent: total,
        failed,
        stored_per_second: stored as f64 / elapsed,
        expected,
        delivered: all.len() as u64,
        latencies: Latencies(all),
    })
}

/// Pages of 50 at random places of one 1,000,000-message conversation, over gRPC.
async fn history(cell: &Cell, client: &mut Grpc, pages: usize) -> anyhow::Result<Latencies> {
    let owner = cell.token(&user(0), &[]);
    let c = client
        .create_group(authed(
            pb::CreateGroupRequest {
                request_id: "history".into(),
                name: "history".into(),
                member_ids: vec![],
            },
            &owner,
        ))
        .await?
        .into_inner()
        .conversation
        .context("no conversation")?
        .id;
    let id: uuid::Uuid = c.parse()?;
    let mut tx = cell.db.pool.begin().await?;
    // Set-up, not serving: no statement timeout for the million rows.
    sqlx::query("SET LOCAL statement_timeout = 0")
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO chat_messages (conversation_id, id, seq, sender_id, kind, content, sent_at) \
         SELECT $1, ('01900000-0000-7000-8000-' || lpad(to_hex(s), 12, '0'))::uuid, s, 'u0', 'TEXT', \
                'message number ' || s, now() FROM generate_series(1, $2::bigint) s",
    )
    .bind(id)
    .bind(HISTORY_MESSAGES)
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE chat_conversations SET last_seq = $2 WHERE id = $1")
        .bind(id)
        .bind(HISTORY_MESSAGES)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    sqlx::query("ANALYZE chat_messages")
        .execute(&cell.db.pool)
        .await?;
    let mut all = Vec::with_capacity(pages);
    for n in 0..pages {
        let s = (n as i64 * 7_919 * 127) % (HISTORY_MESSAGES - 100) + 51;
        let started = Instant::now();
        let page = client
            .list_messages(authed(
                pb::ListMessagesRequest {
                    conversation_id: c.clone(),
                    before: format!("01900000-0000-7000-8000-{s:012x}"),
                    after: String::new(),
                    limit: 50,
                },
                &owner,
            ))
            .await?
            .into_inner();
        all.push(u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX));
        ensure!(
            page.messages.len() == 50,
            "a page of {}",
            page.messages.len()
        );
    }
    all.sort_unstable();
    Ok(Latencies(all))
}

pub async fn chat(options: &ChatOptions) -> anyhow::Result<ChatReport> {
    ensure!(
        options.users >= 2 * options.group_size.max(2) && options.users.is_multiple_of(2),
        "users must be even and hold at least two groups"
    );
    raise_file_limit()?;
    let cell = Cell::start_with(CellOptions {
        services: vec!["chat".into()],
        config: Some(CONFIG.into()),
        release: options.release,
    })
    .await;
    let b = cell.replica();
    let client = ChatServiceClient::new(cell.channel().await);
    let tokens: Vec<String> = (0..options.users)
        .map(|i| cell.token(&user(i), &[]))
        .collect();
    let tokens = Arc::new(tokens);

    // Conversations: pairs (2k, 2k+1), groups of consecutive users.
    let directs: Vec<String> = stream::iter(0..options.users / 2)
        .map(|k| {
            let (mut client, tokens) = (client.clone(), tokens.clone());
            async move {
                let r = client
                    .create_direct(authed(
                        pb::CreateDirectRequest {
                            other_user_id: user(2 * k + 1),
                        },
                        &tokens[2 * k],
                    ))
                    .await?;
                r.into_inner()
                    .conversation
                    .map(|c| c.id)
                    .context("no conversation")
            }
        })
        .buffered(CONCURRENCY)
        .collect::<Vec<anyhow::Result<String>>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    let group_count = options.users / options.group_size;
    let groups: Vec<String> = stream::iter(0..group_count)
        .map(|g| {
            let (mut client, tokens) = (client.clone(), tokens.clone());
            let first = g * options.group_size;
            let members = (first + 1..first + options.group_size).map(user).collect();
            async move {
                let r = client
                    .create_group(authed(
                        pb::CreateGroupRequest {
                            request_id: format!("g{g}"),
                            name: format!("group {g}"),
                            member_ids: members,
                        },
                        &tokens[first],
                    ))
                    .await?;
                r.into_inner()
                    .conversation
                    .map(|c| c.id)
                    .context("no conversation")
            }
        })
        .buffered(CONCURRENCY)
        .collect::<Vec<anyhow::Result<String>>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;

    // Every user connected, even users on A, odd on B: both sides of a pair differ.
    let start = Instant::now();
    let (tx, mut deliveries) = mpsc::unbounded_channel();
    let sources = options.sources.max(1);
    let sockets: Vec<(usize, Socket)> = stream::iter(0..options.users)
        .map(|i| {
            let http = if i % 2 == 0 { cell.http } else { b.http };
            let token = tokens[i].clone();
            let mut wanted = vec![directs[i / 2].clone()];
            if let Some(g) = groups.get(i / options.group_size) {
                wanted.push(g.clone());
            }
            let source = u8::try_from(i % usize::from(sources)).unwrap_or(0) + 1;
            async move {
                let mut ws = connect(http, PATH, source, &token).await?;
                subscribe(&mut ws, &wanted).await?;
                anyhow::Ok((i, ws))
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    let mut readers = JoinSet::new();
    for (i, ws) in sockets {
        readers.spawn(read(ws, user(i), start, tx.clone()));
    }
    drop(tx);

    let direct_targets: Vec<(String, String)> = (0..options.users / 2)
        .map(|k| (directs[k].clone(), tokens[2 * k].clone()))
        .collect();
    let direct = phase(&client, &direct_targets, 1, options, start, &mut deliveries).await?;
    let group_targets: Vec<(String, String)> = (0..group_count)
        .map(|g| (groups[g].clone(), tokens[g * options.group_size].clone()))
        .collect();
    let group_phase = phase(
        &client,
        &group_targets,
        (options.group_size - 1) as u64,
        options,
        start,
        &mut deliveries,
    )
    .await?;
    let rss = (rss(&cell.process)?, rss(&b.process)?);
    readers.abort_all();
    let history = if options.pages > 0 {
        let mut client = client.clone();
        Some(history(&cell, &mut client, options.pages).await?)
    } else {
        None
    };
    Ok(ChatReport {
        users: options.users,
        direct,
        groups: group_phase,
        rss,
        history,
    })
}
