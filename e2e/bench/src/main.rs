//! `titan-bench flashsale`: prints throughput, latency, refusals and the oversell check of the
//! flash-sale hot path. `titan-bench analytics`: event ingestion throughput and report
//! latencies. `titan-bench ws`: idle WebSockets per replica and their memory, fan-out latency
//! across two replicas. `titan-bench chat`: chat delivery over two replicas and history pages.
//! `titan-bench livestream`: viewer heartbeats/s on one replica, comment fan-out to viewers
//! over two replicas.
//! `titan-bench fraud`: CheckTransaction at a fixed rate (client and server p99) and its maximum.
//! `titan-bench campaign`: emails per second through a real SMTP server to a 100,000-user
//! segment, and segment evaluation over 10,000,000 events.
//! `titan-bench videocall`: call setup cycles/s and signaling relay latency over two replicas.
//! `titan-bench routes`: the VRPTW solver on Solomon's instances (in process, no datastore).
//! `titan-bench driver`: position reports/s over two replicas with a watcher, nearby searches.
//! `titan-bench tracking`: signed webhook scans/s on one replica, their fan-out to subscribers
//! on the other, Track lookups.
//! `titan-bench shipping`: CreateShipment/s over two replicas (quote, label PDF to the bucket,
//! row and event), replays on the other replica, rows, events and labels checked.
//! `titan-bench coupon`: RedeemCoupon of distinct coupons/s, each stored once.
//! `titan-bench gamification`: Award to distinct users/s, each in the ledger once.
//! `titan-bench abtesting`: AssignBatch assignments/s, every exposure stored.
//! `titan-bench router`: Lookup/s and batched keys/s on one router replica, table reload time.
//! `titan-bench all [--quick]`: every scenario in sequence, one table, results.json and PNGs
//! in target/bench (what `cargo xtask bench` runs).
//! The others need the datastores of `cargo xtask datastores start` (their URLs in `TITAN_TEST_*`).
#![forbid(unsafe_code)]

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
};

use clap::{Parser, Subcommand};
use titan_bench::{
    Options,
    abtesting::AbtestingOptions,
    analytics::AnalyticsOptions,
    campaign::{CampaignOptions, Sink},
    chat::ChatOptions,
    coupon::CouponOptions,
    driver::DriverOptions,
    fraud::FraudOptions,
    gamification::GamificationOptions,
    livestream::LivestreamOptions,
    pricing::PricingOptions,
    router::RouterOptions,
    routes::RoutesOptions,
    shipping::ShippingOptions,
    suite::{self, Job},
    tracking::TrackingOptions,
    videocall::VideocallOptions,
    ws::WsOptions,
};

#[derive(Debug, Parser)]
#[command(name = "titan-bench", about = "Load generators for Titan services")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where a single scenario draws its PNGs.
const PNG_DIR: &str = "target/titan-bench";

