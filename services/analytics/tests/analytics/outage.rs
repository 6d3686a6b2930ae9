//! ClickHouse going away during ingestion. The service reaches the real ClickHouse through a
//! TCP proxy the test can cut (connections refused and dropped, as when the server is stopped)
//! or stall (connections accepted by the kernel and never answered, as when it hangs), because
//! the shared test server itself must keep serving the tests running in parallel.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use redis::AsyncCommands;
use serde_json::json;
use titan_analytics::app::{AnalyticsError, IngestError, bus};
use titan_kit::{
    events::{ConsumerOptions, Envelope, StreamReader, stream_key},
    testing::{TestRedis, eventually, eventually_ok},
};
use tokio::{
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};

use super::*;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Forward,
    /// Accept nothing: the listener is closed and every open connection dropped.
    Refuse,
    /// Keep the listener, but leave new connections unanswered.
    Stall,
}

/// A TCP proxy in front of ClickHouse's HTTP port.
#[derive(Debug)]
struct Proxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    state: Arc<Mutex<(Mode, Vec<JoinHandle<()>>)>>,
    accept: Mutex<Option<JoinHandle<()>>>,
}

impl Proxy {
    async fn start(upstream_url: &str) -> Self {
        let upstream: SocketAddr = upstream_url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .expect("clickhouse url is http://host:port");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let proxy = Self {
            addr: listener.local_addr().expect("addr"),
            upstream,
            state: Arc::new(Mutex::new((Mode::Forward, Vec::new()))),
            accept: Mutex::new(None),
        };
        proxy.serve(listener);
        proxy
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn serve(&self, listener: TcpListener) {
        let state = self.state.clone();
        let upstream = self.upstream;
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let mut state = state.lock().expect("lock");
                match state.0 {
                    Mode::Forward => state.1.push(tokio::spawn(async move {
                        if let Ok(mut server) = TcpStream::connect(upstream).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    })),
                    // Held open, never read: the client waits for an answer.
                    Mode::Stall => state.1.push(tokio::spawn(async move {
                        let _client = client;
                        std::future::pending::<()>().await;
                    })),
                    Mode::Refuse => {}
                }
            }
        });
        *self.accept.lock().expect("lock") = Some(task);
    }

    fn drop_connections(&self) {
        for task in self.state.lock().expect("lock").1.drain(..) {
            task.abort();
        }
    }

    fn refuse(&self) {
        self.state.lock().expect("lock").0 = Mode::Refuse;
        if let Some(task) = self.accept.lock().expect("lock").take() {
            task.abort();
        }
        self.drop_connections();
    }

    fn stall(&self) {
        self.state.lock().expect("lock").0 = Mode::Stall;
        self.drop_connections();
    }

    /// Serves again on the same address.
    async fn restore(&self) {
        let stalled = {
            let mut state = self.state.lock().expect("lock");
            let stalled = state.0 == Mode::Stall;
            state.0 = Mode::Forward;
            stalled
        };
        if stalled {
            // Connections left hanging are dropped; their callers see an error and retry.
            self.drop_connections();
        } else {
            let listener = eventually_ok(|| TcpListener::bind(self.addr)).await;
            self.serve(listener);
        }
    }
}

fn clicks(prefix: &str, n: usize) -> Vec<RawEvent> {
    (0..n)
        .map(|i| {
            event(
                &format!("{prefix}-{i}"),
                "click",
                "u1",
                "s",
                "2026-11-03T10:00:00Z",
                no_props(),
            )
        })
        .collect()
}

async fn world_behind(proxy: &Proxy, options: IngestOptions) -> World {
    let ch = TestClickHouse::new().await;
    World::on(ch, Some(proxy.url()), options, at("2026-11-10T00:00:00Z")).await
}

