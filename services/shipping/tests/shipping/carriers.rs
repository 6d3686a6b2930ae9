//! The HTTP carrier adapter against a local stub of a carrier's API (axum in the test): real
//! answers, and the failures a carrier has — 5xx and 429 tried again, a hang cut off by the
//! timeout, 4xx refused at once with the carrier's own message, an unreadable tracking number.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use axum::{
    Json, Router,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    routing::{get, post},
};
use serde_json::{Value, json};
use titan_shipping::{
    carrier::{
        Booking, Carrier, CarrierError, QuoteRequest,
        http::{HttpCarrier, Retry},
    },
    domain::{Address, Parcel, Quote, ServiceLevel, TrackingNumber},
};

/// What the stub does, chosen by the destination postcode of a request.
#[derive(Default)]
struct Stub {
    calls: AtomicU32,
}

type Answer = (StatusCode, Json<Value>);

fn authorised(headers: &HeaderMap) -> Option<Answer> {
    (headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer key-1")).then(
        || {
            (
                StatusCode::UNAUTHORIZED,
                Json(json!({"error": "invalid API key"})),
            )
        },
    )
}

async fn rates(State(s): State<Arc<Stub>>, headers: HeaderMap, Json(body): Json<Value>) -> Answer {
    let n = s.calls.fetch_add(1, Ordering::SeqCst) + 1;
    if let Some(refused) = authorised(&headers) {
        return refused;
    }
    match body["to"]["postcode"].as_str().unwrap_or_default() {
        // Fails twice, then answers.
        "500001" if n <= 2 => (StatusCode::SERVICE_UNAVAILABLE, Json(json!({}))),
        "429429" if n <= 1 => (StatusCode::TOO_MANY_REQUESTS, Json(json!({}))),
        "503503" => (
            StatusCode::BAD_GATEWAY,
            Json(json!({"error": "upstream down"})),
        ),
        "000000" => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"error": "postcode 000000 does not exist"})),
        ),
        "999999" => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            (StatusCode::OK, Json(json!({"rates": []})))
        }
        _ => (
            StatusCode::OK,
            Json(json!({"rates": [
                {"service_level": "STANDARD", "amount_minor": 690, "currency": "SGD", "days": 2},
                {"service_level": "EXPRESS", "amount_minor": 1290, "currency": "SGD", "days": 1},
                {"service_level": "SAME_DAY_DRONE", "amount_minor": 9900, "currency": "SGD", "days": 0}
            ]})),
        ),
    }
}

async fn create(State(s): State<Arc<Stub>>, headers: HeaderMap, Json(body): Json<Value>) -> Answer {
    s.calls.fetch_add(1, Ordering::SeqCst);
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    if body["to"]["postcode"] == "777777" {
        return (
            StatusCode::CREATED,
            Json(json!({"tracking_number": "not a number"})),
        );
    }
    // The tracking number follows the idempotency key, as a carrier that de-duplicates does.
    (
        StatusCode::CREATED,
        Json(
            json!({"tracking_number": format!("SX{}", key.to_uppercase().replace('-', "")[..12].to_owned())}),
        ),
    )
}

async fn cancel(Path(tracking): Path<String>) -> Answer {
    if tracking == "SXPICKEDUP01" {
        return (
            StatusCode::CONFLICT,
            Json(json!({"error": "shipment SXPICKEDUP01 was already picked up"})),
        );
    }
    (StatusCode::OK, Json(json!({"status": "CANCELLED"})))
}

async fn events(Path(tracking): Path<String>) -> Answer {
    (
        StatusCode::OK,
        Json(json!({"tracking_number": tracking, "events": [
            {"type": "PICKED_UP", "location": "Singapore", "at": "2026-12-06T09:00:00Z"},
            {"type": "IN_TRANSIT", "location": "Changi hub", "at": "2026-12-06T11:30:00Z"}
        ]})),
    )
}

async fn stub() -> (String, Arc<Stub>) {
    let state = Arc::new(Stub::default());
    let app = Router::new()
        .route("/v1/rates", post(rates))
        .route("/v1/shipments", post(create))
        .route("/v1/shipments/{tracking}/cancel", post(cancel))
        .route("/v1/shipments/{tracking}/events", get(events))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/"), state)
}

fn carrier(url: &str, key: &str) -> HttpCarrier {
    let retry = Retry {
        attempts: 3,
        backoff: Duration::from_millis(10),
        timeout: Duration::from_millis(300),
    };
    HttpCarrier::new("speedex", url, key.into(), retry).expect("client")
}

