//! Warehouse's use cases over a [`WarehouseStore`] (PostgreSQL): the caller comes from the
//! token and its roles decide what it may do (admins define warehouses and bins, warehouse
//! staff move stock and pick, services reserve for orders), every input is parsed before any
//! I/O, and every mutation is idempotent by its `request_id`.

use std::future::Future;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use titan_kit::{
    Clock, ErrorCode, KitError, ServiceError,
    auth::Caller,
    idempotency::{self, IdempotencyError},
    input::ident,
};
use uuid::Uuid;

use crate::domain::{
    Adjustment, BinCode, Delta, IllegalTransition, InputError, Location, NewWarehouse, OrderLine,
    Preference, Putaway, Quantity, ReceiptKind, ReservationAction, SERVICE, Shortage, Ttl,
    WarehouseCode, WarehouseStatus, ZoneCode, bin::MAX_BIN_CAPACITY, parse_lines,
    stock::MAX_REFERENCE, warehouse::text,
};

/// Warehouse staff: receive, adjust and transfer stock, putaway, pick lists, pick and ship.
pub const STAFF_ROLE: &str = "warehouse";
/// Defines warehouses, zones and bins, and may do anything staff and services may.
pub const ADMIN_ROLE: &str = "admin";
/// Other services (checkout, order management): reserve and release for orders.
pub const SERVICE_ROLE: &str = "service";
/// Largest page of a list.
pub const MAX_PAGE: u32 = 100;

#[derive(Debug, thiserror::Error)]
pub enum WarehouseError {
    #[error(transparent)]
    Invalid(#[from] InputError),
    #[error(transparent)]
    Illegal(#[from] IllegalTransition),
    #[error("this call needs one of the roles {0}; the token has none of them")]
    Forbidden(&'static str),
    #[error("a warehouse with code {0} already exists")]
    CodeTaken(String),
    #[error("warehouse {warehouse} already has a bin {bin}")]
    BinTaken { warehouse: String, bin: String },
    #[error("warehouse {0} does not exist")]
    UnknownWarehouse(String),
    #[error("warehouse {warehouse} has no bin {bin}")]
    UnknownBin { warehouse: String, bin: String },
    #[error("reservation {0} does not exist")]
    UnknownReservation(Uuid),
    #[error("{product_id} in {warehouse} bin {bin}: {available} available, {wanted} needed")]
    InsufficientStock {
        warehouse: String,
        bin: String,
        product_id: String,
        available: i64,
        wanted: i64,
    },
    #[error("bin {bin} of {warehouse} has room for {free} more units, not {wanted}")]
    BinFull {
        warehouse: String,
        bin: String,
        free: i64,
        wanted: i64,
    },
    #[error(
        "warehouse {warehouse} holds {capacity} units and its bins already take {allotted}; a bin of {wanted} does not fit"
    )]
    OverCapacity {
        warehouse: String,
        capacity: i64,
        allotted: i64,
        wanted: i64,
    },
    #[error("no ACTIVE warehouse has any of the order's products: {}", shortages(.0))]
    OutOfStock(Vec<Shortage>),
    #[error("order {0} already has an open reservation")]
    OrderReserved(String),
    #[error(transparent)]
    Idempotency(#[from] IdempotencyError),
    #[error(transparent)]
    Kit(#[from] KitError),
}

fn shortages(s: &[Shortage]) -> String {
    s.iter()
        .map(|s| format!("{} short {} of {}", s.product_id, s.short, s.requested))
        .collect::<Vec<_>>()
        .join(", ")
}

titan_kit::datastore_errors!(WarehouseError);

impl ServiceError for WarehouseError {
    fn code(&self) -> ErrorCode {
        match self {
            Self::Invalid(_) => ErrorCode::InvalidArgument,
            Self::Illegal(_)
            | Self::InsufficientStock { .. }
            | Self::BinFull { .. }
            | Self::OverCapacity { .. }
            | Self::OutOfStock(_) => ErrorCode::FailedPrecondition,
            Self::Forbidden(_) => ErrorCode::PermissionDenied,
            Self::CodeTaken(_) | Self::BinTaken { .. } | Self::OrderReserved(_) => {
                ErrorCode::AlreadyExists
            }
            Self::UnknownWarehouse(_) | Self::UnknownBin { .. } | Self::UnknownReservation(_) => {
                ErrorCode::NotFound
            }
            Self::Idempotency(e) => e.code(),
            Self::Kit(e) => e.code(),
        }
    }

    fn reason(&self) -> Option<&'static str> {
        Some(match self {
            Self::Invalid(_) => "INVALID_ARGUMENT",
            Self::Illegal(_) => "ILLEGAL_TRANSITION",
            Self::Forbidden(_) => "ROLE_REQUIRED",
            Self::CodeTaken(_) => "CODE_TAKEN",
            Self::BinTaken { .. } => "BIN_TAKEN",
            Self::UnknownWarehouse(_) => "WAREHOUSE_NOT_FOUND",
            Self::UnknownBin { .. } => "BIN_NOT_FOUND",
            Self::UnknownReservation(_) => "RESERVATION_NOT_FOUND",
            Self::InsufficientStock { .. } => "INSUFFICIENT_STOCK",
            Self::BinFull { .. } => "BIN_FULL",
            Self::OverCapacity { .. } => "WAREHOUSE_CAPACITY",
            Self::OutOfStock(_) => "OUT_OF_STOCK",
            Self::OrderReserved(_) => "ORDER_ALREADY_RESERVED",
            Self::Idempotency(e) => return e.reason(),
            Self::Kit(_) => return None,
        })
    }
}

/// A warehouse as the service answers it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Warehouse {
    pub id: Uuid,
    pub code: String,
    pub name: String,
    pub address: String,
    pub lat: f64,
    pub lng: f64,
    pub status: String,
    pub capacity: i64,
    pub priority: i32,
}

/// A bin as the service answers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bin {
    pub id: Uuid,
    pub warehouse: String,
    pub zone: String,
    pub code: String,
    pub capacity: i64,
}

