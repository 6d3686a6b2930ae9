//! Chat against two real `titan serve chat` processes sharing PostgreSQL and Redis, driven
//! over gRPC (tonic) and WebSocket (tokio-tungstenite): delivery across replicas once and in
//! order on both, receipts and unread counts across devices, typing expiry, presence across
//! replicas, reconnect-resume with no gap while messages keep coming, one DIRECT conversation
//! per pair under concurrency, and the refusals (non-participants, other senders, bad input).

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use serde_json::{Value, json};
use titan_e2e::{Cell, CellOptions, authed};
use titan_kit::{
    error::reason_of,
    testing::{
        eventually,
        ws::{Client, Event, next, send},
    },
};
use titan_proto::chat::v1::{self as pb, chat_service_client::ChatServiceClient};
use tokio_stream::StreamExt;
use tokio_tungstenite::{
    connect_async,
    tungstenite::{client::IntoClientRequest, http::HeaderValue},
};
use tonic::{Code, transport::Channel};

type Grpc = ChatServiceClient<Channel>;

/// Fast sends for the test, a 1 s typing indicator, small messages; non-browser clients send
/// no Origin.
const CONFIG: &str = "realtime: { allowMissingOrigin: true }\nservices:\n  chat: { sendBurst: 10000, sendIntervalMs: 1, typingTtlSeconds: 1, maxMessageBytes: 64 }\n";

async fn chat_cell() -> Cell {
    Cell::start_with(CellOptions {
        services: vec!["chat".into()],
        config: Some(CONFIG.into()),
        ..CellOptions::default()
    })
    .await
}

async fn grpc(addr: std::net::SocketAddr) -> Grpc {
    ChatServiceClient::new(
        Channel::from_shared(format!("http://{addr}"))
            .expect("uri")
            .connect()
            .await
            .expect("connect grpc"),
    )
}

async fn ws(http: std::net::SocketAddr, token: &str) -> Client {
    let mut request = format!("ws://{http}/v1/chat/ws")
        .into_client_request()
        .expect("request");
    request.headers_mut().insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {token}")).expect("header"),
    );
    connect_async(request).await.expect("handshake").0
}

/// Subscribes and waits for the ack, keeping the message frames that came first.
async fn subscribe(ws: &mut Client, conversation: &str, after: &str) -> Vec<Value> {
    send(
        ws,
        json!({"type": "subscribe", "id": "sub", "payload": {"conversationId": conversation, "after": after}}),
    )
    .await;
    let mut early = Vec::new();
    loop {
        match next(ws).await {
            Event::Frame(f) if f["type"] == "ack" && f["id"] == "sub" => return early,
            Event::Frame(f) if f["type"] == "error" => panic!("subscribe refused: {f}"),
            Event::Frame(f) if f["type"] == "message" => early.push(f["payload"].clone()),
            Event::Frame(_) => {}
            Event::Closed(code, reason) => panic!("closed {code}: {reason}"),
        }
    }
}

/// The next `n` message payloads, skipping other frames.
async fn messages(ws: &mut Client, mut got: Vec<Value>, n: usize) -> Vec<Value> {
    while got.len() < n {
        match next(ws).await {
            Event::Frame(f) if f["type"] == "message" => got.push(f["payload"].clone()),
            Event::Frame(_) => {}
            Event::Closed(code, reason) => panic!("closed {code}: {reason}"),
        }
    }
    got
}

fn seqs(messages: &[Value]) -> Vec<u64> {
    messages
        .iter()
        .map(|m| m["seq"].as_u64().expect("seq"))
        .collect()
}

fn text(request_id: &str, conversation: &str, content: &str) -> pb::SendMessageRequest {
    pb::SendMessageRequest {
        request_id: request_id.into(),
        conversation_id: conversation.into(),
        r#type: pb::MessageType::Text as i32,
        content: content.into(),
        metadata: None,
    }
}

async fn send_text(
    client: &mut Grpc,
    token: &str,
    conversation: &str,
    content: &str,
) -> pb::Message {
    client
        .send_message(authed(
            text(&uuid::Uuid::new_v4().to_string(), conversation, content),
            token,
        ))
        .await
        .expect("send")
        .into_inner()
        .message
        .expect("message")
}

