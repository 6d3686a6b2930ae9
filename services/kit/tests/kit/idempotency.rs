//! A repeated request_id replays the first answer, also under concurrency.

use sqlx::PgPool;
use titan_kit::{
    idempotency::{self, Begin, IdempotencyError, Key},
    testing::TestPostgres,
};

/// One idempotent "mutation": adds a row and answers with the number of rows it saw.
async fn mutate(pool: &PgPool, key: &Key) -> Result<Vec<u8>, IdempotencyError> {
    let mut tx = pool.begin().await?;
    if let Begin::Replay(answer) = idempotency::begin(&mut tx, key).await? {
        return Ok(answer);
    }
    sqlx::query("INSERT INTO effects DEFAULT VALUES")
        .execute(&mut *tx)
        .await?;
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM effects")
        .fetch_one(&mut *tx)
        .await?;
    let answer = n.to_string().into_bytes();
    idempotency::finish(&mut tx, key, &answer).await?;
    tx.commit().await?;
    Ok(answer)
}

#[tokio::test]
async fn concurrent_retries_run_the_mutation_once() {
    let db = TestPostgres::new().await;
    sqlx::query("CREATE TABLE effects (id BIGSERIAL PRIMARY KEY)")
        .execute(&db.pool)
        .await
        .expect("table");
    let key = Key::new("test", "Mutate", "u1", "req-1", b"body").expect("key");

    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let (pool, key) = (db.pool.clone(), key.clone());
        tasks.spawn(async move { mutate(&pool, &key).await });
    }
    let answers: Vec<Vec<u8>> = tasks
        .join_all()
        .await
        .into_iter()
        .map(|r| r.expect("mutation"))
        .collect();
    assert!(
        answers.iter().all(|a| a == b"1"),
        "every caller sees the first answer: {answers:?}"
    );
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM effects")
        .fetch_one(&db.pool)
        .await
        .expect("count");
    assert_eq!(rows, 1);

    // Another user may use the same request_id for their own change.
    let other = Key::new("test", "Mutate", "u2", "req-1", b"body").expect("key");
    assert_eq!(mutate(&db.pool, &other).await.expect("other user"), b"2");
}

#[tokio::test]
async fn a_reused_request_id_with_another_body_is_refused() {
    let db = TestPostgres::new().await;
    sqlx::query("CREATE TABLE effects (id BIGSERIAL PRIMARY KEY)")
        .execute(&db.pool)
        .await
        .expect("table");
    mutate(
        &db.pool,
        &Key::new("test", "Mutate", "u1", "req-1", b"one").expect("key"),
    )
    .await
    .expect("first");
    let err = mutate(
        &db.pool,
        &Key::new("test", "Mutate", "u1", "req-1", b"two").expect("key"),
    )
    .await
    .expect_err("reused");
    assert!(
        matches!(err, IdempotencyError::Reused(ref id) if id == "req-1"),
        "{err}"
    );
}

#[tokio::test]
async fn a_rolled_back_attempt_leaves_the_key_free() {
    let db = TestPostgres::new().await;
    sqlx::query("CREATE TABLE effects (id BIGSERIAL PRIMARY KEY)")
        .execute(&db.pool)
        .await
        .expect("table");
    let key = Key::new("test", "Mutate", "u1", "req-1", b"body").expect("key");
    {
        let mut tx = db.pool.begin().await.expect("tx");
        assert_eq!(
            idempotency::begin(&mut tx, &key).await.expect("begin"),
            Begin::Fresh
        );
        tx.rollback().await.expect("rollback");
    }
    assert_eq!(mutate(&db.pool, &key).await.expect("retry"), b"1");
}

#[tokio::test]
async fn claim_all_counts_only_fresh_keys_and_a_claimed_key_replays_its_answer() {
    let db = TestPostgres::new().await;
    let key = |user: &str, request: &str| Key::new("test", "Mutate", user, request, b"body");
    let (a, b, c) = (
        key("u1", "req-1").expect("key"),
        key("u2", "req-1").expect("key"),
        key("u1", "req-2").expect("key"),
    );
    let mut tx = db.pool.begin().await.expect("tx");
    let claimed = idempotency::claim_all(
        &mut tx,
        &[
            (&a, b"a".to_vec()),
            (&b, b"b".to_vec()),
            (&c, b"c".to_vec()),
        ],
    )
    .await
    .expect("claim");
    assert_eq!(claimed, 3);
    tx.commit().await.expect("commit");

    // An existing key and the same key twice in one batch are not claimed again.
    let d = key("u3", "req-1").expect("key");
    let mut tx = db.pool.begin().await.expect("tx");
    let claimed = idempotency::claim_all(
        &mut tx,
        &[
            (&a, b"other".to_vec()),
            (&d, b"d".to_vec()),
            (&d, b"d".to_vec()),
        ],
    )
    .await
    .expect("claim");
    assert_eq!(claimed, 1);
    tx.rollback().await.expect("rollback");

    let mut tx = db.pool.begin().await.expect("tx");
    assert_eq!(
        idempotency::begin(&mut tx, &b).await.expect("begin"),
        Begin::Replay(b"b".to_vec())
    );
    assert_eq!(
        idempotency::begin(&mut tx, &d).await.expect("begin"),
        Begin::Fresh,
        "the rolled-back claim left the key free"
    );
}