/// One stock row after a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Level {
    pub warehouse: String,
    pub bin: String,
    pub product_id: String,
    pub available: i64,
    pub reserved: i64,
}

/// A stock change: the movement rows written and the rows they changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Moved {
    pub movements: Vec<i64>,
    pub levels: Vec<Level>,
}

/// A movement row of the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Movement {
    pub id: i64,
    pub warehouse: String,
    pub bin: String,
    pub product_id: String,
    pub kind: String,
    pub available_delta: i64,
    pub reserved_delta: i64,
    pub reference: String,
    pub by: String,
    pub at: DateTime<Utc>,
}

/// Units of one product reserved in one bin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReservedLine {
    pub warehouse: String,
    pub bin: String,
    pub product_id: String,
    pub quantity: i64,
}

/// What of an order line could not be reserved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Short {
    pub product_id: String,
    pub requested: i64,
    pub short: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    pub id: Uuid,
    pub order_id: String,
    pub status: String,
    pub expires_at: DateTime<Utc>,
    /// In warehouse order, then bin walk order.
    pub lines: Vec<ReservedLine>,
    /// What the order asked for and no ACTIVE warehouse had when it was reserved.
    pub short: Vec<Short>,
}

/// One line of a pick list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PickLine {
    pub bin: String,
    pub product_id: String,
    pub quantity: i64,
    pub reservation_id: Uuid,
    pub order_id: String,
}

/// Where a stock change happens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    pub warehouse: WarehouseCode,
    pub bin: BinCode,
    pub product_id: String,
}

/// A change to one stock row (receipt or adjustment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub place: Place,
    pub delta: Delta,
    pub reference: String,
    pub by: String,
    pub at: DateTime<Utc>,
}

/// A transfer of available units between two bins (of one or two warehouses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    pub from: Place,
    pub to: Place,
    pub quantity: Quantity,
    pub reference: String,
    pub by: String,
    pub at: DateTime<Utc>,
}

/// An order to allocate and reserve.
#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    pub id: Uuid,
    pub order_id: String,
    pub destination: Location,
    pub lines: Vec<OrderLine>,
    pub preference: Preference,
    pub by: String,
    pub at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// Warehouses, bins, the stock ledger and reservations, with idempotency keys and the outbox.