async fn stored(cell: &Cell) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM chat_messages")
        .fetch_one(&cell.db.pool)
        .await
        .expect("count")
}

/// Open presence connections of `user` in Redis, across replicas.
async fn connections(cell: &Cell, user: &str) -> usize {
    let handle = &cell.redis.handle;
    let mut conn = handle.conn.clone();
    redis::cmd("ZCARD")
        // The service's name for the user's presence set: the user, length-prefixed, is its
        // Redis Cluster hash tag.
        .arg(handle.key(&format!("chat:presence:{{{}:{user}}}", user.len())))
        .query_async(&mut conn)
        .await
        .expect("zcard")
}

async fn online(client: &mut Grpc, token: &str, user: &str) -> bool {
    client
        .get_presence(authed(
            pb::GetPresenceRequest {
                user_ids: vec![user.into()],
            },
            token,
        ))
        .await
        .expect("presence")
        .into_inner()
        .presences[0]
        .online
}

#[tokio::test(flavor = "multi_thread")]
async fn chat_across_two_replicas() {
    let cell = chat_cell().await;
    let b = cell.replica();
    let (mut on_a, mut on_b) = (grpc(cell.grpc).await, grpc(b.grpc).await);
    let (ann, bob, eve) = (
        cell.token("ann", &[]),
        cell.token("bob", &[]),
        cell.token("eve", &[]),
    );

    // Both create the pair's conversation at once, on both replicas: one conversation.
    let mut creations = Vec::new();
    for n in 0..12 {
        let (mut client, token, other) = if n % 2 == 0 {
            (on_a.clone(), ann.clone(), "bob")
        } else {
            (on_b.clone(), bob.clone(), "ann")
        };
        creations.push(tokio::spawn(async move {
            client
                .create_direct(authed(
                    pb::CreateDirectRequest {
                        other_user_id: other.into(),
                    },
                    &token,
                ))
                .await
                .expect("create direct")
                .into_inner()
        }));
    }
    let mut ids = Vec::new();
    for c in creations {
        ids.push(
            c.await
                .expect("task")
                .conversation
                .expect("conversation")
                .id,
        );
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "one DIRECT conversation per pair");
    let conversation = ids.remove(0);

    // A message sent on A reaches subscribers on B once and in order, over WS and gRPC.
    let mut bob_ws = ws(b.http, &bob).await;
    let early = subscribe(&mut bob_ws, &conversation, "").await;
    let mut stream = on_b
        .subscribe(authed(
            pb::SubscribeRequest {
                conversation_id: conversation.clone(),
                after: String::new(),
            },
            &bob,
        ))
        .await
        .expect("subscribe")
        .into_inner();
    let mut sent = Vec::new();
    for n in 0..50 {
        sent.push(send_text(&mut on_a, &ann, &conversation, &format!("m{n}")).await);
    }
    let over_ws = messages(&mut bob_ws, early, 50).await;
    assert_eq!(seqs(&over_ws), (1..=50).collect::<Vec<_>>());
    assert_eq!(over_ws[7]["content"], "m7");
    let mut over_grpc = Vec::new();
    while over_grpc.len() < 50 {
        let event = tokio::time::timeout(Duration::from_secs(60), stream.next())
            .await
            .expect("in time")
            .expect("open")
            .expect("event");
        if let Some(pb::subscribe_response::Event::Message(m)) = event.event {
            over_grpc.push(m.seq);
        }
    }
    assert_eq!(over_grpc, (1..=50).collect::<Vec<_>>());
    // Nothing twice: the next thing on the socket is the answer to a later frame.
    send(
        &mut bob_ws,
        json!({"type": "typing", "id": "t", "payload": {"conversationId": conversation, "typing": false}}),
    )
    .await;
    loop {
        match next(&mut bob_ws).await {
            Event::Frame(f) if f["type"] == "message" => panic!("a message arrived twice: {f}"),
            Event::Frame(f) if f["type"] == "ack" && f["id"] == "t" => break,
            _ => {}
        }
    }

    // Receipts and unread counts after reads on another device (gRPC on A).
    let unread = |client: &mut Grpc, token: &str| {
        let (mut client, token) = (client.clone(), token.to_owned());
        async move {
            client
                .get_unread_counts(authed(pb::GetUnreadCountsRequest {}, &token))
                .await
                .expect("unread")
                .into_inner()
                .counts
        }
    };
    assert_eq!(unread(&mut on_b, &bob).await[0].unread, 50);
    on_a.mark_receipt(authed(
        pb::MarkReceiptRequest {
            conversation_id: conversation.clone(),
            delivered_up_to: sent[49].id.clone(),
            read_up_to: sent[29].id.clone(),
        },
        &bob,
    ))
    .await
    .expect("mark");
    assert_eq!(unread(&mut on_b, &bob).await[0].unread, 20);
    let receipts = on_b
        .get_receipts(authed(
            pb::GetReceiptsRequest {
                conversation_id: conversation.clone(),
            },
            &ann,
        ))
        .await
        .expect("receipts")
        .into_inner()
        .receipts;
    assert_eq!(receipts.len(), 1);
    assert_eq!(receipts[0].read_up_to, sent[29].id);
    assert_eq!(receipts[0].delivered_up_to, sent[49].id);

    // Typing shows on the other replica and expires on its own.
    on_a.set_typing(authed(
        pb::SetTypingRequest {
            conversation_id: conversation.clone(),
            typing: true,
        },
        &ann,
    ))
    .await
    .expect("typing");
    let typing = |client: &Grpc| {
        let (mut client, token, conversation) = (client.clone(), bob.clone(), conversation.clone());
        async move {
            client
                .get_typing(authed(
                    pb::GetTypingRequest {
                        conversation_id: conversation,
                    },
                    &token,
                ))
                .await
                .expect("typing")
                .into_inner()
                .user_ids
        }
    };
    assert_eq!(typing(&on_b).await, ["ann"]);
    eventually("typing to expire", || async {
        typing(&on_b).await.is_empty().then_some(())
    })
    .await;

    // Non-participants are refused everywhere.
    let denied = on_b
        .get_conversation(authed(
            pb::GetConversationRequest {
                conversation_id: conversation.clone(),
            },
            &eve,
        ))
        .await
        .expect_err("refused");
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert_eq!(reason_of(&denied).as_deref(), Some("NOT_A_PARTICIPANT"));
    let history = on_a
        .list_messages(authed(
            pb::ListMessagesRequest {
                conversation_id: conversation.clone(),
                limit: 10,
                ..Default::default()
            },
            &eve,
        ))
        .await
        .expect_err("refused");
    assert_eq!(history.code(), Code::PermissionDenied);
    let watch = on_a
        .subscribe(authed(
            pb::SubscribeRequest {
                conversation_id: conversation.clone(),
                after: String::new(),
            },
            &eve,
        ))
        .await
        .expect_err("refused");
    assert_eq!(watch.code(), Code::PermissionDenied);
    let mut eve_ws = ws(cell.http, &eve).await;
    send(
        &mut eve_ws,
        json!({"type": "subscribe", "id": 1, "payload": {"conversationId": conversation}}),
    )
    .await;
    match next(&mut eve_ws).await {
        Event::Frame(f) => {
            assert_eq!(f["type"], "error");
            assert_eq!(f["payload"]["reason"], "NOT_A_PARTICIPANT");
        }
        other => panic!("expected an error frame, got {other:?}"),
    }

    // Edit and delete by someone else are refused.
    for refused in [
        on_b.edit_message(authed(
            pb::EditMessageRequest {
                conversation_id: conversation.clone(),
                message_id: sent[0].id.clone(),
                content: "mine now".into(),
            },
            &bob,
        ))
        .await
        .map(drop),
        on_b.delete_message(authed(
            pb::DeleteMessageRequest {
                conversation_id: conversation.clone(),
                message_id: sent[0].id.clone(),
            },
            &bob,
        ))
        .await
        .map(drop),
    ] {
        let e = refused.expect_err("refused");
        assert_eq!(e.code(), Code::PermissionDenied);
        assert_eq!(reason_of(&e).as_deref(), Some("NOT_THE_SENDER"));
    }

    // Bad input names the field and stores nothing.
    let before = stored(&cell).await;
    let bad = [
        (text("r1", &conversation, ""), "content"),
        (text("r2", &conversation, &"x".repeat(65)), "content"),
        (
            pb::SendMessageRequest {
                r#type: 99,
                ..text("r3", &conversation, "hi")
            },
            "type",
        ),
        (text("r4", "not-an-id", "hi"), "conversation_id"),
        (
            pb::SendMessageRequest {
                r#type: pb::MessageType::Image as i32,
                metadata: Some(pb::MessageMetadata {
                    url: "ftp://files/a.png".into(),
                    file_name: "a.png".into(),
                    file_size: 3,
                    ..Default::default()
                }),
                ..text("r5", &conversation, "")
            },
            "metadata.url",
        ),
    ];
    for (request, field) in bad {
        let e = on_a
            .send_message(authed(request, &ann))
            .await
            .expect_err("refused");
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        assert!(e.message().starts_with(field), "{field}: {}", e.message());
    }
    assert_eq!(stored(&cell).await, before);

    // Presence: online while one connection of the user is open on any replica.
    let dan = cell.token("dan", &[]);
    let dan_on_a = ws(cell.http, &dan).await;
    let dan_on_b = ws(b.http, &dan).await;
    eventually("both of dan's connections", || async {
        (connections(&cell, "dan").await == 2).then_some(())
    })
    .await;
    assert!(online(&mut on_a, &ann, "dan").await);
    drop(dan_on_a);
    eventually("one of dan's connections", || async {
        (connections(&cell, "dan").await == 1).then_some(())
    })
    .await;
    assert!(
        online(&mut on_a, &ann, "dan").await,
        "one connection is left"
    );
    drop(dan_on_b);
    eventually("dan offline", || async {
        let mut client = on_b.clone();
        (!online(&mut client, &ann, "dan").await).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn reconnect_resumes_with_no_gap_while_messages_keep_coming() {
    let cell = chat_cell().await;
    let b = cell.replica();
    let mut on_a = grpc(cell.grpc).await;
    let (ann, bob) = (cell.token("ann", &[]), cell.token("bob", &[]));
    let conversation = on_a
        .create_direct(authed(
            pb::CreateDirectRequest {
                other_user_id: "bob".into(),
            },
            &ann,
        ))
        .await
        .expect("direct")
        .into_inner()
        .conversation
        .expect("conversation")
        .id;
    let mut bob_ws = ws(b.http, &bob).await;
    let early = subscribe(&mut bob_ws, &conversation, "").await;
    for n in 0..10 {
        send_text(&mut on_a, &ann, &conversation, &format!("m{n}")).await;
    }
    let first = messages(&mut bob_ws, early, 10).await;
    let last_seen = first[9]["id"].as_str().expect("id").to_owned();
    drop(bob_ws);

    // 300 more, from A, while bob is away and while he reconnects to B.
    let count = Arc::new(AtomicUsize::new(0));
    let sender = {
        let (mut client, ann, conversation, count) = (
            on_a.clone(),
            ann.clone(),
            conversation.clone(),
            count.clone(),
        );
        tokio::spawn(async move {
            for n in 10..310 {
                send_text(&mut client, &ann, &conversation, &format!("m{n}")).await;
                count.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    eventually("200 sent during the disconnect", || async {
        (count.load(Ordering::SeqCst) >= 200).then_some(())
    })
    .await;
    let mut bob_ws = ws(b.http, &bob).await;
    let early = subscribe(&mut bob_ws, &conversation, &last_seen).await;
    let resumed = messages(&mut bob_ws, early, 300).await;
    sender.await.expect("sender");
    assert_eq!(
        seqs(&resumed),
        (11..=310).collect::<Vec<_>>(),
        "no gap, no duplicate"
    );
    assert_eq!(resumed[0]["content"], "m10");

    // The same over gRPC on the other replica, from the middle.
    let mut on_b = grpc(b.grpc).await;
    let mut stream = on_b
        .subscribe(authed(
            pb::SubscribeRequest {
                conversation_id: conversation.clone(),
                after: resumed[99]["id"].as_str().expect("id").to_owned(),
            },
            &bob,
        ))
        .await
        .expect("subscribe")
        .into_inner();
    let mut got = Vec::new();
    while got.len() < 200 {
        let event = tokio::time::timeout(Duration::from_secs(60), stream.next())
            .await
            .expect("in time")
            .expect("open")
            .expect("event");
        if let Some(pb::subscribe_response::Event::Message(m)) = event.event {
            got.push(m.seq);
        }
    }
    assert_eq!(got, (111..=310).collect::<Vec<_>>());
}
