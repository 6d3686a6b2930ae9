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