pub trait WarehouseStore: Send + Sync + 'static {
    fn create_warehouse(
        &self,
        key: &idempotency::Key,
        w: &NewWarehouse,
        at: DateTime<Utc>,
    ) -> impl Future<Output = Result<Warehouse, WarehouseError>> + Send;

    fn set_status(
        &self,
        key: &idempotency::Key,
        code: &WarehouseCode,
        status: WarehouseStatus,
    ) -> impl Future<Output = Result<Warehouse, WarehouseError>> + Send;

    /// Warehouses by code after `after`, at most `limit`.
    fn warehouses(
        &self,
        after: Option<&WarehouseCode>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Warehouse>, WarehouseError>> + Send;

    /// A bin in a zone; the warehouse's bins together may not hold more than its capacity.
    fn create_bin(
        &self,
        key: &idempotency::Key,
        warehouse: &WarehouseCode,
        zone: &ZoneCode,
        bin: &BinCode,
        capacity: i64,
    ) -> impl Future<Output = Result<Bin, WarehouseError>> + Send;

    /// One guarded change of one stock row and its movement, in one transaction.
    fn change(
        &self,
        key: &idempotency::Key,
        change: &Change,
    ) -> impl Future<Output = Result<Moved, WarehouseError>> + Send;

    /// Both legs of a transfer, in one transaction.
    fn transfer(
        &self,
        key: &idempotency::Key,
        transfer: &Transfer,
    ) -> impl Future<Output = Result<Moved, WarehouseError>> + Send;

    /// Stock rows of a product, in every warehouse, in code then bin order.
    fn stock(
        &self,
        product_id: &str,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Level>, WarehouseError>> + Send;

    /// Movements of a product in a warehouse, newest first, before the id `before`.
    fn movements(
        &self,
        warehouse: &WarehouseCode,
        product_id: &str,
        before: Option<i64>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Movement>, WarehouseError>> + Send;

    /// Allocates `order` over the locked stock rows of its products and reserves the picks;
    /// [`WarehouseError::OutOfStock`] when nothing at all can be reserved.
    fn reserve(
        &self,
        key: &idempotency::Key,
        order: &Order,
    ) -> impl Future<Output = Result<Reservation, WarehouseError>> + Send;

    /// Moves a reservation by `action` (pick, ship, release), with the stock movements it
    /// makes; the reservation row is the guard.
    fn advance(
        &self,
        key: &idempotency::Key,
        id: Uuid,
        action: ReservationAction,
        by: &str,
        at: DateTime<Utc>,
    ) -> impl Future<Output = Result<Reservation, WarehouseError>> + Send;

    fn reservation(
        &self,
        id: Uuid,
    ) -> impl Future<Output = Result<Option<Reservation>, WarehouseError>> + Send;

    /// Releases up to `limit` RESERVED reservations that expired by `now` (EXPIRED), unless
    /// another replica is doing it; returns how many.
    fn expire(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> impl Future<Output = Result<u32, WarehouseError>> + Send;

    /// Bins of the warehouse with their room and whether they hold `product_id`.
    fn slots(
        &self,
        warehouse: &WarehouseCode,
        product_id: &str,
    ) -> impl Future<Output = Result<Vec<crate::domain::Slot>, WarehouseError>> + Send;

    /// Lines of the oldest RESERVED reservations in the warehouse, at most `limit`.
    fn open_lines(
        &self,
        warehouse: &WarehouseCode,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<(BinCode, PickLine)>, WarehouseError>> + Send;
}

/// The service's settings that the use cases read.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub preference: Preference,
    pub picking_list_max_lines: u32,
}

/// The service's use cases.
pub struct Warehouses<S> {
    store: S,
    settings: Settings,
    clock: Clock,
}

impl<S: std::fmt::Debug> std::fmt::Debug for Warehouses<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Warehouses")
            .field("store", &self.store)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// The idempotency key of a call: the request's fields, serialised, so a reused request id
/// with other fields is refused.
fn key(
    method: &'static str,
    caller: &Caller,
    request_id: &str,
    body: &impl Serialize,
) -> Result<idempotency::Key, WarehouseError> {
    let body = serde_json::to_vec(body)
        .map_err(|e| KitError::Other(format!("cannot encode a request: {e}")))?;
    Ok(idempotency::Key::new(
        SERVICE,
        method,
        &caller.user_id,
        request_id,
        &body,
    )?)
}

/// Refuses a caller with none of `roles` (`roles_text` names them for the message).
fn allow(caller: &Caller, roles: &[&str], roles_text: &'static str) -> Result<(), WarehouseError> {
    if roles.iter().any(|r| caller.has_role(r)) {
        Ok(())
    } else {
        Err(WarehouseError::Forbidden(roles_text))
    }
}

fn admin(caller: &Caller) -> Result<(), WarehouseError> {
    allow(caller, &[ADMIN_ROLE], "admin")
}

fn staff(caller: &Caller) -> Result<(), WarehouseError> {
    allow(caller, &[STAFF_ROLE, ADMIN_ROLE], "warehouse, admin")
}

fn service(caller: &Caller) -> Result<(), WarehouseError> {
    allow(caller, &[SERVICE_ROLE, ADMIN_ROLE], "service, admin")
}

fn reader(caller: &Caller) -> Result<(), WarehouseError> {
    allow(
        caller,
        &[STAFF_ROLE, SERVICE_ROLE, ADMIN_ROLE],
        "warehouse, service, admin",
    )
}

fn reference(field: &str, s: &str, required: bool) -> Result<String, InputError> {
    if s.trim().is_empty() && !required {
        return Ok(String::new());
    }
    text(field, s, MAX_REFERENCE)
}

fn page(field: &str, size: u32) -> Result<u32, InputError> {
    titan_kit::input::page_size(field, size, MAX_PAGE)
}

/// A place as a request names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PlaceRef<'a> {
    pub warehouse: &'a str,
    pub bin: &'a str,
    pub product_id: &'a str,
}

impl PlaceRef<'_> {
    /// `prefix` is the request field the place came in (`""`, `from.`, `to.`).
    fn parse(&self, prefix: &str) -> Result<Place, InputError> {
        Ok(Place {
            warehouse: WarehouseCode::parse(&format!("{prefix}warehouse"), self.warehouse)?,
            bin: BinCode::parse(&format!("{prefix}bin"), self.bin)?,
            product_id: ident(format!("{prefix}product_id"), self.product_id)?.to_owned(),
        })
    }
}

/// A warehouse as an admin sends it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WarehouseForm<'a> {
    pub code: &'a str,
    pub name: &'a str,
    pub address: &'a str,
    pub lat: f64,
    pub lng: f64,
    pub capacity: i64,
    pub priority: i32,
}

