//! The service as the `titan` binary runs it — kit's runtime, its migrations, JWT auth, real
//! PostgreSQL, Redis and S3 — driven over gRPC: quotes, a shipment booked by a service whose
//! label lands in the bucket as a 4×6 in PDF whose barcode scans to the tracking number, a
//! replay that answers the same shipment with one event, bad input per field that stores
//! nothing, who may read and cancel, and a cancellation with its event.

use std::{collections::BTreeMap, time::Duration};

use titan_kit::{
    auth::Authenticator,
    config::Config,
    error::reason_of,
    events::stream_key,
    objects::ObjectKey,
    reexport::redis,
    runtime,
    testing::{TestObjectStorage, TestPostgres, TestRedis, eventually, server_url},
};
use titan_proto::shipping::v1::{self as pb, shipping_service_client::ShippingServiceClient};
use titan_shipping::{
    app::{label_key, shipment_id},
    domain::{Address, Parcel, RawShipment},
    service,
};
use tonic::{Code, Request, transport::Channel};

use crate::label::{rasterise_pdf, scan};

const SECRET: &str = "shipping-tests-secret-shipping-tests-";

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

fn rid() -> String {
    uuid::Uuid::new_v4().to_string()
}

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

fn parcel(weight_g: u32) -> pb::Parcel {
    pb::Parcel {
        weight_g,
        length_mm: 300,
        width_mm: 200,
        height_mm: 100,
    }
}

fn create(request_id: &str, order_id: &str) -> pb::CreateShipmentRequest {
    pb::CreateShipmentRequest {
        request_id: request_id.into(),
        order_id: order_id.into(),
        owner_id: "ann".into(),
        from: Some(address("Titan Shop", "098585")),
        to: Some(address("Ann Tan", "530123")),
        parcels: vec![parcel(1_500), parcel(400)],
        ..Default::default()
    }
}

/// The domain request the edge builds from `r`, for the shipment id it would get.
fn raw(r: &pb::CreateShipmentRequest) -> RawShipment {
    let a = |a: &Option<pb::Address>| {
        a.as_ref()
            .map(|a| Address {
                name: a.name.clone(),
                line1: a.line1.clone(),
                line2: a.line2.clone(),
                city: a.city.clone(),
                postcode: a.postcode.clone(),
                country: a.country.clone(),
            })
            .unwrap_or_default()
    };
    RawShipment {
        order_id: r.order_id.clone(),
        owner_id: r.owner_id.clone(),
        from: a(&r.from),
        to: a(&r.to),
        parcels: r
            .parcels
            .iter()
            .map(|p| Parcel {
                weight_g: p.weight_g,
                length_mm: p.length_mm,
                width_mm: p.width_mm,
                height_mm: p.height_mm,
            })
            .collect(),
        carrier: r.carrier.clone(),
        service_level: r.service_level.clone(),
        strategy: r.strategy.clone(),
    }
}

/// What a refused call must leave as it was: shipment rows and the events on the bus.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    shipments: Vec<(String, String)>,
    events: Vec<String>,
}

async fn snapshot(db: &TestPostgres, redis: &TestRedis) -> Snapshot {
    Snapshot {
        shipments: sqlx::query_as("SELECT id::TEXT, status FROM shipping_shipments ORDER BY id")
            .fetch_all(&db.pool)
            .await
            .expect("shipments"),
        events: bus(db, redis).await.into_iter().map(|(t, _)| t).collect(),
    }
}

/// Every event the service published, in stream order, as (type, payload): read once the
/// relay has moved the whole outbox to the stream (polled with a deadline).
async fn bus(db: &TestPostgres, redis: &TestRedis) -> Vec<(String, serde_json::Value)> {
    eventually("the outbox relayed", || async {
        let left: i64 = sqlx::query_scalar("SELECT count(*) FROM titan_outbox")
            .fetch_one(&db.pool)
            .await
            .expect("outbox");
        (left == 0).then_some(())
    })
    .await;
    let mut conn = redis.handle.conn.clone();
    let entries: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(stream_key(&redis.handle, "shipping"))
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .expect("xrange");
    entries
        .ids
        .iter()
        .map(|entry| {
            let envelope: String = entry.get("envelope").expect("an envelope field");
            let envelope: serde_json::Value =
                serde_json::from_str(&envelope).expect("envelope json");
            (
                envelope["type"].as_str().expect("type").to_owned(),
                envelope["payload"].clone(),
            )
        })
        .collect()
}

