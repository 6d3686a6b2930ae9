//! Driver's use cases over a [`DriverStore`] (PostgreSQL) and the cell's object storage: the
//! caller comes from the token, every input is parsed before any I/O, and who may act is
//! decided here — a driver moves their own status, position and deliveries, a dispatcher
//! creates deliveries, plans and assigns routes and watches drivers, a delivery's customer
//! rates it. PostgreSQL is the record; after each commit the Redis side ([`Live`]: the nearby
//! set, latest positions, their fan-out) follows, and a failure there is logged and healed
//! later (the next position report, the periodic [`Drivers::sweep`]), never undoing the
//! commit.

use std::future::Future;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use titan_kit::{
    Clock, ErrorCode, KitError, ServiceError,
    auth::Caller,
    idempotency::{self, IdempotencyError},
    input::ident,
    objects::{ObjectKey, ObjectStorage},
    realtime::Listener,
};
use uuid::Uuid;

use crate::{
    config::Settings,
    domain::optimize::{Limits, Optimization, OptimizeInput, Planned},
    store::live::{Live, Nearby, parse_frame},
};

use crate::domain::{
    AssignmentError, Delivery, DeliveryAction, DeliveryStatus, Driver, DriverAction, DriverStatus,
    GpsError, IllegalTransition, InputError, NotRateable, Performance, Plan, Position, Proof,
    Rating, Registration, SERVICE, Size, Stop, TimeWindow, Transition, Update,
    delivery::parse_address,
};

