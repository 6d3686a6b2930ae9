//! `titan-bench flashsale`: prints throughput, latency, refusals and the oversell check of the
//! flash-sale hot path. `titan-bench analytics`: event ingestion throughput and report
//! latencies. Both need the datastores of `cargo xtask datastores start` (their URLs in
//! `TITAN_TEST_*`).
#![forbid(unsafe_code)]

use std::{process::ExitCode, time::Duration};

use clap::{Parser, Subcommand};
use titan_bench::{
    Options,
    analytics::{AnalyticsOptions, analytics},
};

#[derive(Debug, Parser)]
#[command(name = "titan-bench", about = "Load generators for Titan services")]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// AttemptPurchase against `titan serve flashsale` (release build), then the raw Redis ceiling.
    Flashsale {
        #[arg(long, default_value_t = 256)]
        buyers: usize,
        #[arg(long, default_value_t = 8)]
        connections: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long, default_value_t = 10_000_000)]
        stock: u32,
        #[arg(long, default_value_t = 200_000)]
        users: u32,
        /// Use the debug build of titan (quicker to build, much slower to run).
        #[arg(long)]
        debug: bool,
        /// CI's short mode: small sold-out sale, correctness only, no raw ceiling.
        #[arg(long)]
        quick: bool,
    },
    /// TrackEvents batches against `titan serve analytics`, then funnel/retention/KPI latency
    /// over a generated history.
    Analytics {
        #[arg(long, default_value_t = 16)]
        clients: usize,
        #[arg(long, default_value_t = 4)]
        connections: usize,
        #[arg(long, default_value_t = 1000)]
        batch: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Events generated for the report latencies (0 skips them).
        #[arg(long, default_value_t = 10_000_000)]
        history: u64,
        #[arg(long)]
        debug: bool,
        #[arg(long)]
        quick: bool,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let Cli { scenario } = Cli::parse();
    match scenario {
        Scenario::Flashsale {
            buyers,
            connections,
            seconds,
            stock,
            users,
            debug,
            quick,
        } => {
            let options = if quick {
                Options::quick()
            } else {
                Options {
                    buyers,
                    connections,
                    duration: Duration::from_secs(seconds),
                    stock,
                    users,
                    release: !debug,
                }
            };
            match titan_bench::flashsale(&options, !quick).await {
                Ok(report) => {
                    println!("{report}");
                    if report.oversold == 0 {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    }
                }
                Err(e) => {
                    eprintln!("titan-bench: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Scenario::Analytics {
            clients,
            connections,
            batch,
            seconds,
            history,
            debug,
            quick,
        } => {
            let options = if quick {
                AnalyticsOptions::quick()
            } else {
                AnalyticsOptions {
                    clients,
                    connections,
                    batch,
                    duration: Duration::from_secs(seconds),
                    history,
                    release: !debug,
                }
            };
            match analytics(&options).await {
                Ok(report) => {
                    println!("{report}");
                    if report.stored == report.events {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    }
                }
                Err(e) => {
                    eprintln!("titan-bench: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
