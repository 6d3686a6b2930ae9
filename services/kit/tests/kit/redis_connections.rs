//! `redis.connections`: a single server's multiplexed connections, taken in turn by each clone
//! of the handle's connection, each clone staying on its own (so a clone's commands keep
//! their order). Told apart by the server's `CLIENT ID`.

use titan_kit::{
    config::RedisConfig,
    datastores::redis::{RedisConn, RedisHandle},
    testing::TestRedis,
};

async fn client_id(conn: &mut RedisConn) -> i64 {
    redis::cmd("CLIENT")
        .arg("ID")
        .query_async(conn)
        .await
        .expect("CLIENT ID")
}

/// A handle on the test Redis with `connections` connections.
async fn with_connections(connections: u32) -> RedisHandle {
    let test = TestRedis::new().await;
    let config = RedisConfig {
        connections,
        ..test.config.clone()
    };
    RedisHandle::connect(&config).await.expect("connect")
}

#[tokio::test]
async fn clones_take_the_connections_in_turn_and_each_keeps_its_own() {
    let handle = with_connections(3).await;
    let mut ids = Vec::new();
    for _ in 0..6 {
        let mut conn = handle.conn.clone();
        let first = client_id(&mut conn).await;
        // A clone's later commands go where its first went.
        assert_eq!(client_id(&mut conn).await, first);
        ids.push(first);
    }
    let mut distinct = ids.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), 3, "three connections in {ids:?}");
    // In turn: the seventh clone is the first one's connection again.
    assert_eq!(ids[..3], ids[3..], "round robin in {ids:?}");
}

#[tokio::test]
async fn one_connection_serves_every_clone() {
    let handle = with_connections(1).await;
    let mut first = handle.conn.clone();
    let id = client_id(&mut first).await;
    for _ in 0..3 {
        assert_eq!(client_id(&mut handle.conn.clone()).await, id);
    }
}
