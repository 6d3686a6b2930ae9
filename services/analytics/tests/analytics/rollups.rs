//! The KPI rollups against the events they summarize: over a generated history with duplicate
//! deliveries, three cells and two currencies, `GetKpis` (whole days from the rollups, partial
//! days from the events) answers field by field what the events alone answer, for whole and
//! ragged periods, per day, week and hour, every cell or one, before and after the daily rollup
//! is stored, after late and duplicated events, and for events stored before the rollups
//! existed (the migrations back-fill them).

use titan_analytics::{
    app::{ActivityRow, KpiBucket, KpiReport, RevenueRow, Warehouse},
    domain::{Granularity, Period},
};

use super::*;

/// Wednesday 2025-10-22 00:00 UTC: the history's three weeks straddle the 56-day block that
/// starts on Monday 2025-10-27.
const START: u32 = 1_761_091_200;
const DAYS: u32 = 21;
const EVENTS: u64 = 30_000;

/// Inserts the history's events `h<offset + n>` for n in 0..count (event n at the time of event
/// n mod EVENTS, so later numbers fall on the same days) (only every 7th when
/// `sevenths`, as a redelivery of those), ingested at `ingested_at`. About half are page views,
/// a tenth are anonymous, a tenth are orders (each order id shared by two numbers, in USD or
/// EUR), spread over 300 users and three cells.
async fn history(
    client: &::clickhouse::Client,
    offset: u64,
    count: u64,
    sevenths: bool,
    ingested_at: u32,
) {
    client
        .query(
            "INSERT INTO analytics_events (event_id, name, user_id, session_id, time, time_ms,
                 date, properties, device, platform, country, city, cell, product_id, order_id,
                 page, revenue, currency, source, ingested_at)
             SELECT concat('h', toString(n)) AS event_id,
                    multiIf(h < 50, 'page_view', h < 80, 'product_view', h < 90, 'add_to_cart',
                            'flashsale.purchased') AS name,
                    if(h % 10 = 3, '', concat('u', toString(intHash32(n) % 300))) AS user_id,
                    's' AS session_id,
                    toDateTime(? + intDiv((n % ?) * ?, ?)) AS time,
                    toUInt16(0) AS time_ms,
                    toDate(time) AS date,
                    '{}' AS properties, '' AS device, 'web' AS platform, 'SG' AS country,
                    '' AS city,
                    arrayElement(['sg-1', 'eu-1', 'us-1'], 1 + intHash32(n + 1) % 3) AS cell,
                    '' AS product_id,
                    if(h >= 90, concat('o', toString(intDiv(n, 2))), '') AS order_id,
                    '' AS page,
                    if(h >= 90, toInt64(100 + n % 900), toInt64(0)) AS revenue,
                    if(h >= 90, if(intDiv(n, 2) % 2 = 0, 'USD', 'EUR'), '') AS currency,
                    'bus' AS source, toDateTime(?) AS ingested_at
             FROM (SELECT number + ? AS n, cityHash64(number + ?) % 100 AS h
                   FROM system.numbers LIMIT ?)
             WHERE ? = 0 OR n % 7 = 0",
        )
        .bind(START)
        .bind(EVENTS)
        .bind(u64::from(DAYS) * 86_400)
        .bind(EVENTS)
        .bind(ingested_at)
        .bind(offset)
        .bind(offset)
        .bind(count)
        .bind(u8::from(sevenths))
        .execute()
        .await
        .expect("insert the history");
}

fn instant(seconds: u32) -> DateTime<Utc> {
    DateTime::from_timestamp(i64::from(seconds), 0).expect("instant")
}

type Activity = (i64, String, u64, u64, u64);

fn from_report(buckets: &[KpiBucket]) -> Vec<Activity> {
    buckets
        .iter()
        .map(|b| {
            (
                b.bucket.timestamp(),
                b.cell.clone(),
                b.kpis.events,
                b.kpis.unique_users,
                b.kpis.purchasers,
            )
        })
        .collect()
}

fn from_events(rows: Vec<ActivityRow>, bucket: Option<i64>) -> Vec<Activity> {
    rows.into_iter()
        .map(|a| {
            (
                bucket.unwrap_or(i64::from(a.bucket)),
                a.cell,
                a.events,
                a.users,
                a.purchasers,
            )
        })
        .collect()
}

type Money = (i64, String, String, i64, u64);

fn revenue_of(buckets: &[KpiBucket]) -> Vec<Money> {
    buckets
        .iter()
        .flat_map(|b| {
            b.kpis.revenue.iter().map(|r| {
                (
                    b.bucket.timestamp(),
                    b.cell.clone(),
                    r.currency.clone(),
                    r.revenue,
                    r.orders,
                )
            })
        })
        .collect()
}

fn revenue_from_events(rows: Vec<RevenueRow>, bucket: Option<i64>) -> Vec<Money> {
    rows.into_iter()
        .map(|r| {
            (
                bucket.unwrap_or(i64::from(r.bucket)),
                r.cell,
                r.currency,
                r.revenue,
                r.orders,
            )
        })
        .collect()
}