#[derive(Debug, Subcommand)]
enum Command {
    /// Every scenario in sequence (each with its own defaults, or `quick()` with --quick),
    /// then one table: figure, target, result, pass/short, same-run baseline; writes
    /// results.json and PNGs in --out. Fails when a correctness check fails.
    All {
        /// CI's run: each scenario's short mode on the debug build, correctness only.
        #[arg(long)]
        quick: bool,
        /// Only these scenarios (comma-separated), still in the suite's order.
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
        #[arg(long, default_value = "target/bench")]
        out: PathBuf,
    },
    #[command(flatten)]
    One(Scenario),
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// RedeemCoupon of distinct single-use coupons through `titan serve coupon`, replays and
    /// used coupons tried again; stored redemptions and the campaign's usage counted.
    Coupon {
        #[arg(long, default_value_t = 30_000)]
        coupons: usize,
        /// Redemptions in flight.
        #[arg(long, default_value_t = 64)]
        clients: usize,
        #[arg(long, default_value_t = 4)]
        connections: usize,
        #[arg(long)]
        debug: bool,
        #[arg(long)]
        quick: bool,
    },
    /// Award to distinct users through `titan serve gamification`, replays answered as
    /// duplicates; the ledger's rows and sum checked.
    Gamification {
        #[arg(long, default_value_t = 30_000)]
        users: usize,
        /// Awards in flight.
        #[arg(long, default_value_t = 64)]
        clients: usize,
        #[arg(long, default_value_t = 4)]
        connections: usize,
        #[arg(long)]
        debug: bool,
        #[arg(long)]
        quick: bool,
    },
    /// AssignBatch of running experiments for distinct users (two visits each) through
    /// `titan serve abtesting`; exposures in ClickHouse against the (experiment, user) pairs.
    Abtesting {
        #[arg(long, default_value_t = 100)]
        experiments: usize,
        #[arg(long, default_value_t = 20_000)]
        users: usize,
        /// Calls in flight.
        #[arg(long, default_value_t = 32)]
        clients: usize,
        #[arg(long, default_value_t = 4)]
        connections: usize,
        #[arg(long)]
        debug: bool,
        #[arg(long)]
        quick: bool,
    },
    /// Lookup and LookupMany through `titan serve router` (a 16,384-bucket table of 8 cells in
    /// a file), every answer checked; then table reloads timed.
    Router {
        #[arg(long, default_value_t = 1_000_000)]
        lookups: usize,
        #[arg(long, default_value_t = 20_000)]
        batches: usize,
        /// Keys per LookupMany.
        #[arg(long, default_value_t = 100)]
        batch: usize,
        /// Calls in flight.
        #[arg(long, default_value_t = 128)]
        clients: usize,
        #[arg(long, default_value_t = 4)]
        connections: usize,
        #[arg(long, default_value_t = 5)]
        reloads: usize,
        #[arg(long)]
        debug: bool,
        #[arg(long)]
        quick: bool,
    },
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
        /// Keep the sale on the test Redis Cluster (`TITAN_TEST_REDIS_CLUSTER_URL`) instead of
        /// the single Redis; the raw ceiling is measured on the cluster too.
        #[arg(long)]
        redis_cluster: bool,
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
    /// Idle sockets held by one `titan serve ping` replica and their memory, then fan-out
    /// latency from a publish to every subscriber over two replicas, drawn as a PNG.
    Ws {
        /// Idle sockets on one replica (capped by the file limit; 0 skips that part).
        #[arg(long, default_value_t = 50_000)]
        idle: usize,
        /// Client source addresses 127.0.0.1 ..= 127.0.0.N.
        #[arg(long, default_value_t = 4)]
        sources: u8,
        #[arg(long, default_value_t = 10_000)]
        subscribers: usize,
        /// Topics the subscribers are spread over (each message reaches subscribers/topics).
        #[arg(long, default_value_t = 1_000)]
        topics: usize,
        /// Messages published per second.
        #[arg(long, default_value_t = 1_000)]
        rate: u32,
        /// Publishing sockets, half on each replica.
        #[arg(long, default_value_t = 20)]
        publishers: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long, default_value = "target/titan-bench/ws-fanout-latency.png")]
        png: PathBuf,
        #[arg(long)]
        debug: bool,
        #[arg(long)]
        quick: bool,
    },
    /// Chat over two `titan serve chat` replicas: every user on a WebSocket, messages sent
    /// over gRPC to 1:1 conversations then to groups; delivery latency, stored messages/s,
    /// replica RSS, and history pages of 50 from a 1,000,000-message conversation.
    Chat {
        /// Connected users, half per replica (even).
        #[arg(long, default_value_t = 10_000)]
        users: usize,
        #[arg(long, default_value_t = 50)]
        group_size: usize,
        /// Messages sent per second in each phase.
        #[arg(long, default_value_t = 1_000)]
        rate: u32,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Client source addresses 127.0.0.1 ..= 127.0.0.N.
        #[arg(long, default_value_t = 4)]
        sources: u8,
        /// History pages read (0 skips the 1,000,000-message conversation).
        #[arg(long, default_value_t = 2_000)]
        pages: usize,
        #[arg(long)]
        debug: bool,
        #[arg(long)]
        quick: bool,
    },
    /// Videocall over two `titan serve videocall` replicas: Initiate → Answer → End cycles/s
    /// from concurrent pairs over gRPC, then signaling frames from callers on replica A to
    /// callees on replica B (relay latency p50/p95/p99 and frames/s).
    Videocall {
        /// Caller/callee pairs cycling at once.
        #[arg(long, default_value_t = 32)]
        pairs: usize,
        /// Initiate → Answer → End cycles per pair.
        #[arg(long, default_value_t = 50)]
        cycles: u32,
        /// Active calls exchanging signaling frames.
        #[arg(long, default_value_t = 50)]
        signalers: usize,
        /// Signaling frames sent in all.
        #[arg(long, default_value_t = 5_000)]
        frames: u64,
        /// Frames sent per second, all callers together.
        #[arg(long, default_value_t = 1_000)]
        rate: u32,
        /// Client source addresses 127.0.0.1 ..= 127.0.0.N.
        #[arg(long, default_value_t = 1)]
        sources: u8,
        #[arg(long)]
        debug: bool,
        #[arg(long)]
        quick: bool,
    },
    /// Livestream over `titan serve livestream`: viewer heartbeats one replica absorbs
    /// (concurrent gRPC callers), then comment fan-out to viewers on two replicas.
    Livestream {
        /// Concurrent heartbeat callers.
        #[arg(long, default_value_t = 64)]
        callers: usize,
        #[arg(long, default_value_t = 10)]
        heartbeat_seconds: u64,
        /// Viewers on the WebSocket, half per replica.
        #[arg(long, default_value_t = 5_000)]
        viewers: usize,
        #[arg(long, default_value_t = 50)]
        comments: usize,
        /// Milliseconds between comments.
        #[arg(long, default_value_t = 100)]
        comment_interval_ms: u64,
        /// Client source addresses 127.0.0.1 ..= 127.0.0.N.
        #[arg(long, default_value_t = 2)]
        sources: u8,
        #[arg(long)]
        debug: bool,
        #[arg(long)]
        quick: bool,
    },
    /// CheckTransaction against `titan serve fraud` over users with week-long histories in
    /// PostgreSQL and Redis: a fixed rate (client and server p99), then the maximum rate.
    Fraud {
        #[arg(long, default_value_t = 20_000)]
        users: u32,
        /// Earlier transactions per user.
        #[arg(long, default_value_t = 20)]
        history: u32,
        #[arg(long, default_value_t = 2_000)]
        rate: u32,
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        /// Concurrent callers of the maximum-rate phase.
        #[arg(long, default_value_t = 64)]
        clients: usize,
        #[arg(long, default_value_t = 10)]
        max_seconds: u64,
        #[arg(long, default_value_t = 4)]
        connections: usize,
        #[arg(long)]
        debug: bool,
        #[arg(long)]
        quick: bool,
    },
    /// An email campaign through `titan serve campaign` and a real SMTP server to a generated
    /// segment (each member once), then EstimateSegment over generated events.
    Campaign {
        #[arg(long, default_value_t = 100_000)]
        users: u32,
        #[arg(long, default_value_t = 10_000_000)]
        events: u64,
        /// Deliveries claimed per batch (the service's sendBatchSize).
        #[arg(long, default_value_t = 1_000)]
        batch: u32,
        /// The SMTP server: aiosmtpd logging recipients, aiosmtpd writing a maildir (as the
        /// tests), or a relay of ours that only counts.
        #[arg(long, value_enum, default_value_t = Sink::Recipients)]
        sink: Sink,
        #[arg(long)]
        debug: bool,
        #[arg(long)]
        quick: bool,
    },
    /// AVAILABLE drivers reporting positions over two `titan serve driver` replicas while a
    /// dispatcher on the second watches one of them (every position must arrive), then
    /// NearbyDrivers searches; a city-wide search must find every driver.
    Driver {
        /// Registered drivers (1-1000).
        #[arg(long, default_value_t = 1_000)]
        drivers: usize,
        /// Concurrent callers, half per replica.
        #[arg(long, default_value_t = 32)]
        clients: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long, default_value_t = 20_000)]
        searches: usize,
        #[arg(long)]
        debug: bool,
        #[arg(long)]
        quick: bool,
    },
    /// Tracking over two `titan serve tracking` replicas: shipments from the bus, carriers
    /// posting signed webhook scans to B while subscribers on A follow some records (each
    /// scan must arrive once), then Track lookups; the records hold exactly what was sent.
    Tracking {
        #[arg(long, default_value_t = 1_000)]
        shipments: usize,
        /// Records followed by a subscriber on replica A.
        #[arg(long, default_value_t = 100)]
        subscribers: usize,
        /// Concurrent carriers posting to replica B.
        #[arg(long, default_value_t = 16)]
        clients: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long, default_value_t = 20_000)]
        lookups: usize,
        #[arg(long)]
        debug: bool,
        #[arg(long)]
        quick: bool,
    },
    /// Checkouts booking shipments over two `titan serve shipping` replicas (flat-rate quote,
    /// label PDF to the bucket, row and event in one transaction), then every tenth request
    /// again on the other replica; rows, events on the bus and sampled labels must match.
    Shipping {
        #[arg(long, default_value_t = 2_000)]
        shipments: usize,
        /// Concurrent callers, half per replica.
        #[arg(long, default_value_t = 16)]
        clients: usize,
        #[arg(long)]
        debug: bool,
        #[arg(long)]
        quick: bool,
    },
    /// A re-optimisation round over `titan serve pricing` with a generated catalogue and
    /// demand, then GetPrices of 100 products per call from concurrent clients.
    Pricing {
        #[arg(long, default_value_t = 100_000)]
        products: u32,
        #[arg(long, default_value_t = 2_000_000)]
        events: u64,
        #[arg(long, default_value_t = 32)]
        clients: usize,
        #[arg(long, default_value_t = 4)]
        connections: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long)]
        debug: bool,
        #[arg(long)]
        quick: bool,
    },
    /// The VRPTW solver on every Solomon instance at each budget, checked by the independent
    /// checker: gap to best-known per instance, class and overall; one instance drawn.
    Routes {
        #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../../services/route/data/solomon"))]
        data: PathBuf,
        /// Budgets in milliseconds, each instance solved once per budget.
        #[arg(long = "budget-ms", value_delimiter = ',', default_values_t = [1000u64, 5000])]
        budgets: Vec<u64>,
        /// Instances whose name starts with one of these (e.g. `C1,R205`); all when absent.
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Minimise fewest `vehicles` first (to compare with the hierarchical rows) instead
        /// of `distance` (the gap).
        #[arg(long)]
        vehicles_first: bool,
        /// The instance whose routes are drawn (at the last budget); the first one solved
        /// when absent.
        #[arg(long)]
        draw: Option<String>,
        #[arg(long, default_value = "target/titan-bench/routes.png")]
        png: PathBuf,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    match Cli::parse().command {
        Command::All { quick, only, out } => all(quick, &only, &out).await,
        Command::One(scenario) => {
            let (job, quick) = job(scenario);
            one(job, quick).await
        }
    }
}

