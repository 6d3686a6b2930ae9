//! Where a value still appears in a test's stores: every PostgreSQL table, every ClickHouse
//! string, every Redis key and value under the test's prefix. A privacy test asserts an erased
//! person is named nowhere — searched everywhere, not only where the test expects them — and
//! first that the search finds them before the erasure, so the assertion can fail.

use redis::{AsyncCommands, aio::ConnectionLike};
use sqlx::PgPool;

use crate::datastores::redis::RedisHandle;

/// Tables of the database's `public` schema whose rows mention `text` (as a row's text form
/// contains it, or a `bytea` column holds it as UTF-8: a row's text form shows bytes as hex, so
/// a stored answer such as kit's `titan_idempotency.response` is searched as the bytes it is),
/// with how many rows each; empty when none does.
pub async fn postgres(pool: &PgPool, text: &str) -> Vec<(String, i64)> {
    let columns: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT t.table_name::text, c.column_name::text
         FROM information_schema.tables t
         LEFT JOIN information_schema.columns c
           ON c.table_schema = t.table_schema AND c.table_name = t.table_name
          AND c.data_type = 'bytea'
         WHERE t.table_schema = 'public' AND t.table_type = 'BASE TABLE' ORDER BY 1, 2",
    )
    .fetch_all(pool)
    .await
    .expect("list the tables");
    let mut tables: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for (table, bytes) in columns {
        tables.entry(table).or_default().extend(bytes);
    }
    let mut found = Vec::new();
    for (table, bytes) in tables {
        let mut conditions = vec!["t::text LIKE '%' || $1 || '%'".to_owned()];
        conditions.extend(
            bytes
                .iter()
                .map(|c| format!("position(convert_to($1, 'UTF8') IN t.\"{c}\") > 0")),
        );
        let (n,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM \"{table}\" t WHERE {}",
            conditions.join(" OR ")
        )))
        .bind(text)
        .fetch_one(pool)
        .await
        .expect("count the rows that mention the text");
        if n > 0 {
            found.push((table, n));
        }
    }
    found
}

/// [`postgres`] in the tables whose names start with `prefix`: a service's own, for a test that
/// runs the service's erasure alone (kit's tables, such as its stored answers, are erased by
/// kit's part of the job).
pub async fn postgres_in(pool: &PgPool, prefix: &str, text: &str) -> Vec<(String, i64)> {
    let mut found = postgres(pool, text).await;
    found.retain(|(table, _)| table.starts_with(prefix));
    found
}

/// Tables of the client's database with rows whose string columns (plain, nullable, low
/// cardinality or arrays of them) contain `text`, with how many rows each. Views are left out:
/// they hold no rows of their own, and counting what they read would name their source twice.
pub async fn clickhouse(client: &clickhouse::Client, text: &str) -> Vec<(String, u64)> {
    let columns: Vec<(String, String, String)> = client
        .query(
            "SELECT table, name, type FROM system.columns
             WHERE database = currentDatabase()
               AND table IN (SELECT name FROM system.tables
                             WHERE database = currentDatabase() AND engine NOT LIKE '%View')
             ORDER BY table, name",
        )
        .fetch_all()
        .await
        .expect("list the columns");
    let mut conditions: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for (table, column, kind) in columns {
        let condition = if kind.starts_with("Array(") && kind.contains("String") {
            format!("arrayExists(x -> position(toString(x), ?) > 0, `{column}`)")
        } else if kind.contains("String") {
            format!("position(toString(`{column}`), ?) > 0")
        } else {
            continue;
        };
        conditions.entry(table).or_default().push(condition);
    }
    let mut found = Vec::new();
    for (table, conditions) in conditions {
        let mut query = client.query(&format!(
            "SELECT count() FROM `{table}` WHERE {}",
            conditions.join(" OR ")
        ));
        for _ in &conditions {
            query = query.bind(text);
        }
        let n: u64 = query
            .fetch_one()
            .await
            .expect("count the rows that mention the text");
        if n > 0 {
            found.push((table, n));
        }
    }
    found
}

/// Keys under the handle's prefix whose name or value (a string, a hash's fields and values, a
/// set's, sorted set's or list's members, a stream's field values) contains `text`, sorted; on a
/// cluster, from every master.
pub async fn redis(handle: &RedisHandle, text: &str) -> Vec<String> {
    let pattern = format!("{}*", handle.prefix());
    let mut found = Vec::new();
    if handle.is_cluster() {
        let seed = super::cluster::seeds()
            .into_iter()
            .next()
            .expect("a seed of the test cluster");
        for master in super::cluster::view(&seed)
            .await
            .iter()
            .filter(|n| n.master)
        {
            let mut conn = super::cluster::node(&master.addr).await;
            found.extend(search(&mut conn, &pattern, text).await);
        }
    } else {
        let mut conn = handle.conn.clone();
        found.extend(search(&mut conn, &pattern, text).await);
    }
    found.sort();
    found
}

async fn search<C: ConnectionLike + Send + Sync>(
    conn: &mut C,
    pattern: &str,
    text: &str,
) -> Vec<String> {
    let mut keys = Vec::new();
    {
        let mut iter: redis::AsyncIter<String> =
            conn.scan_match(pattern).await.expect("scan the prefix");
        while let Some(key) = iter.next_item().await {
            keys.push(key.expect("a key"));
        }
    }
    let mut found = Vec::new();
    for key in keys {
        let kind: String = redis::cmd("TYPE")
            .arg(&key)
            .query_async(conn)
            .await
            .expect("the key's type");
        let values: Vec<String> = match kind.as_str() {
            "string" => vec![conn.get(&key).await.unwrap_or_default()],
            "hash" => {
                let pairs: Vec<(String, String)> = conn.hgetall(&key).await.expect("a hash");
                pairs.into_iter().flat_map(|(k, v)| [k, v]).collect()
            }
            "set" => conn.smembers(&key).await.expect("a set"),
            "zset" => conn.zrange(&key, 0, -1).await.expect("a sorted set"),
            "list" => conn.lrange(&key, 0, -1).await.expect("a list"),
            "stream" => {
                let entries: Vec<(String, Vec<(String, String)>)> =
                    conn.xrange_all(&key).await.expect("a stream");
                entries
                    .into_iter()
                    .flat_map(|(_, fields)| fields.into_iter().map(|(_, v)| v))
                    .collect()
            }
            _ => Vec::new(),
        };
        if key.contains(text) || values.iter().any(|v| v.contains(text)) {
            found.push(key);
        }
    }
    found
}
