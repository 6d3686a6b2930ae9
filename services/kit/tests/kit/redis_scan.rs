//! `RedisHandle::scan_keys` on the single test Redis and on the test Redis Cluster: the exact
//! keys under the handle's prefix that match a pattern, from every master, over several pages.

use titan_kit::{config::RedisConfig, datastores::redis::RedisHandle, testing::TestRedis};

/// More keys than one SCAN page looks at (1,000), so the walk takes several pages (on a cluster
/// several per master, whose slots these untagged keys spread over).
const MATCHING: usize = 2_500;

#[tokio::test]
async fn scan_keys_finds_exactly_the_matching_keys_under_the_prefix() {
    finds_exactly_the_matching_keys(TestRedis::new().await).await;
}

#[tokio::test]
async fn on_a_redis_cluster_scan_keys_finds_the_matching_keys_of_every_master() {
    finds_exactly_the_matching_keys(TestRedis::cluster().await).await;
}

async fn finds_exactly_the_matching_keys(test: TestRedis) {
    // A prefix with glob characters: scan_keys must match it literally, or the decoy below,
    // which `g[1]*:` would match as a glob, would be listed too.
    let prefix = format!("{}g[1]*:", test.handle.prefix());
    let redis = RedisHandle::connect(&RedisConfig::new(test.url.clone(), prefix.clone()))
        .await
        .expect("connect with a prefix of glob characters");
    let mut expected: Vec<String> = (0..MATCHING)
        .map(|i| redis.key(&format!("scan:a:{i}")))
        .collect();
    let others = [
        redis.key("scan:b:1"),
        redis.key("scan:a"),
        redis.key("other:scan:a:1"),
        format!("{}g1x:scan:a:1", test.handle.prefix()),
    ];
    set(&redis, expected.iter().chain(&others)).await;

    let found = redis.scan_keys("scan:a:*").await.expect("scan");
    expected.sort();
    assert_eq!(found.len(), MATCHING);
    assert_eq!(found, expected);

    assert_eq!(
        redis.scan_keys("scan:[ab]:1").await.expect("scan"),
        vec![redis.key("scan:a:1"), redis.key("scan:b:1")]
    );
    assert_eq!(
        redis.scan_keys("nothing:*").await.expect("scan"),
        Vec::<String>::new()
    );
}

/// Sets every key, each expiring after ten minutes so the shared server forgets them.
async fn set<'a>(redis: &RedisHandle, keys: impl Iterator<Item = &'a String>) {
    let keys: Vec<&String> = keys.collect();
    let mut conn = redis.conn.clone();
    for chunk in keys.chunks(500) {
        let mut pipe = redis::pipe();
        for key in chunk {
            pipe.set_ex(*key, "v", 600).ignore();
        }
        let () = pipe.query_async(&mut conn).await.expect("set");
    }
}