/// `GetKpis` and the same figures computed from the events alone must agree on every bucket and
/// total; returns the report for further checks.
async fn agrees(world: &World, period: Period, granularity: Granularity, cell: &str) -> KpiReport {
    let report = world
        .app
        .kpis(period, granularity, cell)
        .await
        .expect("kpis");
    let events = ClickHouseWarehouse::new(world.ch.client.clone());
    let buckets = events
        .activity(&period, Some(granularity), cell)
        .await
        .expect("buckets from the events");
    let totals = events
        .activity(&period, None, cell)
        .await
        .expect("totals from the events");
    let what = format!("{granularity:?} over {period:?} in {cell:?}");
    let revenue = events
        .revenue(&period, Some(granularity), cell)
        .await
        .expect("revenue from the events");
    let total_revenue = events
        .revenue(&period, None, cell)
        .await
        .expect("total revenue from the events");
    assert_eq!(
        revenue_of(&report.buckets),
        revenue_from_events(revenue, None),
        "revenue, {what}"
    );
    assert_eq!(
        revenue_of(&report.totals),
        revenue_from_events(total_revenue, Some(period.from.timestamp())),
        "total revenue, {what}"
    );
    assert_eq!(
        from_report(&report.buckets),
        from_events(buckets, None),
        "buckets, {what}"
    );
    assert_eq!(
        from_report(&report.totals),
        from_events(totals, Some(period.from.timestamp())),
        "totals, {what}"
    );
    report
}

/// Whole days, ragged ends, one partial day, the block boundary; per day, week and hour.
async fn every_shape_agrees(world: &World) {
    let day = 86_400;
    let whole = Period::new(instant(START), instant(START + DAYS * day)).expect("period");
    let ragged = Period::new(
        instant(START + day + 13 * 3600 + 17),
        instant(START + 19 * day + 8 * 3600 + 31),
    )
    .expect("period");
    let within_a_day =
        Period::new(instant(START + 2 * day + 600), instant(START + 3 * day - 1)).expect("period");
    let across_midnight = Period::new(
        instant(START + 4 * day + 7200),
        instant(START + 5 * day + 60),
    )
    .expect("period");
    for cell in ["", "eu-1"] {
        for period in [whole, ragged] {
            for granularity in [Granularity::Day, Granularity::Week] {
                agrees(world, period, granularity, cell).await;
            }
        }
        for period in [within_a_day, across_midnight] {
            for granularity in [Granularity::Hour, Granularity::Day, Granularity::Week] {
                agrees(world, period, granularity, cell).await;
            }
        }
    }
}

async fn stored_days(world: &World) -> u64 {
    world
        .ch
        .client
        .query("SELECT count() FROM analytics_days FINAL")
        .fetch_one::<u64>()
        .await
        .expect("count")
}

#[tokio::test]
async fn rollups_answer_what_the_events_answer() {
    let world = World::new(at("2025-12-01T00:00:00Z")).await;
    history(&world.ch.client, 0, EVENTS, false, START).await;
    // Redeliveries of every 7th event, as their own insert (their own part).
    history(&world.ch.client, 0, EVENTS, true, START + 1).await;
    let (rows, distinct) = world.stored().await;
    assert_eq!(distinct, EVENTS);
    assert_eq!(
        rows,
        EVENTS + EVENTS.div_ceil(7),
        "the duplicates are stored too"
    );

    // Cold: every whole day is computed from the events and stored (21 days x 3 cells).
    let report = agrees(
        &world,
        Period::new(instant(START), instant(START + DAYS * 86_400)).expect("period"),
        Granularity::Day,
        "",
    )
    .await;
    assert_eq!(report.buckets.len(), 21 * 3);
    let totals: u64 = report.totals.iter().map(|t| t.kpis.events).sum();
    assert_eq!(totals, EVENTS, "each event once, duplicates included");
    assert_eq!(stored_days(&world).await, 21 * 3);
    // Warm: the same answers from the stored days.
    every_shape_agrees(&world).await;

    // Late events: a second batch of new events over the same days, and redeliveries of both.
    history(&world.ch.client, EVENTS, EVENTS / 3, false, START + 2).await;
    history(&world.ch.client, 0, EVENTS + EVENTS / 3, true, START + 3).await;
    every_shape_agrees(&world).await;
    let report = world
        .app
        .kpis(
            Period::new(instant(START), instant(START + DAYS * 86_400)).expect("period"),
            Granularity::Week,
            "",
        )
        .await
        .expect("kpis");
    let totals: u64 = report.totals.iter().map(|t| t.kpis.events).sum();
    assert_eq!(
        totals,
        EVENTS + EVENTS / 3,
        "the late events are counted, once"
    );
}

#[tokio::test]
async fn events_stored_before_the_rollups_are_back_filled() {
    let ch = TestClickHouse::new().await;
    // The schema as it was before the rollups, with events (and a redelivery) in it.
    clickhouse::migrate(&ch.client, SERVICE, &MIGRATIONS[..2])
        .await
        .expect("the first migrations");
    history(&ch.client, 0, EVENTS, false, START).await;
    history(&ch.client, 0, EVENTS, true, START + 1).await;
    let world = World::on(ch, None, options(), at("2025-12-01T00:00:00Z")).await;
    let users: u64 = world
        .ch
        .client
        .query("SELECT uniqExact(cell, user_id) FROM analytics_user_days")
        .fetch_one()
        .await
        .expect("users");
    assert!(users > 0 && users <= 900, "back-filled: {users} users");
    every_shape_agrees(&world).await;
    // And events arriving after the upgrade are counted by the views.
    history(&world.ch.client, EVENTS, EVENTS / 3, false, START + 2).await;
    every_shape_agrees(&world).await;
}
