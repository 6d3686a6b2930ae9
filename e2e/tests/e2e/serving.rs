//! The binary serves health, reflection, metrics and authenticated, idempotent ping calls, and
//! drains on SIGTERM.

use std::time::Duration;

use nix::sys::signal::Signal;
use titan_kit::error::reason_of;
use titan_proto::ping::v1::{EmitRequest, PingRequest, ping_service_client::PingServiceClient};
use tonic::Code;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use tonic_reflection::pb::v1::{
    ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
    server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
};

use titan_e2e::{Cell, CellOptions, authed};

#[tokio::test(flavor = "multi_thread")]
async fn health_reflection_and_metrics() {
    // Only ping: reflection must list what this process serves, not every compiled-in service.
    let cell = Cell::start_with(CellOptions {
        services: vec!["ping".into()],
        ..CellOptions::default()
    })
    .await;
    let channel = cell.channel().await;

    let mut health = HealthClient::new(channel.clone());
    for service in ["", "titan.ping.v1.PingService"] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .expect("check")
            .into_inner()
            .status;
        assert_eq!(
            status,
            ServingStatus::Serving as i32,
            "health of {service:?}"
        );
    }

    let mut reflection = ServerReflectionClient::new(channel.clone());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection")
        .into_inner();
    let response = responses
        .message()
        .await
        .expect("reflection answer")
        .expect("one answer");
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!(
            "expected a service list, got {:?}",
            response.message_response
        );
    };
    let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    names.sort();
    assert_eq!(
        names,
        ["grpc.health.v1.Health", "titan.ping.v1.PingService"]
    );

    assert_eq!(cell.get("/readyz").await, (200, "ready".to_owned()));
    let (code, metrics) = cell.get("/metrics").await;
    assert_eq!(code, 200);
    assert!(
        metrics.contains(r#"titan_grpc_requests_total{grpc_code="OK",grpc_method="Check",grpc_service="grpc.health.v1.Health"} 2"#),
        "{metrics}"
    );
    assert!(metrics.contains("titan_ping_emitted_total 0"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread")]
async fn calls_are_refused_without_a_token_and_served_with_one() {
    let cell = Cell::start().await;
    let mut ping = PingServiceClient::new(cell.channel().await);

    let refused = ping
        .ping(PingRequest {
            message: "hi".into(),
        })
        .await
        .expect_err("no token");
    assert_eq!(refused.code(), Code::Unauthenticated);
    assert!(
        refused.message().contains("missing bearer token"),
        "{}",
        refused.message()
    );

    let malformed = ping
        .ping(authed(
            PingRequest {
                message: "hi".into(),
            },
            "not.a.jwt",
        ))
        .await
        .expect_err("malformed token");
    assert_eq!(malformed.code(), Code::Unauthenticated);

    // Well-formed, right issuer, an admin role, signed with a key the cell does not have.
    let forged = ping
        .ping(authed(
            PingRequest {
                message: "hi".into(),
            },
            &cell.token_signed_by("a-secret-the-cell-never-saw-0123456", "mallory", &["admin"]),
        ))
        .await
        .expect_err("forged token");
    assert_eq!(
        (forged.code(), forged.message()),
        (Code::Unauthenticated, "token refused: bad signature")
    );

    let pong = ping
        .ping(authed(
            PingRequest {
                message: "hi".into(),
            },
            &cell.token("u-42", &["buyer"]),
        ))
        .await
        .expect("served")
        .into_inner();
    assert_eq!(
        (
            pong.message.as_str(),
            pong.user_id.as_str(),
            pong.cell.as_str()
        ),
        ("hi", "u-42", "e2e")
    );
    assert_eq!(pong.roles, ["buyer"]);

    // No token, a malformed one, a forged one.
    let (_, metrics) = cell.get("/metrics").await;
    assert!(
        metrics.contains(r#"titan_grpc_requests_total{grpc_code="Unauthenticated",grpc_method="Ping",grpc_service="titan.ping.v1.PingService"} 3"#),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn emit_is_idempotent_and_validated() {
    let cell = Cell::start().await;
    let mut ping = PingServiceClient::new(cell.channel().await);
    let token = cell.token("u-1", &[]);
    let emit = |request_id: &str, message: &str| {
        authed(
            EmitRequest {
                request_id: request_id.into(),
                message: message.into(),
            },
            &token,
        )
    };

    let first = ping
        .emit(emit("r-1", "hello"))
        .await
        .expect("emit")
        .into_inner();
    let again = ping
        .emit(emit("r-1", "hello"))
        .await
        .expect("retry")
        .into_inner();
    assert_eq!(first, again, "a retry returns the first answer");

    let reused = ping
        .emit(emit("r-1", "other"))
        .await
        .expect_err("reused id");
    assert_eq!(reused.code(), Code::FailedPrecondition);
    assert_eq!(reason_of(&reused).as_deref(), Some("REQUEST_ID_REUSED"));

    let missing = ping.emit(emit("", "hello")).await.expect_err("no id");
    assert_eq!(missing.code(), Code::InvalidArgument);
    let empty = ping.emit(emit("r-2", "")).await.expect_err("no message");
    assert_eq!(
        (empty.code(), empty.message()),
        (Code::InvalidArgument, "message is empty")
    );

    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM ping_emissions")
        .fetch_one(&cell.db.pool)
        .await
        .expect("count");
    assert_eq!(rows, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_the_process_cleanly() {
    let mut cell = Cell::start().await;
    cell.process.signal(Signal::SIGTERM);
    let status = tokio::task::block_in_place(|| cell.process.wait_exit(Duration::from_secs(60)));
    assert!(status.success(), "titan exited with {status}");
}