/// Runs one scenario and prints its report, figures and PNGs; the exit status says whether
/// its correctness checks held.
async fn one(job: Job, quick: bool) -> ExitCode {
    match job.run(Path::new(PNG_DIR), quick).await {
        Ok(ran) => {
            println!("{}", ran.text.trim_end());
            for f in &ran.figures {
                println!(
                    "  {:<50} {:.2} {} ({})",
                    f.figure,
                    f.result,
                    f.unit,
                    f.status.as_str()
                );
            }
            for png in &ran.pngs {
                println!("  drawn               {}", png.display());
            }
            for failure in &ran.failures {
                eprintln!("titan-bench: check failed: {failure}");
            }
            if ran.failures.is_empty() {
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

/// The suite: `only` (all when empty) in order, the table on stdout, results and PNGs in `out`.
async fn all(quick: bool, only: &[String], out: &Path) -> ExitCode {
    let jobs = if quick {
        titan_bench::suite::quick_jobs(only, out)
    } else {
        full_jobs(only, out)
    };
    let jobs = match jobs {
        Ok(jobs) => jobs,
        Err(unknown) => {
            eprintln!(
                "titan-bench: no scenario {unknown:?}; they are {}",
                suite::SCENARIOS.join(", ")
            );
            return ExitCode::FAILURE;
        }
    };
    match suite::run(jobs, out, quick).await {
        Ok(report) => {
            println!("{report}");
            if report.held() {
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

/// Every selected scenario with the defaults of its own flags (what `titan-bench <name>`
/// runs), its PNGs in `out`.
fn full_jobs(only: &[String], out: &Path) -> Result<Vec<Job>, String> {
    let mut jobs = Vec::new();
    for name in suite::selected(only)? {
        let Ok(Cli {
            command: Command::One(scenario),
        }) = Cli::try_parse_from(["titan-bench", name])
        else {
            return Err(name.to_owned());
        };
        let (mut job, _) = job(scenario);
        match &mut job {
            Job::Ws(o) => o.png = out.join("ws-fanout-latency.png"),
            Job::Routes(o) => o.png = out.join("routes.png"),
            _ => {}
        }
        jobs.push(job);
    }
    Ok(jobs)
}

impl Scenario {
    /// Whether `--quick` was given (routes has no short mode).
    fn quick(&self) -> bool {
        match self {
            Self::Routes { .. } => false,
            Self::Coupon { quick, .. }
            | Self::Gamification { quick, .. }
            | Self::Abtesting { quick, .. }
            | Self::Router { quick, .. }
            | Self::Flashsale { quick, .. }
            | Self::Analytics { quick, .. }
            | Self::Ws { quick, .. }
            | Self::Chat { quick, .. }
            | Self::Videocall { quick, .. }
            | Self::Livestream { quick, .. }
            | Self::Fraud { quick, .. }
            | Self::Campaign { quick, .. }
            | Self::Driver { quick, .. }
            | Self::Tracking { quick, .. }
            | Self::Shipping { quick, .. }
            | Self::Pricing { quick, .. } => *quick,
        }
    }
}

/// The scenario's job with the options its flags give, and whether it is a quick run.
fn job(scenario: Scenario) -> (Job, bool) {
    let quick = scenario.quick();
    let job = match scenario {
        Scenario::Coupon {
            coupons,
            clients,
            connections,
            debug,
            quick,
        } => Job::Coupon(if quick {
            CouponOptions::quick()
        } else {
            CouponOptions {
                coupons,
                clients,
                connections,
                release: !debug,
            }
        }),
        Scenario::Gamification {
            users,
            clients,
            connections,
            debug,
            quick,
        } => Job::Gamification(if quick {
            GamificationOptions::quick()
        } else {
            GamificationOptions {
                users,
                clients,
                connections,
                release: !debug,
            }
        }),
        Scenario::Abtesting {
            experiments,
            users,
            clients,
            connections,
            debug,
            quick,
        } => Job::Abtesting(if quick {
            AbtestingOptions::quick()
        } else {
            AbtestingOptions {
                experiments,
                users,
                clients,
                connections,
                release: !debug,
            }
        }),
        Scenario::Router {
            lookups,
            batches,
            batch,
            clients,
            connections,
            reloads,
            debug,
            quick,
        } => Job::Router(if quick {
            RouterOptions::quick()
        } else {
            RouterOptions {
                lookups,
                batches,
                batch,
                clients,
                connections,
                reloads,
                release: !debug,
            }
        }),
        Scenario::Flashsale {
            buyers,
            connections,
            seconds,
            stock,
            users,
            debug,
            quick,
            redis_cluster,
        } => {
            let options = if quick {
                Options {
                    redis_cluster,
                    ..Options::quick()
                }
            } else {
                Options {
                    buyers,
                    connections,
                    duration: Duration::from_secs(seconds),
                    stock,
                    users,
                    release: !debug,
                    redis_cluster,
                }
            };
            Job::Flashsale(options, !quick)
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
            Job::Analytics(options)
        }
        Scenario::Ws {
            idle,
            sources,
            subscribers,
            topics,
            rate,
            publishers,
            seconds,
            png,
            debug,
            quick,
        } => {
            let options = if quick {
                WsOptions::quick(png)
            } else {
                WsOptions {
                    idle,
                    sources,
                    subscribers,
                    topics,
                    rate,
                    publishers,
                    duration: Duration::from_secs(seconds),
                    png,
                    release: !debug,
                }
            };
            Job::Ws(options)
        }
        Scenario::Campaign {
            users,
            events,
            batch,
            sink,
            debug,
            quick,
        } => {
            let options = if quick {
                CampaignOptions::quick()
            } else {
                CampaignOptions {
                    users,
                    events,
                    batch,
                    release: !debug,
                    sink,
                }
            };
            Job::Campaign(options)
        }
        Scenario::Chat {
            users,
            group_size,
            rate,
            seconds,
            sources,
            pages,
            debug,
            quick,
        } => {
            let options = if quick {
                ChatOptions::quick()
            } else {
                ChatOptions {
                    users,
                    group_size,
                    rate,
                    duration: Duration::from_secs(seconds),
                    sources,
                    pages,
                    release: !debug,
                }
            };
            Job::Chat(options)
        }
        Scenario::Videocall {
            pairs,
            cycles,
            signalers,
            frames,
            rate,
            sources,
            debug,
            quick,
        } => {
            let options = if quick {
                VideocallOptions::quick()
            } else {
                VideocallOptions {
                    pairs,
                    cycles,
                    signalers,
                    frames,
                    rate,
                    sources,
                    release: !debug,
                }
            };
            Job::Videocall(options)
        }
        Scenario::Livestream {
            callers,
            heartbeat_seconds,
            viewers,
            comments,
            comment_interval_ms,
            sources,
            debug,
            quick,
        } => {
            let options = if quick {
                LivestreamOptions::quick()
            } else {
                LivestreamOptions {
                    callers,
                    heartbeat_duration: Duration::from_secs(heartbeat_seconds),
                    viewers,
                    comments,
                    comment_interval: Duration::from_millis(comment_interval_ms),
                    sources,
                    release: !debug,
                }
            };
            Job::Livestream(options)
        }
        Scenario::Fraud {
            users,
            history,
            rate,
            seconds,
            clients,
            max_seconds,
            connections,
            debug,
            quick,
        } => {
            let options = if quick {
                FraudOptions::quick()
            } else {
                FraudOptions {
                    users,
                    history,
                    rate,
                    duration: Duration::from_secs(seconds),
                    clients,
                    max_duration: Duration::from_secs(max_seconds),
                    connections,
                    release: !debug,
                }
            };
            Job::Fraud(options)
        }
        Scenario::Routes {
            data,
            budgets,
            only,
            seed,
            vehicles_first,
            draw,
            png,
        } => {
            let options = RoutesOptions {
                data,
                budgets: budgets.into_iter().map(Duration::from_millis).collect(),
                only,
                seed,
                objective: if vehicles_first {
                    titan_route::Objective::VehiclesThenDistance
                } else {
                    titan_route::Objective::Distance
                },
                draw,
                png,
            };
            Job::Routes(options)
        }
        Scenario::Driver {
            drivers,
            clients,
            seconds,
            searches,
            debug,
            quick,
        } => {
            let options = if quick {
                DriverOptions::quick()
            } else {
                DriverOptions {
                    drivers,
                    clients,
                    duration: Duration::from_secs(seconds),
                    searches,
                    release: !debug,
                }
            };
            Job::Driver(options)
        }
        Scenario::Tracking {
            shipments,
            subscribers,
            clients,
            seconds,
            lookups,
            debug,
            quick,
        } => {
            let options = if quick {
                TrackingOptions::quick()
            } else {
                TrackingOptions {
                    shipments,
                    subscribers,
                    clients,
                    duration: Duration::from_secs(seconds),
                    lookups,
                    release: !debug,
                }
            };
            Job::Tracking(options)
        }
        Scenario::Shipping {
            shipments,
            clients,
            debug,
            quick,
        } => {
            let options = if quick {
                ShippingOptions::quick()
            } else {
                ShippingOptions {
                    shipments,
                    clients,
                    release: !debug,
                }
            };
            Job::Shipping(options)
        }
        Scenario::Pricing {
            products,
            events,
            clients,
            connections,
            seconds,
            debug,
            quick,
        } => {
            let options = if quick {
                PricingOptions::quick()
            } else {
                PricingOptions {
                    products,
                    events,
                    clients,
                    connections,
                    duration: Duration::from_secs(seconds),
                    release: !debug,
                }
            };
            Job::Pricing(options)
        }
    };
    (job, quick)
}
