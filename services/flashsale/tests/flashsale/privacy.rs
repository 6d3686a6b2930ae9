//! A person's export and erasure (`titan_kit::privacy`) on the real stores: the export holds
//! exactly the person's records; the erasure gives a held reservation back, deletes what only
//! served them, keeps paid orders under the pseudonym, leaves no trace of their id in any table
//! or key, leaves another buyer and the money as they were, and is idempotent.

use chrono::Duration;
use redis::aio::ConnectionLike;
use serde_json::{Value, json};
use sqlx::PgPool;
use titan_flashsale::{
    config::Settings,
    domain::SaleId,
    privacy::Privacy,
    store::{pg::PgSales, redis::RedisStock},
};
use titan_kit::{
    auth::Caller,
    privacy::{Erasure, PersonalData, Subject},
    testing::{TestRedis, caller, cluster},
};

use crate::{World, admin, checkout, uuid};

/// A budget that holds its key for minutes: the attempt budgets are still there to erase
/// however slowly the test runs, and no attempt here is refused.
fn settings() -> Settings {
    Settings {
        rate_limit_burst: 1_000,
        rate_limit_interval_ms: 60_000,
        ..Settings::default()
    }
}

fn subject(user: &str) -> Subject {
    Subject {
        user_id: user.to_owned(),
        pseudonym: format!("p_{}", uuid::Uuid::new_v4().simple()),
    }
}

/// Rows of the service's tables (`flashsale_*`) whose text mentions `needle`.
pub async fn rows_naming(pool: &PgPool, prefix: &str, needle: &str) -> Vec<String> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' AND starts_with(tablename, $1)",
    )
    .bind(prefix)
    .fetch_all(pool)
    .await
    .expect("tables");
    assert!(!tables.is_empty(), "no table starts with {prefix}");
    let mut found = Vec::new();
    for table in tables {
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM {table} t WHERE t::text LIKE '%' || $1 || '%'"
        )))
        .bind(needle)
        .fetch_one(pool)
        .await
        .expect("count");
        if n > 0 {
            found.push(format!("{table}: {n}"));
        }
    }
    found
}

/// Keys under `prefix` on each of `nodes` whose name or content (string, hash, list, set,
/// sorted set, stream) mentions `needle`.
pub async fn keys_naming<C: ConnectionLike>(
    nodes: Vec<C>,
    prefix: &str,
    needle: &str,
) -> Vec<String> {
    let mut found = Vec::new();
    for mut conn in nodes {
        let mut keys: Vec<String> = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, page): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{prefix}*"))
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .expect("scan");
            keys.extend(page);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        for key in keys {
            let kind: String = redis::cmd("TYPE")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .expect("type");
            let read = |cmd: &str, args: &[&str]| {
                let mut c = redis::cmd(cmd);
                c.arg(&key);
                for a in args {
                    c.arg(*a);
                }
                c
            };
            let content: Vec<String> = match kind.as_str() {
                "string" => vec![read("GET", &[]).query_async(&mut conn).await.expect("get")],
                "hash" => read("HGETALL", &[])
                    .query_async(&mut conn)
                    .await
                    .expect("hgetall"),
                "list" => read("LRANGE", &["0", "-1"])
                    .query_async(&mut conn)
                    .await
                    .expect("lrange"),
                "set" => read("SMEMBERS", &[])
                    .query_async(&mut conn)
                    .await
                    .expect("smembers"),
                "zset" => read("ZRANGE", &["0", "-1"])
                    .query_async(&mut conn)
                    .await
                    .expect("zrange"),
                "stream" => {
                    let v: redis::Value = read("XRANGE", &["-", "+"])
                        .query_async(&mut conn)
                        .await
                        .expect("xrange");
                    vec![format!("{v:?}")]
                }
                "none" => Vec::new(),
                other => panic!("key {key} of unexpected type {other}"),
            };
            if key.contains(needle) || content.iter().any(|c| c.contains(needle)) {
                found.push(key);
            }
        }
    }
    found
}

async fn export(handler: &Privacy, subject: &Subject) -> Value {
    handler.export(subject).await.expect("export")
}

