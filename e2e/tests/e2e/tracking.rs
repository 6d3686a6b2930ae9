//! Tracking against two real `titan serve shipping tracking driver` processes sharing
//! PostgreSQL, Redis and the test bucket: a service books a shipment with shipping over gRPC,
//! its label PDF is in object storage (fetched through its signed URL), and shipping's
//! `shipping.shipment_created` reaches tracking through the outbox and the bus (tracking
//! shows CREATED); a recipient subscribes on replica A and gets the history;
//! the carrier's signed webhook on replica B appends PICKED_UP; a dispatcher creates a
//! delivery for the shipment, a driver departs, arrives and completes it with a photo; the
//! driver's outbox events reach tracking through the bus and OUT_FOR_DELIVERY, then DELIVERED
//! arrive on the subscriber's stream on A. A replayed webhook appends nothing; a stale one
//! is refused; a service sees every event with its source, the recipient may not.

use std::time::Duration;

use titan_e2e::{Cell, CellOptions, authed, seconds_from_now};
use titan_kit::testing::eventually;
use titan_proto::{
    driver::v1::{self as dpb, driver_service_client::DriverServiceClient},
    shipping::v1::{self as spb, shipping_service_client::ShippingServiceClient},
    tracking::v1::{self as pb, tracking_service_client::TrackingServiceClient},
};
use titan_tracking::{
    domain::signature::sign,
    web::{SIGNATURE_HEADER, TIMESTAMP_HEADER},
};

const WEBHOOK_SECRET: &str = "flat-rate-webhook-secret-for-the-e2e-test";

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
        services: vec!["shipping".into(), "tracking".into(), "driver".into()],
        ..CellOptions::default()
    })
    .await;
    let b = cell.replica_with(&[("TITAN_TRACKING_FLAT_RATE_WEBHOOK_SECRET", WEBHOOK_SECRET)]);
    let (recipient, support) = (
        cell.token("recipient", &[]),
        cell.token("support", &["service"]),
    );
    let (ann, disp) = (cell.token("ann", &[]), cell.token("disp", &["dispatcher"]));
    let mut track_a = TrackingServiceClient::new(cell.channel().await);
    let mut track_b = TrackingServiceClient::new(b.channel().await);
    let mut drivers = DriverServiceClient::new(cell.channel().await);
    let mut shipping = ShippingServiceClient::new(cell.channel().await);

    let address = |name: &str, postcode: &str| spb::Address {
        name: name.into(),
        line1: "1 Harbourfront Walk".into(),
        line2: String::new(),
        city: "Singapore".into(),
        postcode: postcode.into(),
        country: "SG".into(),
    };
    let shipment = shipping
        .create_shipment(authed(
            spb::CreateShipmentRequest {
                request_id: rid(),
                order_id: "ord-1".into(),
                owner_id: "recipient".into(),
                from: Some(address("Titan Shop", "098585")),
                to: Some(address("Cy Tan", "530123")),
                parcels: vec![spb::Parcel {
                    weight_g: 1_500,
                    length_mm: 300,
                    width_mm: 200,
                    height_mm: 100,
                }],
                ..Default::default()
            },
            &support,
        ))
        .await
        .expect("shipment")
        .into_inner();
    assert_eq!(shipment.carrier, "flat-rate");
    let label = reqwest::get(&shipment.label_url).await.expect("label");
    assert_eq!(label.status().as_u16(), 200);
    let pdf = label.bytes().await.expect("label bytes");
    assert!(pdf.starts_with(b"%PDF-"), "the label is a PDF");
    let number = shipment.tracking_number.clone();
    let shown = eventually("tracking shows CREATED", || {
        let mut client = track_b.clone();
        let token = recipient.clone();
        let number = number.clone();
        async move {
            client
                .track(authed(
                    pb::TrackRequest {
                        tracking_number: number.clone(),
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
                tracking_number: number.clone(),
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
        "id": "fr-scan-1", "tracking_number": number, "type": "PICKED_UP",
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
                shipment_id: shipment.id.clone(),
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
        // Each change is seen before the next is made: both replicas consume the driver's
        // events, so changes made together may be appended in either order.
        assert_eq!(
            next(&mut stream).await,
            ("OUT_FOR_DELIVERY".into(), "OUT_FOR_DELIVERY".into()),
            "after {action}"
        );
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

    // Departed and arrived gave OUT_FOR_DELIVERY twice (above); completed, DELIVERED.
    assert_eq!(
        next(&mut stream).await,
        ("DELIVERED".into(), "DELIVERED".into())
    );

    // A service's full view: every event, the notes and sources recipients do not see.
    let full = track_b
        .get_tracking(authed(
            pb::GetTrackingRequest {
                tracking_number: number.clone(),
                ..Default::default()
            },
            &support,
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
                tracking_number: number.clone(),
                ..Default::default()
            },
            &recipient,
        ))
        .await
        .expect_err("a recipient does not get the full view");
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
}
