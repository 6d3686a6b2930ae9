//! The event bus end to end on real servers: outbox → relay → stream → consumer, with
//! duplicates absorbed, crashed consumers' messages reclaimed, and failures dead-lettered.

use std::time::Duration;

use redis::AsyncCommands;
use sqlx::{PgConnection, PgPool};
use titan_kit::{
    config::EventsConfig,
    events::{
        self, Consumer, ConsumerOptions, Envelope, Handler, HandlerError, Outcome,
        consumer::Message, outbox, relay::Relay,
    },
    testing::{TestPostgres, TestRedis},
};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use titan_kit::testing::eventually;

/// Records every event it handles; fails on demand.
#[derive(Debug, Clone, Copy)]
enum Recorder {
    Ok,
    AlwaysRetry,
}

impl Handler for Recorder {
    async fn handle(&self, tx: &mut PgConnection, event: &Envelope) -> Result<(), HandlerError> {
        match self {
            Self::Ok => {
                sqlx::query("INSERT INTO handled (event_id) VALUES ($1)")
                    .bind(event.id)
                    .execute(&mut *tx)
                    .await?;
                Ok(())
            }
            Self::AlwaysRetry => Err(HandlerError::Retry("downstream is down".into())),
        }
    }
}

struct Bus {
    db: TestPostgres,
    redis: TestRedis,
}

impl Bus {
    async fn new() -> Self {
        Self::on(TestRedis::new().await).await
    }

    async fn on(redis: TestRedis) -> Self {
        let db = TestPostgres::new().await;
        sqlx::query("CREATE TABLE handled (n BIGSERIAL PRIMARY KEY, event_id UUID NOT NULL)")
            .execute(&db.pool)
            .await
            .expect("handled table");
        Self { db, redis }
    }

    fn events_config() -> EventsConfig {
        EventsConfig {
            claim_idle: Duration::from_millis(200),
            max_deliveries: 3,
            ..EventsConfig::default()
        }
    }

    async fn consumer(&self, name: &str, handler: Recorder) -> Consumer<Recorder> {
        let mut options = ConsumerOptions::new("orders", "analytics", name, &Self::events_config());
        options.block = Duration::from_millis(100);
        Consumer::new(
            self.db.pool.clone(),
            self.redis.handle.clone(),
            options,
            handler,
        )
        .await
        .expect("consumer")
    }

    fn relay(&self) -> Relay {
        Relay::new(
            self.db.pool.clone(),
            self.redis.handle.clone(),
            "orders",
            &Self::events_config(),
        )
    }

    /// Writes `n` events through the outbox, each in its own committed transaction.
    async fn write(&self, n: usize) -> Vec<Envelope> {
        let mut written = Vec::new();
        for i in 0..n {
            let event = Envelope::new("test", "orders.placed", 1, &serde_json::json!({ "n": i }))
                .expect("event");
            let mut tx = self.db.pool.begin().await.expect("tx");
            outbox::write(&mut tx, "orders", &event)
                .await
                .expect("outbox");
            tx.commit().await.expect("commit");
            written.push(event);
        }
        written
    }

    async fn handled(&self, id: Uuid) -> i64 {
        handled_count(&self.db.pool, id).await
    }

    async fn pending(&self) -> usize {
        let mut conn = self.redis.handle.conn.clone();
        let stream = events::stream_key(&self.redis.handle, "orders");
        let reply: redis::streams::StreamPendingReply =
            conn.xpending(&stream, "analytics").await.expect("xpending");
        reply.count()
    }

    async fn dead_letters(&self) -> Vec<redis::streams::StreamId> {
        let mut conn = self.redis.handle.conn.clone();
        let key = events::dead_letter_key(&self.redis.handle, "orders", "analytics");
        let reply: redis::streams::StreamRangeReply = conn.xrange_all(&key).await.expect("xrange");
        reply.ids
    }
}

async fn handled_count(pool: &PgPool, id: Uuid) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM handled WHERE event_id = $1")
        .bind(id)
        .fetch_one(pool)
        .await
        .expect("count")
}