/// An order as a service sends it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OrderForm<'a> {
    pub order_id: &'a str,
    pub lat: f64,
    pub lng: f64,
    pub lines: &'a [(String, i64)],
    pub ttl_seconds: i64,
}

impl<S: WarehouseStore> Warehouses<S> {
    pub fn new(store: S, settings: Settings, clock: Clock) -> Self {
        Self {
            store,
            settings,
            clock,
        }
    }

    /// An admin defines a warehouse, ACTIVE.
    pub async fn create_warehouse(
        &self,
        caller: &Caller,
        request_id: &str,
        f: &WarehouseForm<'_>,
    ) -> Result<Warehouse, WarehouseError> {
        admin(caller)?;
        let w = NewWarehouse::parse(
            f.code,
            f.name,
            f.address,
            (f.lat, f.lng),
            f.capacity,
            f.priority,
        )?;
        let key = key("CreateWarehouse", caller, request_id, f)?;
        self.store.create_warehouse(&key, &w, (self.clock)()).await
    }

    /// An admin sets a warehouse ACTIVE, INACTIVE or MAINTENANCE; only ACTIVE ones are
    /// allocated from, stock stays where it is.
    pub async fn set_status(
        &self,
        caller: &Caller,
        request_id: &str,
        code: &str,
        status: &str,
    ) -> Result<Warehouse, WarehouseError> {
        admin(caller)?;
        let code_p = WarehouseCode::parse("code", code)?;
        let status_p = WarehouseStatus::parse("status", status)?;
        let key = key("SetWarehouseStatus", caller, request_id, &(code, status))?;
        self.store.set_status(&key, &code_p, status_p).await
    }

    pub async fn list_warehouses(
        &self,
        caller: &Caller,
        after: &str,
        page_size: u32,
    ) -> Result<Vec<Warehouse>, WarehouseError> {
        reader(caller)?;
        let after = match after {
            "" => None,
            s => Some(WarehouseCode::parse("after_code", s)?),
        };
        let limit = page("page_size", page_size)?;
        self.store.warehouses(after.as_ref(), limit).await
    }

    /// An admin adds a bin to a zone of a warehouse.
    pub async fn create_bin(
        &self,
        caller: &Caller,
        request_id: &str,
        warehouse: &str,
        zone: &str,
        bin: &str,
        capacity: i64,
    ) -> Result<Bin, WarehouseError> {
        admin(caller)?;
        let w = WarehouseCode::parse("warehouse", warehouse)?;
        let z = ZoneCode::parse("zone", zone)?;
        let b = BinCode::parse("bin", bin)?;
        if !(1..=MAX_BIN_CAPACITY).contains(&capacity) {
            return Err(InputError::new(
                "capacity",
                format!("is {capacity}; it must be 1 to {MAX_BIN_CAPACITY} units"),
            )
            .into());
        }
        let key = key(
            "CreateBin",
            caller,
            request_id,
            &(warehouse, zone, bin, capacity),
        )?;
        self.store.create_bin(&key, &w, &z, &b, capacity).await
    }

