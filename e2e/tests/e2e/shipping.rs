//! Shipping against two real `titan serve shipping tracking` processes sharing PostgreSQL,
//! Redis and the test bucket: checkout books a shipment on replica A; its label is in the
//! bucket (a PDF behind the signed URL); the same request on replica B answers the same
//! shipment; the real `shipping.shipment_created` reaches tracking through the relay and the
//! bus, and tracking shows CREATED for the tracking number; a cancellation on B reaches
//! tracking as CANCELLED. Bad input is refused by field on either replica.

use titan_e2e::{Cell, CellOptions, authed};
use titan_kit::{error::reason_of, testing::eventually};
use titan_proto::{
    shipping::v1::{self as pb, shipping_service_client::ShippingServiceClient},
    tracking::v1::{self as tpb, tracking_service_client::TrackingServiceClient},
};
use tonic::{Code, transport::Channel};

fn address(name: &str, postcode: &str) -> pb::Address {
    pb::Address {
        name: name.into(),
        line1: "1 Harbourfront Walk".into(),
        line2: String::new(),
        city: "Singapore".into(),
        postcode: postcode.into(),
        country: "SG".into(),
    }
}

/// The status tracking shows for `number` once it shows `want` (polled with a deadline).
async fn tracked(client: &TrackingServiceClient<Channel>, token: &str, number: &str, want: &str) {
    eventually(&format!("tracking shows {want}"), || {
        let mut client = client.clone();
        let request = authed(
            tpb::TrackRequest {
                tracking_number: number.into(),
                ..Default::default()
            },
            token,
        );
        async move {
            let shown = client.track(request).await.ok()?.into_inner();
            (shown.status == want).then_some(())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_booked_shipment_has_its_label_and_reaches_tracking() {
    let cell = Cell::start_with(CellOptions {
        services: vec!["shipping".into(), "tracking".into()],
        ..CellOptions::default()
    })
    .await;
    let b = cell.replica();
    let (checkout, ann) = (cell.token("checkout", &["service"]), cell.token("ann", &[]));
    let mut ship_a = ShippingServiceClient::new(cell.channel().await);
    let mut ship_b = ShippingServiceClient::new(b.channel().await);
    let track = TrackingServiceClient::new(b.channel().await);

    let request = pb::CreateShipmentRequest {
        request_id: uuid::Uuid::new_v4().to_string(),
        order_id: "ord-e2e-1".into(),
        owner_id: "ann".into(),
        from: Some(address("Titan Shop", "098585")),
        to: Some(address("Ann Tan", "530123")),
        parcels: vec![pb::Parcel {
            weight_g: 1_200,
            length_mm: 300,
            width_mm: 200,
            height_mm: 100,
        }],
        ..Default::default()
    };

    // Refused by field on B before anything is booked.
    let refused = ship_b
        .create_shipment(authed(
            pb::CreateShipmentRequest {
                to: Some(address("Ann Tan", "53?0123")),
                ..request.clone()
            },
            &checkout,
        ))
        .await
        .expect_err("a bad postcode");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(
        refused.message().starts_with("to.postcode: "),
        "{}",
        refused.message()
    );

    let shipment = ship_a
        .create_shipment(authed(request.clone(), &checkout))
        .await
        .expect("booked")
        .into_inner();
    assert_eq!(
        (
            shipment.status.as_str(),
            shipment.carrier.as_str(),
            shipment.amount_minor
        ),
        ("LABEL_CREATED", "flat-rate", 500 + 2 * 100)
    );
    let replayed = ship_b
        .create_shipment(authed(request, &checkout))
        .await
        .expect("replayed")
        .into_inner();
    assert_eq!(
        (replayed.id.as_str(), replayed.tracking_number.as_str()),
        (shipment.id.as_str(), shipment.tracking_number.as_str())
    );

    // The label behind the signed URL: a PDF in the bucket, under the shipment's key.
    assert_eq!(
        shipment.label_key,
        format!("shipping/labels/{}.pdf", shipment.id)
    );
    let label = reqwest::get(&shipment.label_url)
        .await
        .expect("GET the label");
    assert_eq!(label.status(), reqwest::StatusCode::OK);
    assert!(
        label
            .bytes()
            .await
            .expect("label bytes")
            .starts_with(b"%PDF-")
    );

    // The real event, through shipping's relay and the bus, makes tracking's record.
    tracked(&track, &ann, &shipment.tracking_number, "CREATED").await;

    // A buyer may not cancel; checkout cancels on B; tracking follows.
    let cancel = pb::CancelShipmentRequest {
        request_id: uuid::Uuid::new_v4().to_string(),
        shipment_id: shipment.id.clone(),
    };
    let denied = ship_a
        .cancel_shipment(authed(cancel.clone(), &ann))
        .await
        .expect_err("a buyer");
    assert_eq!(reason_of(&denied).as_deref(), Some("ROLE_REQUIRED"));
    let cancelled = ship_b
        .cancel_shipment(authed(cancel, &checkout))
        .await
        .expect("cancelled")
        .into_inner();
    assert_eq!(cancelled.status, "CANCELLED");
    tracked(&track, &ann, &shipment.tracking_number, "CANCELLED").await;
}