/// The role that creates deliveries and assigns routes.
pub const DISPATCHER_ROLE: &str = "dispatcher";
/// Longest time at the door a delivery may ask for, in seconds.
pub const MAX_SERVICE_SECONDS: i64 = 4 * 3600;
/// Largest radius a nearby search may ask for, in metres.
pub const MAX_NEARBY_RADIUS_M: u32 = 100_000;
/// Most routes one `AssignRoutes` call may create.
pub const MAX_ROUTES: usize = 200;
/// Most GPS history rows one sweep deletes: a backlog is worked off over several sweeps
/// instead of one long-running DELETE.
pub const SWEEP_BATCH: i64 = 50_000;

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error(transparent)]
    Invalid(#[from] InputError),
    #[error(transparent)]
    Gps(#[from] GpsError),
    #[error(transparent)]
    IllegalStatus(#[from] IllegalTransition<DriverAction>),
    #[error(transparent)]
    IllegalDelivery(#[from] IllegalTransition<DeliveryAction>),
    #[error(transparent)]
    Assignment(#[from] AssignmentError),
    #[error(transparent)]
    NotRateable(#[from] NotRateable),
    #[error("delivery {0} is already rated")]
    AlreadyRated(Uuid),
    #[error("delivery {0} can no longer be rated: its driver's data was erased")]
    DriverErased(Uuid),
    #[error("user {0} is already registered as a driver")]
    AlreadyRegistered(String),
    #[error("user {0} is not registered as a driver")]
    NotADriver(String),
    #[error("{what} {id} does not exist")]
    NotFound { what: &'static str, id: Uuid },
    #[error("only users with the role dispatcher may do this")]
    NotADispatcher,
    #[error("delivery {0} is not on a route of this driver")]
    NotTheDriver(Uuid),
    #[error("only the customer of delivery {0} may rate it")]
    NotTheCustomer(Uuid),
    #[error("proofs of delivery need the cell's object storage, which is not configured")]
    NoObjectStorage,
    #[error("only a dispatcher or the driver themself may watch driver {0}")]
    NotAWatcher(Uuid),
    #[error("the watcher fell behind the driver's positions and was dropped; watch again")]
    SlowConsumer,
    #[error("the route solver refused its settings: {0}")]
    Solver(#[from] titan_route::SettingsError),
    #[error(transparent)]
    Idempotency(#[from] IdempotencyError),
    #[error(transparent)]
    Kit(#[from] KitError),
}

titan_kit::datastore_errors!(DriverError);

impl ServiceError for DriverError {
    fn code(&self) -> ErrorCode {
        match self {
            Self::Invalid(_) => ErrorCode::InvalidArgument,
            Self::Gps(_)
            | Self::IllegalStatus(_)
            | Self::IllegalDelivery(_)
            | Self::Assignment(_)
            | Self::NotRateable(_)
            | Self::DriverErased(_)
            | Self::NoObjectStorage => ErrorCode::FailedPrecondition,
            Self::AlreadyRated(_) | Self::AlreadyRegistered(_) => ErrorCode::AlreadyExists,
            Self::NotADriver(_) | Self::NotFound { .. } => ErrorCode::NotFound,
            Self::NotADispatcher
            | Self::NotTheDriver(_)
            | Self::NotTheCustomer(_)
            | Self::NotAWatcher(_) => ErrorCode::PermissionDenied,
            Self::SlowConsumer => ErrorCode::ResourceExhausted,
            Self::Solver(_) => ErrorCode::Internal,
            Self::Idempotency(e) => e.code(),
            Self::Kit(e) => e.code(),
        }
    }

    fn reason(&self) -> Option<&'static str> {
        Some(match self {
            Self::Invalid(_) => "INVALID_ARGUMENT",
            Self::Gps(GpsError::NotAfter { .. }) => "POSITION_NOT_AFTER_LAST",
            Self::Gps(GpsError::Future { .. }) => "POSITION_IN_THE_FUTURE",
            Self::IllegalStatus(_) | Self::IllegalDelivery(_) => "ILLEGAL_TRANSITION",
            Self::Assignment(AssignmentError::DriverNotAvailable { .. }) => "DRIVER_NOT_AVAILABLE",
            Self::Assignment(AssignmentError::OverCapacity { .. }) => "OVER_CAPACITY",
            Self::NotRateable(_) => "NOT_RATEABLE",
            Self::AlreadyRated(_) => "ALREADY_RATED",
            Self::DriverErased(_) => "DRIVER_ERASED",
            Self::AlreadyRegistered(_) => "ALREADY_REGISTERED",
            Self::NotADriver(_) => "NOT_A_DRIVER",
            Self::NotFound { .. } => "NOT_FOUND",
            Self::NotADispatcher => "NOT_A_DISPATCHER",
            Self::NotTheDriver(_) => "NOT_THE_DRIVER",
            Self::NotTheCustomer(_) => "NOT_THE_CUSTOMER",
            Self::NoObjectStorage => "NO_OBJECT_STORAGE",
            Self::NotAWatcher(_) => "NOT_A_WATCHER",
            Self::SlowConsumer => "SLOW_CONSUMER",
            Self::Solver(_) => return None,
            Self::Idempotency(e) => return e.reason(),
            Self::Kit(_) => return None,
        })
    }
}

/// A delivery transition as the store runs it.
#[derive(Debug, Clone)]
pub struct Step {
    pub delivery: Uuid,
    /// The driver taking it, who must be the delivery's own; `None` for a dispatcher, who
    /// may act on any delivery.
    pub driver: Option<Uuid>,
    pub action: DeliveryAction,
    pub at: DateTime<Utc>,
    /// COMPLETE: the recipient and the stored attachments' keys.
    pub proof: Option<(String, Vec<String>)>,
    /// RESCHEDULE: the new window.
    pub window: Option<TimeWindow>,
}

/// A route as assigned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssignedRoute {
    pub id: Uuid,
    pub driver_id: Uuid,
    pub stops: Vec<Stop>,
}

/// Drivers, deliveries, routes and positions, with idempotency keys and the outbox.
pub trait DriverStore: Send + Sync + 'static {
    /// Stores a new driver; [`DriverError::AlreadyRegistered`] if its user has one.
    fn register(
        &self,
        key: &idempotency::Key,
        driver: &Driver,
    ) -> impl Future<Output = Result<Driver, DriverError>> + Send;

    fn driver(&self, id: Uuid) -> impl Future<Output = Result<Option<Driver>, DriverError>> + Send;

    fn driver_of_user(
        &self,
        user: &str,
    ) -> impl Future<Output = Result<Option<Driver>, DriverError>> + Send;

    /// One guarded UPDATE of the driver's status.
    fn change_status(
        &self,
        key: &idempotency::Key,
        driver: Uuid,
        action: DriverAction,
    ) -> impl Future<Output = Result<Driver, DriverError>> + Send;

    /// Records `update` as the driver's latest position (only if it is after the stored
    /// one: `None` otherwise) and in the history; answers the driver's status at that moment.
    fn record_position(
        &self,
        driver: Uuid,
        update: &Update,
    ) -> impl Future<Output = Result<Option<DriverStatus>, DriverError>> + Send;

    fn create_delivery(
        &self,
        key: &idempotency::Key,
        delivery: &Delivery,
        customer: &str,
    ) -> impl Future<Output = Result<Delivery, DriverError>> + Send;

    fn delivery(
        &self,
        id: Uuid,
    ) -> impl Future<Output = Result<Option<Delivery>, DriverError>> + Send;

    /// Assigns `plan` to `driver` as a new route `route`: the driver must be AVAILABLE with
    /// room for every stop's size, every delivery PENDING or RESCHEDULED; all or nothing.
    fn assign_route(
        &self,
        key: &idempotency::Key,
        route: Uuid,
        driver: Uuid,
        plan: &Plan,
        at: DateTime<Utc>,
    ) -> impl Future<Output = Result<AssignedRoute, DriverError>> + Send;

    /// Assigns every route (id, driver, plan) as [`Self::assign_route`] would, in one
    /// transaction: all or nothing.
    fn assign_routes(
        &self,
        key: &idempotency::Key,
        routes: &[(Uuid, Uuid, Plan)],
        at: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<AssignedRoute>, DriverError>> + Send;

    /// Moves a delivery; a final one counts in the driver's performance, and the route's last
    /// settled stop completes the route and makes the driver AVAILABLE.
    fn step(
        &self,
        key: &idempotency::Key,
        step: &Step,
    ) -> impl Future<Output = Result<Delivery, DriverError>> + Send;

    /// One replica's periodic clean-up: deletes up to `batch` GPS history rows older than
    /// `before` and reads the AVAILABLE drivers with a position; `None` when another replica
    /// holds the turn.
    fn sweep(
        &self,
        before: DateTime<Utc>,
        batch: i64,
    ) -> impl Future<Output = Result<Option<Sweep>, DriverError>> + Send;

    /// Records the customer's rating of a completed delivery, once.
    fn rate(
        &self,
        key: &idempotency::Key,
        delivery: Uuid,
        customer: &str,
        rating: Rating,
    ) -> impl Future<Output = Result<Performance, DriverError>> + Send;
}

/// A stop as a client sends it: the delivery's id and its ETA.
pub type StopRequest = (String, DateTime<Utc>);
/// A route as a client sends it: the driver's id and the stops in visit order.
pub type RouteRequest = (String, Vec<StopRequest>);

/// What one sweep did and found.
#[derive(Debug, Clone, PartialEq)]
pub struct Sweep {
    /// GPS history rows deleted.
    pub pruned: u64,
    /// AVAILABLE drivers with their position: (id, lat, lng).
    pub available: Vec<(Uuid, f64, f64)>,
}

/// What the app needs besides its store.
#[derive(Clone)]
pub struct Parts {
    /// The cell's bucket, for proofs of delivery.
    pub objects: Option<ObjectStorage>,
    pub live: Live,
    pub settings: Settings,
    pub clock: Clock,
}

impl std::fmt::Debug for Parts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parts")
            .field("objects", &self.objects.is_some())
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// A registration as a driver sends it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NewDriver<'a> {
    pub name: &'a str,
    pub phone: &'a str,
    pub email: &'a str,
    pub vehicle_type: &'a str,
    pub capacity: i64,
}

/// A delivery as a dispatcher creates it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NewDelivery<'a> {
    pub shipment_id: &'a str,
    pub customer_id: &'a str,
    pub address: &'a str,
    pub lat: f64,
    pub lng: f64,
    pub window_start: DateTime<Utc>,
    pub window_end: DateTime<Utc>,
    pub size: i64,
    pub service_seconds: i64,
}

/// The service's use cases.
pub struct Drivers<S> {
    store: S,
    objects: Option<ObjectStorage>,
    live: Live,
    settings: Settings,
    clock: Clock,
}

impl<S: std::fmt::Debug> std::fmt::Debug for Drivers<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Drivers")
            .field("store", &self.store)
            .field("objects", &self.objects.is_some())
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// A `WatchDriver` stream's source: the latest known position first, then each later one
/// published on any replica.
#[derive(Debug)]
pub struct Watch {
    listener: Listener,
    first: Option<Position>,
    /// The time of the last position handed out: an older or repeated one is skipped.
    last: Option<DateTime<Utc>>,
}

impl Watch {
    /// The next position; [`DriverError::SlowConsumer`] once the watcher fell behind.
    pub async fn next(&mut self) -> Result<Position, DriverError> {
        if let Some(p) = self.first.take() {
            self.last = Some(p.at);
            return Ok(p);
        }
        loop {
            let frame = self
                .listener
                .next()
                .await
                .map_err(|_| DriverError::SlowConsumer)?;
            let Some(p) = parse_frame(frame.as_str()) else {
                tracing::warn!("ignoring a malformed driver position frame");
                continue;
            };
            if self.last.is_none_or(|last| p.at > last) {
                self.last = Some(p.at);
                return Ok(p);
            }
        }
    }
}

/// Logs a Redis write that failed after PostgreSQL committed; the sweep repairs it.
fn healed_later(what: &str, driver: Uuid, e: &KitError) {
    tracing::warn!(%driver, error = %e, "{what} failed after the commit; the next position report or sweep repairs it");
}

/// The idempotency key of a call: the request's fields, serialised, so a reused request id
/// with other fields is refused.
fn key(
    method: &'static str,
    caller: &Caller,
    request_id: &str,
    body: &impl Serialize,
) -> Result<idempotency::Key, DriverError> {
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

fn dispatcher(caller: &Caller) -> Result<(), DriverError> {
    if caller.has_role(DISPATCHER_ROLE) {
        Ok(())
    } else {
        Err(DriverError::NotADispatcher)
    }
}

impl<S: DriverStore> Drivers<S> {
    pub fn new(store: S, parts: Parts) -> Self {
        Self {
            store,
            objects: parts.objects,
            live: parts.live,
            settings: parts.settings,
            clock: parts.clock,
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Puts `d` in the nearby set or takes them out, after a commit that changed them.
    async fn place(&self, d: &Driver) {
        let at = match (d.status, d.location) {
            (DriverStatus::Available, Some(p)) => Some((p.lat, p.lng)),
            _ => None,
        };
        if let Err(e) = self.live.place(d.id, at).await {
            healed_later("updating the nearby set", d.id, &e);
        }
    }

    /// Re-reads driver `id` and places them: after a step that may have finished their route.
    async fn replace(&self, id: Uuid) {
        match self.store.driver(id).await {
            Ok(Some(d)) => self.place(&d).await,
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(driver = %id, error = %e, "cannot re-read a driver after a step; the sweep repairs the nearby set");
            }
        }
    }

    /// The caller's own driver record.
    pub async fn me(&self, caller: &Caller) -> Result<Driver, DriverError> {
        self.store
            .driver_of_user(&caller.user_id)
            .await?
            .ok_or_else(|| DriverError::NotADriver(caller.user_id.clone()))
    }

    pub async fn driver(&self, id: Uuid) -> Result<Driver, DriverError> {
        self.store
            .driver(id)
            .await?
            .ok_or(DriverError::NotFound { what: "driver", id })
    }

    /// A driver by id, for a dispatcher or the driver themself.
    pub async fn get_driver(&self, caller: &Caller, id: &str) -> Result<Driver, DriverError> {
        let id = titan_kit::input::uuid("driver_id", id)?;
        let driver = self.driver(id).await?;
        if driver.user_id != caller.user_id {
            dispatcher(caller)?;
        }
        Ok(driver)
    }

    pub async fn delivery(&self, id: Uuid) -> Result<Delivery, DriverError> {
        self.store.delivery(id).await?.ok_or(DriverError::NotFound {
            what: "delivery",
            id,
        })
    }

    /// Registers the caller as a driver, OFF_DUTY.
    pub async fn register(
        &self,
        caller: &Caller,
        request_id: &str,
        r: &NewDriver<'_>,
    ) -> Result<Driver, DriverError> {
        let parsed = Registration::parse(r.name, r.phone, r.email, r.vehicle_type, r.capacity)?;
        let key = key("Register", caller, request_id, r)?;
        let r = parsed;
        let driver = Driver {
            id: Uuid::now_v7(),
            user_id: caller.user_id.clone(),
            name: r.name,
            phone: r.phone,
            email: r.email,
            vehicle_type: r.vehicle_type,
            capacity: r.capacity,
            status: DriverStatus::NEW,
            location: None,
            performance: Performance::default(),
            created_at: (self.clock)(),
        };
        self.store.register(&key, &driver).await
    }

    /// The caller (a driver) asks for AVAILABLE, ON_BREAK or OFF_DUTY.
    pub async fn set_status(
        &self,
        caller: &Caller,
        request_id: &str,
        status: &str,
    ) -> Result<Driver, DriverError> {
        let target = DriverStatus::parse("status", status)?;
        let action = DriverAction::requested("status", target)?;
        let key = key("SetStatus", caller, request_id, &status)?;
        let me = self.me(caller).await?;
        let d = self.store.change_status(&key, me.id, action).await?;
        self.place(&d).await;
        Ok(d)
    }

    /// The caller (a driver) reports where they are. A resent or reordered fix is refused
    /// (it is not after the last), which makes retries harmless.
    pub async fn report_position(
        &self,
        caller: &Caller,
        lat: f64,
        lng: f64,
        at: DateTime<Utc>,
    ) -> Result<Update, DriverError> {
        let position = Position::parse("", lat, lng, at)?;
        let me = self.me(caller).await?;
        let update = position.follow(me.location.as_ref(), (self.clock)())?;
        if let Some(status) = self.store.record_position(me.id, &update).await? {
            let p = update.position;
            if let Err(e) = self.live.set_latest(me.id, &p).await {
                healed_later("keeping the latest position", me.id, &e);
            }
            let at = (status == DriverStatus::Available).then_some((p.lat, p.lng));
            if let Err(e) = self.live.place(me.id, at).await {
                healed_later("updating the nearby set", me.id, &e);
            }
            if let Err(e) = self.live.publish(me.id, &p).await {
                // Watchers read the latest position again when they reconnect.
                tracing::warn!(driver = %me.id, error = %e, "cannot publish a position");
            }
            return Ok(update);
        }
        // Another report got in first with a later or equal time.
        let last = self.me(caller).await?.location;
        Err(GpsError::NotAfter {
            at,
            last: last.map_or(at, |p| p.at),
        }
        .into())
    }

    /// A dispatcher creates a PENDING delivery.
    pub async fn create_delivery(
        &self,
        caller: &Caller,
        request_id: &str,
        d: &NewDelivery<'_>,
    ) -> Result<Delivery, DriverError> {
        dispatcher(caller)?;
        let shipment_id = ident("shipment_id", d.shipment_id)?.to_owned();
        let customer_id = ident("customer_id", d.customer_id)?;
        let address = parse_address("address", d.address)?;
        let location = Position::parse("", d.lat, d.lng, d.window_start)?;
        let window = TimeWindow::new("window", d.window_start, d.window_end)?;
        let size = Size::parse("size", d.size)?;
        let service_seconds = match u32::try_from(d.service_seconds) {
            Ok(s) if i64::from(s) <= MAX_SERVICE_SECONDS => s,
            _ => {
                return Err(InputError::new(
                    "service_seconds",
                    format!(
                        "is {}; it must be 0 to {MAX_SERVICE_SECONDS}",
                        d.service_seconds
                    ),
                )
                .into());
            }
        };
        let key = key("CreateDelivery", caller, request_id, d)?;
        let delivery = Delivery {
            id: Uuid::now_v7(),
            shipment_id,
            address,
            lat: location.lat,
            lng: location.lng,
            window,
            size,
            service_seconds,
            status: DeliveryStatus::Pending,
            route_id: None,
            driver_id: None,
            finished_at: None,
        };
        self.store
            .create_delivery(&key, &delivery, customer_id)
            .await
    }

    /// A dispatcher assigns deliveries, in visit order with their ETAs, to an AVAILABLE
    /// driver, who becomes ON_DELIVERY.
    pub async fn assign_route(
        &self,
        caller: &Caller,
        request_id: &str,
        driver: &str,
        stops: &[StopRequest],
    ) -> Result<AssignedRoute, DriverError> {
        dispatcher(caller)?;
        let driver_id = titan_kit::input::uuid("driver_id", driver)?;
        let parsed = stops
            .iter()
            .enumerate()
            .map(|(i, (id, eta))| {
                Ok(Stop {
                    delivery_id: titan_kit::input::uuid(&format!("stops[{i}].delivery_id"), id)?,
                    eta: *eta,
                })
            })
            .collect::<Result<Vec<_>, InputError>>()?;
        let plan = Plan::new("stops", parsed)?;
        let key = key("AssignRoute", caller, request_id, &(driver, stops))?;
        let route = self
            .store
            .assign_route(&key, Uuid::now_v7(), driver_id, &plan, (self.clock)())
            .await?;
        self.replace(route.driver_id).await;
        Ok(route)
    }

    /// A dispatcher assigns several routes at once (an `OptimizeRoutes` answer), each to an
    /// AVAILABLE driver, in one transaction: all or nothing.
    pub async fn assign_routes(
        &self,
        caller: &Caller,
        request_id: &str,
        routes: &[RouteRequest],
    ) -> Result<Vec<AssignedRoute>, DriverError> {
        dispatcher(caller)?;
        if routes.is_empty() || routes.len() > MAX_ROUTES {
            return Err(InputError::new(
                "routes",
                format!("has {}; 1 to {MAX_ROUTES} are allowed", routes.len()),
            )
            .into());
        }
        let mut drivers = std::collections::HashMap::new();
        let mut deliveries = std::collections::HashMap::new();
        let mut parsed = Vec::with_capacity(routes.len());
        for (r, (driver, stops)) in routes.iter().enumerate() {
            let field = format!("routes[{r}].driver_id");
            let driver_id = titan_kit::input::uuid(&field, driver)?;
            if let Some(first) = drivers.insert(driver_id, r) {
                return Err(InputError::new(
                    field,
                    format!("{driver_id} already has route {first}"),
                )
                .into());
            }
            let mut plan = Vec::with_capacity(stops.len());
            for (i, (id, eta)) in stops.iter().enumerate() {
                let field = format!("routes[{r}].stops[{i}].delivery_id");
                let delivery_id = titan_kit::input::uuid(&field, id)?;
                if let Some(first) = deliveries.insert(delivery_id, r) {
                    return Err(InputError::new(
                        field,
                        format!("{delivery_id} is already on route {first}"),
                    )
                    .into());
                }
                plan.push(Stop {
                    delivery_id,
                    eta: *eta,
                });
            }
            let plan = Plan::new(&format!("routes[{r}].stops"), plan)?;
            parsed.push((Uuid::now_v7(), driver_id, plan));
        }
        let key = key("AssignRoutes", caller, request_id, &routes)?;
        let assigned = self
            .store
            .assign_routes(&key, &parsed, (self.clock)())
            .await?;
        for route in &assigned {
            self.replace(route.driver_id).await;
        }
        Ok(assigned)
    }

    /// A dispatcher plans routes: the solver runs on a blocking thread for the budget, so it
    /// never holds up the runtime's workers.
    pub async fn optimize(
        &self,
        caller: &Caller,
        input: &OptimizeInput,
    ) -> Result<Planned, DriverError> {
        dispatcher(caller)?;
        let limits = Limits {
            budget_ms: self.settings.solver_time_budget_millis,
            speed_mps: f64::from(self.settings.average_speed_kph) / 3.6,
        };
        let optimization = Optimization::parse(input, limits)?;
        let planned = tokio::task::spawn_blocking(move || optimization.solve())
            .await
            .map_err(|e| KitError::Other(format!("the route solver stopped: {e}")))??;
        Ok(planned)
    }

    /// AVAILABLE drivers within `radius_m` (0: the configured default) of the point, nearest
    /// first, at most `limit` (0: the configured most, which is also the cap).
    pub async fn nearby(
        &self,
        caller: &Caller,
        lat: f64,
        lng: f64,
        radius_m: u32,
        limit: u32,
    ) -> Result<Vec<Nearby>, DriverError> {
        dispatcher(caller)?;
        let at = Position::parse("", lat, lng, (self.clock)())?;
        let radius_m = match radius_m {
            0 => self.settings.nearby_radius_meters,
            r if r > MAX_NEARBY_RADIUS_M => {
                return Err(InputError::new(
                    "radius_m",
                    format!("is {r}; at most {MAX_NEARBY_RADIUS_M}"),
                )
                .into());
            }
            r => r,
        };
        let most = self.settings.nearby_limit;
        let limit = match limit {
            0 => most,
            l if l > most => {
                return Err(InputError::new("limit", format!("is {l}; at most {most}")).into());
            }
            l => l,
        };
        Ok(self.live.nearby(at.lat, at.lng, radius_m, limit).await?)
    }

    /// Opens a watch of a driver's positions for a dispatcher or the driver themself: the
    /// topic is subscribed first, then the latest position read, so nothing published in
    /// between is missed (a repeat is skipped by its time).
    pub async fn watch(&self, caller: &Caller, driver: &str) -> Result<Watch, DriverError> {
        let id = titan_kit::input::uuid("driver_id", driver)?;
        let d = self.driver(id).await?;
        if d.user_id != caller.user_id && !caller.has_role(DISPATCHER_ROLE) {
            return Err(DriverError::NotAWatcher(id));
        }
        let capacity = usize::try_from(self.settings.watch_buffer).unwrap_or(usize::MAX);
        let listener = self.live.listen(id, capacity).await?;
        let latest = match self.live.latest(id).await {
            Ok(Some(p)) => Some(p),
            Ok(None) => self.driver(id).await?.location,
            Err(e) => {
                tracing::warn!(driver = %id, error = %e, "cannot read the latest position from redis; using postgres");
                self.driver(id).await?.location
            }
        };
        Ok(Watch {
            listener,
            first: latest,
            last: None,
        })
    }

    /// One replica's periodic clean-up: GPS history older than the configured retention is
    /// deleted, and the nearby set is rebuilt from PostgreSQL, which repairs any Redis write
    /// that failed after a commit. Answers rows pruned, or `None` if another replica swept.
    pub async fn sweep(&self) -> Result<Option<u64>, DriverError> {
        let keep = chrono::Duration::hours(self.settings.position_retention_hours.into());
        let Some(sweep) = self.store.sweep((self.clock)() - keep, SWEEP_BATCH).await? else {
            return Ok(None);
        };
        self.live.resync(&sweep.available).await?;
        Ok(Some(sweep.pruned))
    }

    /// The caller (the delivery's driver) departs for it, arrives, or records a failed
    /// attempt. Completing needs a proof: [`Self::complete`].
    pub async fn advance(
        &self,
        caller: &Caller,
        request_id: &str,
        delivery: &str,
        action: &str,
    ) -> Result<Delivery, DriverError> {
        let id = titan_kit::input::uuid("delivery_id", delivery)?;
        let action = DeliveryAction::parse("action", action)?;
        if !matches!(
            action,
            DeliveryAction::Depart | DeliveryAction::Arrive | DeliveryAction::Fail
        ) {
            return Err(InputError::new(
                "action",
                format!("{action} is not a driver's step (DEPART, ARRIVE, FAIL)"),
            )
            .into());
        }
        let key = key("Advance", caller, request_id, &(delivery, action.as_str()))?;
        let me = self.me(caller).await?;
        let step = Step {
            delivery: id,
            driver: Some(me.id),
            action,
            at: (self.clock)(),
            proof: None,
            window: None,
        };
        self.settled(self.store.step(&key, &step).await?).await
    }

    /// The caller (the delivery's driver), at the door, completes it with a proof: the
    /// attachments are stored first, under the delivery's own keys, so a retry rewrites the
    /// same objects.
    pub async fn complete(
        &self,
        caller: &Caller,
        request_id: &str,
        delivery: &str,
        proof: Proof,
    ) -> Result<Delivery, DriverError> {
        let id = titan_kit::input::uuid("delivery_id", delivery)?;
        let digest: Vec<(&str, usize)> = proof
            .attachments()
            .map(|a| (a.content_type.as_str(), a.bytes.len()))
            .collect();
        let key = key(
            "Complete",
            caller,
            request_id,
            &(delivery, &proof.recipient_name, digest),
        )?;
        let objects = self.objects.as_ref().ok_or(DriverError::NoObjectStorage)?;
        let me = self.me(caller).await?;
        let current = self
            .store
            .delivery(id)
            .await?
            .ok_or(DriverError::NotFound {
                what: "delivery",
                id,
            })?;
        if current.driver_id != Some(me.id) {
            return Err(DriverError::NotTheDriver(id));
        }
        // Refused before anything is uploaded; the store checks again under its guard.
        DeliveryAction::Complete.apply(current.status)?;
        let mut keys = Vec::new();
        for a in proof.attachments() {
            let object = ObjectKey::new([SERVICE, "proofs", &id.to_string(), a.kind.field()])
                .map_err(|e| KitError::Other(e.to_string()))?;
            objects
                .put(&object, &a.content_type, Bytes::from(a.bytes.clone()))
                .await?;
            keys.push(object.as_str().to_owned());
        }
        let step = Step {
            delivery: id,
            driver: Some(me.id),
            action: DeliveryAction::Complete,
            at: (self.clock)(),
            proof: Some((proof.recipient_name, keys)),
            window: None,
        };
        self.settled(self.store.step(&key, &step).await?).await
    }

    /// A dispatcher gives an open delivery a new window: RESCHEDULED, off its route (which
    /// completes if this was its last open stop), ready for another route.
    pub async fn reschedule(
        &self,
        caller: &Caller,
        request_id: &str,
        delivery: &str,
        window_start: DateTime<Utc>,
        window_end: DateTime<Utc>,
    ) -> Result<Delivery, DriverError> {
        dispatcher(caller)?;
        let id = titan_kit::input::uuid("delivery_id", delivery)?;
        let window = TimeWindow::new("window", window_start, window_end)?;
        let key = key(
            "Reschedule",
            caller,
            request_id,
            &(delivery, window_start, window_end),
        )?;
        let step = Step {
            delivery: id,
            driver: None,
            action: DeliveryAction::Reschedule,
            at: (self.clock)(),
            proof: None,
            window: Some(window),
        };
        self.settled(self.store.step(&key, &step).await?).await
    }

    /// After a step: a delivery that left its route may have finished it and freed its
    /// driver, who then goes back in the nearby set.
    async fn settled(&self, d: Delivery) -> Result<Delivery, DriverError> {
        if let (true, Some(driver)) = (
            d.status.is_final() || d.status == DeliveryStatus::Rescheduled,
            d.driver_id,
        ) {
            self.replace(driver).await;
        }
        Ok(d)
    }

    /// The delivery's customer rates it, 1 to 5, once it is completed.
    pub async fn rate(
        &self,
        caller: &Caller,
        request_id: &str,
        delivery: &str,
        rating: i64,
    ) -> Result<Performance, DriverError> {
        let id = titan_kit::input::uuid("delivery_id", delivery)?;
        let rating = Rating::parse("rating", rating)?;
        let key = key("Rate", caller, request_id, &(delivery, rating.get()))?;
        self.store.rate(&key, id, &caller.user_id, rating).await
    }
}
