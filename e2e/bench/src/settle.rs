//! Before each scenario of the full suite the machine is let settle. Run back to back, a
//! scenario otherwise measures part of the previous one's tail — ClickHouse merging the ten
//! million events analytics loaded, PostgreSQL's autovacuum, a cell's processes exiting — and
//! the table disagreed with the same scenario run alone by up to five times (fraud's client
//! p99 45.8 ms in the table of 2026-12-07, 7.4–9.7 ms alone). What was still busy when a
//! scenario started goes into the table and `results.json`, so a figure taken on a machine
//! that would not settle says so.

use std::time::{Duration, Instant};

use anyhow::Context;
use titan_e2e::process::ticks;
use titan_kit::{config::ClickHouseConfig, datastores::clickhouse};

/// Below this many busy cores (the whole machine, over one second) the machine counts as quiet:
/// the datastores idle at a few hundredths of a core each.
pub const QUIET_CORES: f64 = 0.25;
/// The longest a scenario waits for quiet; after it, it starts anyway and the table says how
/// busy the machine still was.
pub const LIMIT: Duration = Duration::from_secs(60);

/// How the machine was when a scenario started.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settled {
    pub waited: Duration,
    /// Cores busy over the last second before the start.
    pub busy: f64,
    /// ClickHouse merges still running at the start.
    pub merges: u64,
}

impl Settled {
    pub fn quiet(&self) -> bool {
        is_quiet(self.busy, self.merges)
    }
}

fn is_quiet(busy: f64, merges: u64) -> bool {
    busy < QUIET_CORES && merges == 0
}

/// Cores the machine spent over `over`, from two readings of `/proc/stat`'s `cpu` line
/// (everything but idle and I/O wait, kernel work included): summing processes instead counts
/// a process that changes its name (exec) or is first seen late with all its past time.
async fn busy(over: Duration) -> anyhow::Result<f64> {
    let before = busy_ticks()?;
    tokio::time::sleep(over).await;
    let after = busy_ticks()?;
    Ok(ticks(after.saturating_sub(before)).as_secs_f64() / over.as_secs_f64())
}

fn busy_ticks() -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string("/proc/stat").context("read /proc/stat")?;
    busy_of(&stat).context("no cpu line in /proc/stat")
}

/// The busy ticks of `/proc/stat`'s first line: user, nice, system, irq, softirq and steal
/// (guest time is already inside user).
fn busy_of(stat: &str) -> Option<u64> {
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = line
        .split_whitespace()
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    let field = |i: usize| v.get(i).copied().unwrap_or(0);
    Some(field(0) + field(1) + field(2) + field(5) + field(6) + field(7))
}

/// Merges ClickHouse is running (none when the suite has no ClickHouse).
async fn merges() -> anyhow::Result<u64> {
    let Ok(url) = std::env::var("TITAN_TEST_CLICKHOUSE_URL") else {
        return Ok(0);
    };
    let client = clickhouse::connect(&ClickHouseConfig::new(url, "default".into()))
        .context("a clickhouse client")?;
    client
        .query("SELECT count() FROM system.merges")
        .fetch_one::<u64>()
        .await
        .context("read system.merges")
}

/// Waits until the machine is quiet or [`LIMIT`] has passed, and says how it was.
pub async fn settle() -> anyhow::Result<Settled> {
    let started = Instant::now();
    loop {
        let busy = busy(Duration::from_secs(1)).await?;
        let merges = merges().await?;
        if is_quiet(busy, merges) || started.elapsed() >= LIMIT {
            return Ok(Settled {
                waited: started.elapsed(),
                busy,
                merges,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_ticks_leave_out_idle_and_io_wait() {
        let stat = "cpu  100 5 30 9000 700 2 3 1 0 0\ncpu0 50 2 15 4500 350 1 1 0 0 0\n";
        assert_eq!(busy_of(stat), Some(100 + 5 + 30 + 2 + 3 + 1));
        assert_eq!(busy_of("intr 1 2 3\n"), None);
    }

    #[test]
    fn quiet_needs_both_idle_cores_and_no_merge() {
        assert!(is_quiet(0.0, 0));
        assert!(is_quiet(0.249, 0));
        assert!(!is_quiet(0.25, 0));
        assert!(!is_quiet(0.0, 1));
    }
}
