//! The service as the `titan` binary runs it — kit's runtime, its migrations, JWT auth and
//! bus consumers — over gRPC, two replicas on one PostgreSQL and Redis: shipping's event
//! creates the record, a subscriber on replica A gets the history and then the driver's
//! events (handled by whichever replica's consumer took them), refusals arrive with their
//! codes and reasons.

use std::{collections::BTreeMap, time::Duration};

use titan_kit::{
    auth::Authenticator,
    config::Config,
    error::reason_of,
    runtime,
    testing::{TestPostgres, TestRedis, eventually, publish},
};
use titan_proto::tracking::v1::{self as pb, tracking_service_client::TrackingServiceClient};
use titan_tracking::service;
use tonic::{Code, Request, transport::Channel};

use crate::{OWNER, delivery, shipment_created};

const SECRET: &str = "tracking-tests-secret-tracking-tests";

fn config(db: &TestPostgres, redis: &TestRedis) -> Config {
    let vars = BTreeMap::from([
        ("TITAN_GRPC_ADDR", "127.0.0.1:0".to_owned()),
        ("TITAN_HTTP_ADDR", "127.0.0.1:0".to_owned()),
        ("TITAN_ADMIN_ADDR", "127.0.0.1:0".to_owned()),
        ("TITAN_AUTH_HS256_SECRET", SECRET.to_owned()),
        ("TITAN_POSTGRES_URL", db.url.clone()),
        ("TITAN_REDIS_URL", redis.url.clone()),
        ("TITAN_REDIS_KEY_PREFIX", redis.config.key_prefix.clone()),
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

fn track(number: &str) -> pb::TrackRequest {
    pb::TrackRequest {
        tracking_number: number.into(),
        ..Default::default()
    }
}

async fn next(stream: &mut tonic::Streaming<pb::TrackingUpdate>) -> pb::TrackingUpdate {
    tokio::time::timeout(Duration::from_secs(30), stream.message())
        .await
        .expect("an update in time")
        .expect("a good stream")
        .expect("the stream is open")
}

#[tokio::test]
async fn a_shipment_to_delivered_on_a_subscriber_of_the_other_replica() {
    let db = TestPostgres::new().await;
    let redis = TestRedis::new().await;
    let config = config(&db, &redis);
    runtime::migrate(&config, &[service()])
        .await
        .expect("migrate");
    let auth = Authenticator::new(&config.auth).expect("auth");
    let ttl = Duration::from_secs(600);
    let owner = auth.mint(OWNER, &[], ttl).expect("token");
    let support = auth
        .mint("support", &["service".to_owned()], ttl)
        .expect("token");
    let anyone = auth.mint("recipient", &[], ttl).expect("token");
    let a = titan_kit::testing::serve(config.clone(), vec![service()]).await;
    let b = titan_kit::testing::serve(config, vec![service()]).await;
    let mut on_a = TrackingServiceClient::new(a.channel.clone());
    let mut on_b: TrackingServiceClient<Channel> = TrackingServiceClient::new(b.channel.clone());

    let n = "FR00000000000000C1";
    publish(
        &redis.handle,
        "shipping",
        &shipment_created("ship-1", n, "flat-rate"),
    )
    .await;
    let created = eventually("the record on replica B", || {
        let mut client = on_b.clone();
        let token = anyone.clone();
        async move { client.track(authed(track(n), &token)).await.ok() }
    })
    .await
    .into_inner();
    assert_eq!(created.status, "CREATED");
    assert_eq!(created.carrier, "flat-rate");
    assert_eq!(created.events.len(), 1);

    // Refusals: no token, a bad number, a stranger asking for the full record.
    let err = on_b
        .track(Request::new(track(n)))
        .await
        .expect_err("no token");
    assert_eq!(err.code(), Code::Unauthenticated);
    let err = on_b
        .track(authed(track("n-1"), &anyone))
        .await
        .expect_err("bad number");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().starts_with("tracking_number: "),
        "{}",
        err.message()
    );
    let err = on_b
        .get_tracking(authed(
            pb::GetTrackingRequest {
                tracking_number: n.into(),
                ..Default::default()
            },
            &anyone,
        ))
        .await
        .expect_err("stranger");
    assert_eq!(err.code(), Code::PermissionDenied);
    assert_eq!(reason_of(&err).as_deref(), Some("NOT_ALLOWED"));
    // The buyer owning the shipment neither: the full view holds internal notes.
    let err = on_b
        .get_tracking(authed(
            pb::GetTrackingRequest {
                tracking_number: n.into(),
                ..Default::default()
            },
            &owner,
        ))
        .await
        .expect_err("owner");
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = on_b
        .track(authed(track("FR00000000000000C9"), &anyone))
        .await
        .expect_err("unknown");
    assert_eq!(err.code(), Code::NotFound);

    let mut stream = on_a
        .subscribe(authed(
            pb::SubscribeRequest {
                tracking_number: n.into(),
                carrier: String::new(),
            },
            &support,
        ))
        .await
        .expect("subscribe")
        .into_inner();
    let first = next(&mut stream).await;
    assert_eq!(first.status, "CREATED");
    assert_eq!(
        first.event.as_ref().map(|e| e.r#type.as_str()),
        Some("CREATED")
    );
    assert_eq!(
        first.detail.as_ref().map(|d| d.source.as_str()),
        Some("shipping")
    );

    // One at a time: each replica consumes from the group, so two events published together
    // may be appended in either order, and the stream shows them as appended.
    publish(
        &redis.handle,
        "driver",
        &delivery("in_transit", "ship-1", 10),
    )
    .await;
    let out = next(&mut stream).await;
    assert_eq!(
        (
            out.status.as_str(),
            out.event.as_ref().map(|e| e.r#type.as_str())
        ),
        ("OUT_FOR_DELIVERY", Some("OUT_FOR_DELIVERY"))
    );
    publish(
        &redis.handle,
        "driver",
        &delivery("completed", "ship-1", 20),
    )
    .await;
    let done = next(&mut stream).await;
    assert_eq!(done.status, "DELIVERED");
    let detail = done.detail.expect("a service sees the full event");
    assert!(
        detail.note.starts_with("delivered with a proof"),
        "{}",
        detail.note
    );
    assert!(detail.applied);

    let full = on_b
        .get_tracking(authed(
            pb::GetTrackingRequest {
                tracking_number: n.into(),
                ..Default::default()
            },
            &support,
        ))
        .await
        .expect("support")
        .into_inner();
    assert_eq!(full.status, "DELIVERED");
    assert_eq!(full.total_events, 3);
    assert_eq!(full.shipment_id, "ship-1");
    let public = on_a
        .track(authed(track(n), &anyone))
        .await
        .expect("public")
        .into_inner();
    assert_eq!(
        public
            .events
            .iter()
            .map(|e| e.r#type.as_str())
            .collect::<Vec<_>>(),
        ["CREATED", "OUT_FOR_DELIVERY", "DELIVERED"]
    );
    drop(stream);
    for s in [a, b] {
        s.stop.cancel();
        s.task.await.expect("join").expect("clean stop");
    }
}