/// The writer's transaction sends no `NOTIFY` (PostgreSQL would serialise the commits of
/// every transaction that did): the wake-up comes from `announce` on its own connection. A
/// transaction's `NOTIFY` is delivered only at its commit, so one that arrives while the
/// writer's transaction is still open came from elsewhere.
#[tokio::test]
async fn a_write_wakes_the_relays_from_outside_the_writers_transaction() {
    let bus = Bus::new().await;
    let mut listener = sqlx::postgres::PgListener::connect_with(&bus.db.pool)
        .await
        .expect("listener");
    listener.listen(outbox::CHANNEL).await.expect("listen");
    let stop = CancellationToken::new();
    let _stop = stop.clone().drop_guard();
    let pool = bus.db.pool.clone();
    tokio::spawn(async move { outbox::announce(&pool, &stop).await });

    let event = Envelope::new("test", "orders.placed", 1, &()).expect("event");
    let mut tx = bus.db.pool.begin().await.expect("tx");
    outbox::write(&mut tx, "orders", &event)
        .await
        .expect("outbox");
    let woken = tokio::time::timeout(Duration::from_secs(10), listener.recv())
        .await
        .expect("a NOTIFY while the writer's transaction is open")
        .expect("notification");
    assert_eq!(woken.channel(), outbox::CHANNEL);
    tx.commit().await.expect("commit");
    assert_eq!(bus.relay().relay_once().await.expect("relay"), 1);
}

#[tokio::test]
async fn the_relay_publishes_committed_events_in_order_and_only_those() {
    let bus = Bus::new().await;
    let written = bus.write(5).await;
    {
        let rolled_back = Envelope::new("test", "orders.placed", 1, &()).expect("event");
        let mut tx = bus.db.pool.begin().await.expect("tx");
        outbox::write(&mut tx, "orders", &rolled_back)
            .await
            .expect("outbox");
        tx.rollback().await.expect("rollback");
    }
    assert_eq!(bus.relay().relay_once().await.expect("relay"), 5);
    assert_eq!(
        bus.relay().relay_once().await.expect("relay again"),
        0,
        "relayed rows leave the outbox"
    );

    let mut conn = bus.redis.handle.conn.clone();
    let stream = events::stream_key(&bus.redis.handle, "orders");
    let reply: redis::streams::StreamRangeReply = conn.xrange_all(&stream).await.expect("xrange");
    let ids: Vec<String> = reply
        .ids
        .iter()
        .filter_map(|e| e.get::<String>("id"))
        .collect();
    let want: Vec<String> = written.iter().map(|e| e.id.to_string()).collect();
    assert_eq!(ids, want);
}

#[tokio::test]
async fn each_event_is_handled_once_even_when_published_twice() {
    let bus = Bus::new().await;
    let written = bus.write(3).await;
    bus.relay().relay_once().await.expect("relay");
    // A relay that crashed after XADD but before DELETE publishes the same rows again.
    {
        let mut tx = bus.db.pool.begin().await.expect("tx");
        outbox::write(&mut tx, "orders", &written[1])
            .await
            .expect("duplicate");
        tx.commit().await.expect("commit");
        bus.relay().relay_once().await.expect("relay duplicate");
    }
    let mut consumer = bus.consumer("c1", Recorder::Ok).await;
    let mut outcomes = Vec::new();
    while outcomes.len() < 4 {
        for message in consumer.next_batch().await.expect("read") {
            let outcome = consumer.handle(&message).await;
            consumer.settle(&message, &outcome).await.expect("settle");
            outcomes.push(outcome);
        }
    }
    assert_eq!(
        outcomes.iter().filter(|o| **o == Outcome::Handled).count(),
        3
    );
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| **o == Outcome::Duplicate)
            .count(),
        1
    );
    for event in &written {
        assert_eq!(
            bus.handled(event.id).await,
            1,
            "event {} handled once",
            event.id
        );
    }
    assert_eq!(bus.pending().await, 0, "everything acknowledged");
}

/// Reads until the first message arrives.
async fn first_message(consumer: &mut Consumer<Recorder>) -> Message {
    loop {
        if let Some(m) = consumer
            .next_batch()
            .await
            .expect("read")
            .into_iter()
            .next()
        {
            return m;
        }
    }
}

#[tokio::test]
async fn a_consumer_that_dies_after_commit_but_before_ack_does_not_cause_a_second_run() {
    let bus = Bus::new().await;
    let event = bus.write(1).await.remove(0);
    bus.relay().relay_once().await.expect("relay");

    let mut dying = bus.consumer("dying", Recorder::Ok).await;
    let message = first_message(&mut dying).await;
    assert_eq!(dying.handle(&message).await, Outcome::Handled);
    drop(dying); // dies here: effect committed, message never acknowledged
    assert_eq!(bus.pending().await, 1);

    let survivor = bus.consumer("survivor", Recorder::Ok).await;
    let claimed = eventually("the idle message to be claimed", || async {
        let claimed = survivor.claim_stale().await.expect("claim");
        (!claimed.is_empty()).then_some(claimed)
    })
    .await;
    assert_eq!(claimed.len(), 1);
    let outcome = survivor.handle(&claimed[0]).await;
    assert_eq!(outcome, Outcome::Duplicate);
    survivor
        .settle(&claimed[0], &outcome)
        .await
        .expect("settle");
    assert_eq!(bus.handled(event.id).await, 1);
    assert_eq!(bus.pending().await, 0);
}

