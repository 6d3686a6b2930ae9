//! Tracking against two real `titan serve tracking driver` processes sharing PostgreSQL,
//! Redis and the test bucket: a shipment's `shipping.shipment_created` on the bus creates the
//! record (tracking shows CREATED); a recipient subscribes on replica A and gets the history;
//! the carrier's signed webhook on replica B appends PICKED_UP; a dispatcher creates a
//! delivery for the shipment, a driver departs, arrives and completes it with a photo; the
//! driver's outbox events reach tracking through the bus and OUT_FOR_DELIVERY, then DELIVERED
//! arrive on the subscriber's stream on A. A replayed webhook appends nothing; a stale one
//! is refused.
//!
//! The shipment is announced with kit's test publisher (the relay's exact stream entry):
//! shipping's gRPC was not in the tree when this test was written.

use std::time::Duration;

use titan_e2e::{Cell, CellOptions, authed, seconds_from_now};
use titan_kit::{events::Envelope, testing::eventually};
use titan_proto::{
    driver::v1::{self as dpb, driver_service_client::DriverServiceClient},
    tracking::v1::{self as pb, tracking_service_client::TrackingServiceClient},
};
use titan_tracking::{
    domain::signature::sign,
    web::{SIGNATURE_HEADER, TIMESTAMP_HEADER},
};

const WEBHOOK_SECRET: &str = "flat-rate-webhook-secret-for-the-e2e-test";
const NUMBER: &str = "FR00E2E000000000001";

fn rid() -> String {
    uuid::Uuid::new_v4().to_string()
}

