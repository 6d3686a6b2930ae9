//! The service as the `titan` binary runs it — kit's runtime, its migrations, JWT auth and
//! object storage — driven over gRPC: a driver registers and goes AVAILABLE, a dispatcher
//! creates a delivery and assigns it, the driver completes it with a photo, and refusals
//! arrive with their ErrorInfo reasons.

use std::{collections::BTreeMap, time::Duration};

use titan_driver::service;
use titan_kit::{
    auth::Authenticator,
    config::Config,
    error::reason_of,
    runtime,
    testing::{TestPostgres, TestRedis, server_url},
};
use titan_proto::driver::v1::{self as pb, driver_service_client::DriverServiceClient};
use tonic::{Code, Request};

use crate::rid;

const SECRET: &str = "driver-tests-secret-driver-tests-secret";

fn config(db: &TestPostgres, redis: &TestRedis) -> Config {
    let vars = BTreeMap::from([
        ("TITAN_GRPC_ADDR", "127.0.0.1:0".to_owned()),
        ("TITAN_HTTP_ADDR", "127.0.0.1:0".to_owned()),
        ("TITAN_ADMIN_ADDR", "127.0.0.1:0".to_owned()),
        ("TITAN_AUTH_HS256_SECRET", SECRET.to_owned()),
        ("TITAN_POSTGRES_URL", db.url.clone()),
        ("TITAN_REDIS_URL", redis.url.clone()),
        ("TITAN_REDIS_KEY_PREFIX", redis.config.key_prefix.clone()),
        ("TITAN_S3_ENDPOINT", server_url("TITAN_TEST_S3_ENDPOINT")),
        ("TITAN_S3_BUCKET", server_url("TITAN_TEST_S3_BUCKET")),
        (
            "TITAN_S3_ACCESS_KEY_ID",
            server_url("TITAN_TEST_S3_ACCESS_KEY_ID"),
        ),
        (
            "TITAN_S3_SECRET_ACCESS_KEY",
            server_url("TITAN_TEST_S3_SECRET_ACCESS_KEY"),
        ),
    ]);
    Config::from_sources(None, move |name| vars.get(name).cloned()).expect("config")
}

fn authed<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    request
}

fn ts(t: chrono::DateTime<chrono::Utc>) -> Option<prost_types::Timestamp> {
    Some(titan_kit::wire::timestamp(t))
}

#[tokio::test]
async fn a_delivery_from_registration_to_proof_over_grpc() {
    let db = TestPostgres::new().await;
    let redis = TestRedis::new().await;
    let config = config(&db, &redis);
    runtime::migrate(&config, &[service()])
        .await
        .expect("migrate");
    let auth = Authenticator::new(&config.auth).expect("auth");
    let ttl = Duration::from_secs(600);
    let driver = auth.mint("ann", &[], ttl).expect("token");
    let disp = auth
        .mint("disp", &["dispatcher".to_owned()], ttl)
        .expect("token");
    let served = titan_kit::testing::serve(config, vec![service()]).await;
    let mut client = DriverServiceClient::new(served.channel);

    let bad = client
        .register_driver(authed(
            pb::RegisterDriverRequest {
                request_id: rid(),
                name: "Ann".into(),
                phone: "+6561234567".into(),
                email: "ann@example.com".into(),
                vehicle_type: "BICYCLE".into(),
                capacity: 10,
            },
            &driver,
        ))
        .await
        .expect_err("bad vehicle");
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(
        bad.message().starts_with("vehicle_type: "),
        "{}",
        bad.message()
    );
    let me = client
        .register_driver(authed(
            pb::RegisterDriverRequest {
                request_id: rid(),
                name: "Ann".into(),
                phone: "+6561234567".into(),
                email: "ann@example.com".into(),
                vehicle_type: "VAN".into(),
                capacity: 10,
            },
            &driver,
        ))
        .await
        .expect("register")
        .into_inner();
    assert_eq!(
        (me.status.as_str(), me.user_id.as_str()),
        ("OFF_DUTY", "ann")
    );
    client
        .set_status(authed(
            pb::SetStatusRequest {
                request_id: rid(),
                status: "AVAILABLE".into(),
            },
            &driver,
        ))
        .await
        .expect("available");

    let now = chrono::Utc::now();
    let delivery = pb::CreateDeliveryRequest {
        request_id: rid(),
        shipment_id: "sh-9".into(),
        customer_id: "cus".into(),
        address: "1 Main St".into(),
        lat: 1.3,
        lng: 103.8,
        window_start: ts(now),
        window_end: ts(now + chrono::Duration::hours(2)),
        size: 4,
        service_seconds: 60,
    };
    let refused = client
        .create_delivery(authed(delivery.clone(), &driver))
        .await
        .expect_err("not a dispatcher");
    assert_eq!(reason_of(&refused).as_deref(), Some("NOT_A_DISPATCHER"));
    let d = client
        .create_delivery(authed(delivery, &disp))
        .await
        .expect("delivery")
        .into_inner();
    assert_eq!(d.status, "PENDING");
    let route = client
        .assign_route(authed(
            pb::AssignRouteRequest {
                request_id: rid(),
                driver_id: me.id.clone(),
                stops: vec![pb::StopRequest {
                    delivery_id: d.id.clone(),
                    eta: ts(now),
                }],
            },
            &disp,
        ))
        .await
        .expect("assign")
        .into_inner();
    assert_eq!(route.stops.len(), 1);

    let complete = |request_id: String| pb::CompleteDeliveryRequest {
        request_id,
        delivery_id: d.id.clone(),
        recipient_name: "Cy".into(),
        photo: Some(pb::Attachment {
            content_type: "image/png".into(),
            data: b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec(),
        }),
        signature: None,
    };
    let early = client
        .complete_delivery(authed(complete(rid()), &driver))
        .await
        .expect_err("not at the door");
    assert_eq!(early.code(), Code::FailedPrecondition);
    assert_eq!(reason_of(&early).as_deref(), Some("ILLEGAL_TRANSITION"));
    assert_eq!(
        early.message(),
        "cannot COMPLETE a delivery that is ASSIGNED"
    );
    for action in ["DEPART", "ARRIVE"] {
        client
            .advance_delivery(authed(
                pb::AdvanceDeliveryRequest {
                    request_id: rid(),
                    delivery_id: d.id.clone(),
                    action: action.into(),
                },
                &driver,
            ))
            .await
            .expect(action);
    }
    let done = client
        .complete_delivery(authed(complete(rid()), &driver))
        .await
        .expect("complete")
        .into_inner();
    assert_eq!(done.status, "COMPLETED");
    let me = client
        .get_my_driver(authed(pb::GetMyDriverRequest {}, &driver))
        .await
        .expect("me")
        .into_inner();
    assert_eq!(me.status, "AVAILABLE");
    assert_eq!(
        me.performance.map(|p| (p.completed, p.on_time)),
        Some((1, 1))
    );
    served.stop.cancel();
    served.task.await.expect("join").expect("served");
}