#[tokio::test]
async fn a_consumer_that_dies_before_commit_has_its_message_redelivered() {
    let bus = Bus::new().await;
    let event = bus.write(1).await.remove(0);
    bus.relay().relay_once().await.expect("relay");

    let mut dying = bus.consumer("dying", Recorder::Ok).await;
    let _read_but_never_handled = first_message(&mut dying).await;
    drop(dying);

    // The restarted consumer runs its loop; it reclaims the message once it has been idle.
    let shutdown = CancellationToken::new();
    let runner = tokio::spawn(
        bus.consumer("restarted", Recorder::Ok)
            .await
            .run(shutdown.clone()),
    );
    eventually("the event to be handled", || async {
        (bus.handled(event.id).await == 1).then_some(())
    })
    .await;
    eventually("the message to be acknowledged", || async {
        (bus.pending().await == 0).then_some(())
    })
    .await;
    shutdown.cancel();
    runner.await.expect("join").expect("run");
    assert_eq!(bus.handled(event.id).await, 1);
}

#[tokio::test]
async fn an_event_that_keeps_failing_is_dead_lettered() {
    keeps_failing_is_dead_lettered(Bus::new().await).await;
}

#[tokio::test]
async fn on_a_redis_cluster_an_event_that_keeps_failing_is_dead_lettered() {
    keeps_failing_is_dead_lettered(Bus::on(TestRedis::cluster().await).await).await;
}

async fn keeps_failing_is_dead_lettered(bus: Bus) {
    let event = bus.write(1).await.remove(0);
    bus.relay().relay_once().await.expect("relay");

    let shutdown = CancellationToken::new();
    let runner = tokio::spawn(
        bus.consumer("c1", Recorder::AlwaysRetry)
            .await
            .run(shutdown.clone()),
    );
    let dead = eventually("a dead letter", || async {
        let dead = bus.dead_letters().await;
        (!dead.is_empty()).then_some(dead)
    })
    .await;
    shutdown.cancel();
    runner.await.expect("join").expect("run");

    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].get::<String>("id"), Some(event.id.to_string()));
    assert_eq!(
        dead[0].get::<String>("error").as_deref(),
        Some("downstream is down")
    );
    assert_eq!(
        bus.pending().await,
        0,
        "a dead-lettered message is acknowledged"
    );
    assert_eq!(
        bus.handled(event.id).await,
        0,
        "a failed attempt leaves no effect"
    );
}

#[tokio::test]
async fn a_malformed_message_is_dead_lettered_at_once() {
    let bus = Bus::new().await;
    let consumer_for_group = bus.consumer("c1", Recorder::Ok).await; // creates the group
    let mut conn = bus.redis.handle.conn.clone();
    let stream = events::stream_key(&bus.redis.handle, "orders");
    let _: String = conn
        .xadd(&stream, "*", &[("envelope", "{not json")])
        .await
        .expect("xadd");
    drop(consumer_for_group);

    let mut consumer = bus.consumer("c1", Recorder::Ok).await;
    let message = first_message(&mut consumer).await;
    let outcome = consumer.handle(&message).await;
    assert!(
        matches!(outcome, Outcome::Rejected(ref e) if e.contains("malformed envelope")),
        "{outcome:?}"
    );
    consumer.settle(&message, &outcome).await.expect("settle");
    assert_eq!(bus.dead_letters().await.len(), 1);
    assert_eq!(bus.pending().await, 0);
}

#[tokio::test]
async fn relay_and_consumer_loops_deliver_everything_once() {
    deliver_everything_once(Bus::new().await).await;
}

/// Streams, consumer groups (a blocking XREADGROUP on a dedicated cluster connection), the
/// relay's leadership lock and trimming, all on a Redis Cluster.
#[tokio::test]
async fn on_a_redis_cluster_relay_and_consumer_loops_deliver_everything_once() {
    deliver_everything_once(Bus::on(TestRedis::cluster().await).await).await;
}