async fn money(pool: &PgPool) -> (i64, i64) {
    sqlx::query_as("SELECT count(*), COALESCE(sum(total_minor), 0)::BIGINT FROM flashsale_orders")
        .fetch_one(pool)
        .await
        .expect("money")
}

/// A buyer's reservation made and paid for: the reservation's id, the order's, the attempt's
/// request id.
async fn bought(
    w: &World,
    buyer: &Caller,
    sale: SaleId,
    quantity: u32,
) -> (String, String, String) {
    let request = uuid();
    let r = w
        .app
        .attempt(buyer, &request, sale, quantity, None)
        .await
        .expect("reserve");
    let order = w
        .app
        .confirm(
            &checkout(),
            &uuid(),
            &buyer.user_id,
            &r.id.to_string(),
            &format!("pay-{}", uuid()),
        )
        .await
        .expect("confirm");
    (r.id.to_string(), order.id.to_string(), request)
}

#[tokio::test]
async fn a_buyer_is_exported_then_erased_and_nobody_else_is_touched() {
    let w = World::new(settings()).await;
    let handler = Privacy::new(
        PgSales::new(w.db.pool.clone()),
        RedisStock::new(w.redis.clone()),
    );
    let a = caller(&format!("buyer-{}", uuid()), &[]);
    let b = caller(&format!("buyer-{}", uuid()), &[]);
    let sale = w.live_sale(10, 5).await;
    let mut pow = w.spec(10, 5);
    pow.pow_difficulty = 1;
    let pow = w
        .app
        .create_sale(&admin(), &uuid(), pow)
        .await
        .expect("pow sale")
        .sale
        .id;

    // A: one hold that expires, one paid purchase of 2, one cancelled, one still held; a
    // watch stream and a challenge of the proof-of-work sale. B: one purchase, one hold, a
    // challenge.
    let expired_request = uuid();
    let expired = w
        .app
        .attempt(&a, &expired_request, sale, 1, None)
        .await
        .expect("reserve");
    w.clock.advance(Duration::seconds(301));
    assert_eq!(w.app.sweep().await.expect("sweep"), 1);
    let (paid, a_order, paid_request) = bought(&w, &a, sale, 2).await;
    let cancelled_request = uuid();
    let cancelled = w
        .app
        .attempt(&a, &cancelled_request, sale, 1, None)
        .await
        .expect("reserve");
    w.app
        .cancel(&a, &uuid(), &cancelled.id.to_string())
        .await
        .expect("cancel");
    let held_request = uuid();
    let held = w
        .app
        .attempt(&a, &held_request, sale, 1, None)
        .await
        .expect("reserve");
    w.app.watch(&a, sale).await.expect("watch");
    w.app.challenge(&a, pow).await.expect("challenge");
    let (_, b_order, _) = bought(&w, &b, sale, 1).await;
    w.app
        .attempt(&b, &uuid(), sale, 1, None)
        .await
        .expect("reserve");
    w.app.challenge(&b, pow).await.expect("challenge");

    let level = w.app.stats(sale).await.expect("stats").level;
    assert_eq!((level.available, level.reserved, level.sold), (5, 2, 3));
    let money_before = money(&w.db.pool).await;
    let subject_a = subject(&a.user_id);
    let subject_b = subject(&b.user_id);
    let b_before = export(&handler, &subject_b).await;

    // The export: exactly A's records.
    let doc = export(&handler, &subject_a).await;
    let s = sale.to_string();
    assert_eq!(
        doc["orders"].as_array().map(|o| o
            .iter()
            .map(|o| (
                o["id"].clone(),
                o["reservation_id"].clone(),
                o["quantity"].clone(),
                o["total"]["minor_units"].clone()
            ))
            .collect::<Vec<_>>()),
        Some(vec![(json!(a_order), json!(paid), json!(2), json!(5_000))])
    );
    let mut reservations: Vec<(String, String, u64, Option<String>)> = doc["reservations"][&s]
        .as_array()
        .expect("reservations of the sale")
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap_or_default().to_owned(),
                r["status"].as_str().unwrap_or_default().to_owned(),
                r["quantity"].as_u64().unwrap_or_default(),
                r["request_id"].as_str().map(str::to_owned),
            )
        })
        .collect();
    reservations.sort();
    let mut expected = vec![
        (
            expired.id.to_string(),
            "expired".to_owned(),
            1,
            Some(expired_request),
        ),
        (paid.clone(), "confirmed".to_owned(), 2, Some(paid_request)),
        (
            cancelled.id.to_string(),
            "cancelled".to_owned(),
            1,
            Some(cancelled_request),
        ),
        (
            held.id.to_string(),
            "reserved".to_owned(),
            1,
            Some(held_request),
        ),
    ];
    expected.sort();
    assert_eq!(reservations, expected);
    assert_eq!(doc["reservations"].as_object().map(|m| m.len()), Some(1));
    assert_eq!(doc["units_held"], json!({ s.clone(): 3 }));
    assert_eq!(doc["attempt_budgets"], json!([s.clone()]));
    assert_eq!(
        doc["budgets"],
        json!(["flashsale:challenge", "flashsale:watch"])
    );
    assert_eq!(doc["challenges"], json!([pow.to_string()]));
    let text = doc.to_string();
    assert!(
        !text.contains(&b.user_id) && !text.contains(&b_order),
        "nothing of B: {text}"
    );

    // The erasure.
    let erasure = handler.erase(&subject_a).await.expect("erase");
    let expected = Erasure::default()
        .pseudonymised("orders", 1)
        .pseudonymised("paid reservations", 1)
        .removed("reservations", 3)
        .removed("attempt replays", 4)
        .removed("unit counts", 1)
        .removed("attempt budgets", 3)
        .removed("challenges", 1);
    assert_eq!(erasure, expected);

    assert_eq!(
        rows_naming(&w.db.pool, "flashsale_", &a.user_id).await,
        Vec::<String>::new()
    );
    assert_eq!(
        keys_naming(vec![w.redis.conn.clone()], w.redis.prefix(), &a.user_id).await,
        Vec::<String>::new()
    );
    // The held unit went back on sale as a cancel gives it back; the paid ones stay sold.
    let stats = w.app.stats(sale).await.expect("stats");
    assert_eq!(
        (
            stats.level.available,
            stats.level.reserved,
            stats.level.sold
        ),
        (6, 1, 3)
    );
    assert_eq!(stats.cancellations, 2);
    w.assert_conserved(sale, 10).await;
    // A warm-up recounts the same: the pseudonym holds the paid units.
    w.app.warm_up(sale).await.expect("warm again");
    let level = w.app.stats(sale).await.expect("stats").level;
    assert_eq!((level.available, level.reserved, level.sold), (6, 1, 3));
    let mut conn = w.redis.conn.clone();
    let units: Option<i64> = redis::cmd("HGET")
        .arg(
            w.redis
                .key(&titan_flashsale::store::redis::key_name(sale, "buyers")),
        )
        .arg(&subject_a.pseudonym)
        .query_async(&mut conn)
        .await
        .expect("units");
    assert_eq!(units, Some(2));

    // The money is as it was, A's order now under the pseudonym.
    assert_eq!(money(&w.db.pool).await, money_before);
    let kept: (String, i64) =
        sqlx::query_as("SELECT id::text, total_minor FROM flashsale_orders WHERE user_id = $1")
            .bind(&subject_a.pseudonym)
            .fetch_one(&w.db.pool)
            .await
            .expect("kept order");
    assert_eq!(kept, (a_order, 5_000));
    assert_eq!(
        export(&handler, &subject_b).await,
        b_before,
        "B is untouched"
    );
    assert_eq!(
        export(&handler, &subject_a).await,
        json!({"orders": [], "reservations": {}, "units_held": {}, "attempt_budgets": [], "budgets": [], "challenges": []})
    );

    // Again: nothing left to do.
    let again = handler.erase(&subject_a).await.expect("erase again");
    assert_eq!(
        again,
        Erasure::default()
            .pseudonymised("orders", 0)
            .pseudonymised("paid reservations", 0)
            .removed("reservations", 0)
            .removed("attempt replays", 0)
            .removed("unit counts", 0)
            .removed("attempt budgets", 0)
            .removed("challenges", 0)
    );
    assert_eq!(money(&w.db.pool).await, money_before);
    assert_eq!(export(&handler, &subject_b).await, b_before);
}

