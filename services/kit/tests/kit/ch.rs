//! The ClickHouse client as services build it: row inserts and typed selects against the real
//! server (validation off, as ClickHouse 18.16 requires).

use serde::{Deserialize, Serialize};
use titan_kit::{datastores::clickhouse as store, testing::TestClickHouse};

#[derive(Debug, PartialEq, clickhouse::Row, Serialize, Deserialize)]
struct Hit {
    page: String,
    ms: u32,
}

#[tokio::test]
async fn rows_round_trip() {
    let ch = TestClickHouse::new().await;
    store::ping(&ch.client).await.expect("ping");
    ch.client
        .query("CREATE TABLE hits (page String, ms UInt32) ENGINE = MergeTree ORDER BY page")
        .execute()
        .await
        .expect("create");
    let mut insert = ch.client.insert::<Hit>("hits").await.expect("insert");
    for (page, ms) in [("/a", 3), ("/b", 5), ("/a", 7)] {
        insert
            .write(&Hit {
                page: page.into(),
                ms,
            })
            .await
            .expect("write");
    }
    insert.end().await.expect("end");
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
