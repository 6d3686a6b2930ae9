//! `kit::realtime` against a real third-party client (tokio-tungstenite) and the real Redis:
//! the three ways of sending the token, the refusals and close codes, acks, liveness, token
//! expiry, back-pressure, fan-out between two replicas (two `Realtime`s on one key prefix)
//! and drain.

use std::time::Duration;

use futures::SinkExt;
use prometheus::Registry;
use serde_json::{Value, json};
use titan_kit::{
    auth::{Authenticator, Claims},
    config::{AuthConfig, RealtimeConfig},
    realtime::{Endpoint, FrameError, Realtime, Session},
    testing::{
        TestRedis, eventually,
        ws::{Client, Event, PATIENCE, closed_with, next, send},
    },
};
use tokio_tungstenite::{
    connect_async,
    tungstenite::{self, Message, client::IntoClientRequest, http::HeaderValue},
};

const SECRET: &str = "realtime-secret-realtime-secret-00";

type Headers = Vec<(&'static str, String)>;

fn auth() -> Authenticator {
    Authenticator::new(&AuthConfig {
        issuer: None,
        audience: None,
        hs256_secret: Some(SECRET.to_owned().into()),
        rs256_public_keys: vec![],
        leeway: Duration::ZERO,
        max_token_lifetime: Duration::from_secs(3600),
        jwks: None,
    })
    .expect("authenticator")
}

fn token(user: &str) -> String {
    auth()
        .mint(user, &[], Duration::from_secs(600))
        .expect("mint")
}

/// The test endpoint: echo, topics and publication, and a handler that refuses.
fn endpoint() -> Endpoint {
    Endpoint::new()
        .on(
            "echo",
            |_s: Session, payload: Value| async move { Ok(payload) },
        )
        .on("fail", |_s: Session, _p: Value| async move {
            Err(FrameError::new("NOPE", "this frame type always fails"))
        })
        .on("subscribe", |s: Session, p: Value| async move {
            let topic = p["topic"].as_str().unwrap_or_default().to_owned();
            s.subscribe(&topic).await?;
            Ok(json!({"topic": topic}))
        })
        .on("unsubscribe", |s: Session, p: Value| async move {
            s.unsubscribe(p["topic"].as_str().unwrap_or_default())?;
            Ok(Value::Null)
        })
}

struct Replica {
    realtime: Realtime,
    registry: Registry,
    addr: std::net::SocketAddr,
}

async fn replica(config: RealtimeConfig, redis: Option<&TestRedis>) -> Replica {
    let registry = Registry::new();
    let realtime = Realtime::new(config, auth(), &registry, redis.map(|r| r.handle.clone()))
        .expect("realtime");
    let router = realtime.route("/ws/{room}", endpoint());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, router).await });
    Replica {
        realtime,
        registry,
        addr,
    }
}

fn open_config() -> RealtimeConfig {
    RealtimeConfig {
        allow_missing_origin: true,
        allowed_origins: vec!["https://shop.example".into()],
        ..RealtimeConfig::default()
    }
}