    /// Staff receive units into a bin: INBOUND from a supplier or RETURN from a customer.
    pub async fn receive(
        &self,
        caller: &Caller,
        request_id: &str,
        place: PlaceRef<'_>,
        kind: &str,
        quantity: i64,
        reference_text: &str,
    ) -> Result<Moved, WarehouseError> {
        staff(caller)?;
        let p = place.parse("")?;
        let kind_p = ReceiptKind::parse("type", kind)?;
        let q = Quantity::parse("quantity", quantity)?;
        let r = reference("reference", reference_text, false)?;
        let key = key(
            "ReceiveStock",
            caller,
            request_id,
            &(place, kind, quantity, reference_text),
        )?;
        let change = Change {
            place: p,
            delta: Delta::receipt(kind_p, q),
            reference: r,
            by: caller.user_id.clone(),
            at: (self.clock)(),
        };
        self.store.change(&key, &change).await
    }

    /// Staff correct a count by `delta` units, with the reason as reference.
    pub async fn adjust(
        &self,
        caller: &Caller,
        request_id: &str,
        place: PlaceRef<'_>,
        delta: i64,
        reason: &str,
    ) -> Result<Moved, WarehouseError> {
        staff(caller)?;
        let p = place.parse("")?;
        let d = Adjustment::parse("delta", delta)?;
        let r = reference("reason", reason, true)?;
        let key = key("AdjustStock", caller, request_id, &(place, delta, reason))?;
        let change = Change {
            place: p,
            delta: Delta::adjustment(d),
            reference: r,
            by: caller.user_id.clone(),
            at: (self.clock)(),
        };
        self.store.change(&key, &change).await
    }

    /// Staff move available units of a product from one bin to another, in the same or
    /// another warehouse.
    pub async fn transfer(
        &self,
        caller: &Caller,
        request_id: &str,
        from: PlaceRef<'_>,
        to: PlaceRef<'_>,
        quantity: i64,
        reference_text: &str,
    ) -> Result<Moved, WarehouseError> {
        staff(caller)?;
        let f = from.parse("from.")?;
        let t = to.parse("to.")?;
        if t.product_id != f.product_id {
            return Err(InputError::new(
                "to.product_id",
                format!(
                    "is {:?}; a transfer moves one product ({:?})",
                    t.product_id, f.product_id
                ),
            )
            .into());
        }
        if t.warehouse == f.warehouse && t.bin == f.bin {
            return Err(InputError::new("to.bin", "is the bin the units come from").into());
        }
        let q = Quantity::parse("quantity", quantity)?;
        let r = reference("reference", reference_text, false)?;
        let key = key(
            "TransferStock",
            caller,
            request_id,
            &(from, to, quantity, reference_text),
        )?;
        let transfer = Transfer {
            from: f,
            to: t,
            quantity: q,
            reference: r,
            by: caller.user_id.clone(),
            at: (self.clock)(),
        };
        self.store.transfer(&key, &transfer).await
    }

    pub async fn stock(
        &self,
        caller: &Caller,
        product_id: &str,
        page_size: u32,
    ) -> Result<Vec<Level>, WarehouseError> {
        reader(caller)?;
        let p = ident("product_id", product_id)?;
        let limit = page("page_size", page_size)?;
        self.store.stock(p, limit).await
    }

    pub async fn movements(
        &self,
        caller: &Caller,
        warehouse: &str,
        product_id: &str,
        before_id: i64,
        page_size: u32,
    ) -> Result<Vec<Movement>, WarehouseError> {
        staff(caller)?;
        let w = WarehouseCode::parse("warehouse", warehouse)?;
        let p = ident("product_id", product_id)?;
        let before = match before_id {
            0 => None,
            n if n > 0 => Some(n),
            n => {
                return Err(InputError::new(
                    "before_id",
                    format!("is {n}; 0 for the newest page or a movement id"),
                )
                .into());
            }
        };
        let limit = page("page_size", page_size)?;
        self.store.movements(&w, p, before, limit).await
    }

