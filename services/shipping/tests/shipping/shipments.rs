//! The use cases on real PostgreSQL and S3 with carriers that fail on demand: a replay is
//! answered before any carrier is called, concurrent duplicates book one shipment, a carrier
//! that fails leaves no row, event or label and a retry then books under the same id, a
//! carrier that refuses a cancellation changes nothing, and rate shopping across carriers.

use std::sync::{
    Arc,
    atomic::{AtomicBool, AtomicUsize, Ordering},
};

use futures::{FutureExt, future::BoxFuture};
use titan_kit::{
    ErrorCode, ServiceError,
    auth::Caller,
    datastores::postgres,
    testing::{TestObjectStorage, TestPostgres, caller},
};
use titan_shipping::{
    app::{Parts, Settings, Shipping, ShippingError, label_key, shipment_id},
    carrier::{Booking, Carrier, CarrierError, QuoteRequest, Scan},
    domain::{Address, Parcel, Quote, RawShipment, ServiceLevel, Strategy, TrackingNumber},
    store::pg::PgShipments,
};

/// A carrier that quotes one level at a fixed price and fails whatever it is told to.
#[derive(Debug)]
struct Fake {
    name: &'static str,
    level: ServiceLevel,
    amount_minor: u64,
    days: u32,
    fail_quote: AtomicBool,
    fail_create: AtomicBool,
    refuse_cancel: AtomicBool,
    quotes: AtomicUsize,
    creates: AtomicUsize,
    cancels: AtomicUsize,
}

impl Fake {
    fn new(name: &'static str, level: ServiceLevel, amount_minor: u64, days: u32) -> Arc<Self> {
        Arc::new(Self {
            name,
            level,
            amount_minor,
            days,
            fail_quote: AtomicBool::new(false),
            fail_create: AtomicBool::new(false),
            refuse_cancel: AtomicBool::new(false),
            quotes: AtomicUsize::new(0),
            creates: AtomicUsize::new(0),
            cancels: AtomicUsize::new(0),
        })
    }

    fn unavailable(&self) -> CarrierError {
        CarrierError::Unavailable {
            carrier: self.name.into(),
            attempts: 3,
            cause: "connection refused".into(),
        }
    }
}

impl Carrier for Fake {
    fn name(&self) -> &str {
        self.name
    }

    fn quote<'a>(&'a self, _: &'a QuoteRequest) -> BoxFuture<'a, Result<Vec<Quote>, CarrierError>> {
        self.quotes.fetch_add(1, Ordering::SeqCst);
        let answer = if self.fail_quote.load(Ordering::SeqCst) {
            Err(self.unavailable())
        } else {
            Ok(vec![Quote {
                carrier: self.name.into(),
                level: self.level,
                amount_minor: self.amount_minor,
                currency: "USD".into(),
                days: self.days,
            }])
        };
        futures::future::ready(answer).boxed()
    }

    fn create<'a>(
        &'a self,
        booking: &'a Booking,
    ) -> BoxFuture<'a, Result<TrackingNumber, CarrierError>> {
        self.creates.fetch_add(1, Ordering::SeqCst);
        let answer = if self.fail_create.load(Ordering::SeqCst) {
            Err(self.unavailable())
        } else {
            // The same booking reference is the same number, as a real carrier's
            // idempotency key makes it.
            let hex: String = booking.reference.replace('-', "").to_uppercase();
            Ok(
                TrackingNumber::parse("tracking_number", &format!("FK{}", &hex[..16]))
                    .expect("a valid number"),
            )
        };
        futures::future::ready(answer).boxed()
    }

    fn cancel<'a>(&'a self, _: &'a TrackingNumber) -> BoxFuture<'a, Result<(), CarrierError>> {
        self.cancels.fetch_add(1, Ordering::SeqCst);
        let answer = if self.refuse_cancel.load(Ordering::SeqCst) {
            Err(CarrierError::Refused {
                carrier: self.name.into(),
                status: 409,
                message: "already picked up".into(),
            })
        } else {
            Ok(())
        };
        futures::future::ready(answer).boxed()
    }

    fn track<'a>(
        &'a self,
        _: &'a TrackingNumber,
    ) -> BoxFuture<'a, Result<Vec<Scan>, CarrierError>> {
        futures::future::ready(Ok(Vec::new())).boxed()
    }
}

struct World {
    app: Arc<Shipping<PgShipments>>,
    db: TestPostgres,
    objects: TestObjectStorage,
}