async fn deliver_everything_once(bus: Bus) {
    let shutdown = CancellationToken::new();
    let relay = tokio::spawn(bus.relay().run(shutdown.clone()));
    let consumer = tokio::spawn(bus.consumer("c1", Recorder::Ok).await.run(shutdown.clone()));
    let written = bus.write(50).await;
    eventually("all events handled", || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM handled")
            .fetch_one(&bus.db.pool)
            .await
            .expect("count");
        (n == 50).then_some(())
    })
    .await;
    shutdown.cancel();
    relay.await.expect("join").expect("relay");
    consumer.await.expect("join").expect("consumer");
    for event in &written {
        assert_eq!(bus.handled(event.id).await, 1);
    }
}

/// PostgreSQL down is no fault of the event: the attempts a consumer makes meanwhile are not
/// deliveries, so an outage longer than `max_deliveries` tries dead-letters nothing, and the
/// event is handled once the database is back.
#[tokio::test]
async fn an_unreachable_database_spends_no_delivery() {
    let bus = Bus::new().await;
    let event = bus.write(1).await.remove(0);
    bus.relay().relay_once().await.expect("relay");

    let down = sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(Duration::from_millis(200))
        .connect_lazy("postgres://postgres@127.0.0.1:1/nowhere")
        .expect("lazy pool");
    let mut options = ConsumerOptions::new("orders", "analytics", "c1", &Bus::events_config());
    options.block = Duration::from_millis(100);
    let mut cut_off = Consumer::new(down, bus.redis.handle.clone(), options, Recorder::Ok)
        .await
        .expect("consumer");
    let message = first_message(&mut cut_off).await;
    for _ in 0..Bus::events_config().max_deliveries + 2 {
        let outcome = cut_off.handle(&message).await;
        assert!(
            matches!(&outcome, Outcome::Unavailable(e) if e.starts_with("postgres unavailable")),
            "{outcome:?}"
        );
        cut_off.settle(&message, &outcome).await.expect("settle");
    }
    drop(cut_off);
    assert!(bus.dead_letters().await.is_empty(), "nothing dead-lettered");
    assert_eq!(bus.pending().await, 1, "still pending");

    // The same replica restarted with the database back: it re-reads its own pending list.
    let shutdown = CancellationToken::new();
    let runner = tokio::spawn(bus.consumer("c1", Recorder::Ok).await.run(shutdown.clone()));
    eventually("the event handled and acknowledged", || async {
        (bus.handled(event.id).await == 1 && bus.pending().await == 0).then_some(())
    })
    .await;
    shutdown.cancel();
    runner.await.expect("join").expect("run");
}

/// Redis lost the stream and its group (a restart without persistence, a deleted key): the
/// consumer creates them again instead of failing every read with NOGROUP.
#[tokio::test]
async fn a_consumer_recovers_from_a_lost_stream_and_group() {
    let bus = Bus::new().await;
    let mut consumer = bus.consumer("c1", Recorder::Ok).await;
    let mut conn = bus.redis.handle.conn.clone();
    let stream = events::stream_key(&bus.redis.handle, "orders");
    let _: i64 = conn.del(&stream).await.expect("del");

    assert!(
        consumer
            .next_batch()
            .await
            .expect("read after the loss")
            .is_empty(),
        "nothing to read yet"
    );
    assert!(
        consumer
            .claim_stale()
            .await
            .expect("claim after the loss")
            .is_empty(),
        "nothing to claim"
    );
    let event = bus.write(1).await.remove(0);
    bus.relay().relay_once().await.expect("relay");
    let message = first_message(&mut consumer).await;
    let outcome = consumer.handle(&message).await;
    assert_eq!(outcome, Outcome::Handled);
    consumer.settle(&message, &outcome).await.expect("settle");
    assert_eq!(bus.handled(event.id).await, 1);
    assert_eq!(bus.pending().await, 0);
}

/// An operator lists what a group gave up on and, once the cause is fixed, re-drives it: the
/// event is handled, and the dead-letter stream is empty (a second replay publishes nothing).
#[tokio::test]
async fn dead_letters_are_listed_and_replayed() {
    dead_letters_listed_and_replayed(Bus::new().await).await;
}

/// The replay's transaction (XADD to the stream, XDEL of the letter) needs both keys in one
/// slot: the dead-letter key carries the stream key as its hash tag.
#[tokio::test]
async fn on_a_redis_cluster_dead_letters_are_listed_and_replayed() {
    dead_letters_listed_and_replayed(Bus::on(TestRedis::cluster().await).await).await;
}

