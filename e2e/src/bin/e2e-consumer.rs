//! A consumer process for the end-to-end suite: reads the `ping` service's events on the `e2e`
//! group with kit's consumer and records each in `e2e_received`. Its modes stop it at a chosen
//! point so the suite can kill it there: `hang-before-commit` (the handler never returns) and
//! `hang-after-commit` (the effect is committed, the message never acknowledged).
#![forbid(unsafe_code)]

use std::{process::ExitCode, time::Duration};

use clap::{Parser, ValueEnum};
use sqlx::PgConnection;
use titan_kit::{
    KitError,
    config::{EventsConfig, PostgresConfig, RedisConfig},
    datastores::{postgres, redis::RedisHandle},
    events::{Consumer, ConsumerOptions, Envelope, Handler, HandlerError},
};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Mode {
    Normal,
    HangBeforeCommit,
    HangAfterCommit,
}

#[derive(Debug, Parser)]
struct Args {
    #[arg(long)]
    postgres_url: String,
    #[arg(long)]
    redis_url: String,
    #[arg(long)]
    key_prefix: String,
    /// This consumer's name in the group.
    #[arg(long)]
    name: String,
    #[arg(long, value_enum)]
    mode: Mode,
    #[arg(long, default_value_t = 300)]
    claim_idle_ms: u64,
}

struct Recorder {
    name: String,
    hang: bool,
}

impl Handler for Recorder {
    async fn handle(&self, tx: &mut PgConnection, event: &Envelope) -> Result<(), HandlerError> {
        sqlx::query(
            "INSERT INTO e2e_received (event_id, event_type, consumer) VALUES ($1, $2, $3)",
        )
        .bind(event.id)
        .bind(&event.kind)
        .bind(&self.name)
        .execute(&mut *tx)
        .await?;
        println!("handling {}", event.id);
        if self.hang {
            std::future::pending::<()>().await;
        }
        Ok(())
    }
}

async fn run(args: Args) -> Result<(), KitError> {
    let Args {
        postgres_url,
        redis_url,
        key_prefix,
        name,
        mode,
        claim_idle_ms,
    } = args;
    let pool =
        postgres::connect(&PostgresConfig::new(postgres_url.into(), 4), "e2e-consumer").await?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS e2e_received (
            n BIGSERIAL PRIMARY KEY, event_id UUID NOT NULL, event_type TEXT NOT NULL, consumer TEXT NOT NULL)",
    )
    .execute(&pool)
    .await?;
    let redis = RedisHandle::connect(&RedisConfig::new(redis_url, key_prefix)).await?;
    let events = EventsConfig {
        claim_idle: Duration::from_millis(claim_idle_ms),
        ..EventsConfig::default()
    };
    let mut options = ConsumerOptions::new("ping", "e2e", &name, &events);
    options.block = Duration::from_millis(200);
    let hang = matches!(mode, Mode::HangBeforeCommit);
    let mut consumer = Consumer::new(pool, redis, options, Recorder { name, hang }).await?;
    println!("ready");
    match mode {
        Mode::Normal | Mode::HangBeforeCommit => consumer.run(CancellationToken::new()).await,
        Mode::HangAfterCommit => loop {
            let mut batch = consumer.claim_stale().await?;
            if batch.is_empty() {
                batch = consumer.next_batch().await?;
            }
            if let Some(message) = batch.first() {
                let outcome = consumer.handle(message).await;
                println!("committed {outcome:?}");
                std::future::pending::<()>().await;
            }
        },
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("e2e-consumer: {e}");
            ExitCode::FAILURE
        }
    }
}