/// A connection to every node of the test cluster, replicas reading too: a key is seen on
/// whichever node holds it now, whatever failovers other tests make.
async fn cluster_nodes() -> Vec<redis::aio::MultiplexedConnection> {
    let mut nodes = Vec::new();
    for addr in cluster::seeds() {
        let mut conn = cluster::node(&addr).await;
        let () = redis::cmd("READONLY")
            .query_async(&mut conn)
            .await
            .expect("readonly");
        nodes.push(conn);
    }
    nodes
}

/// The same erasure on a Redis Cluster: a sale's keys are found on the master of its slot,
/// and the challenges on whichever master holds them.
#[tokio::test]
async fn a_buyer_is_erased_from_a_redis_cluster() {
    let w = World::with_redis(settings(), TestRedis::cluster().await.handle).await;
    let handler = Privacy::new(
        PgSales::new(w.db.pool.clone()),
        RedisStock::new(w.redis.clone()),
    );
    let a = caller(&format!("buyer-{}", uuid()), &[]);
    let b = caller(&format!("buyer-{}", uuid()), &[]);
    let sale = w.live_sale(10, 5).await;
    let mut pow = w.spec(10, 5);
    pow.pow_difficulty = 1;
    let pow = w
        .app
        .create_sale(&admin(), &uuid(), pow)
        .await
        .expect("pow sale")
        .sale
        .id;
    let (_, a_order, _) = bought(&w, &a, sale, 2).await;
    w.app
        .attempt(&a, &uuid(), sale, 1, None)
        .await
        .expect("reserve");
    w.app.watch(&a, sale).await.expect("watch");
    w.app.challenge(&a, pow).await.expect("challenge");
    bought(&w, &b, sale, 1).await;
    w.app.challenge(&b, pow).await.expect("challenge");
    let subject_a = subject(&a.user_id);
    let subject_b = subject(&b.user_id);
    let b_before = export(&handler, &subject_b).await;
    let doc = export(&handler, &subject_a).await;
    assert_eq!(doc["challenges"], json!([pow.to_string()]));
    assert_eq!(doc["orders"][0]["id"], json!(a_order));

    assert_eq!(
        handler.erase(&subject_a).await.expect("erase"),
        Erasure::default()
            .pseudonymised("orders", 1)
            .pseudonymised("paid reservations", 1)
            .removed("reservations", 1)
            .removed("attempt replays", 2)
            .removed("unit counts", 1)
            .removed("attempt budgets", 3)
            .removed("challenges", 1)
    );
    let prefix = w.redis.prefix().to_owned();
    let needle = a.user_id.clone();
    titan_kit::testing::eventually("no key of the cluster naming the buyer", || async {
        keys_naming(cluster_nodes().await, &prefix, &needle)
            .await
            .is_empty()
            .then_some(())
    })
    .await;
    assert_eq!(
        rows_naming(&w.db.pool, "flashsale_", &a.user_id).await,
        Vec::<String>::new()
    );
    let level = w.app.stats(sale).await.expect("stats").level;
    assert_eq!((level.available, level.reserved, level.sold), (7, 0, 3));
    w.assert_conserved(sale, 10).await;
    assert_eq!(
        export(&handler, &subject_b).await,
        b_before,
        "B is untouched"
    );
    assert_eq!(
        handler.erase(&subject_a).await.expect("erase again"),
        Erasure::default()
            .pseudonymised("orders", 0)
            .pseudonymised("paid reservations", 0)
            .removed("reservations", 0)
            .removed("attempt replays", 0)
            .removed("unit counts", 0)
            .removed("attempt budgets", 0)
            .removed("challenges", 0)
    );
}