async fn dead_letters_listed_and_replayed(bus: Bus) {
    let event = bus.write(1).await.remove(0);
    bus.relay().relay_once().await.expect("relay");
    let shutdown = CancellationToken::new();
    let failing = tokio::spawn(
        bus.consumer("c1", Recorder::AlwaysRetry)
            .await
            .run(shutdown.clone()),
    );
    eventually("a dead letter", || async {
        (!bus.dead_letters().await.is_empty()).then_some(())
    })
    .await;
    shutdown.cancel();
    failing.await.expect("join").expect("run");

    let listed = events::dead_letters::list(&bus.redis.handle, "orders", "analytics", 10)
        .await
        .expect("list");
    assert_eq!(
        listed
            .iter()
            .map(|d| (d.event_id.as_str(), d.event_type.as_str(), d.error.as_str()))
            .collect::<Vec<_>>(),
        [(
            event.id.to_string().as_str(),
            "orders.placed",
            "downstream is down"
        )]
    );
    let ids = vec![listed[0].dead_id.clone()];
    let replayed = events::dead_letters::replay(&bus.redis.handle, "orders", "analytics", &ids)
        .await
        .expect("replay");
    assert_eq!(replayed, listed);
    let again = events::dead_letters::replay(&bus.redis.handle, "orders", "analytics", &ids)
        .await
        .expect("replay again");
    assert!(again.is_empty(), "a replayed dead letter is gone");
    assert!(bus.dead_letters().await.is_empty());

    let shutdown = CancellationToken::new();
    let fixed = tokio::spawn(bus.consumer("c1", Recorder::Ok).await.run(shutdown.clone()));
    eventually("the re-driven event handled", || async {
        (bus.handled(event.id).await == 1 && bus.pending().await == 0).then_some(())
    })
    .await;
    shutdown.cancel();
    fixed.await.expect("join").expect("run");
}

/// The order the relay promises is per entity: changes of one entity serialize on its row
/// lock, and each writes its event after the change, so their events are published in the
/// order they committed, while writers of other entities commit concurrently and the relay
/// runs the whole time. (Across entities there is no order: a transaction that took its
/// `seq` first may commit last.)
#[tokio::test]
async fn concurrent_writers_see_their_entity_events_published_in_commit_order() {
    const ENTITIES: i64 = 6;
    const CHANGES: i64 = 15;
    let bus = Bus::new().await;
    sqlx::query("CREATE TABLE entity (id BIGINT PRIMARY KEY, version BIGINT NOT NULL)")
        .execute(&bus.db.pool)
        .await
        .expect("entity table");
    for id in 0..ENTITIES {
        sqlx::query("INSERT INTO entity VALUES ($1, 0)")
            .bind(id)
            .execute(&bus.db.pool)
            .await
            .expect("entity");
    }
    let shutdown = CancellationToken::new();
    let relay = tokio::spawn(bus.relay().run(shutdown.clone()));
    let mut writers = tokio::task::JoinSet::new();
    // Two writers per entity, racing each other and every other entity's writers.
    for writer in 0..ENTITIES * 2 {
        let pool = bus.db.pool.clone();
        writers.spawn(async move {
            let entity = writer % ENTITIES;
            for _ in 0..CHANGES {
                let mut tx = pool.begin().await.expect("tx");
                let version: i64 = sqlx::query_scalar(
                    "UPDATE entity SET version = version + 1 WHERE id = $1 RETURNING version",
                )
                .bind(entity)
                .fetch_one(&mut *tx)
                .await
                .expect("update");
                let event = Envelope::new(
                    "test",
                    "orders.changed",
                    1,
                    &serde_json::json!({ "entity": entity, "version": version }),
                )
                .expect("event");
                outbox::write(&mut tx, "orders", &event)
                    .await
                    .expect("outbox");
                tx.commit().await.expect("commit");
                tokio::task::yield_now().await;
            }
        });
    }
    while let Some(done) = writers.join_next().await {
        done.expect("writer");
    }
    let total = usize::try_from(ENTITIES * 2 * CHANGES).expect("count");
    let stream = events::stream_key(&bus.redis.handle, "orders");
    let published = eventually("every event published", || async {
        let mut conn = bus.redis.handle.conn.clone();
        let reply: redis::streams::StreamRangeReply = conn.xrange_all(&stream).await.ok()?;
        (reply.ids.len() == total).then_some(reply.ids)
    })
    .await;
    shutdown.cancel();
    relay.await.expect("join").expect("relay");

    let mut versions: std::collections::BTreeMap<i64, Vec<i64>> = Default::default();
    for entry in &published {
        let envelope: Envelope =
            serde_json::from_str(&entry.get::<String>("envelope").expect("envelope"))
                .expect("json");
        let entity = envelope.payload["entity"].as_i64().expect("entity");
        let version = envelope.payload["version"].as_i64().expect("version");
        versions.entry(entity).or_default().push(version);
    }
    for (entity, seen) in versions {
        let want: Vec<i64> = (1..=CHANGES * 2).collect();
        assert_eq!(seen, want, "entity {entity}: in commit order, each once");
    }
}

