//! The ClickHouse client as services build it: row inserts and typed selects against the real
//! server (validation off, as ClickHouse 18.16 requires), migrations, and mutations waited for.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use titan_kit::{datastores::clickhouse as store, testing::TestClickHouse};

#[derive(Debug, PartialEq, clickhouse::Row, Serialize, Deserialize)]
struct Hit {
    page: String,
    ms: u32,
}

/// A `hits` table, with one insert (one part) of `parts` rows each.
async fn hits(ch: &TestClickHouse, parts: &[&[(&str, u32)]]) {
    ch.client
        .query("CREATE TABLE hits (page String, ms UInt32) ENGINE = MergeTree ORDER BY page")
        .execute()
        .await
        .expect("create");
    for rows in parts {
        let mut insert = ch.client.insert::<Hit>("hits").await.expect("insert");
        for &(page, ms) in *rows {
            insert
                .write(&Hit {
                    page: page.into(),
                    ms,
                })
                .await
                .expect("write");
        }
        insert.end().await.expect("end");
    }
}

#[tokio::test]
async fn rows_round_trip() {
    let ch = TestClickHouse::new().await;
    store::ping(&ch.client).await.expect("ping");
    hits(&ch, &[&[("/a", 3), ("/b", 5), ("/a", 7)]]).await;
    let totals: Vec<(String, u64)> = ch
        .client
        .query("SELECT page, sum(ms) FROM hits WHERE page = ? GROUP BY page")
        .bind("/a")
        .fetch_all()
        .await
        .expect("select");
    assert_eq!(totals, vec![("/a".to_owned(), 10)]);
}

const V1: store::Migration = store::Migration {
    version: 1,
    description: "pages",
    sql: "CREATE TABLE IF NOT EXISTS pages (page String) ENGINE = MergeTree ORDER BY page",
};
const V2: store::Migration = store::Migration {
    version: 2,
    description: "page views",
    sql: "CREATE TABLE IF NOT EXISTS page_views (page String, n UInt64) ENGINE = MergeTree ORDER BY page",
};

#[tokio::test]
async fn migrations_apply_once_in_order() {
    let ch = TestClickHouse::new().await;
    store::migrate(&ch.client, "probe", &[V1])
        .await
        .expect("v1");
    // A later release adds v2; v1 is not run again (it would fail without IF NOT EXISTS too,
    // since the history says it is done).
    store::migrate(&ch.client, "probe", &[V2, V1])
        .await
        .expect("v1+v2");
    store::migrate(&ch.client, "probe", &[V1, V2])
        .await
        .expect("again");
    let history: Vec<(u32, String)> = ch
        .client
        .query("SELECT version, description FROM _titan_migrations_probe ORDER BY version")
        .fetch_all()
        .await
        .expect("history");
    assert_eq!(
        history,
        vec![(1, "pages".to_owned()), (2, "page views".to_owned())]
    );
    let tables: Vec<String> = ch
        .client
        .query("SELECT name FROM system.tables WHERE database = currentDatabase() AND name LIKE 'page%' ORDER BY name")
        .fetch_all()
        .await
        .expect("tables");
    assert_eq!(tables, vec!["page_views".to_owned(), "pages".to_owned()]);
}

#[tokio::test]
async fn broken_migrations_are_refused_with_their_name() {
    let ch = TestClickHouse::new().await;
    let bad = store::Migration {
        version: 3,
        description: "typo",
        sql: "CREATE TABLEX nothing",
    };
    let err = store::migrate(&ch.client, "probe", &[V1, bad])
        .await
        .expect_err("a syntax error fails the migration");
    assert!(
        err.to_string()
            .starts_with("probe: clickhouse migration 3 (typo) failed"),
        "{err}"
    );
    let twice = store::migrate(&ch.client, "probe", &[V1, V1]).await;
    assert!(twice.is_err(), "duplicate versions are refused");
    assert!(
        store::migrate(&ch.client, "Bad-Owner", &[V1])
            .await
            .is_err()
    );
}

/// Rows of `hits` by page, as the next query sees them.
async fn pages(ch: &TestClickHouse) -> Vec<(String, u64)> {
    ch.client
        .query("SELECT page, count() FROM hits GROUP BY page ORDER BY page")
        .fetch_all()
        .await
        .expect("pages")
}

/// Three parts, so a mutation has several to rewrite: 3 rows of `/a`, 6 of `/b` (3 under 10 ms).
const PARTS: [&[(&str, u32)]; 3] = [
    &[("/a", 0), ("/b", 0), ("/b", 10)],
    &[("/a", 1), ("/b", 1), ("/b", 11)],
    &[("/a", 2), ("/b", 2), ("/b", 12)],
];

/// A DELETE mutation has removed its rows when `mutate` returns, though ClickHouse 18.16
/// applies it in the background.
#[tokio::test]
async fn a_mutation_is_applied_when_mutate_returns() {
    let ch = TestClickHouse::new().await;
    hits(&ch, &PARTS).await;
    assert_eq!(pages(&ch).await, vec![("/a".into(), 3), ("/b".into(), 6)]);
    store::mutate(
        &ch.client,
        "hits",
        ch.client
            .query("ALTER TABLE hits DELETE WHERE page = ? AND ms < ?")
            .bind("/b")
            .bind(10),
        Duration::from_secs(60),
    )
    .await
    .expect("mutate");
    assert_eq!(pages(&ch).await, vec![("/a".into(), 3), ("/b".into(), 3)]);
    let undone: u64 = ch
        .client
        .query(
            "SELECT count() FROM system.mutations
             WHERE database = currentDatabase() AND table = 'hits' AND is_done = 0",
        )
        .fetch_one()
        .await
        .expect("mutations");
    assert_eq!(undone, 0);
}

/// A mutation that cannot be applied (its condition throws on a row) is never done: `mutate`
/// gives up after its deadline and says so.
#[tokio::test]
async fn a_mutation_not_done_by_the_deadline_is_an_error() {
    let ch = TestClickHouse::new().await;
    hits(&ch, &PARTS).await;
    let deadline = Duration::from_millis(500);
    let started = Instant::now();
    let result = store::mutate(
        &ch.client,
        "hits",
        ch.client
            .query("ALTER TABLE hits DELETE WHERE throwIf(page = ?) = 1")
            .bind("/a"),
        deadline,
    )
    .await;
    let waited = started.elapsed();
    // Dropping the table drops its stuck mutation, which the server would retry for ever.
    ch.client
        .query("DROP TABLE hits")
        .execute()
        .await
        .expect("drop");
    let err = result.expect_err("a mutation that never finishes");
    assert_eq!(
        err.to_string(),
        "1 mutation(s) of clickhouse table hits not done after 500ms"
    );
    assert!(waited >= deadline, "gave up after {waited:?}");
}