    /// A service reserves an order: split across ACTIVE warehouses by the configured
    /// preference, what is allocated reserved until it expires, the rest answered as short.
    pub async fn reserve(
        &self,
        caller: &Caller,
        request_id: &str,
        f: &OrderForm<'_>,
    ) -> Result<Reservation, WarehouseError> {
        service(caller)?;
        let order_id = ident("order_id", f.order_id)?.to_owned();
        let destination = Location::parse("destination", f.lat, f.lng)?;
        let lines = parse_lines("lines", f.lines)?;
        let ttl = Ttl::parse("ttl_seconds", f.ttl_seconds)?;
        let key = key("Reserve", caller, request_id, f)?;
        let at = (self.clock)();
        let order = Order {
            id: Uuid::now_v7(),
            order_id,
            destination,
            lines,
            preference: self.settings.preference,
            by: caller.user_id.clone(),
            at,
            expires_at: at + ttl.duration(),
        };
        self.store.reserve(&key, &order).await
    }

    /// A service releases a reservation (RESERVED or PICKED): its units are available again.
    pub async fn release(
        &self,
        caller: &Caller,
        request_id: &str,
        reservation: &str,
    ) -> Result<Reservation, WarehouseError> {
        service(caller)?;
        self.advance(caller, request_id, reservation, ReservationAction::Release)
            .await
    }

    /// Staff mark a reservation's units picked off the shelves.
    pub async fn pick(
        &self,
        caller: &Caller,
        request_id: &str,
        reservation: &str,
    ) -> Result<Reservation, WarehouseError> {
        staff(caller)?;
        self.advance(caller, request_id, reservation, ReservationAction::Pick)
            .await
    }

    /// Staff ship a picked reservation: its units leave the stock (OUTBOUND).
    pub async fn ship(
        &self,
        caller: &Caller,
        request_id: &str,
        reservation: &str,
    ) -> Result<Reservation, WarehouseError> {
        staff(caller)?;
        self.advance(caller, request_id, reservation, ReservationAction::Ship)
            .await
    }

    async fn advance(
        &self,
        caller: &Caller,
        request_id: &str,
        reservation: &str,
        action: ReservationAction,
    ) -> Result<Reservation, WarehouseError> {
        let id = titan_kit::input::uuid("reservation_id", reservation)?;
        let key = key(action.as_str(), caller, request_id, &reservation)?;
        self.store
            .advance(&key, id, action, &caller.user_id, (self.clock)())
            .await
    }

    pub async fn reservation(
        &self,
        caller: &Caller,
        reservation: &str,
    ) -> Result<Reservation, WarehouseError> {
        reader(caller)?;
        let id = titan_kit::input::uuid("reservation_id", reservation)?;
        self.store
            .reservation(id)
            .await?
            .ok_or(WarehouseError::UnknownReservation(id))
    }

    /// Releases expired reservations, a batch at a time, until none is left; the periodic
    /// job's body.
    pub async fn expire(&self) -> Result<u32, WarehouseError> {
        const BATCH: u32 = 200;
        let mut total = 0;
        loop {
            let n = self.store.expire((self.clock)(), BATCH).await?;
            total += n;
            if n < BATCH {
                return Ok(total);
            }
        }
    }

    /// Where staff should put `quantity` units of a product in a warehouse.
    pub async fn putaway(
        &self,
        caller: &Caller,
        warehouse: &str,
        product_id: &str,
        quantity: i64,
    ) -> Result<Putaway, WarehouseError> {
        staff(caller)?;
        let w = WarehouseCode::parse("warehouse", warehouse)?;
        let p = ident("product_id", product_id)?;
        let q = Quantity::parse("quantity", quantity)?;
        let slots = self.store.slots(&w, p).await?;
        Ok(crate::domain::suggest_putaway(&slots, q.get()))
    }

    /// The pick list of a warehouse: the oldest RESERVED reservations' lines, at most the
    /// configured number, in bin walk order so one walk through the warehouse picks them.
    pub async fn pick_list(
        &self,
        caller: &Caller,
        warehouse: &str,
    ) -> Result<Vec<PickLine>, WarehouseError> {
        staff(caller)?;
        let w = WarehouseCode::parse("warehouse", warehouse)?;
        let mut lines = self
            .store
            .open_lines(&w, self.settings.picking_list_max_lines)
            .await?;
        lines.sort_by(|(a, la), (b, lb)| {
            a.cmp(b)
                .then_with(|| la.product_id.cmp(&lb.product_id))
                .then_with(|| la.reservation_id.cmp(&lb.reservation_id))
        });
        Ok(lines.into_iter().map(|(_, l)| l).collect())
    }
}