/// The leading relay reports what waits in the outbox, the stream's length, and per group what
/// it has not read (lag) and not acknowledged (pending).
#[tokio::test]
async fn the_relay_measures_backlog_stream_length_and_group_lag() {
    let bus = Bus::new().await;
    let registry = prometheus::Registry::new();
    let relay = bus
        .relay()
        .with_metrics(events::relay::BusMetrics::new(&registry).expect("metrics"));
    let mut consumer = bus.consumer("c1", Recorder::Ok).await; // creates the group
    bus.write(3).await;
    relay.observe().await.expect("observe");
    let value = |name: &str| {
        let rendered = titan_kit::metrics::render(&registry);
        rendered
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<i64>().ok())
    };
    assert_eq!(
        value("titan_events_outbox_backlog{service=\"orders\"}"),
        Some(3)
    );
    assert_eq!(
        value("titan_events_stream_length{service=\"orders\"}"),
        Some(0)
    );

    relay.relay_once().await.expect("relay");
    let read = first_message(&mut consumer).await; // reads the whole batch of 3, acks none
    relay.observe().await.expect("observe");
    assert_eq!(
        value("titan_events_outbox_backlog{service=\"orders\"}"),
        Some(0)
    );
    assert_eq!(
        value("titan_events_stream_length{service=\"orders\"}"),
        Some(3)
    );
    let group = "{group=\"analytics\",service=\"orders\"}";
    assert_eq!(
        value(&format!("titan_events_group_pending{group}")),
        Some(3)
    );
    assert_eq!(value(&format!("titan_events_group_lag{group}")), Some(0));

    let outcome = consumer.handle(&read).await;
    consumer.settle(&read, &outcome).await.expect("settle");
    bus.write(2).await;
    relay.relay_once().await.expect("relay");
    relay.observe().await.expect("observe");
    assert_eq!(
        value(&format!("titan_events_group_pending{group}")),
        Some(2)
    );
    assert_eq!(value(&format!("titan_events_group_lag{group}")), Some(2));
}

/// A relay whose lock session died stops publishing: by then another replica may hold the lock
/// and publish, and two relays at once would break the order.
#[tokio::test]
async fn a_relay_that_lost_its_lock_stops_publishing() {
    let bus = Bus::new().await;
    let old = bus.relay();
    let mut old_lead = old.try_lead().await.expect("lead").expect("first leader");
    assert!(
        bus.relay().try_lead().await.expect("lead").is_none(),
        "one leader at a time"
    );
    bus.write(2).await;
    assert_eq!(old.relay_leading(&mut old_lead).await.expect("relay"), 2);

    let pid = old_lead.backend_pid().await.expect("pid");
    let ended: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .fetch_one(&bus.db.pool)
        .await
        .expect("terminate");
    assert!(ended);
    let new = bus.relay();
    let mut new_lead = eventually("another replica to lead", || async {
        new.try_lead().await.ok().flatten()
    })
    .await;
    bus.write(1).await;
    let e = old
        .relay_leading(&mut old_lead)
        .await
        .expect_err("the old leader must stop");
    assert!(e.to_string().contains("lost its lock session"), "{e}");
    let mut conn = bus.redis.handle.conn.clone();
    let stream = events::stream_key(&bus.redis.handle, "orders");
    let length: usize = conn.xlen(&stream).await.expect("xlen");
    assert_eq!(length, 2, "the old leader published nothing more");
    assert_eq!(new.relay_leading(&mut new_lead).await.expect("relay"), 1);
    new_lead.release().await;
}

