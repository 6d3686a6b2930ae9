//! Shipping's use cases over a [`ShippingStore`] (PostgreSQL), the enabled carriers and the
//! cell's object storage: the caller comes from the token and its roles decide what it may do
//! (services and admins book and cancel, a shipment's owner reads it, anyone signed in
//! quotes), every input is parsed before any I/O, and every mutation is idempotent by its
//! `request_id` — a replay is answered from the store before any carrier is called.

use std::{future::Future, sync::Arc, time::Duration};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use titan_kit::{
    Clock, ErrorCode, KitError, ServiceError,
    auth::Caller,
    idempotency::{self, IdempotencyError},
    input::ident,
    objects::{ObjectKey, ObjectStorage},
};
use uuid::Uuid;

use crate::{
    carrier::{Booking, Carrier, CarrierError, QuoteRequest},
    domain::{
        Address, IllegalTransition, InputError, LabelLayout, Parcel, Quote, QuoteQuery, RawQuote,
        RawShipment, SERVICE, ServiceLevel, ShipmentAction, ShipmentRequest, ShipmentStatus,
        Strategy, TrackingNumber, shop,
    },
    label,
};

/// Other services (checkout, order management): book and cancel shipments, read any.
pub const SERVICE_ROLE: &str = "service";
/// May do anything a service may.
pub const ADMIN_ROLE: &str = "admin";
/// Largest page of a list.
pub const MAX_PAGE: u32 = 100;
/// How long a label URL stays valid: long enough to print, short enough that a leaked URL
/// soon stops working; GetShipment signs a fresh one.
pub const LABEL_URL_TTL: Duration = Duration::from_secs(15 * 60);