async fn world(carriers: &[Arc<Fake>]) -> World {
    let db = TestPostgres::new().await;
    postgres::migrate(&db.pool, "shipping", titan_shipping::migrator())
        .await
        .expect("migrate");
    let objects = TestObjectStorage::new();
    let app = Arc::new(Shipping::new(
        PgShipments::new(db.pool.clone(), "test".into()),
        Parts {
            carriers: carriers
                .iter()
                .map(|c| c.clone() as Arc<dyn Carrier>)
                .collect(),
            objects: objects.storage.clone(),
            settings: Settings {
                strategy: Strategy::Cheapest,
                currency: "USD".into(),
            },
            clock: Arc::new(chrono::Utc::now),
        },
    ));
    World { app, db, objects }
}

impl World {
    /// Shipment rows (id, status) and outbox event types.
    async fn stored(&self) -> (Vec<(String, String)>, Vec<String>) {
        let rows = sqlx::query_as("SELECT id::TEXT, status FROM shipping_shipments ORDER BY id")
            .fetch_all(&self.db.pool)
            .await
            .expect("rows");
        let events = sqlx::query_scalar("SELECT event_type FROM titan_outbox ORDER BY seq")
            .fetch_all(&self.db.pool)
            .await
            .expect("events");
        (rows, events)
    }

    /// Whether the label of the shipment `request_id` would book exists.
    async fn label_exists(&self, who: &Caller, request_id: &str, raw: &RawShipment) -> bool {
        let id = shipment_id(
            &who.user_id,
            request_id,
            &serde_json::to_vec(raw).expect("encode"),
        );
        match self
            .objects
            .storage
            .head(&label_key(id).expect("key"))
            .await
        {
            Ok(_) => true,
            Err(e) if e.code() == ErrorCode::NotFound => false,
            Err(e) => panic!("head: {e}"),
        }
    }
}

fn checkout() -> Caller {
    caller("checkout", &["service"])
}

fn raw() -> RawShipment {
    let address = |name: &str, postcode: &str| Address {
        name: name.into(),
        line1: "1 Harbourfront Walk".into(),
        line2: String::new(),
        city: "Singapore".into(),
        postcode: postcode.into(),
        country: "SG".into(),
    };
    RawShipment {
        order_id: "order-1".into(),
        owner_id: "ann".into(),
        from: address("Titan Shop", "098585"),
        to: address("Ann Tan", "530123"),
        parcels: vec![Parcel {
            weight_g: 900,
            length_mm: 200,
            width_mm: 150,
            height_mm: 100,
        }],
        ..RawShipment::default()
    }
}

fn rid() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn reason<T: std::fmt::Debug>(r: Result<T, ShippingError>) -> (ErrorCode, &'static str) {
    match r {
        Ok(v) => panic!("expected a refusal, got {v:?}"),
        Err(e) => (e.code(), e.reason().unwrap_or("")),
    }
}

#[tokio::test]
async fn replays_call_no_carrier_and_concurrent_duplicates_book_once() {
    let fake = Fake::new("fake", ServiceLevel::Standard, 450, 2);
    let w = world(std::slice::from_ref(&fake)).await;
    let request_id = rid();
    let booked = futures::future::join_all((0..8).map(|_| {
        let app = w.app.clone();
        let request_id = request_id.clone();
        async move { app.create_shipment(&checkout(), &request_id, &raw()).await }
    }))
    .await;
    let ids: Vec<_> = booked
        .into_iter()
        .map(|b| b.expect("booked").shipment.id)
        .collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    let (rows, events) = w.stored().await;
    assert_eq!(rows, [(ids[0].to_string(), "LABEL_CREATED".to_owned())]);
    assert_eq!(events, ["shipping.shipment_created"]);

    // Committed: a replay reads the store and asks no carrier anything.
    let (quotes, creates) = (
        fake.quotes.load(Ordering::SeqCst),
        fake.creates.load(Ordering::SeqCst),
    );
    let again = w
        .app
        .create_shipment(&checkout(), &request_id, &raw())
        .await
        .expect("replayed");
    assert_eq!(again.shipment.id, ids[0]);
    assert_eq!(
        (
            fake.quotes.load(Ordering::SeqCst),
            fake.creates.load(Ordering::SeqCst)
        ),
        (quotes, creates)
    );
    assert_eq!(w.stored().await.1.len(), 1);
}

