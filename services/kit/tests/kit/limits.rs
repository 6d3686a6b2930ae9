//! Every datastore session carries its limits: PostgreSQL cancels a statement past
//! `statement_timeout` and ends a transaction left idle, ClickHouse bounds each query's time and
//! memory.

use std::time::Duration;

use titan_kit::{
    config::{ClickHouseConfig, PostgresConfig},
    datastores::{clickhouse, postgres},
    testing::{TestClickHouse, TestPostgres},
};

#[tokio::test]
async fn postgres_sessions_carry_their_timeouts() {
    let db = TestPostgres::new().await;
    let pool = postgres::connect(
        &PostgresConfig {
            statement_timeout: Duration::from_millis(200),
            idle_in_transaction_timeout: Duration::from_millis(1500),
            ..db.config.clone()
        },
        "limits-test",
    )
    .await
    .expect("pool");
    let e = sqlx::query("SELECT pg_sleep(10)")
        .execute(&pool)
        .await
        .expect_err("cancelled by statement_timeout");
    let code = e
        .as_database_error()
        .and_then(|d| d.code())
        .map(|c| c.into_owned());
    assert_eq!(code.as_deref(), Some("57014"), "query_canceled: {e}");
    let idle: String = sqlx::query_scalar("SHOW idle_in_transaction_session_timeout")
        .fetch_one(&pool)
        .await
        .expect("show");
    assert_eq!(idle, "1500ms");
}

#[tokio::test]
async fn clickhouse_queries_carry_their_limits() {
    let ch = TestClickHouse::new().await;
    let client = clickhouse::connect(&ClickHouseConfig {
        max_execution_time: Duration::from_secs(7),
        max_memory_usage: 123_456_789,
        ..ch.config.clone()
    })
    .expect("client");
    let settings: Vec<(String, String)> = client
        .query(
            "SELECT name, value FROM system.settings
             WHERE name IN ('max_execution_time', 'max_memory_usage') ORDER BY name",
        )
        .fetch_all()
        .await
        .expect("settings");
    assert_eq!(
        settings,
        [
            ("max_execution_time".to_owned(), "7".to_owned()),
            ("max_memory_usage".to_owned(), "123456789".to_owned())
        ]
    );
}