/// A relay whose lock session dies just after its lock check passed still has a batch in
/// flight: once another relay has taken the lock (and with it the fence), that batch is refused
/// whole; nothing lands after the new leader's entries and the rows stay for the new leader.
#[tokio::test]
async fn a_relay_fenced_off_by_a_new_leader_publishes_nothing() {
    let bus = Bus::new().await;
    let old = bus.relay();
    let mut old_lead = old.try_lead().await.expect("lead").expect("first leader");
    bus.write(2).await;
    assert_eq!(old.relay_leading(&mut old_lead).await.expect("relay"), 2);

    // The old leader's lock check passed; then its session dies and another relay leads.
    let pid = old_lead.backend_pid().await.expect("pid");
    let _: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .fetch_one(&bus.db.pool)
        .await
        .expect("terminate");
    let new = bus.relay();
    let mut new_lead = eventually("another replica to lead", || async {
        new.try_lead().await.ok().flatten()
    })
    .await;
    bus.write(1).await;
    assert_eq!(new.relay_leading(&mut new_lead).await.expect("relay"), 1);

    // The old leader's batch after its check arrives now.
    bus.write(1).await;
    let e = old
        .publish_as(&old_lead)
        .await
        .expect_err("the fenced-off leader must not publish");
    assert!(e.to_string().contains("fenced off"), "{e}");
    let mut conn = bus.redis.handle.conn.clone();
    let stream = events::stream_key(&bus.redis.handle, "orders");
    let length: usize = conn.xlen(&stream).await.expect("xlen");
    assert_eq!(length, 3, "nothing of the old leader after the new one's");
    assert_eq!(
        new.relay_leading(&mut new_lead).await.expect("relay"),
        1,
        "the refused batch's row is still there for the new leader"
    );
    new_lead.release().await;
}

/// A leadership dropped on an error path (not released) must not leave its lock behind in a
/// pooled connection, where no other replica could ever take it.
#[tokio::test]
async fn a_dropped_leadership_frees_the_lock() {
    let bus = Bus::new().await;
    let lead = bus.relay().try_lead().await.expect("lead").expect("leader");
    drop(lead);
    let other_replica = sqlx::PgPool::connect(&bus.db.url).await.expect("pool");
    let other = Relay::new(
        other_replica,
        bus.redis.handle.clone(),
        "orders",
        &Bus::events_config(),
    );
    let lead = eventually("another replica to lead", || async {
        other.try_lead().await.ok().flatten()
    })
    .await;
    lead.release().await;
}

/// The leading relay reports the bus (with the length from which trimming would drop what a
/// group still needs, for the alert); once it stops leading, its series are gone, so a former
/// leader never reports stale values next to the new one's.
#[tokio::test]
async fn a_relay_reports_the_bus_only_while_it_leads() {
    let bus = Bus::new().await;
    let registry = prometheus::Registry::new();
    let relay = Relay::new(
        bus.db.pool.clone(),
        bus.redis.handle.clone(),
        "orders",
        &EventsConfig {
            stream_max_len: 100,
            ..Bus::events_config()
        },
    )
    .with_metrics(events::relay::BusMetrics::new(&registry).expect("metrics"));
    let _consumer = bus.consumer("c1", Recorder::Ok).await; // the group
    bus.write(1).await;
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(relay.run(shutdown.clone()));
    let rendered = || titan_kit::metrics::render(&registry);
    eventually("the leader's report", || async {
        rendered()
            .contains("titan_events_group_lag{group=\"analytics\",service=\"orders\"} 1")
            .then_some(())
    })
    .await;
    assert!(
        rendered().contains("titan_events_stream_trim_cap{service=\"orders\"} 1000"),
        "{}",
        rendered()
    );

    shutdown.cancel();
    running.await.expect("join").expect("relay");
    let left: Vec<String> = rendered()
        .lines()
        .filter(|l| l.starts_with("titan_events_"))
        .map(str::to_owned)
        .collect();
    assert_eq!(
        left,
        Vec::<String>::new(),
        "no series once it stopped leading"
    );
}

/// The stream is not trimmed past what the slowest consumer group still needs: a group that
/// has read nothing keeps all 300 entries although `streamMaxLen` is 100 (up to the hard cap
/// of 10 × that); once it has read and acknowledged them, they are trimmed.
#[tokio::test]
async fn the_stream_keeps_what_the_slowest_group_has_not_read() {
    let bus = Bus::new().await;
    let relay = Relay::new(
        bus.db.pool.clone(),
        bus.redis.handle.clone(),
        "orders",
        &EventsConfig {
            stream_max_len: 100,
            relay_batch: 50,
            ..Bus::events_config()
        },
    );
    let mut slow = bus.consumer("slow", Recorder::Ok).await; // the group, at the start
    bus.write(300).await;
    while relay.relay_once().await.expect("relay") > 0 {}
    let mut conn = bus.redis.handle.conn.clone();
    let stream = events::stream_key(&bus.redis.handle, "orders");
    let length: usize = conn.xlen(&stream).await.expect("xlen");
    assert_eq!(length, 300, "nothing the group has not read is trimmed");

    // The group catches up: reads and acknowledges everything.
    let mut handled = 0;
    while handled < 300 {
        for message in slow.next_batch().await.expect("read") {
            let outcome = slow.handle(&message).await;
            slow.settle(&message, &outcome).await.expect("settle");
            handled += 1;
        }
    }
    bus.write(1).await;
    relay.relay_once().await.expect("relay");
    let length: usize = conn.xlen(&stream).await.expect("xlen");
    assert!(
        length < 301,
        "read entries are trimmed again ({length} left)"
    );
}