#[derive(Debug, thiserror::Error)]
pub enum ShippingError {
    #[error(transparent)]
    Invalid(#[from] InputError),
    #[error(transparent)]
    Illegal(#[from] IllegalTransition),
    #[error("this call needs one of the roles {0}; the token has none of them")]
    Forbidden(&'static str),
    #[error("shipment {0} does not exist")]
    NotFound(Uuid),
    #[error("{0}")]
    NoRate(String),
    #[error("carrier {0} of this shipment is no longer enabled in this cell")]
    CarrierNotEnabled(String),
    #[error(transparent)]
    Carrier(#[from] CarrierError),
    #[error(transparent)]
    Idempotency(#[from] IdempotencyError),
    #[error(transparent)]
    Kit(#[from] KitError),
}

titan_kit::datastore_errors!(ShippingError);

impl ServiceError for ShippingError {
    fn code(&self) -> ErrorCode {
        match self {
            Self::Invalid(_) => ErrorCode::InvalidArgument,
            Self::Illegal(_) | Self::NoRate(_) | Self::CarrierNotEnabled(_) => {
                ErrorCode::FailedPrecondition
            }
            Self::Forbidden(_) => ErrorCode::PermissionDenied,
            Self::NotFound(_) => ErrorCode::NotFound,
            Self::Carrier(e) => e.code(),
            Self::Idempotency(e) => e.code(),
            Self::Kit(e) => e.code(),
        }
    }

    fn reason(&self) -> Option<&'static str> {
        Some(match self {
            Self::Invalid(_) => "INVALID_ARGUMENT",
            Self::Illegal(_) => "ILLEGAL_TRANSITION",
            Self::Forbidden(_) => "ROLE_REQUIRED",
            Self::NotFound(_) => "SHIPMENT_NOT_FOUND",
            Self::NoRate(_) => "NO_RATE",
            Self::CarrierNotEnabled(_) => "CARRIER_NOT_ENABLED",
            Self::Carrier(e) => return e.reason(),
            Self::Idempotency(e) => return e.reason(),
            Self::Kit(_) => return None,
        })
    }
}

/// A booked shipment as stored and answered (the label URL aside).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shipment {
    pub id: Uuid,
    pub order_id: String,
    pub owner_id: String,
    pub carrier: String,
    pub service_level: ServiceLevel,
    pub tracking_number: String,
    pub status: ShipmentStatus,
    pub from: Address,
    pub to: Address,
    pub parcels: Vec<Parcel>,
    pub amount_minor: u64,
    pub currency: String,
    pub days: u32,
    pub label_key: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A shipment with a freshly signed URL of its label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Labelled {
    pub shipment: Shipment,
    pub label_url: String,
}

/// A shipment to record, with who asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewShipment {
    pub shipment: Shipment,
    pub created_by: String,
    pub request_id: String,
}

/// Shipments with their idempotency keys and outbox events.
pub trait ShippingStore: Send + Sync + 'static {
    /// The shipment a committed call of `key` answered, if any; `REQUEST_ID_REUSED` when the
    /// id came with another body.
    fn replay(
        &self,
        key: &idempotency::Key,
    ) -> impl Future<Output = Result<Option<Shipment>, ShippingError>> + Send;

    /// Records the shipment, its `shipping.shipment_created` event and the key's answer in
    /// one transaction; a concurrent duplicate of `key` answers the first one's shipment.
    fn create(
        &self,
        key: &idempotency::Key,
        new: &NewShipment,
    ) -> impl Future<Output = Result<Shipment, ShippingError>> + Send;

    fn shipment(
        &self,
        id: Uuid,
    ) -> impl Future<Output = Result<Option<Shipment>, ShippingError>> + Send;

    /// LABEL_CREATED → CANCELLED with its `shipping.shipment_cancelled` event and the key's
    /// answer in one transaction; the row's status is the guard.
    fn cancel(
        &self,
        key: &idempotency::Key,
        id: Uuid,
        at: DateTime<Utc>,
    ) -> impl Future<Output = Result<Shipment, ShippingError>> + Send;

    /// The order's shipments (only `owner`'s when set), oldest first, after the shipment
    /// `after`, at most `limit`.
    fn by_order(
        &self,
        order_id: &str,
        owner: Option<&str>,
        after: Option<Uuid>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Shipment>, ShippingError>> + Send;
}

/// The service's settings that the use cases read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The winner when a request names no strategy.
    pub strategy: Strategy,
    /// The currency quotes are compared in (the flat-rate table's).
    pub currency: String,
}

/// Everything the use cases run over besides the store.
pub struct Parts {
    /// The enabled carriers.
    pub carriers: Vec<Arc<dyn Carrier>>,
    pub objects: ObjectStorage,
    pub settings: Settings,
    pub clock: Clock,
}

impl std::fmt::Debug for Parts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parts")
            .field("carriers", &self.carriers)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// The service's use cases.
pub struct Shipping<S> {
    store: S,
    carriers: Vec<Arc<dyn Carrier>>,
    objects: ObjectStorage,
    settings: Settings,
    clock: Clock,
}

impl<S: std::fmt::Debug> std::fmt::Debug for Shipping<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shipping")
            .field("store", &self.store)
            .field("carriers", &self.carriers)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

fn allow(caller: &Caller, roles: &[&str], roles_text: &'static str) -> Result<(), ShippingError> {
    if roles.iter().any(|r| caller.has_role(r)) {
        Ok(())
    } else {
        Err(ShippingError::Forbidden(roles_text))
    }
}

/// Books and cancels shipments, reads any.
fn writer(caller: &Caller) -> Result<(), ShippingError> {
    allow(caller, &[SERVICE_ROLE, ADMIN_ROLE], "service, admin")
}

fn reads_any(caller: &Caller) -> bool {
    caller.has_role(SERVICE_ROLE) || caller.has_role(ADMIN_ROLE)
}

fn page(field: &str, size: u32) -> Result<u32, InputError> {
    titan_kit::input::page_size(field, size, MAX_PAGE)
}

fn encode(body: &impl Serialize) -> Result<Vec<u8>, ShippingError> {
    serde_json::to_vec(body)
        .map_err(|e| KitError::Other(format!("cannot encode a request: {e}")).into())
}

/// The shipment id of a create call: derived from the caller, the request id and the request,
/// so a retry after a crash books the same shipment with the carrier (its idempotency key)
/// and writes the same label object, while another body under the same id gets another.
pub fn shipment_id(user_id: &str, request_id: &str, body: &[u8]) -> Uuid {
    let mut hash = Sha256::new();
    hash.update(idempotency::composite(&[user_id, request_id]));
    hash.update(body);
    let digest = hash.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// Where a shipment's label is stored: `shipping/labels/<id>.pdf`.
pub fn label_key(id: Uuid) -> Result<ObjectKey, KitError> {
    ObjectKey::new([SERVICE, "labels", &format!("{id}.pdf")])
        .map_err(|e| KitError::Other(e.to_string()))
}

impl<S: ShippingStore> Shipping<S> {
    pub fn new(store: S, parts: Parts) -> Self {
        Self {
            store,
            carriers: parts.carriers,
            objects: parts.objects,
            settings: parts.settings,
            clock: parts.clock,
        }
    }

    /// The carriers a request may use: all enabled ones, or the one it names.
    fn eligible(&self, named: Option<&str>) -> Result<Vec<Arc<dyn Carrier>>, InputError> {
        let Some(name) = named else {
            return Ok(self.carriers.clone());
        };
        let found: Vec<_> = self
            .carriers
            .iter()
            .filter(|c| c.name() == name)
            .cloned()
            .collect();
        if found.is_empty() {
            let enabled: Vec<&str> = self.carriers.iter().map(|c| c.name()).collect();
            return Err(InputError::new(
                "carrier",
                format!(
                    "{name:?} is not an enabled carrier; enabled: {}",
                    enabled.join(", ")
                ),
            ));
        }
        Ok(found)
    }

    /// Every eligible carrier's quotes for `query`, asked at once, best first. A carrier
    /// that fails is left out while another answers; when none does, the refusal is the
    /// first carrier that could not answer (worth a retry), else the first that refused.
    async fn shop(
        &self,
        carriers: &[Arc<dyn Carrier>],
        query: &QuoteQuery,
    ) -> Result<Vec<Quote>, ShippingError> {
        let request = QuoteRequest {
            from: query.from.clone(),
            to: query.to.clone(),
            parcels: query.parcels.clone(),
        };
        let answers = futures::future::join_all(carriers.iter().map(|c| c.quote(&request))).await;
        let mut quotes = Vec::new();
        let mut errors = Vec::new();
        for answer in answers {
            match answer {
                Ok(q) => quotes.extend(q),
                Err(e) => errors.push(e),
            }
        }
        if let Some(level) = query.service_level {
            quotes.retain(|q| q.level == level);
        }
        let strategy = query.strategy.unwrap_or(self.settings.strategy);
        let ranked = shop(quotes, strategy, &self.settings.currency);
        if !ranked.is_empty() {
            return Ok(ranked);
        }
        let retry = errors
            .iter()
            .position(|e| e.code() == ErrorCode::Unavailable);
        if let Some(i) = retry.or((!errors.is_empty()).then_some(0)) {
            return Err(errors.swap_remove(i).into());
        }
        Err(ShippingError::NoRate(format!(
            "no enabled carrier quotes {} in {} to {} {}",
            query
                .service_level
                .map_or("any service level".to_owned(), |l| l.to_string()),
            self.settings.currency,
            query.to.country,
            query.to.postcode
        )))
    }

    /// Anyone signed in: the quotes for a shipment, best first.
    pub async fn quote(
        &self,
        _caller: &Caller,
        raw: &RawQuote,
    ) -> Result<Vec<Quote>, ShippingError> {
        let query = QuoteQuery::parse(raw)?;
        let carriers = self.eligible(query.carrier.as_deref())?;
        self.shop(&carriers, &query).await
    }

    /// A service books a shipment for an order: the replay of `request_id` if it was
    /// recorded, else the best quote booked with its carrier, the label rendered and stored,
    /// then the row, its event and the answer in one transaction.
    pub async fn create_shipment(
        &self,
        caller: &Caller,
        request_id: &str,
        raw: &RawShipment,
    ) -> Result<Labelled, ShippingError> {
        writer(caller)?;
        let request = ShipmentRequest::parse(raw)?;
        let carriers = self.eligible(request.carrier.as_deref())?;
        let body = encode(raw)?;
        let key = idempotency::Key::new(
            SERVICE,
            "CreateShipment",
            &caller.user_id,
            request_id,
            &body,
        )?;
        if let Some(done) = self.store.replay(&key).await? {
            return self.labelled(done).await;
        }
        let query = request.query();
        let best = self
            .shop(&carriers, &query)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| KitError::Other("a ranked quote list came back empty".into()))?;
        let carrier = carriers
            .iter()
            .find(|c| c.name() == best.carrier)
            .ok_or_else(|| {
                KitError::Other(format!(
                    "carrier {} quoted but is not eligible",
                    best.carrier
                ))
            })?;
        let id = shipment_id(&caller.user_id, request_id, &body);
        let booking = Booking {
            reference: id.to_string(),
            service_level: best.level,
            from: request.from.clone(),
            to: request.to.clone(),
            parcels: request.parcels.clone(),
        };
        let tracking = carrier.create(&booking).await?;
        let layout = LabelLayout::new(
            &request.from,
            &request.to,
            carrier.name(),
            best.level,
            &tracking,
        )
        .map_err(KitError::Other)?;
        let object = label_key(id)?;
        // Stored before the row: a crash in between leaves an object the retry overwrites
        // with the same bytes (same id, same tracking number), never a row without its label.
        self.objects
            .put(
                &object,
                label::CONTENT_TYPE,
                Bytes::from(label::render(&layout)),
            )
            .await?;
        let now = (self.clock)();
        let new = NewShipment {
            shipment: Shipment {
                id,
                order_id: request.order_id,
                owner_id: request.owner_id,
                carrier: best.carrier,
                service_level: best.level,
                tracking_number: tracking.as_str().to_owned(),
                status: ShipmentStatus::LabelCreated,
                from: request.from,
                to: request.to,
                parcels: request.parcels,
                amount_minor: best.amount_minor,
                currency: best.currency,
                days: best.days,
                label_key: object.as_str().to_owned(),
                created_at: now,
                updated_at: now,
            },
            created_by: caller.user_id.clone(),
            request_id: request_id.to_owned(),
        };
        let stored = self.store.create(&key, &new).await?;
        self.labelled(stored).await
    }

    /// The owner, a service or an admin: one shipment. Anyone else is told it does not
    /// exist, so ids cannot be probed.
    pub async fn get_shipment(&self, caller: &Caller, id: &str) -> Result<Labelled, ShippingError> {
        let id = titan_kit::input::uuid("shipment_id", id)?;
        let shipment = self
            .store
            .shipment(id)
            .await?
            .filter(|s| reads_any(caller) || s.owner_id == caller.user_id)
            .ok_or(ShippingError::NotFound(id))?;
        self.labelled(shipment).await
    }

    /// A service cancels a shipment before pickup: refused unless LABEL_CREATED, then the
    /// carrier's cancellation, then CANCELLED and its event in one transaction.
    pub async fn cancel_shipment(
        &self,
        caller: &Caller,
        request_id: &str,
        id: &str,
    ) -> Result<Labelled, ShippingError> {
        writer(caller)?;
        let shipment_id = titan_kit::input::uuid("shipment_id", id)?;
        let key = idempotency::Key::new(
            SERVICE,
            "CancelShipment",
            &caller.user_id,
            request_id,
            id.as_bytes(),
        )?;
        if let Some(done) = self.store.replay(&key).await? {
            return self.labelled(done).await;
        }
        let current = self
            .store
            .shipment(shipment_id)
            .await?
            .ok_or(ShippingError::NotFound(shipment_id))?;
        // Refused before the carrier hears of it; the store checks again under its guard.
        ShipmentAction::Cancel.apply(current.status)?;
        let carrier = self
            .carriers
            .iter()
            .find(|c| c.name() == current.carrier)
            .ok_or_else(|| ShippingError::CarrierNotEnabled(current.carrier.clone()))?;
        let tracking = TrackingNumber::parse("tracking_number", &current.tracking_number)
            .map_err(|e| KitError::Other(format!("stored shipment {shipment_id}: {e}")))?;
        carrier.cancel(&tracking).await?;
        let cancelled = self.store.cancel(&key, shipment_id, (self.clock)()).await?;
        self.labelled(cancelled).await
    }

    /// An order's shipments, oldest first: all of them for a service or an admin, the
    /// caller's own for anyone else. The next page's token when this one is full.
    pub async fn list_shipments(
        &self,
        caller: &Caller,
        order_id: &str,
        page_size: u32,
        page_token: &str,
    ) -> Result<(Vec<Labelled>, Option<Uuid>), ShippingError> {
        let order_id = ident("order_id", order_id)?;
        let limit = page("page_size", page_size)?;
        let after = if page_token.is_empty() {
            None
        } else {
            Some(titan_kit::input::uuid("page_token", page_token)?)
        };
        let owner = (!reads_any(caller)).then_some(caller.user_id.as_str());
        let shipments = self.store.by_order(order_id, owner, after, limit).await?;
        let next = (shipments.len() == limit as usize)
            .then(|| shipments.last().map(|s| s.id))
            .flatten();
        let mut out = Vec::with_capacity(shipments.len());
        for s in shipments {
            out.push(self.labelled(s).await?);
        }
        Ok((out, next))
    }

    /// `shipment` with a label URL signed now (locally: no request to the store).
    async fn labelled(&self, shipment: Shipment) -> Result<Labelled, ShippingError> {
        let key = ObjectKey::parse(&shipment.label_key)
            .map_err(|e| KitError::Other(format!("stored label key: {e}")))?;
        let label_url = self.objects.presigned_get(&key, LABEL_URL_TTL).await?;
        Ok(Labelled {
            shipment,
            label_url,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipment_ids_follow_caller_request_and_body() {
        let a = shipment_id("checkout", "r-1", b"{}");
        assert_eq!(a, shipment_id("checkout", "r-1", b"{}"));
        assert_ne!(a, shipment_id("checkout", "r-2", b"{}"));
        assert_ne!(a, shipment_id("checkout", "r-1", b"{ }"));
        assert_ne!(a, shipment_id("other", "r-1", b"{}"));
        // Parts are length-prefixed: moving characters between them changes the id.
        assert_ne!(shipment_id("ab", "c", b""), shipment_id("a", "bc", b""));
    }

    #[test]
    fn labels_live_under_shipping_labels() {
        let id = Uuid::nil();
        assert_eq!(
            label_key(id).map(|k| k.as_str().to_owned()).ok(),
            Some("shipping/labels/00000000-0000-0000-0000-000000000000.pdf".to_owned())
        );
    }

    #[test]
    fn pages_are_bounded() {
        assert_eq!(page("page_size", 0), Ok(MAX_PAGE));
        assert_eq!(page("page_size", 7), Ok(7));
        assert_eq!(
            page("page_size", MAX_PAGE + 1).map_err(|e| e.field),
            Err("page_size".to_owned())
        );
    }
}
