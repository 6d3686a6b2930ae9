//! The KPI rollups of docs/analytics.md, read and kept fresh.
//!
//! - `analytics_day_inserts` counts the rows inserted per (day, cell), duplicates included; a
//!   materialized view adds to it on every insert, and an erasure (`super::privacy`) adds one
//!   for each day it changed. It only ever grows, so it tells whether a day received anything
//!   since a number was computed.
//! - `analytics_days` holds each day's distinct events, users and purchasers with the insert
//!   count they were computed at. A day whose count moved on (or that has no row yet) is
//!   recomputed from the events here, on read, and stored again: the answer is always the one
//!   the events give, and each day is computed once per change rather than on every query.
//! - `analytics_user_days` holds, per user, cell and 56-day block (eight Monday-to-Sunday
//!   weeks), the days they were active and the days they bought as bits of a `groupBitOr`
//!   state. OR is idempotent, so duplicated inserts change nothing and no freshness check is
//!   needed; distinct users of a week or of a period come from these bits.
//!
//! Partial days at a period's ends are read from the events and combined with the rollups.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{Duration, NaiveDate};
use clickhouse::{Client, Row};
use serde::{Deserialize, Serialize};
use titan_kit::KitError;

use super::queries::{ACTIVITY, date};
use crate::{
    app::{DayRow, UsersRow},
    domain::{DAY_SECONDS, DaySplit},
};

/// Days in a block of `analytics_user_days`, and the day number of the first block's first day
/// (1970-01-05, a Monday), so that weeks never straddle blocks.
const BLOCK_DAYS: u32 = 56;
const FIRST_MONDAY: u32 = 4;

/// The block of a day number.
fn block(day: u32) -> u32 {
    day.saturating_sub(FIRST_MONDAY) / BLOCK_DAYS
}

/// The calendar day of a day number, as the queries bind dates.
fn day_text(day: u32) -> String {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or(NaiveDate::MIN);
    date(epoch + Duration::days(i64::from(day)))
}

/// Rows of the events within the two partial-day ranges of a [`DaySplit`] (binds per range: from
/// date, to date, from second, to second). An empty range `(0, 0)` matches nothing.
const IN_EDGES: &str = "((date >= toDate(?) AND date <= toDate(?) AND time >= toDateTime(?) AND time < toDateTime(?))
     OR (date >= toDate(?) AND date <= toDate(?) AND time >= toDateTime(?) AND time < toDateTime(?)))";

fn in_edges(mut query: clickhouse::query::Query, split: &DaySplit) -> clickhouse::query::Query {
    for (from, to) in split.edges {
        let last = to.saturating_sub(1) / DAY_SECONDS;
        query = query
            .bind(day_text(from / DAY_SECONDS))
            .bind(day_text(last))
            .bind(from)
            .bind(to);
    }
    query
}

#[derive(Debug, Row, Deserialize)]
struct Inserted {
    date: u16,
    cell: String,
    rows: u64,
}

/// A row of `analytics_days`.
#[derive(Debug, Clone, Row, Serialize, Deserialize)]
struct StoredDay {
    date: u16,
    cell: String,
    inserted: u64,
    events: u64,
    users: u64,
    purchasers: u64,
}