#[tokio::test]
async fn a_failing_carrier_leaves_nothing_and_the_retry_books_the_same_id() {
    let fake = Fake::new("fake", ServiceLevel::Standard, 450, 2);
    let w = world(std::slice::from_ref(&fake)).await;
    let request_id = rid();
    fake.fail_create.store(true, Ordering::SeqCst);
    assert_eq!(
        reason(
            w.app
                .create_shipment(&checkout(), &request_id, &raw())
                .await
        ),
        (ErrorCode::Unavailable, "CARRIER_UNAVAILABLE")
    );
    assert_eq!(w.stored().await, (Vec::new(), Vec::new()));
    assert!(!w.label_exists(&checkout(), &request_id, &raw()).await);

    // Quotes fail too: the only carrier could not answer.
    fake.fail_quote.store(true, Ordering::SeqCst);
    assert_eq!(
        reason(
            w.app
                .create_shipment(&checkout(), &request_id, &raw())
                .await
        ),
        (ErrorCode::Unavailable, "CARRIER_UNAVAILABLE")
    );

    fake.fail_quote.store(false, Ordering::SeqCst);
    fake.fail_create.store(false, Ordering::SeqCst);
    let booked = w
        .app
        .create_shipment(&checkout(), &request_id, &raw())
        .await
        .expect("booked on retry");
    let expected = shipment_id(
        "checkout",
        &request_id,
        &serde_json::to_vec(&raw()).expect("encode"),
    );
    assert_eq!(booked.shipment.id, expected);
    assert!(w.label_exists(&checkout(), &request_id, &raw()).await);
}

#[tokio::test]
async fn a_refused_cancellation_changes_nothing() {
    let fake = Fake::new("fake", ServiceLevel::Standard, 450, 2);
    let w = world(std::slice::from_ref(&fake)).await;
    let booked = w
        .app
        .create_shipment(&checkout(), &rid(), &raw())
        .await
        .expect("booked");
    let id = booked.shipment.id.to_string();
    fake.refuse_cancel.store(true, Ordering::SeqCst);
    let before = w.stored().await;
    assert_eq!(
        reason(w.app.cancel_shipment(&checkout(), &rid(), &id).await),
        (ErrorCode::FailedPrecondition, "CARRIER_REFUSED")
    );
    assert_eq!(w.stored().await, before);
    fake.refuse_cancel.store(false, Ordering::SeqCst);
    let cancelled = w
        .app
        .cancel_shipment(&checkout(), &rid(), &id)
        .await
        .expect("cancelled");
    assert_eq!(cancelled.shipment.status.as_str(), "CANCELLED");
    // Final: the carrier is not asked again.
    let cancels = fake.cancels.load(Ordering::SeqCst);
    assert_eq!(
        reason(w.app.cancel_shipment(&checkout(), &rid(), &id).await),
        (ErrorCode::FailedPrecondition, "ILLEGAL_TRANSITION")
    );
    assert_eq!(fake.cancels.load(Ordering::SeqCst), cancels);
}

#[tokio::test]
async fn rate_shopping_across_carriers() {
    let cheap = Fake::new("cheap", ServiceLevel::Economy, 300, 6);
    let fast = Fake::new("fast", ServiceLevel::Express, 1_200, 1);
    let w = world(&[cheap.clone(), fast.clone()]).await;
    let quote = |strategy: &str| {
        let app = w.app.clone();
        let mut q = raw().quote();
        q.strategy = strategy.into();
        async move {
            app.quote(&caller("ann", &[]), &q)
                .await
                .map(|qs| qs.into_iter().map(|q| q.carrier).collect::<Vec<_>>())
        }
    };
    assert_eq!(quote("").await.expect("quoted"), ["cheap", "fast"]);
    assert_eq!(quote("FASTEST").await.expect("quoted"), ["fast", "cheap"]);
    // One carrier down: the other still answers; both down: unavailable.
    cheap.fail_quote.store(true, Ordering::SeqCst);
    assert_eq!(quote("").await.expect("quoted"), ["fast"]);
    let booked = w
        .app
        .create_shipment(&checkout(), &rid(), &raw())
        .await
        .expect("booked with the one that answered");
    assert_eq!(
        (
            booked.shipment.carrier.as_str(),
            booked.shipment.amount_minor
        ),
        ("fast", 1_200)
    );
    fast.fail_quote.store(true, Ordering::SeqCst);
    assert_eq!(
        reason(quote("").await),
        (ErrorCode::Unavailable, "CARRIER_UNAVAILABLE")
    );
    // A level no carrier offers.
    cheap.fail_quote.store(false, Ordering::SeqCst);
    fast.fail_quote.store(false, Ordering::SeqCst);
    let mut overnight = raw();
    overnight.service_level = "OVERNIGHT".into();
    assert_eq!(
        reason(w.app.create_shipment(&checkout(), &rid(), &overnight).await),
        (ErrorCode::FailedPrecondition, "NO_RATE")
    );
}