/// Outbox writes from many connections at once, each its own committed transaction: as `write`
/// does now, and with the `NOTIFY` inside the transaction that `write` sent before (PostgreSQL
/// serialises the commits of notifying transactions), in the same run. The test servers run
/// with `fsync = off`, which hides the difference: point `TITAN_TEST_POSTGRES_URL` at a
/// server with durable commits. Ignored by default:
/// `cargo test --release -p titan-kit --test kit -- --ignored --nocapture outbox_write_bench`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run it on purpose"]
async fn outbox_write_bench() {
    let bus = Bus::new().await;
    for notify_in_transaction in [true, false, true, false] {
        let pool = bus.db.pool.clone();
        let what = if notify_in_transaction {
            "outbox write + NOTIFY in the transaction (before)"
        } else {
            "outbox write, woken from outside (now)"
        };
        titan_kit::testing::throughput(what, 5_000, 16, move |i| {
            let pool = pool.clone();
            async move {
                let Ok(event) = Envelope::new("test", "orders.placed", 1, &i) else {
                    return false;
                };
                let Ok(mut tx) = pool.begin().await else {
                    return false;
                };
                if outbox::write(&mut tx, "orders", &event).await.is_err() {
                    return false;
                }
                if notify_in_transaction
                    && sqlx::query("SELECT pg_notify($1, 'orders')")
                        .bind(outbox::CHANNEL)
                        .execute(&mut *tx)
                        .await
                        .is_err()
                {
                    return false;
                }
                tx.commit().await.is_ok()
            }
        })
        .await;
    }
}

#[tokio::test]
async fn staged_events_are_written_by_the_callers_statement_only_for_kept_keys() {
    let bus = Bus::new().await;
    sqlx::query("CREATE TABLE orders (id TEXT PRIMARY KEY)")
        .execute(&bus.db.pool)
        .await
        .expect("orders table");
    let insert = |ids: &[&str]| {
        let mut staged = outbox::Staged::new("orders");
        let mut envelopes = Vec::new();
        for id in ids {
            let e = Envelope::new("test", "orders.placed", 1, id).expect("event");
            staged.push(id, &e).expect("stage");
            envelopes.push(e);
        }
        let ids: Vec<String> = ids.iter().map(|s| (*s).to_owned()).collect();
        (staged, ids, envelopes)
    };
    const SQL: &str = concat!(
        "WITH d AS (INSERT INTO orders (id) SELECT * FROM UNNEST($6::text[])
                    ON CONFLICT DO NOTHING RETURNING id),
              kept AS (SELECT id AS key FROM d), ",
        titan_kit::outbox_cte!(),
        " SELECT count(*) FROM d"
    );
    let (staged, ids, first) = insert(&["a", "b"]);
    let row = staged
        .bind(sqlx::query(SQL))
        .bind(ids)
        .fetch_one(&bus.db.pool)
        .await
        .expect("first statement");
    assert_eq!(sqlx::Row::get::<i64, _>(&row, 0), 2);
    // "a" again (a replay: no second event), and "c".
    let (staged, ids, second) = insert(&["a", "c"]);
    staged
        .bind(sqlx::query(SQL))
        .bind(ids)
        .fetch_one(&bus.db.pool)
        .await
        .expect("second statement");
    assert_eq!(bus.relay().relay_once().await.expect("relay"), 3);
    let mut conn = bus.redis.handle.conn.clone();
    let stream = events::stream_key(&bus.redis.handle, "orders");
    let reply: redis::streams::StreamRangeReply = conn.xrange_all(&stream).await.expect("xrange");
    let relayed: Vec<String> = reply
        .ids
        .iter()
        .filter_map(|e| e.get::<String>("id"))
        .collect();
    let want: Vec<String> = [&first[0], &first[1], &second[1]]
        .iter()
        .map(|e| e.id.to_string())
        .collect();
    assert_eq!(
        relayed, want,
        "in statement order, the replayed key's event left out"
    );
}