/// Whole days `[first, end)` (day numbers) of `cell` ('' = every cell) from the daily rollup,
/// recomputing and storing the days that received events since they were computed.
pub(super) async fn whole_days(
    client: &Client,
    first: u32,
    end: u32,
    cell: &str,
) -> Result<Vec<DayRow>, KitError> {
    let (from, to) = (day_text(first), day_text(end));
    // The insert counts are read before the events: whatever they count is already in the
    // table (a materialized view runs after its insert's rows are written), so a day stored
    // with this count holds at least those rows.
    let inserted: Vec<Inserted> = client
        .query(
            "SELECT date, cell, sum(rows) AS rows FROM analytics_day_inserts
             WHERE date >= toDate(?) AND date < toDate(?) AND (? = '' OR cell = ?)
             GROUP BY date, cell",
        )
        .bind(&from)
        .bind(&to)
        .bind(cell)
        .bind(cell)
        .fetch_all()
        .await?;
    let stored: Vec<StoredDay> = client
        .query(
            "SELECT date, cell, max(inserted) AS computed_at, argMax(events, inserted) AS day_events,
                    argMax(users, inserted) AS day_users, argMax(purchasers, inserted) AS day_purchasers
             FROM analytics_days
             WHERE date >= toDate(?) AND date < toDate(?) AND (? = '' OR cell = ?)
             GROUP BY date, cell",
        )
        .bind(&from)
        .bind(&to)
        .bind(cell)
        .bind(cell)
        .fetch_all()
        .await?;
    let mut fresh: BTreeMap<(u16, String), StoredDay> = stored
        .into_iter()
        .map(|d| ((d.date, d.cell.clone()), d))
        .collect();
    let counts: BTreeMap<(u16, String), u64> = inserted
        .into_iter()
        .map(|i| ((i.date, i.cell), i.rows))
        .collect();
    fresh.retain(|key, d| counts.get(key) == Some(&d.inserted));
    let stale: BTreeSet<u16> = counts
        .keys()
        .filter(|key| !fresh.contains_key(*key))
        .map(|(day, _)| *day)
        .collect();
    let mut days: Vec<DayRow> = Vec::new();
    if let (Some(low), Some(high)) = (stale.first(), stale.last()) {
        let computed: Vec<DayRow> = client
            .query(&format!(
                "SELECT date, cell, {ACTIVITY}
                 FROM analytics_events
                 WHERE date >= toDate(?) AND date <= toDate(?) AND has(?, toUInt16(date))
                   AND (? = '' OR cell = ?)
                 GROUP BY date, cell"
            ))
            .bind(day_text(u32::from(*low)))
            .bind(day_text(u32::from(*high)))
            .bind(stale.iter().copied().collect::<Vec<u16>>())
            .bind(cell)
            .bind(cell)
            .fetch_all()
            .await?;
        let store: Vec<StoredDay> = computed
            .iter()
            .filter_map(|d| {
                counts
                    .get(&(d.date, d.cell.clone()))
                    .map(|&rows| StoredDay {
                        date: d.date,
                        cell: d.cell.clone(),
                        inserted: rows,
                        events: d.events,
                        users: d.users,
                        purchasers: d.purchasers,
                    })
            })
            .collect();
        // The answer is already known; a failed write only means the next query recomputes.
        if let Err(error) = write(client, &store).await {
            tracing::warn!(%error, days = store.len(), "storing the daily rollup failed");
        }
        days = computed;
    }
    days.extend(
        fresh
            .into_values()
            .filter(|d| !stale.contains(&d.date))
            .map(|d| DayRow {
                date: d.date,
                cell: d.cell,
                events: d.events,
                users: d.users,
                purchasers: d.purchasers,
            }),
    );
    Ok(days)
}

async fn write(client: &Client, days: &[StoredDay]) -> Result<(), KitError> {
    if days.is_empty() {
        return Ok(());
    }
    let mut insert = client.insert::<StoredDay>("analytics_days").await?;
    for day in days {
        insert.write(day).await?;
    }
    insert.end().await?;
    Ok(())
}

/// The partial days of a split, from the events.
pub(super) async fn partial_days(
    client: &Client,
    split: &DaySplit,
    cell: &str,
) -> Result<Vec<DayRow>, KitError> {
    if split.edges == [(0, 0); 2] {
        return Ok(Vec::new());
    }
    let query = client.query(&format!(
        "SELECT date, cell, {ACTIVITY}
         FROM analytics_events
         WHERE {IN_EDGES} AND (? = '' OR cell = ?)
         GROUP BY date, cell"
    ));
    Ok(in_edges(query, split)
        .bind(cell)
        .bind(cell)
        .fetch_all()
        .await?)
}

/// The bit of a day in its block, as the materialized view sets it.
const DAY_BIT: &str = "bitShiftLeft(toUInt64(1), toUInt8((toUInt32(date) - 4) % 56))";

/// `(bits of a block's days within the whole days) AS mask`; binds the first and end day numbers
/// twice each.
const WHOLE_DAYS_MASK: &str = "if(least(toInt64(?) - toInt64(block * 56 + 4), 56) > greatest(toInt64(?) - toInt64(block * 56 + 4), 0),
        toUInt64(bitShiftLeft(toUInt64(1), toUInt8(least(toInt64(?) - toInt64(block * 56 + 4), 56)))
               - bitShiftLeft(toUInt64(1), toUInt8(greatest(toInt64(?) - toInt64(block * 56 + 4), 0)))),
        toUInt64(0)) AS mask";

