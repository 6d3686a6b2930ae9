//! The gamification load generator: a trusted caller (role service) awards a review's points to
//! distinct users over gRPC against `titan serve gamification` — each award a ledger row, the
//! account and the outbox in one transaction, the figure issue 26 asks for. Every tenth award
//! is then sent again (the same source: a duplicate, nothing changes). At the end the ledger
//! must hold each award once: as many review rows as awards and their sum the points answered.

use std::{fmt, time::Duration};

use anyhow::{Context, ensure};
use titan_e2e::authed;
use titan_proto::gamification::v1::{
    self as pb, gamification_service_client::GamificationServiceClient,
};
use tonic::transport::Channel;

use crate::{Latencies, load};

type Grpc = GamificationServiceClient<Channel>;

#[derive(Debug, Clone)]
pub struct GamificationOptions {
    /// Distinct users, one award each.
    pub users: usize,
    /// Awards in flight.
    pub clients: usize,
    /// HTTP/2 connections they share.
    pub connections: usize,
    pub release: bool,
}

impl GamificationOptions {
    /// CI's short mode: the checks, on a few users.
    pub fn quick() -> Self {
        Self {
            users: 400,
            clients: 8,
            connections: 2,
            release: false,
        }
    }
}

#[derive(Debug, Default)]
pub struct GamificationReport {
    pub users: usize,
    pub awarded: u64,
    pub refused: u64,
    /// Points the service answered for the first calls.
    pub points: i64,
    pub elapsed: Duration,
    pub latencies: Latencies,
    pub per_second: Vec<u64>,
    pub replays: u64,
    /// Replays answered as duplicates.
    pub replays_duplicate: u64,
    /// Review rows in the ledger at the end and their sum.
    pub ledger_rows: u64,
    pub ledger_sum: i64,
}

impl GamificationReport {
    pub fn per_second_rate(&self) -> f64 {
        self.awarded as f64 / self.elapsed.as_secs_f64()
    }

    /// Whether every award was granted and is in the ledger once.
    pub fn exact(&self) -> bool {
        let n = self.users as u64;
        self.awarded == n
            && self.refused == 0
            && self.points > 0
            && self.replays_duplicate == self.replays
            && self.ledger_rows == n
            && self.ledger_sum == self.points
    }
}

impl fmt::Display for GamificationReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "gamification Award over gRPC, distinct users")?;
        writeln!(
            f,
            "  awards              {:.0}/s ({} of {} in {:.1} s, {} refused)  p50 {:?}  p99 {:?}",
            self.per_second_rate(),
            self.awarded,
            self.users,
            self.elapsed.as_secs_f64(),
            self.refused,
            self.latencies.quantile(0.5),
            self.latencies.quantile(0.99)
        )?;
        writeln!(
            f,
            "  replays             {} of {} answered as duplicates",
            self.replays_duplicate, self.replays
        )?;
        write!(
            f,
            "  ledger              {} review rows summing {} (awards {}, points answered {})",
            self.ledger_rows, self.ledger_sum, self.users, self.points
        )
    }
}

/// User `i`'s review award.
fn award(i: usize) -> pb::AwardRequest {
    pb::AwardRequest {
        user_id: format!("user-{i}"),
        action: pb::Action::Review as i32,
        source_id: format!("review-{i}"),
        purchase_total: None,
    }
}

/// Runs the scenario.
pub async fn gamification(options: &GamificationOptions) -> anyhow::Result<GamificationReport> {
    ensure!(options.users >= 1, "--users must be at least 1");
    ensure!(
        options.clients >= 1 && options.connections >= 1,
        "--clients and --connections must be positive"
    );
    let (cell, channels) =
        crate::serve_one("gamification", options.release, options.connections).await;
    let service = cell.token("reviews", &["service"]);
    let send = |i: usize| {
        let mut grpc = Grpc::new(channels[i % channels.len()].clone());
        let service = service.clone();
        async move {
            grpc.award(authed(award(i), &service))
                .await
                .map(tonic::Response::into_inner)
        }
    };
    let run = load::calls(options.users, options.clients, send).await;
    let mut report = GamificationReport {
        users: options.users,
        elapsed: run.elapsed,
        latencies: run.latencies,
        per_second: run.per_second,
        ..GamificationReport::default()
    };
    for (i, answer) in run.answers.iter().enumerate() {
        match answer {
            Ok(a) if !a.duplicate => {
                report.awarded += 1;
                report.points += a.points;
            }
            Ok(_) => {
                report.refused += 1;
                eprintln!("the first award of user-{i} answered as a duplicate");
            }
            Err(e) => {
                report.refused += 1;
                eprintln!("award of user-{i} refused: {e}");
            }
        }
    }

    let replayed: Vec<usize> = (0..options.users).step_by(10).collect();
    let replays = load::calls(replayed.len(), options.clients, |k| send(replayed[k])).await;
    for answer in &replays.answers {
        report.replays += 1;
        if answer.as_ref().is_ok_and(|a| a.duplicate) {
            report.replays_duplicate += 1;
        }
    }

    let (rows, sum): (i64, Option<i64>) = sqlx::query_as(
        "SELECT count(*), sum(delta)::BIGINT FROM gamification_ledger WHERE reason = 'review'",
    )
    .fetch_one(&cell.db.pool)
    .await
    .context("sum the ledger")?;
    report.ledger_rows = u64::try_from(rows).unwrap_or_default();
    report.ledger_sum = sum.unwrap_or_default();
    Ok(report)
}