#[tokio::test]
async fn a_stopped_clickhouse_gets_unavailable_and_loses_nothing() {
    let ch = TestClickHouse::new().await;
    let proxy = Proxy::start(&ch.config.url).await;
    // Migrations go straight to the server; the service's traffic goes through the proxy.
    let world = World::on(ch, Some(proxy.url()), options(), at("2026-11-10T00:00:00Z")).await;
    world
        .app
        .track(&tracker(), clicks("a", 100))
        .await
        .expect("before the outage");

    proxy.refuse();
    let refused = world.app.track(&tracker(), clicks("b", 100)).await;
    assert!(
        matches!(
            refused,
            Err(AnalyticsError::Ingest(IngestError::NotStored(_)))
        ),
        "{refused:?}"
    );
    proxy.restore().await;
    // The client retries the batch it was refused; a batch retried after an unclear failure
    // would be harmless too, since rows de-duplicate by event id.
    let retry = tracker();
    eventually_ok(|| world.app.track(&retry, clicks("b", 100))).await;
    world
        .app
        .track(&tracker(), clicks("c", 100))
        .await
        .expect("after the outage");
    assert_eq!(
        world.stored().await,
        (300, 300),
        "every accepted event is stored, once"
    );
}

#[tokio::test]
async fn a_full_buffer_refuses_at_once_while_clickhouse_hangs() {
    let ch = TestClickHouse::new().await;
    let proxy = Proxy::start(&ch.config.url).await;
    let world = world_behind(
        &proxy,
        IngestOptions {
            capacity: 150,
            ..options()
        },
    )
    .await;
    proxy.stall();
    let app = world.app.clone();
    let waiting = tokio::spawn(async move { app.track(&tracker(), clicks("a", 100)).await });
    eventually("the first batch waits in the buffer", || async {
        (world.events.waiting() == 100).then_some(())
    })
    .await;
    // 100 of 150 rows are taken: another 100 cannot fit, and the caller hears so at once.
    let full = world.app.track(&tracker(), clicks("b", 100)).await;
    assert!(
        matches!(
            full,
            Err(AnalyticsError::Ingest(IngestError::BufferFull(150)))
        ),
        "{full:?}"
    );
    proxy.restore().await;
    // The stalled insert either fails (its caller is told and retries) or, when the HTTP
    // client resends it on a fresh connection, is stored: never silently dropped.
    match waiting.await.expect("join") {
        Ok(n) => assert_eq!(n, 100),
        Err(AnalyticsError::Ingest(IngestError::NotStored(_))) => {
            let retry = tracker();
            eventually_ok(|| world.app.track(&retry, clicks("a", 100))).await;
        }
        Err(other) => panic!("unexpected outcome of the stalled batch: {other:?}"),
    }
    world
        .app
        .track(&tracker(), clicks("b", 100))
        .await
        .expect("room again");
    assert_eq!(world.stored().await, (200, 200));
    assert_eq!(world.events.waiting(), 0);
}

#[tokio::test]
async fn the_bus_keeps_what_clickhouse_cannot_take_yet() {
    let ch = TestClickHouse::new().await;
    let proxy = Proxy::start(&ch.config.url).await;
    let world = world_behind(&proxy, options()).await;
    let redis = TestRedis::new().await;
    let stream = stream_key(&redis.handle, "coupon");
    proxy.refuse();
    let mut conn = redis.handle.conn.clone();
    for i in 0..50 {
        let e = Envelope::new(
            "sg-1",
            "coupon.redeemed",
            1,
            &json!({"user_id": format!("u{i}")}),
        )
        .expect("envelope");
        let json = serde_json::to_string(&e).expect("json");
        let _: String = conn
            .xadd(&stream, "*", &[("envelope", json.as_str())])
            .await
            .expect("xadd");
    }
    let options = ConsumerOptions::new("coupon", "analytics", "test-0", &Default::default());
    let reader = StreamReader::new(redis.handle.clone(), options)
        .await
        .expect("reader");
    let task = tokio::spawn(bus::ingest(
        reader,
        world.events.clone(),
        world.shutdown.clone(),
    ));
    let pending = || async {
        let reply: redis::Value = redis::cmd("XPENDING")
            .arg(&stream)
            .arg("analytics")
            .query_async(&mut redis.handle.conn.clone())
            .await
            .expect("xpending");
        match reply {
            redis::Value::Array(fields) => match fields.first() {
                Some(redis::Value::Int(n)) => *n,
                _ => -1,
            },
            _ => -1,
        }
    };
    eventually("the events are read and held unacknowledged", || async {
        (pending().await == 50).then_some(())
    })
    .await;
    proxy.restore().await;
    eventually("held events stored after ClickHouse returns", || async {
        (world.stored().await.1 == 50).then_some(())
    })
    .await;
    eventually("and acknowledged", || async {
        (pending().await == 0).then_some(())
    })
    .await;
    world.shutdown.cancel();
    task.await.expect("join").expect("clean end");
}