/// The payloads of the published events of `kind`, in order.
async fn payloads(db: &TestPostgres, redis: &TestRedis, kind: &str) -> Vec<serde_json::Value> {
    bus(db, redis)
        .await
        .into_iter()
        .filter(|(t, _)| t == kind)
        .map(|(_, p)| p)
        .collect()
}

async fn refused<T: std::fmt::Debug>(
    call: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> (Code, String, String) {
    match call.await {
        Ok(r) => panic!("expected a refusal, got {:?}", r.into_inner()),
        Err(s) => (
            s.code(),
            reason_of(&s).unwrap_or_default(),
            s.message().to_owned(),
        ),
    }
}

/// Spoils one field of a good request.
type Spoil = Box<dyn Fn(&mut pb::CreateShipmentRequest)>;

struct Tokens {
    checkout: String,
    admin: String,
    ann: String,
    bob: String,
}

#[tokio::test]
async fn shipments_over_grpc_with_labels_in_s3() {
    let db = TestPostgres::new().await;
    let redis = TestRedis::new().await;
    let objects = TestObjectStorage::new();
    let config = config(&db, &redis);
    runtime::migrate(&config, &[service()])
        .await
        .expect("migrate");
    let auth = Authenticator::new(&config.auth).expect("auth");
    let ttl = Duration::from_secs(600);
    let mint = |who: &str, roles: &[&str]| {
        let roles: Vec<String> = roles.iter().map(|r| r.to_string()).collect();
        auth.mint(who, &roles, ttl).expect("token")
    };
    let t = Tokens {
        checkout: mint("checkout", &["service"]),
        admin: mint("root", &["admin"]),
        ann: mint("ann", &[]),
        bob: mint("bob", &[]),
    };
    let served = titan_kit::testing::serve(config, vec![service()]).await;
    let mut client = ShippingServiceClient::new(served.channel.clone());

    quotes(&mut client, &t).await;
    let order = format!("order-{}", rid());
    let first = create(&rid(), &order);

    // Bad input, field by field: refused before any I/O, nothing stored.
    let before = snapshot(&db, &redis).await;
    let cases: Vec<(&str, Spoil)> = vec![
        ("order_id", Box::new(|r| r.order_id.clear())),
        ("owner_id", Box::new(|r| r.owner_id = "a b".into())),
        ("from.name", Box::new(|r| r.from = None)),
        (
            "to.postcode",
            Box::new(|r| r.to.as_mut().expect("to").postcode = "53_0123".into()),
        ),
        (
            "to.country",
            Box::new(|r| r.to.as_mut().expect("to").country = "SGP".into()),
        ),
        ("parcels", Box::new(|r| r.parcels.clear())),
        (
            "parcels[1].weight_g",
            Box::new(|r| r.parcels[1].weight_g = 0),
        ),
        (
            "parcels[0].height_mm",
            Box::new(|r| r.parcels[0].height_mm = 3_001),
        ),
        ("carrier", Box::new(|r| r.carrier = "nobody".into())),
        (
            "service_level",
            Box::new(|r| r.service_level = "SLOW".into()),
        ),
        ("strategy", Box::new(|r| r.strategy = "BEST".into())),
    ];
    for (field, spoil) in &cases {
        let mut bad = create(&rid(), &order);
        spoil(&mut bad);
        let (code, reason, message) =
            refused(client.create_shipment(authed(bad.clone(), &t.checkout))).await;
        assert_eq!(
            (code, reason.as_str()),
            (Code::InvalidArgument, "INVALID_ARGUMENT"),
            "{field}: {message}"
        );
        assert!(
            message.starts_with(&format!("{field}: ")),
            "{field}: {message}"
        );
        // Not even the label of the shipment it would have been.
        let id = shipment_id(
            "checkout",
            &bad.request_id,
            &serde_json::to_vec(&raw(&bad)).expect("encode"),
        );
        let key = label_key(id).expect("key");
        assert_eq!(
            objects.storage.head(&key).await.map(|_| ()).map_err(|e| {
                use titan_kit::ServiceError;
                e.code()
            }),
            Err(titan_kit::ErrorCode::NotFound),
            "{field}"
        );
    }
    let (code, _, message) = refused(client.create_shipment(authed(
        pb::CreateShipmentRequest {
            request_id: String::new(),
            ..first.clone()
        },
        &t.checkout,
    )))
    .await;
    assert_eq!(code, Code::InvalidArgument, "{message}");
    assert!(message.starts_with("request_id is required"), "{message}");
    // A buyer may not book, even for themself; no token is no caller.
    let (code, reason, _) = refused(client.create_shipment(authed(first.clone(), &t.ann))).await;
    assert_eq!(
        (code, reason.as_str()),
        (Code::PermissionDenied, "ROLE_REQUIRED")
    );
    let (code, _, _) = refused(client.create_shipment(Request::new(first.clone()))).await;
    assert_eq!(code, Code::Unauthenticated);
    assert_eq!(snapshot(&db, &redis).await, before);

    // Booked: 1.5 kg and 0.4 kg at 500 + 100 per started kg are 700 + 600.
    let shipment = client
        .create_shipment(authed(first.clone(), &t.checkout))
        .await
        .expect("created")
        .into_inner();
    assert_eq!(
        (
            shipment.order_id.as_str(),
            shipment.owner_id.as_str(),
            shipment.carrier.as_str(),
            shipment.service_level.as_str(),
            shipment.status.as_str(),
            shipment.amount_minor,
            shipment.currency.as_str(),
            shipment.days,
        ),
        (
            order.as_str(),
            "ann",
            "flat-rate",
            "STANDARD",
            "LABEL_CREATED",
            1_300,
            "USD",
            3
        )
    );
    assert_eq!(
        shipment.label_key,
        format!("shipping/labels/{}.pdf", shipment.id)
    );
    assert!(
        shipment.tracking_number.starts_with("FR") && shipment.tracking_number.len() == 18,
        "{}",
        shipment.tracking_number
    );

    // The label is in the bucket, a 4×6 in PDF whose barcode scans to the tracking number,
    // and the signed URL on the shipment serves the same bytes.
    let stored = objects
        .storage
        .get(&ObjectKey::parse(&shipment.label_key).expect("key"))
        .await
        .expect("the label object");
    assert_eq!(stored.info.content_type.as_deref(), Some("application/pdf"));
    let dir = tempfile::tempdir().expect("a temporary directory");
    let png = rasterise_pdf(dir.path(), &shipment.tracking_number, &stored.bytes);
    assert_eq!(scan(&png), format!("CODE-128:{}", shipment.tracking_number));
    let fetched = reqwest::get(&shipment.label_url)
        .await
        .expect("GET the label URL");
    assert_eq!(fetched.status(), reqwest::StatusCode::OK);
    assert_eq!(fetched.bytes().await.expect("label bytes"), stored.bytes);

    // One row, one event, with the payload tracking reads.
    let created = payloads(&db, &redis, "shipping.shipment_created").await;
    assert_eq!(created.len(), 1);
    let p = &created[0];
    assert_eq!(
        (
            p["shipment_id"].as_str(),
            p["order_id"].as_str(),
            p["tracking_number"].as_str(),
            p["carrier"].as_str(),
            p["service_level"].as_str(),
            p["owner_id"].as_str(),
        ),
        (
            Some(shipment.id.as_str()),
            Some(order.as_str()),
            Some(shipment.tracking_number.as_str()),
            Some("flat-rate"),
            Some("STANDARD"),
            Some("ann"),
        )
    );
    assert!(p["created_at"].is_string(), "{p}");

    // The same request again answers the same shipment and writes nothing; the same id with
    // another body is refused.
    let again = client
        .create_shipment(authed(first.clone(), &t.checkout))
        .await
        .expect("replayed")
        .into_inner();
    assert_eq!(
        (
            again.id.as_str(),
            again.tracking_number.as_str(),
            again.created_at
        ),
        (
            shipment.id.as_str(),
            shipment.tracking_number.as_str(),
            shipment.created_at
        )
    );
    let mut other = first.clone();
    other.parcels.pop();
    let (code, reason, _) = refused(client.create_shipment(authed(other, &t.checkout))).await;
    assert_eq!(
        (code, reason.as_str()),
        (Code::FailedPrecondition, "REQUEST_ID_REUSED")
    );
    let after_create = snapshot(&db, &redis).await;
    assert_eq!(after_create.shipments.len(), 1);
    assert_eq!(after_create.events, ["shipping.shipment_created"]);

    reads(&mut client, &t, &shipment, &order).await;

    // Cancelled by a service, once; its event; then final.
    let cancel = pb::CancelShipmentRequest {
        request_id: rid(),
        shipment_id: shipment.id.clone(),
    };
    let (code, reason, _) = refused(client.cancel_shipment(authed(cancel.clone(), &t.ann))).await;
    assert_eq!(
        (code, reason.as_str()),
        (Code::PermissionDenied, "ROLE_REQUIRED")
    );
    let (code, _, message) = refused(client.cancel_shipment(authed(
        pb::CancelShipmentRequest {
            request_id: rid(),
            shipment_id: "nope".into(),
        },
        &t.checkout,
    )))
    .await;
    assert_eq!(code, Code::InvalidArgument);
    assert!(message.starts_with("shipment_id: "), "{message}");
    let (code, reason, _) = refused(client.cancel_shipment(authed(
        pb::CancelShipmentRequest {
            request_id: rid(),
            shipment_id: uuid::Uuid::new_v4().to_string(),
        },
        &t.checkout,
    )))
    .await;
    assert_eq!(
        (code, reason.as_str()),
        (Code::NotFound, "SHIPMENT_NOT_FOUND")
    );
    assert_eq!(snapshot(&db, &redis).await, after_create);

    let cancelled = client
        .cancel_shipment(authed(cancel.clone(), &t.checkout))
        .await
        .expect("cancelled")
        .into_inner();
    assert_eq!(cancelled.status, "CANCELLED");
    let replayed = client
        .cancel_shipment(authed(cancel.clone(), &t.checkout))
        .await
        .expect("replayed")
        .into_inner();
    assert_eq!(
        replayed,
        pb::Shipment {
            label_url: replayed.label_url.clone(),
            ..cancelled.clone()
        }
    );
    let (code, reason, message) = refused(client.cancel_shipment(authed(
        pb::CancelShipmentRequest {
            request_id: rid(),
            ..cancel
        },
        &t.admin,
    )))
    .await;
    assert_eq!(
        (code, reason.as_str(), message.as_str()),
        (
            Code::FailedPrecondition,
            "ILLEGAL_TRANSITION",
            "cannot CANCEL a shipment that is CANCELLED"
        )
    );
    let done = snapshot(&db, &redis).await;
    assert_eq!(
        done.events,
        ["shipping.shipment_created", "shipping.shipment_cancelled"]
    );
    let p = &payloads(&db, &redis, "shipping.shipment_cancelled").await[0];
    assert_eq!(
        (p["shipment_id"].as_str(), p["tracking_number"].as_str()),
        (
            Some(shipment.id.as_str()),
            Some(shipment.tracking_number.as_str())
        )
    );

    served.stop.cancel();
    served.task.await.expect("joined").expect("clean stop");
}

/// Quotes: anyone signed in, best first, bad input named.
async fn quotes(client: &mut ShippingServiceClient<Channel>, t: &Tokens) {
    let request = pb::QuoteRequest {
        from: Some(address("Titan Shop", "098585")),
        to: Some(address("Ann Tan", "530123")),
        parcels: vec![parcel(2_000)],
        ..Default::default()
    };
    let quoted = client
        .quote(authed(request.clone(), &t.ann))
        .await
        .expect("quoted")
        .into_inner();
    assert_eq!(
        quoted.quotes,
        [pb::Quote {
            carrier: "flat-rate".into(),
            service_level: "STANDARD".into(),
            amount_minor: 700,
            currency: "USD".into(),
            days: 3,
        }]
    );
    let (code, reason, _) = refused(client.quote(authed(
        pb::QuoteRequest {
            service_level: "EXPRESS".into(),
            ..request.clone()
        },
        &t.ann,
    )))
    .await;
    assert_eq!(
        (code, reason.as_str()),
        (Code::FailedPrecondition, "NO_RATE")
    );
    let (code, _, message) = refused(client.quote(authed(
        pb::QuoteRequest {
            parcels: vec![parcel(70_001)],
            ..request.clone()
        },
        &t.ann,
    )))
    .await;
    assert_eq!(code, Code::InvalidArgument);
    assert!(message.starts_with("parcels[0].weight_g: "), "{message}");
    let (code, _, _) = refused(client.quote(Request::new(request))).await;
    assert_eq!(code, Code::Unauthenticated);
}

/// Who reads a shipment and an order's list.
async fn reads(
    client: &mut ShippingServiceClient<Channel>,
    t: &Tokens,
    shipment: &pb::Shipment,
    order: &str,
) {
    let get = |id: &str| pb::GetShipmentRequest {
        shipment_id: id.into(),
    };
    for token in [&t.ann, &t.checkout, &t.admin] {
        let read = client
            .get_shipment(authed(get(&shipment.id), token))
            .await
            .expect("read")
            .into_inner();
        assert_eq!(
            (read.id.as_str(), read.tracking_number.as_str()),
            (shipment.id.as_str(), shipment.tracking_number.as_str())
        );
        assert!(read.label_url.contains(&shipment.id), "{}", read.label_url);
    }
    let (code, reason, _) = refused(client.get_shipment(authed(get(&shipment.id), &t.bob))).await;
    assert_eq!(
        (code, reason.as_str()),
        (Code::NotFound, "SHIPMENT_NOT_FOUND")
    );
    let (code, _, message) = refused(client.get_shipment(authed(get(""), &t.ann))).await;
    assert_eq!(code, Code::InvalidArgument);
    assert_eq!(message, "shipment_id: is required");

    let list = |token: &str, page_size: u32| {
        authed(
            pb::ListShipmentsRequest {
                order_id: order.into(),
                page_size,
                page_token: String::new(),
            },
            token,
        )
    };
    let all = client
        .list_shipments(list(&t.checkout, 1))
        .await
        .expect("listed")
        .into_inner();
    assert_eq!(
        (
            all.shipments
                .iter()
                .map(|s| s.id.as_str())
                .collect::<Vec<_>>(),
            all.next_page_token.as_str()
        ),
        (vec![shipment.id.as_str()], shipment.id.as_str())
    );
    let next = client
        .list_shipments(authed(
            pb::ListShipmentsRequest {
                order_id: order.into(),
                page_size: 1,
                page_token: all.next_page_token.clone(),
            },
            &t.checkout,
        ))
        .await
        .expect("listed")
        .into_inner();
    assert_eq!(
        (next.shipments.len(), next.next_page_token.as_str()),
        (0, "")
    );
    let own = client
        .list_shipments(list(&t.ann, 0))
        .await
        .expect("listed")
        .into_inner();
    assert_eq!(own.shipments.len(), 1);
    let none = client
        .list_shipments(list(&t.bob, 0))
        .await
        .expect("listed")
        .into_inner();
    assert_eq!(none.shipments.len(), 0);
    let (code, _, message) = refused(client.list_shipments(list(&t.bob, 101))).await;
    assert_eq!(code, Code::InvalidArgument);
    assert!(message.starts_with("page_size: "), "{message}");
}
