//! WebSockets against two real `titan` processes sharing Redis, driven by third-party clients
//! (tokio-tungstenite here, Node's `ws` in a script): fan-out across replicas exactly once and
//! in order, a slow reader dropped while a fast one keeps up, the refusals with their close
//! codes, drain on SIGTERM, flash sale's `WatchSale` mirror, and no token in any log line.

use std::{process::Command, time::Duration};

use futures::SinkExt;
use nix::sys::signal::Signal;
use serde_json::{Value, json};
use titan_e2e::{Cell, CellOptions, authed, seconds_from_now as ts};
use titan_kit::testing::ws::{Client, Event, PATIENCE, next, send};
use titan_proto::{
    flashsale::v1::{self as pb, flash_sale_service_client::FlashSaleServiceClient},
    ping::v1::{PingRequest, ping_service_client::PingServiceClient},
};
use tokio_tungstenite::{
    connect_async,
    tungstenite::{Message, client::IntoClientRequest, http::HeaderValue},
};

type Headers = Vec<(&'static str, String)>;

/// Non-browser clients send no Origin; a short pre-stop delay keeps the drain test quick.
const CONFIG: &str = "realtime: { allowMissingOrigin: true, allowedOrigins: [\"https://shop.example\"], maxFrameBytes: 4096 }\npreStopDelaySeconds: 1\n";

async fn connect(http: std::net::SocketAddr, path: &str, headers: &[(&str, String)]) -> Client {
    let mut request = format!("ws://{http}{path}")
        .into_client_request()
        .expect("request");
    for (name, value) in headers {
        request.headers_mut().insert(
            http::HeaderName::from_bytes(name.as_bytes()).expect("header name"),
            HeaderValue::from_str(value).expect("header value"),
        );
    }
    connect_async(request).await.expect("handshake").0
}

fn bearer(token: &str) -> Headers {
    vec![("authorization", format!("Bearer {token}"))]
}

async fn ping_cell() -> Cell {
    Cell::start_with(CellOptions {
        services: vec!["ping".into()],
        config: Some(CONFIG.into()),
        ..CellOptions::default()
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn messages_cross_replicas_once_in_order_and_refusals_have_their_codes() {
    let mut a = ping_cell().await;
    let b = a.replica();
    let alice = a.token("alice", &[]);
    let mut on_b = connect(b.http, "/v1/ping/ws", &bearer(&alice)).await;
    send(
        &mut on_b,
        json!({"type": "subscribe", "id": 1, "payload": {"topic": "news"}}),
    )
    .await;
    assert_eq!(
        next(&mut on_b).await,
        Event::Frame(json!({"type": "ack", "id": 1, "payload": {"topic": "news"}}))
    );
    let mut on_a = connect(a.http, "/v1/ping/ws", &bearer(&alice)).await;
    for n in 0..50 {
        send(
            &mut on_a,
            json!({"type": "publish", "id": n, "payload": {"topic": "news", "data": n}}),
        )
        .await;
        assert_eq!(
            next(&mut on_a).await,
            Event::Frame(json!({"type": "ack", "id": n, "payload": null}))
        );
    }
    for n in 0..50 {
        assert_eq!(
            next(&mut on_b).await,
            Event::Frame(json!({"type": "message",
                "payload": {"topic": "news", "data": n, "from": "alice"}}))
        );
    }
    send(
        &mut on_b,
        json!({"type": "echo", "id": "end", "payload": null}),
    )
    .await;
    assert_eq!(
        next(&mut on_b).await,
        Event::Frame(json!({"type": "ack", "id": "end", "payload": null})),
        "nothing arrived twice"
    );

    let forged = a.token_signed_by("another-secret-another-secret-xxxx", "mallory", &[]);
    let cases: Vec<(Headers, &str, u16, &str)> = vec![
        (
            vec![],
            "",
            4401,
            "missing token: send 'authorization: Bearer <jwt>', subprotocols 'bearer, <jwt>' or ?access_token=<jwt>",
        ),
        (bearer(&forged), "", 4401, "token refused: bad signature"),
        (
            [
                bearer(&alice),
                vec![("origin", "https://evil.example".into())],
            ]
            .concat(),
            "",
            4403,
            "origin https://evil.example is not allowed",
        ),
        (
            bearer(&alice),
            "{oops",
            4400,
            "frame is not json {type, id, payload}: key must be a string at line 1 column 2",
        ),
        (
            bearer(&alice),
            "{\"type\":\"dance\"}",
            4400,
            "unknown frame type \"dance\"",
        ),
        (bearer(&alice), "big", 4400, "frame larger than 4096 bytes"),
    ];
    for (headers, frame, code, reason) in cases {
        let mut ws = connect(b.http, "/v1/ping/ws", &headers).await;
        match frame {
            "" => {}
            "big" => {
                send(
                    &mut ws,
                    json!({"type": "echo", "payload": "x".repeat(5000)}),
                )
                .await
            }
            text => ws
                .send(Message::Text(text.to_owned().into()))
                .await
                .expect("send"),
        }
        assert_eq!(next(&mut ws).await, Event::Closed(code, reason.to_owned()));
    }

    // Drain: SIGTERM closes every socket with 1001 and the process exits 0.
    a.process.signal(Signal::SIGTERM);
    assert_eq!(
        next(&mut on_a).await,
        Event::Closed(1001, "going away: this replica is shutting down".into())
    );
    let status = tokio::task::block_in_place(|| a.process.wait_exit(PATIENCE));
    assert!(status.success(), "{status}");
}

/// The Node.js `ws` client (installed by `cargo xtask test`, found through
/// `TITAN_E2E_NODE_MODULES`): cross-replica delivery, a slow reader dropped (4408) while a
/// fast one gets everything in order, and the refusals' codes.
#[tokio::test(flavor = "multi_thread")]
async fn a_node_ws_client_sees_the_same_protocol() {
    /// Far above the two seconds the script takes.
    const NODE_DEADLINE: Duration = Duration::from_secs(120);
    let modules = std::env::var("TITAN_E2E_NODE_MODULES").unwrap_or_else(|_| {
        panic!(
            "TITAN_E2E_NODE_MODULES is not set: run the suite with `cargo xtask test`, which installs ws@8 from npm"
        )
    });
    let a = Cell::start_with(CellOptions {
        services: vec!["ping".into()],
        config: Some(CONFIG.replace("maxFrameBytes: 4096", "maxFrameBytes: 65536, sendQueue: 64")),
        ..CellOptions::default()
    })
    .await;
    let b = a.replica();
    let script = tempfile::Builder::new()
        .suffix(".js")
        .tempfile()
        .expect("script file");
    std::fs::write(script.path(), include_str!("realtime.js")).expect("write script");
    let output = tokio::task::block_in_place(|| {
        titan_e2e::process::output_within(
            Command::new("node")
                .arg(script.path())
                .env("NODE_PATH", &modules)
                .env("WS_A", format!("ws://{}/v1/ping/ws", a.http))
                .env("WS_B", format!("ws://{}/v1/ping/ws", b.http))
                .env("METRICS_B", format!("http://{}/metrics", b.admin))
                .env("TOKEN", a.token("node", &[]))
                .env(
                    "FORGED",
                    a.token_signed_by("another-secret-another-secret-xxxx", "x", &[]),
                ),
            NODE_DEADLINE,
        )
    });
    assert!(
        output.status.success(),
        "node failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).expect("json report");
    assert_eq!(
        report,
        json!({
            "crossReplica": (0..100).collect::<Vec<_>>(),
            "fastGotAll": true,
            "slowClosed": [4408, "slow consumer: the send queue is full"],
            "missingToken": 4401,
            "forgedToken": 4401,
            "wrongOrigin": 4403,
            "malformed": 4400,
            "protocol": "bearer",
        })
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_sale_over_a_websocket() {
    let cell = Cell::start_with(CellOptions {
        services: vec!["flashsale".into()],
        config: Some(format!(
            "{CONFIG}services:\n  flashsale: {{ rateLimitBurst: 2, rateLimitIntervalMs: 600000 }}\n"
        )),
        ..CellOptions::default()
    })
    .await;
    let mut client = FlashSaleServiceClient::new(cell.channel().await);
    let admin = cell.token("admin-1", &["admin"]);
    let bob = cell.token("bob", &[]);
    let money = |minor_units| pb::Money {
        currency: "USD".into(),
        minor_units,
    };
    let sale = client
        .create_sale(authed(
            pb::CreateSaleRequest {
                request_id: "c1".into(),
                spec: Some(pb::SaleSpec {
                    product_id: "sku-1".into(),
                    original_price: Some(money(1_000)),
                    sale_price: Some(money(700)),
                    total_quantity: 3,
                    max_per_user: 3,
                    starts_at: Some(ts(-1)),
                    ends_at: Some(ts(3600)),
                    pow_difficulty: 0,
                }),
            },
            &admin,
        ))
        .await
        .expect("create")
        .into_inner()
        .sale
        .expect("sale");
    client
        .warm_up_sale(authed(
            pb::WarmUpSaleRequest {
                sale_id: sale.id.clone(),
            },
            &admin,
        ))
        .await
        .expect("warm up");
    let path = format!("/v1/flashsale/sales/{}/watch", sale.id);
    // The browser way: the token as a subprotocol.
    let mut ws = connect(
        cell.http,
        &path,
        &[
            ("sec-websocket-protocol", format!("bearer, {bob}")),
            ("origin", "https://shop.example".into()),
        ],
    )
    .await;
    let first = match next(&mut ws).await {
        Event::Frame(frame) => frame,
        closed => panic!("{closed:?}"),
    };
    assert_eq!(
        (
            &first["type"],
            &first["payload"]["remaining"],
            &first["payload"]["status"]
        ),
        (&json!("sale"), &json!(3), &json!("ACTIVE"))
    );
    client
        .attempt_purchase(authed(
            pb::AttemptPurchaseRequest {
                request_id: "a1".into(),
                sale_id: sale.id.clone(),
                quantity: 2,
                challenge: String::new(),
                nonce: String::new(),
            },
            &cell.token("alice", &[]),
        ))
        .await
        .expect("reserve");
    let moved = loop {
        match next(&mut ws).await {
            Event::Frame(frame) if frame["payload"]["remaining"] == json!(3) => {}
            Event::Frame(frame) => break frame,
            closed => panic!("{closed:?}"),
        }
    };
    assert_eq!(moved["payload"]["remaining"], json!(1));

    // The same budget as gRPC's WatchSale: two openings, then RATE_LIMITED.
    let mut second = connect(cell.http, &path, &bearer(&bob)).await;
    assert!(matches!(next(&mut second).await, Event::Frame(_)));
    let mut third = connect(cell.http, &path, &bearer(&bob)).await;
    match next(&mut third).await {
        Event::Closed(4429, reason) => assert!(reason.starts_with("RATE_LIMITED: "), "{reason}"),
        other => panic!("expected 4429, got {other:?}"),
    }
    let carol = cell.token("carol", &[]);
    let mut unknown = connect(
        cell.http,
        "/v1/flashsale/sales/00000000-0000-0000-0000-000000000000/watch",
        &bearer(&carol),
    )
    .await;
    match next(&mut unknown).await {
        Event::Closed(4404, reason) => assert!(reason.starts_with("NOT_FOUND: "), "{reason}"),
        other => panic!("expected 4404, got {other:?}"),
    }
}

/// A token presented every way kit accepts it (header, `bearer` subprotocol, `?access_token=`),
/// a forged one, and one over gRPC, against a replica logging at `trace` — hyper, h2,
/// tungstenite and tower included: not one log line holds a token or its signature.
#[tokio::test(flavor = "multi_thread")]
async fn no_token_reaches_a_log_line() {
    let cell = ping_cell().await;
    let mut b = cell.replica_with(&[("TITAN_LOG", "trace")]);
    let token = cell.token("alice", &[]);
    let forged = cell.token_signed_by("not-the-cell-key", "mallory", &[]);
    let echo = |id: u32| json!({"type": "echo", "id": id, "payload": {"n": id}});

    let mut by_header = connect(b.http, "/v1/ping/ws", &bearer(&token)).await;
    let protocol = vec![("sec-websocket-protocol", format!("bearer, {token}"))];
    let mut by_protocol = connect(b.http, "/v1/ping/ws", &protocol).await;
    let query = format!("/v1/ping/ws?access_token={token}");
    let mut by_query = connect(b.http, &query, &[]).await;
    for (id, ws) in [&mut by_header, &mut by_protocol, &mut by_query]
        .into_iter()
        .enumerate()
    {
        let id = u32::try_from(id).expect("three sockets");
        send(ws, echo(id)).await;
        assert_eq!(
            next(ws).await,
            Event::Frame(json!({"type": "ack", "id": id, "payload": {"n": id}}))
        );
    }
    let mut refused = connect(b.http, &format!("/v1/ping/ws?access_token={forged}"), &[]).await;
    assert_eq!(
        next(&mut refused).await,
        Event::Closed(4401, "token refused: bad signature".into())
    );

    let mut ping = PingServiceClient::new(b.channel().await);
    let reply = ping
        .ping(authed(
            PingRequest {
                message: "hi".into(),
            },
            &token,
        ))
        .await
        .expect("ping with a good token");
    assert_eq!(reply.into_inner().message, "hi");
    let status = ping
        .ping(authed(
            PingRequest {
                message: "hi".into(),
            },
            &forged,
        ))
        .await
        .expect_err("a forged token is refused");
    assert_eq!(status.code(), tonic::Code::Unauthenticated);

    drop((by_header, by_protocol, by_query, refused));
    b.process.signal(Signal::SIGTERM);
    let log = b.process.log_after_exit(PATIENCE);
    // The capture is real: trace lines of the WebSocket and HTTP/2 layers are in it.
    assert!(
        log.contains("\"target\":\"tungstenite"),
        "no tungstenite trace lines"
    );
    assert!(log.contains("\"target\":\"h2"), "no h2 trace lines");
    for (name, jwt) in [("token", &token), ("forged token", &forged)] {
        let signature = jwt.rsplit('.').next().expect("a JWT has three parts");
        let leaks: Vec<&str> = log.lines().filter(|l| l.contains(signature)).collect();
        assert!(leaks.is_empty(), "the {name} reached the log: {leaks:#?}");
    }
}