fn request(
    addr: std::net::SocketAddr,
    query: &str,
    headers: &[(&'static str, String)],
) -> tungstenite::handshake::client::Request {
    let mut request = format!("ws://{addr}/ws/lobby{query}")
        .into_client_request()
        .expect("request");
    for (name, value) in headers {
        request
            .headers_mut()
            .insert(*name, HeaderValue::from_str(value).expect("header value"));
    }
    request
}

async fn connect(addr: std::net::SocketAddr, user: &str) -> Client {
    let auth = [("authorization", format!("Bearer {}", token(user)))];
    connect_async(request(addr, "", &auth))
        .await
        .expect("handshake")
        .0
}

fn metric(registry: &Registry, line: &str) -> bool {
    titan_kit::metrics::render(registry).contains(line)
}

#[tokio::test]
async fn the_token_is_accepted_in_each_of_its_three_places() {
    let r = replica(open_config(), None).await;
    let t = token("u1");

    let (mut by_header, _) = connect_async(request(
        r.addr,
        "",
        &[("authorization", format!("Bearer {t}"))],
    ))
    .await
    .expect("header");
    let (mut by_protocol, response) = connect_async(request(
        r.addr,
        "",
        &[("sec-websocket-protocol", format!("bearer, {t}"))],
    ))
    .await
    .expect("subprotocol");
    assert_eq!(
        response
            .headers()
            .get("sec-websocket-protocol")
            .map(|v| v.as_bytes()),
        Some(&b"bearer"[..]),
        "the chosen subprotocol is echoed"
    );
    let (mut by_query, _) = connect_async(request(r.addr, &format!("?access_token={t}"), &[]))
        .await
        .expect("query");
    for (i, ws) in [&mut by_header, &mut by_protocol, &mut by_query]
        .into_iter()
        .enumerate()
    {
        send(ws, json!({"type": "echo", "id": i, "payload": {"n": i}})).await;
        assert_eq!(
            next(ws).await,
            Event::Frame(json!({"type": "ack", "id": i, "payload": {"n": i}}))
        );
    }
    assert!(metric(&r.registry, "titan_realtime_connections 3"));
}

#[tokio::test]
async fn bad_tokens_and_origins_are_closed_with_their_codes() {
    let r = replica(
        RealtimeConfig {
            allow_missing_origin: false,
            ..open_config()
        },
        None,
    )
    .await;
    let good = format!("Bearer {}", token("u1"));
    let shop = ("origin", "https://shop.example".to_owned());
    let expired = {
        let now = jsonwebtoken::get_current_timestamp();
        let claims = Claims {
            sub: "u1".into(),
            exp: now - 60,
            nbf: None,
            iat: Some(now - 120),
            iss: None,
            aud: None,
            roles: vec![],
        };
        jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .expect("sign")
    };
    let cases: Vec<(Headers, u16, &str)> = vec![
        (
            vec![shop.clone()],
            4401,
            "missing token: send 'authorization: Bearer <jwt>', subprotocols 'bearer, <jwt>' or ?access_token=<jwt>",
        ),
        (
            vec![shop.clone(), ("authorization", "Bearer nonsense".into())],
            4401,
            "token refused: InvalidToken",
        ),
        (
            vec![shop.clone(), ("authorization", format!("Bearer {expired}"))],
            4401,
            "token refused: the token has expired",
        ),
        (
            vec![
                ("origin", "https://evil.example".into()),
                ("authorization", good.clone()),
            ],
            4403,
            "origin https://evil.example is not allowed",
        ),
        (
            vec![("authorization", good.clone())],
            4403,
            "origin missing: browsers send one; other clients need realtime.allowMissingOrigin",
        ),
    ];
    for (headers, code, reason) in cases {
        let (mut ws, _) = connect_async(request(r.addr, "", &headers))
            .await
            .expect("upgraded, then closed");
        assert_eq!(
            closed_with(&mut ws).await,
            (code, reason.to_owned()),
            "{headers:?}"
        );
    }
    let (mut ws, _) = connect_async(request(r.addr, "", &[shop, ("authorization", good)]))
        .await
        .expect("allowed origin");
    send(&mut ws, json!({"type": "echo", "id": "a", "payload": 1})).await;
    assert_eq!(
        next(&mut ws).await,
        Event::Frame(json!({"type": "ack", "id": "a", "payload": 1}))
    );
    assert!(metric(
        &r.registry,
        r#"titan_realtime_refusals_total{reason="token"} 3"#
    ));
    assert!(metric(
        &r.registry,
        r#"titan_realtime_refusals_total{reason="origin"} 2"#
    ));
}

#[tokio::test]
async fn frames_are_answered_and_bad_frames_close_the_socket() {
    let r = replica(
        RealtimeConfig {
            max_frame_bytes: 1024,
            ..open_config()
        },
        None,
    )
    .await;
    let mut ws = connect(r.addr, "u1").await;
    send(&mut ws, json!({"type": "fail", "id": "f1"})).await;
    assert_eq!(
        next(&mut ws).await,
        Event::Frame(json!({"type": "error", "id": "f1",
            "payload": {"reason": "NOPE", "message": "this frame type always fails"}}))
    );
    // No id, no answer: the next frame read is the ack of the one after.
    send(&mut ws, json!({"type": "echo", "payload": "quiet"})).await;
    send(&mut ws, json!({"type": "echo", "id": 2, "payload": "loud"})).await;
    assert_eq!(
        next(&mut ws).await,
        Event::Frame(json!({"type": "ack", "id": 2, "payload": "loud"}))
    );

    let bad: [(Message, &str); 4] = [
        (
            Message::Text("{not json".into()),
            "frame is not json {type, id, payload}: key must be a string at line 1 column 2",
        ),
        (
            Message::Text(r#"{"type":"dance","id":1}"#.into()),
            "unknown frame type \"dance\"",
        ),
        (
            Message::Text(format!(r#"{{"type":"echo","payload":"{}"}}"#, "x".repeat(2000)).into()),
            "frame larger than 1024 bytes",
        ),
        (
            Message::Binary(vec![1, 2, 3].into()),
            "binary frames are not accepted",
        ),
    ];
    for (message, reason) in bad {
        let mut ws = connect(r.addr, "u2").await;
        ws.send(message).await.expect("send");
        assert_eq!(closed_with(&mut ws).await, (4400, reason.to_owned()));
    }
    let registry = r.registry.clone();
    eventually("four bad-frame disconnects counted", || {
        let registry = registry.clone();
        async move {
            metric(
                &registry,
                r#"titan_realtime_disconnects_total{reason="bad_frame"} 4"#,
            )
            .then_some(())
        }
    })
    .await;
}

#[tokio::test]
async fn limits_refuse_before_the_upgrade_and_say_which() {
    let r = replica(
        RealtimeConfig {
            max_connections: 2,
            max_connections_per_user: 1,
            ..open_config()
        },
        None,
    )
    .await;
    let _first = connect(r.addr, "u1").await;
    let refused = |result: Result<_, tungstenite::Error>| match result {
        Err(tungstenite::Error::Http(response)) => (
            response.status().as_u16(),
            String::from_utf8_lossy(response.body().as_deref().unwrap_or_default()).into_owned(),
        ),
        other => panic!("expected an HTTP refusal, got {other:?}"),
    };
    let auth = |user: &str| [("authorization", format!("Bearer {}", token(user)))];
    assert_eq!(
        refused(connect_async(request(r.addr, "", &auth("u1"))).await.map(drop)),
        (
            429,
            "user u1 already has 1 websocket connections on this replica, the most realtime.maxConnectionsPerUser allows".to_owned()
        )
    );
    let _second = connect(r.addr, "u2").await;
    assert_eq!(
        refused(connect_async(request(r.addr, "", &auth("u3"))).await.map(drop)),
        (
            503,
            "this replica holds its maximum of 2 websocket connections (realtime.maxConnections); retry later or on another replica".to_owned()
        )
    );
    drop(_second);
    eventually("the slot is given back", || {
        let realtime = r.realtime.clone();
        async move { (realtime.connections() == 1).then_some(()) }
    })
    .await;
    let _third = connect(r.addr, "u3").await;
}

#[tokio::test]
async fn a_socket_closes_at_its_token_expiry_and_without_pongs() {
    let r = replica(
        RealtimeConfig {
            ping_interval: Duration::from_secs(1),
            missed_pongs: 1,
            ..open_config()
        },
        None,
    )
    .await;
    let short = auth()
        .mint("u1", &[], Duration::from_secs(2))
        .expect("mint");
    let (mut ws, _) = connect_async(request(
        r.addr,
        "",
        &[("authorization", format!("Bearer {short}"))],
    ))
    .await
    .expect("handshake");
    // Reading answers the pings; the socket lives until exp, then closes without a frame sent.
    assert_eq!(
        closed_with(&mut ws).await,
        (4401, "token expired".to_owned())
    );

    // A client that stops reading answers no ping.
    let mut mute = connect(r.addr, "u2").await;
    let registry = r.registry.clone();
    eventually("the mute socket is given up", || {
        let registry = registry.clone();
        async move {
            metric(
                &registry,
                r#"titan_realtime_disconnects_total{reason="missed_pongs"} 1"#,
            )
            .then_some(())
        }
    })
    .await;
    assert_eq!(
        closed_with(&mut mute).await,
        (4408, "no pong to 1 pings".to_owned())
    );
}

#[tokio::test]
async fn topics_fan_out_across_replicas_once_and_in_order() {
    let redis = TestRedis::new().await;
    let a = replica(open_config(), Some(&redis)).await;
    let b = replica(open_config(), Some(&redis)).await;
    let mut on_a = connect(a.addr, "u1").await;
    let mut on_b = connect(b.addr, "u2").await;
    let mut other_b = connect(b.addr, "u3").await;
    for ws in [&mut on_a, &mut on_b, &mut other_b] {
        send(
            ws,
            json!({"type": "subscribe", "id": "s", "payload": {"topic": "room-1"}}),
        )
        .await;
        assert_eq!(
            next(ws).await,
            Event::Frame(json!({"type": "ack", "id": "s", "payload": {"topic": "room-1"}}))
        );
    }
    let hub = a.realtime.hub().expect("redis");
    for n in 0..200 {
        hub.publish("room-1", "said", &json!({"n": n}))
            .await
            .expect("publish");
    }
    hub.publish("room-2", "said", &json!({"n": -1}))
        .await
        .expect("nobody listens");
    for ws in [&mut on_a, &mut on_b, &mut other_b] {
        for n in 0..200 {
            assert_eq!(
                next(ws).await,
                Event::Frame(json!({"type": "said", "payload": {"n": n}}))
            );
        }
        // Nothing twice: the next frame is the answer to this one.
        send(ws, json!({"type": "echo", "id": "end", "payload": null})).await;
        assert_eq!(
            next(ws).await,
            Event::Frame(json!({"type": "ack", "id": "end", "payload": null}))
        );
    }
    assert!(metric(
        &b.registry,
        r#"titan_realtime_frames_out_total{type="said"} 400"#
    ));
    assert!(metric(
        &b.registry,
        "titan_realtime_fanout_latency_seconds_count 200"
    ));

    // The channel is left when the replica's last interested socket leaves.
    send(
        &mut on_b,
        json!({"type": "unsubscribe", "id": "u", "payload": {"topic": "room-1"}}),
    )
    .await;
    assert_eq!(
        next(&mut on_b).await,
        Event::Frame(json!({"type": "ack", "id": "u", "payload": null}))
    );
    let b_hub = b.realtime.hub().expect("redis");
    assert_eq!(b_hub.topics(), 1);
    drop(other_b);
    eventually("replica B leaves room-1", || {
        let hub = b_hub.clone();
        async move { (hub.topics() == 0).then_some(()) }
    })
    .await;
    let channel = redis.handle.key("realtime:room-1");
    let mut conn = redis.handle.conn.clone();
    eventually("only replica A is subscribed", || {
        let (channel, mut conn) = (channel.clone(), conn.clone());
        async move {
            let counts: Vec<(String, i64)> = redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg(&channel)
                .query_async(&mut conn)
                .await
                .ok()?;
            (counts == [(channel, 1)]).then_some(())
        }
    })
    .await;
    let _: () = redis::cmd("PING")
        .query_async(&mut conn)
        .await
        .expect("ping");
}

#[tokio::test]
async fn a_slow_reader_is_dropped_while_a_fast_one_keeps_up() {
    let redis = TestRedis::new().await;
    let r = replica(
        RealtimeConfig {
            send_queue: 8,
            ..open_config()
        },
        Some(&redis),
    )
    .await;
    let mut fast = connect(r.addr, "fast").await;
    let mut slow = connect(r.addr, "slow").await;
    for ws in [&mut fast, &mut slow] {
        send(
            ws,
            json!({"type": "subscribe", "id": 1, "payload": {"topic": "t"}}),
        )
        .await;
        assert!(matches!(next(ws).await, Event::Frame(_)));
    }
    // The slow client reads nothing until it is dropped; kernel buffers fill, then its queue.
    let blob = "x".repeat(16 * 1024);
    let hub = r.realtime.hub().expect("redis");
    let total = 2000;
    let publisher = tokio::spawn(async move {
        for n in 0..total {
            hub.publish("t", "blob", &json!({"n": n, "blob": blob}))
                .await
                .expect("publish");
        }
    });
    let reader = tokio::spawn(async move {
        for n in 0..total {
            match next(&mut fast).await {
                Event::Frame(frame) => assert_eq!(frame["payload"]["n"], n),
                closed => panic!("the fast reader was closed: {closed:?}"),
            }
        }
    });
    let registry = r.registry.clone();
    eventually("the slow reader is dropped", || {
        let registry = registry.clone();
        async move {
            metric(
                &registry,
                r#"titan_realtime_disconnects_total{reason="slow_consumer"} 1"#,
            )
            .then_some(())
        }
    })
    .await;
    // What its buffers held arrives in order, then the close.
    let mut expected = 0;
    let closed = loop {
        match next(&mut slow).await {
            Event::Frame(frame) => {
                assert_eq!(frame["payload"]["n"], expected);
                expected += 1;
            }
            Event::Closed(code, reason) => break (code, reason),
        }
    };
    assert_eq!(
        closed,
        (4408, "slow consumer: the send queue is full".to_owned())
    );
    assert!(expected < total, "the slow reader got everything");
    publisher.await.expect("publisher");
    reader
        .await
        .expect("the fast reader got every frame in order");
}

#[tokio::test]
async fn drain_flushes_queues_then_says_going_away() {
    let redis = TestRedis::new().await;
    let r = replica(open_config(), Some(&redis)).await;
    let mut ws = connect(r.addr, "u1").await;
    send(
        &mut ws,
        json!({"type": "subscribe", "id": 1, "payload": {"topic": "t"}}),
    )
    .await;
    assert!(matches!(next(&mut ws).await, Event::Frame(_)));
    let hub = r.realtime.hub().expect("redis");
    hub.publish("t", "last", &json!(1)).await.expect("publish");
    eventually("the frame is queued", || {
        let registry = r.registry.clone();
        async move {
            metric(
                &registry,
                r#"titan_realtime_frames_out_total{type="last"} 1"#,
            )
            .then_some(())
        }
    })
    .await;
    r.realtime.drain();
    assert_eq!(
        next(&mut ws).await,
        Event::Frame(json!({"type": "last", "payload": 1}))
    );
    assert_eq!(
        closed_with(&mut ws).await,
        (1001, "going away: this replica is shutting down".to_owned())
    );
    tokio::time::timeout(PATIENCE, r.realtime.drained())
        .await
        .expect("drained");
    let refused = connect_async(request(
        r.addr,
        "",
        &[("authorization", format!("Bearer {}", token("u2")))],
    ))
    .await;
    assert!(
        matches!(&refused, Err(tungstenite::Error::Http(response)) if response.status() == 503),
        "{refused:?}"
    );
}

/// On a Redis Cluster PUBLISH reaches every node, so replicas subscribed on different nodes
/// (the second lists the seeds the other way round) both hear topics whose channels hash to
/// slots on any master, in order.
#[tokio::test]
async fn on_a_redis_cluster_topics_fan_out_across_replicas_subscribed_on_different_nodes() {
    let redis = TestRedis::cluster().await;
    let url = redis.url.clone();
    let (scheme, seeds) = url.split_once("://").expect("a cluster URL");
    let reversed: Vec<&str> = seeds.trim_end_matches('/').split(',').rev().collect();
    let other = TestRedis {
        handle: titan_kit::datastores::redis::RedisHandle::connect(
            &titan_kit::config::RedisConfig::new(
                format!("{scheme}://{}", reversed.join(",")),
                redis.config.key_prefix.clone(),
            ),
        )
        .await
        .expect("connect with the seeds reversed"),
        ..redis.clone()
    };
    let a = replica(open_config(), Some(&redis)).await;
    let b = replica(open_config(), Some(&other)).await;
    let mut on_a = connect(a.addr, "u1").await;
    let mut on_b = connect(b.addr, "u2").await;
    let topics: Vec<String> = (0..6).map(|n| format!("room-{n}")).collect();
    for ws in [&mut on_a, &mut on_b] {
        for topic in &topics {
            send(
                ws,
                json!({"type": "subscribe", "id": "s", "payload": {"topic": topic}}),
            )
            .await;
            assert_eq!(
                next(ws).await,
                Event::Frame(json!({"type": "ack", "id": "s", "payload": {"topic": topic}}))
            );
        }
    }
    let hub = a.realtime.hub().expect("redis");
    for n in 0..60 {
        hub.publish(&topics[n % topics.len()], "said", &json!({"n": n}))
            .await
            .expect("publish");
    }
    // Messages of one topic come in order; two topics published through different masters
    // travel different cluster-bus links, so across topics the order is not promised.
    for ws in [&mut on_a, &mut on_b] {
        let mut heard: Vec<Vec<usize>> = vec![Vec::new(); topics.len()];
        for _ in 0..60 {
            let Event::Frame(frame) = next(ws).await else {
                panic!("the socket closed");
            };
            assert_eq!(frame["type"], "said", "{frame}");
            let n = frame["payload"]["n"]
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .expect("n");
            heard[n % topics.len()].push(n);
        }
        for (t, ns) in heard.iter().enumerate() {
            let sent: Vec<usize> = (t..60).step_by(topics.len()).collect();
            assert_eq!(ns, &sent, "topic {t}");
        }
    }
}