/// `expr`'s week bits (bit w = any of days 7w..7w+6 set), for a block's day bits.
fn week_bits(expr: &str) -> String {
    (0..BLOCK_DAYS / 7)
        .map(|w| {
            format!(
                "bitShiftLeft(toUInt8(bitAnd({expr}, bitShiftLeft(toUInt64(127), {})) != 0), {w})",
                w * 7
            )
        })
        .collect::<Vec<_>>()
        .join(" + ")
}

/// Distinct users and purchasers per week or over the whole split period, per cell.
pub(super) async fn active_users(
    client: &Client,
    split: &DaySplit,
    by_week: bool,
    cell: &str,
) -> Result<Vec<UsersRow>, KitError> {
    // One row per (block, cell, user) with the days they were active (and bought) within the
    // period: whole days from the rollup, masked; partial days from the events.
    let per_user = format!(
        "SELECT block, cell, user_id, groupBitOr(d) AS active, groupBitOr(p) AS bought FROM (
             SELECT block, cell, user_id, bitAnd(all_days, mask) AS d, bitAnd(all_bought, mask) AS p
             FROM (
                 SELECT block, cell, user_id, finalizeAggregation(days) AS all_days,
                        finalizeAggregation(purchase_days) AS all_bought, {WHOLE_DAYS_MASK}
                 FROM analytics_user_days
                 WHERE block >= ? AND block <= ? AND (? = '' OR cell = ?)
             )
             UNION ALL
             SELECT toUInt16(intDiv(toUInt32(date) - 4, 56)) AS block, cell, user_id,
                    groupBitOr({DAY_BIT}) AS d,
                    groupBitOrIf({DAY_BIT}, order_id != '' AND revenue > 0) AS p
             FROM analytics_events
             WHERE {IN_EDGES} AND user_id != '' AND (? = '' OR cell = ?)
             GROUP BY block, cell, user_id
         )
         GROUP BY block, cell, user_id
         HAVING active != 0"
    );
    let sql = if by_week {
        format!(
            "SELECT toUInt32((block * 56 + 4 + 7 * toUInt8(log2(week))) * 86400) AS bucket, cell,
                    count() AS users, countIf(bitAnd(bought_weeks, week) != 0) AS purchasers
             FROM (
                 SELECT block, cell, toUInt8({active}) AS weeks, toUInt8({bought}) AS bought_weeks
                 FROM ({per_user})
             )
             ARRAY JOIN bitmaskToArray(weeks) AS week
             GROUP BY bucket, cell ORDER BY bucket, cell",
            active = week_bits("active"),
            bought = week_bits("bought"),
        )
    } else {
        format!(
            "SELECT toUInt32(0) AS bucket, cell,
                    uniqExact(user_id) AS users, uniqExactIf(user_id, bought != 0) AS purchasers
             FROM ({per_user})
             GROUP BY cell ORDER BY cell"
        )
    };
    // No whole days: an empty block range reads nothing from the rollup.
    let (first, end, low, high) = match split.whole {
        Some((first, end)) => (first, end, block(first), block(end - 1)),
        None => (0, 0, 1, 0),
    };
    let query = client
        .query(&sql)
        .bind(end)
        .bind(first)
        .bind(end)
        .bind(first)
        .bind(low)
        .bind(high)
        .bind(cell)
        .bind(cell);
    Ok(in_edges(query, split)
        .bind(cell)
        .bind(cell)
        .fetch_all()
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_start_on_mondays() {
        // 2025-09-29 (day 20360) is a Monday in the middle of block 363.
        assert_eq!(block(20_360), 363);
        // Its first day, 2025-09-01, is a Monday too.
        assert_eq!(day_text(363 * BLOCK_DAYS + FIRST_MONDAY), "2025-09-01");
        assert_eq!(block(363 * 56 + 4 + 55), 363);
        assert_eq!(block(364 * 56 + 4), 364);
    }

    #[test]
    fn week_bits_cover_a_block() {
        let bits = week_bits("x");
        assert_eq!(bits.matches("bitShiftLeft(toUInt64(127)").count(), 8);
        assert!(bits.ends_with("bitShiftLeft(toUInt64(127), 49)) != 0), 7)"));
    }
}