fn request(postcode: &str) -> QuoteRequest {
    let address = |postcode: &str| Address {
        name: "Ada".into(),
        line1: "1 Harbourfront Walk".into(),
        line2: String::new(),
        city: "Singapore".into(),
        postcode: postcode.into(),
        country: "SG".into(),
    };
    QuoteRequest {
        from: address("098585"),
        to: address(postcode),
        parcels: vec![Parcel {
            weight_g: 1200,
            length_mm: 300,
            width_mm: 200,
            height_mm: 100,
        }],
    }
}

fn quote(level: ServiceLevel, amount_minor: u64, days: u32) -> Quote {
    Quote {
        carrier: "speedex".into(),
        level,
        amount_minor,
        currency: "SGD".into(),
        days,
    }
}

#[tokio::test]
async fn quotes_and_their_failures() {
    let (url, stub) = stub().await;
    let c = carrier(&url, "key-1");
    let expected = vec![
        quote(ServiceLevel::Standard, 690, 2),
        quote(ServiceLevel::Express, 1290, 1),
    ];
    // An unknown level (SAME_DAY_DRONE) is left out.
    assert_eq!(c.quote(&request("530123")).await.expect("quoted"), expected);

    let calls = |stub: &Stub| stub.calls.swap(0, Ordering::SeqCst);
    calls(&stub);
    // Two 503s, then an answer: three calls.
    assert_eq!(
        c.quote(&request("500001")).await.expect("retried"),
        expected
    );
    assert_eq!(calls(&stub), 3);
    let (url, stub) = self::stub().await;
    let c = carrier(&url, "key-1");
    assert_eq!(
        c.quote(&request("429429")).await.expect("retried"),
        expected
    );
    assert_eq!(calls(&stub), 2);

    // Always 502: given up after three tries.
    match c.quote(&request("503503")).await {
        Err(CarrierError::Unavailable {
            carrier,
            attempts: 3,
            cause,
        }) => {
            assert_eq!((carrier.as_str(), cause.as_str()), ("speedex", "HTTP 502"))
        }
        other => panic!("expected unavailable, got {other:?}"),
    }
    assert_eq!(calls(&stub), 3);

    // A hang: each try cut at 300 ms.
    match c.quote(&request("999999")).await {
        Err(CarrierError::Unavailable {
            attempts: 3, cause, ..
        }) => {
            assert_eq!(cause, "no answer within 300ms")
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert_eq!(calls(&stub), 3);

    // A 4xx is the carrier's refusal, not tried again.
    match c.quote(&request("000000")).await {
        Err(e @ CarrierError::Refused { status: 422, .. }) => assert_eq!(
            e.to_string(),
            "carrier speedex refused the request (HTTP 422): postcode 000000 does not exist"
        ),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(calls(&stub), 1);
    match carrier(&url, "wrong").quote(&request("530123")).await {
        Err(CarrierError::Refused {
            status: 401,
            message,
            ..
        }) => {
            assert_eq!(message, "invalid API key")
        }
        other => panic!("expected 401, got {other:?}"),
    }
}

#[tokio::test]
async fn create_cancel_and_track() {
    let (url, _) = stub().await;
    let c = carrier(&url, "key-1");
    let q = request("530123");
    let booking = Booking {
        reference: "0193a7c2-5b1e-7000-8000-000000000001".into(),
        service_level: ServiceLevel::Express,
        from: q.from.clone(),
        to: q.to.clone(),
        parcels: q.parcels.clone(),
    };
    let tracking = c.create(&booking).await.expect("booked");
    assert_eq!(tracking.as_str(), "SX0193A7C25B1E");
    // The same booking again is the same shipment.
    assert_eq!(c.create(&booking).await.expect("booked"), tracking);

    let bad = Booking {
        to: request("777777").to,
        ..booking
    };
    match c.create(&bad).await {
        Err(CarrierError::BadResponse { message, .. }) => assert_eq!(
            message,
            "tracking_number: \"not a number\" is not 6 to 24 upper-case letters and digits"
        ),
        other => panic!("expected a bad response, got {other:?}"),
    }

    c.cancel(&tracking).await.expect("cancelled");
    let picked = TrackingNumber::parse("t", "SXPICKEDUP01").expect("valid");
    match c.cancel(&picked).await {
        Err(CarrierError::Refused {
            status: 409,
            message,
            ..
        }) => {
            assert_eq!(message, "shipment SXPICKEDUP01 was already picked up")
        }
        other => panic!("expected 409, got {other:?}"),
    }

    let scans = c.track(&tracking).await.expect("tracked");
    let kinds: Vec<(&str, &str)> = scans
        .iter()
        .map(|s| (s.kind.as_str(), s.location.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [("PICKED_UP", "Singapore"), ("IN_TRANSIT", "Changi hub")]
    );
}