async fn next(s: &mut tonic::Streaming<pb::TrackingUpdate>) -> (String, String) {
    let u = tokio::time::timeout(Duration::from_secs(30), s.message())
        .await
        .expect("an update in time")
        .expect("stream")
        .expect("open");
    (u.status, u.event.map(|e| e.r#type).unwrap_or_default())
}

/// Posts the carrier's signed scan to `http`, signed `age` seconds ago; answers the status
/// and body.
async fn webhook(http: std::net::SocketAddr, body: &serde_json::Value, age: i64) -> (u16, String) {
    let raw = serde_json::to_vec(body).expect("json");
    let ts = (chrono::Utc::now().timestamp() - age).to_string();
    let response = reqwest::Client::new()
        .post(format!("http://{http}/webhooks/tracking/flat-rate"))
        .header(TIMESTAMP_HEADER, &ts)
        .header(SIGNATURE_HEADER, sign(WEBHOOK_SECRET.as_bytes(), &ts, &raw))
        .body(raw)
        .send()
        .await
        .expect("webhook");
    (
        response.status().as_u16(),
        response.text().await.expect("body"),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_shipment_from_created_to_delivered_on_a_subscriber_stream() {
    let cell = Cell::start_with(CellOptions {
        services: vec!["tracking".into(), "driver".into()],
        ..CellOptions::default()
    })
    .await;
    let b = cell.replica_with(&[("TITAN_TRACKING_FLAT_RATE_WEBHOOK_SECRET", WEBHOOK_SECRET)]);
    let (recipient, merchant) = (cell.token("recipient", &[]), cell.token("merchant", &[]));
    let (ann, disp) = (cell.token("ann", &[]), cell.token("disp", &["dispatcher"]));
    let mut track_a = TrackingServiceClient::new(cell.channel().await);
    let mut track_b = TrackingServiceClient::new(b.channel().await);
    let mut drivers = DriverServiceClient::new(cell.channel().await);

    let created = Envelope::new(
        "e2e",
        "shipping.shipment_created",
        1,
        &serde_json::json!({
            "shipment_id": "shp-e2e-1",
            "order_id": "ord-1",
            "tracking_number": NUMBER,
            "carrier": "flat-rate",
            "service_level": "standard",
            "owner_id": "merchant",
            "created_at": chrono::Utc::now(),
        }),
    )
    .expect("envelope");
    titan_kit::testing::publish(&cell.redis.handle, "shipping", &created).await;
    let shown = eventually("tracking shows CREATED", || {
        let mut client = track_b.clone();
        let token = recipient.clone();
        async move {
            client
                .track(authed(
                    pb::TrackRequest {
                        tracking_number: NUMBER.into(),
                        ..Default::default()
                    },
                    &token,
                ))
                .await
                .ok()
        }
    })
    .await
    .into_inner();
    assert_eq!(shown.status, "CREATED");

    let mut stream = track_a
        .subscribe(authed(
            pb::SubscribeRequest {
                tracking_number: NUMBER.into(),
                carrier: String::new(),
            },
            &recipient,
        ))
        .await
        .expect("subscribe")
        .into_inner();
    assert_eq!(
        next(&mut stream).await,
        ("CREATED".into(), "CREATED".into())
    );

    // The carrier's pickup scan, signed, on replica B; again (a replay), and a stale one.
    let scan = serde_json::json!({"events": [{
        "id": "fr-scan-1", "tracking_number": NUMBER, "type": "PICKED_UP",
        "location": "Tuas depot", "at": chrono::Utc::now().to_rfc3339(), "note": "van 4",
    }]});
    assert_eq!(
        webhook(b.http, &scan, 0).await,
        (200, r#"{"appended":1,"duplicates":0}"#.into())
    );
    assert_eq!(
        webhook(b.http, &scan, 0).await,
        (200, r#"{"appended":0,"duplicates":1}"#.into())
    );
    assert_eq!(webhook(b.http, &scan, 400).await.0, 401);
    assert_eq!(
        next(&mut stream).await,
        ("PICKED_UP".into(), "PICKED_UP".into())
    );

    // The last mile: ann delivers the shipment.
    let me = drivers
        .register_driver(authed(
            dpb::RegisterDriverRequest {
                request_id: rid(),
                name: "Ann".into(),
                phone: "+6561234567".into(),
                email: "ann@example.com".into(),
                vehicle_type: "VAN".into(),
                capacity: 10,
            },
            &ann,
        ))
        .await
        .expect("register")
        .into_inner();
    drivers
        .set_status(authed(
            dpb::SetStatusRequest {
                request_id: rid(),
                status: "AVAILABLE".into(),
            },
            &ann,
        ))
        .await
        .expect("available");
    let delivery = drivers
        .create_delivery(authed(
            dpb::CreateDeliveryRequest {
                request_id: rid(),
                shipment_id: "shp-e2e-1".into(),
                customer_id: "recipient".into(),
                address: "1 Main St".into(),
                lat: 1.30,
                lng: 103.80,
                window_start: Some(seconds_from_now(0)),
                window_end: Some(seconds_from_now(4 * 3600)),
                size: 2,
                service_seconds: 60,
            },
            &disp,
        ))
        .await
        .expect("delivery")
        .into_inner();
    drivers
        .assign_route(authed(
            dpb::AssignRouteRequest {
                request_id: rid(),
                driver_id: me.id.clone(),
                stops: vec![dpb::StopRequest {
                    delivery_id: delivery.id.clone(),
                    eta: Some(seconds_from_now(600)),
                }],
            },
            &disp,
        ))
        .await
        .expect("assign");
    for action in ["DEPART", "ARRIVE"] {
        drivers
            .advance_delivery(authed(
                dpb::AdvanceDeliveryRequest {
                    request_id: rid(),
                    delivery_id: delivery.id.clone(),
                    action: action.into(),
                },
                &ann,
            ))
            .await
            .expect(action);
    }
    drivers
        .complete_delivery(authed(
            dpb::CompleteDeliveryRequest {
                request_id: rid(),
                delivery_id: delivery.id.clone(),
                recipient_name: "Cy".into(),
                photo: Some(dpb::Attachment {
                    content_type: "image/png".into(),
                    data: b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec(),
                }),
                signature: None,
            },
            &ann,
        ))
        .await
        .expect("complete");

    // Departed and arrived: OUT_FOR_DELIVERY twice; then DELIVERED, on A's stream.
    assert_eq!(
        next(&mut stream).await,
        ("OUT_FOR_DELIVERY".into(), "OUT_FOR_DELIVERY".into())
    );
    assert_eq!(
        next(&mut stream).await,
        ("OUT_FOR_DELIVERY".into(), "OUT_FOR_DELIVERY".into())
    );
    assert_eq!(
        next(&mut stream).await,
        ("DELIVERED".into(), "DELIVERED".into())
    );

    // The merchant's full view: every event, the notes and sources recipients do not see.
    let full = track_b
        .get_tracking(authed(
            pb::GetTrackingRequest {
                tracking_number: NUMBER.into(),
                ..Default::default()
            },
            &merchant,
        ))
        .await
        .expect("full view")
        .into_inner();
    assert_eq!(full.status, "DELIVERED");
    assert_eq!(
        full.events
            .iter()
            .map(|e| (e.r#type.as_str(), e.source.as_str()))
            .collect::<Vec<_>>(),
        [
            ("CREATED", "shipping"),
            ("PICKED_UP", "carrier:flat-rate"),
            ("OUT_FOR_DELIVERY", "driver"),
            ("OUT_FOR_DELIVERY", "driver"),
            ("DELIVERED", "driver"),
        ]
    );
    assert_eq!(full.events[1].note, "van 4");
    let err = track_b
        .get_tracking(authed(
            pb::GetTrackingRequest {
                tracking_number: NUMBER.into(),
                ..Default::default()
            },
            &recipient,
        ))
        .await
        .expect_err("a recipient does not get the full view");
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
}
