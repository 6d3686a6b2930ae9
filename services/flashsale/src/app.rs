//! Flash-sale use cases over two ports: [`SaleStore`] (PostgreSQL, the record) and
//! [`StockStore`] (Redis, the hot path). The caller always comes from the token.

use std::{collections::BTreeMap, future::Future};

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use titan_kit::{
    ErrorCode, KitError, ServiceError,
    auth::{Caller, NotAService},
    events::Envelope,
    idempotency::{self, IdempotencyError},
    money::Money,
    ratelimit::RateLimit,
};
use uuid::Uuid;

use crate::{
    config::Settings,
    domain::{
        AdminState, FlashSale, PURCHASED, Quantity, Refusal, ReservationId, SERVICE, SaleId,
        SaleSpec, SaleStatus,
        reservation::{BadQuantity, BadReservationId},
        sale::{RawSaleSpec, SaleError, StockLevel},
    },
    metrics::Metrics,
};

#[derive(Debug, thiserror::Error)]
pub enum FlashSaleError {
    #[error(transparent)]
    Sale(#[from] SaleError),
    #[error(transparent)]
    Quantity(#[from] BadQuantity),
    #[error(transparent)]
    ReservationId(#[from] BadReservationId),
    #[error("{0}")]
    Invalid(String),
    #[error("sale {0} does not exist")]
    SaleNotFound(SaleId),
    #[error("reservation {0} does not exist")]
    ReservationNotFound(ReservationId),
    #[error("reservation {0} belongs to another buyer")]
    NotOwner(ReservationId),
    #[error("reservation {id} has {what}")]
    ReservationGone {
        id: ReservationId,
        what: &'static str,
        reason: &'static str,
    },
    #[error("sale {0} has started or was cancelled or ended; it can no longer be changed")]
    NotEditable(SaleId),
    #[error("sale {id} is {what}")]
    SaleClosed { id: SaleId, what: &'static str },
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error(transparent)]
    Idempotency(#[from] IdempotencyError),
    #[error(transparent)]
    NotAService(#[from] NotAService),
    #[error(transparent)]
    Kit(#[from] KitError),
}

titan_kit::datastore_errors!(FlashSaleError);

impl ServiceError for FlashSaleError {
    fn code(&self) -> ErrorCode {
        match self {
            Self::Sale(_) | Self::Quantity(_) | Self::ReservationId(_) | Self::Invalid(_) => {
                ErrorCode::InvalidArgument
            }
            Self::SaleNotFound(_) | Self::ReservationNotFound(_) => ErrorCode::NotFound,
            Self::NotOwner(_) => ErrorCode::PermissionDenied,
            Self::ReservationGone { .. } | Self::NotEditable(_) | Self::SaleClosed { .. } => {
                ErrorCode::FailedPrecondition
            }
            Self::Refused(Refusal::RateLimited { .. }) => ErrorCode::ResourceExhausted,
            Self::Refused(_) => ErrorCode::FailedPrecondition,
            Self::Idempotency(e) => e.code(),
            Self::NotAService(e) => e.code(),
            Self::Kit(e) => e.code(),
        }
    }

    fn reason(&self) -> Option<&'static str> {
        match self {
            Self::Refused(r) => Some(r.reason()),
            Self::ReservationGone { reason, .. } => Some(reason),
            Self::NotEditable(_) => Some("SALE_STARTED"),
            Self::SaleClosed { .. } => Some("SALE_CLOSED"),
            Self::Idempotency(e) => e.reason(),
            Self::NotAService(e) => e.reason(),
            _ => None,
        }
    }
}

pub type Result<T> = std::result::Result<T, FlashSaleError>;

/// A confirmed purchase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub id: Uuid,
    pub sale_id: SaleId,
    pub reservation_id: String,
    pub user_id: String,
    pub quantity: u32,
    pub unit_price: Money,
    pub total: Money,
    pub payment_reference: String,
    pub created_at: DateTime<Utc>,
}

/// A held reservation, as `AttemptPurchase` answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub id: ReservationId,
    pub quantity: u32,
    pub expires_at: DateTime<Utc>,
    pub remaining: u32,
}

/// One purchase attempt, validated.
#[derive(Debug, Clone)]
pub struct Attempt<'a> {
    pub sale: SaleId,
    pub user: &'a str,
    pub quantity: Quantity,
    pub request_id: &'a str,
    pub reservation: ReservationId,
    /// The presented challenge and the difficulty its nonce achieved.
    pub challenge: Option<(&'a str, u32)>,
    pub now: DateTime<Utc>,
}

/// What the stock script said about a confirm or cancel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldOutcome {
    Done { quantity: u32 },
    NotFound,
    NotOwner,
    Expired,
    Cancelled,
    Confirmed,
}

/// Conversion counters of a sale, as Redis keeps them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub views: u64,
    pub attempts: u64,
    pub reservations: u64,
    pub confirmations: u64,
    pub expiries: u64,
    pub cancellations: u64,
    pub refusals: BTreeMap<String, u64>,
    pub level: StockLevel,
}

/// PostgreSQL: sales, orders, and their events.
pub trait SaleStore: Send + Sync + 'static {
    /// Creates, or updates, a sale under an idempotency key; a replay returns the first answer.
    fn save(
        &self,
        key: &idempotency::Key,
        sale: &FlashSale,
        create: bool,
    ) -> impl Future<Output = Result<SaleId>> + Send;
    fn set_state(
        &self,
        key: &idempotency::Key,
        id: SaleId,
        state: AdminState,
    ) -> impl Future<Output = Result<()>> + Send;
    fn mark_warmed(&self, id: SaleId) -> impl Future<Output = Result<()>> + Send;
    fn get(&self, id: SaleId) -> impl Future<Output = Result<Option<FlashSale>>> + Send;
    /// Scheduled sales that have not ended, soonest first.
    fn list_open(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<FlashSale>>> + Send;
    /// Scheduled sales not yet warmed that start before `until` and have not ended.
    fn list_unwarmed(
        &self,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<FlashSale>>> + Send;
    /// Warmed sales whose reservations may still move (ended less than a day ago).
    fn list_warmed(
        &self,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<FlashSale>>> + Send;
    /// Records an order once per reservation (and once per idempotency key), with its event.
    fn record_order(
        &self,
        key: &idempotency::Key,
        order: &Order,
        event: &Envelope,
    ) -> impl Future<Output = Result<Order>> + Send;
    /// Units of confirmed orders of a sale.
    fn units_sold(&self, id: SaleId) -> impl Future<Output = Result<u64>> + Send;
    /// Every order of a sale, as the stock needs it: the truth a re-warm rebuilds Redis from.
    fn orders_of(&self, id: SaleId) -> impl Future<Output = Result<Vec<Sold>>> + Send;
    /// The orders of these reservations (those that have one).
    fn orders_for(&self, reservations: &[String])
    -> impl Future<Output = Result<Vec<Sold>>> + Send;
    /// What a confirm must answer without touching Redis: the committed answer of `key`
    /// (`REQUEST_ID_REUSED` when the id was used for another body), else the order already
    /// recorded for `reservation`.
    fn recorded(
        &self,
        key: &idempotency::Key,
        reservation: &str,
    ) -> impl Future<Output = Result<Option<Order>>> + Send;
}

/// One recorded order, as the stock scripts need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sold {
    pub reservation: String,
    pub user: String,
    pub quantity: u32,
}

impl From<&Order> for Sold {
    fn from(o: &Order) -> Self {
        Self {
            reservation: o.reservation_id.clone(),
            user: o.user_id.clone(),
            quantity: o.quantity,
        }
    }
}

/// What a warm-up or a repair found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Healed {
    /// Units on sale after it.
    pub available: u32,
    /// Units sold or held beyond the total: a sale that oversold before the repair.
    pub oversold: u32,
}

/// Redis: the live stock of warmed sales; every change is one Lua script.
pub trait StockStore: Send + Sync + 'static {
    /// Writes the rules and rebuilds the stock from `orders` (every order of the sale) and the
    /// reservations Redis holds.
    fn warm(
        &self,
        sale: &FlashSale,
        ttl: std::time::Duration,
        orders: &[Sold],
    ) -> impl Future<Output = Result<Healed>> + Send;
    /// Marks the reservations of `orders` confirmed where Redis lost that.
    fn restore(&self, sale: SaleId, orders: &[Sold])
    -> impl Future<Output = Result<Healed>> + Send;
    /// Reservations of a sale whose hold has expired at `now`, at most `limit`.
    fn due(
        &self,
        sale: SaleId,
        now: DateTime<Utc>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<String>>> + Send;
    fn reserve(
        &self,
        attempt: &Attempt<'_>,
        settings: &Settings,
    ) -> impl Future<Output = Result<std::result::Result<Reservation, Refusal>>> + Send;
    fn confirm(
        &self,
        id: ReservationId,
        user: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<HoldOutcome>> + Send;
    fn cancel(
        &self,
        id: ReservationId,
        user: &str,
    ) -> impl Future<Output = Result<HoldOutcome>> + Send;
    /// Returns the stock of those of `reservations` that have expired at `now`; how many were
    /// released.
    fn sweep(
        &self,
        sale: SaleId,
        now: DateTime<Utc>,
        reservations: &[String],
    ) -> impl Future<Output = Result<u32>> + Send;
    fn levels(
        &self,
        sales: &[SaleId],
    ) -> impl Future<Output = Result<Vec<Option<StockLevel>>>> + Send;
    fn stats(&self, sale: SaleId) -> impl Future<Output = Result<Stats>> + Send;
    fn count_view(&self, sale: SaleId) -> impl Future<Output = Result<()>> + Send;
    /// Stores a challenge for `user`, within their `limit` of challenges (else the refusal).
    fn issue_challenge(
        &self,
        sale: SaleId,
        user: &str,
        challenge: &str,
        ttl: std::time::Duration,
        limit: RateLimit,
    ) -> impl Future<Output = Result<std::result::Result<(), Refusal>>> + Send;
    /// Takes one `WatchSale` opening of `user`'s `limit` (else the refusal).
    fn admit_watch(
        &self,
        user: &str,
        limit: RateLimit,
    ) -> impl Future<Output = Result<std::result::Result<(), Refusal>>> + Send;
}

/// The clock, replaceable in tests.
pub use titan_kit::Clock;

/// A sale with what a buyer sees of it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaleView {
    pub sale: FlashSale,
    pub status: SaleStatus,
    pub level: Option<StockLevel>,
    pub now: DateTime<Utc>,
}

/// An issued proof-of-work challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub challenge: String,
    pub difficulty: u32,
    pub expires_at: DateTime<Utc>,
}

#[derive(Clone)]
pub struct FlashSales<P, S> {
    sales: P,
    stock: S,
    settings: Settings,
    cell: String,
    clock: Clock,
    metrics: Metrics,
}

impl<P, S> std::fmt::Debug for FlashSales<P, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlashSales")
            .field("settings", &self.settings)
            .field("cell", &self.cell)
            .finish_non_exhaustive()
    }
}

impl<P: SaleStore, S: StockStore> FlashSales<P, S> {
    pub fn new(
        sales: P,
        stock: S,
        settings: Settings,
        cell: String,
        clock: Clock,
        metrics: Metrics,
    ) -> Self {
        Self {
            sales,
            stock,
            settings,
            cell,
            clock,
            metrics,
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        (self.clock)()
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    async fn load(&self, id: SaleId) -> Result<FlashSale> {
        self.sales
            .get(id)
            .await?
            .ok_or(FlashSaleError::SaleNotFound(id))
    }

    async fn view(&self, sale: FlashSale) -> Result<SaleView> {
        let level = if sale.warmed_up {
            self.stock.levels(&[sale.id]).await?.pop().flatten()
        } else {
            None
        };
        let now = self.now();
        Ok(SaleView {
            status: sale.status(now, level),
            sale,
            level,
            now,
        })
    }

    // ---- admin ----

    #[tracing::instrument(skip(self, raw), fields(admin = %caller.user_id))]
    pub async fn create_sale(
        &self,
        caller: &Caller,
        request_id: &str,
        raw: RawSaleSpec,
    ) -> Result<SaleView> {
        let spec = SaleSpec::new(raw, self.settings.default_max_per_user)?;
        let key = idempotency::Key::new(
            SERVICE,
            "CreateSale",
            &caller.user_id,
            request_id,
            &spec_bytes(&spec),
        )?;
        let sale = FlashSale {
            id: SaleId::new(),
            spec,
            state: AdminState::Scheduled,
            warmed_up: false,
        };
        let id = self.sales.save(&key, &sale, true).await?;
        self.view(self.load(id).await?).await
    }

    pub async fn update_sale(
        &self,
        caller: &Caller,
        request_id: &str,
        id: SaleId,
        raw: RawSaleSpec,
    ) -> Result<SaleView> {
        let spec = SaleSpec::new(raw, self.settings.default_max_per_user)?;
        let mut body = id.to_string().into_bytes();
        body.extend(spec_bytes(&spec));
        let key = idempotency::Key::new(SERVICE, "UpdateSale", &caller.user_id, request_id, &body)?;
        let mut sale = self.load(id).await?;
        if sale.spec != spec {
            if !sale.editable(self.now()) {
                return Err(FlashSaleError::NotEditable(id));
            }
            sale.spec = spec;
            // Guarded in the store: a sale cancelled or ended meanwhile is not edited.
            self.sales.save(&key, &sale, false).await?;
        }
        // Also when nothing changed: a retry after a warm that failed must still reach Redis.
        if sale.warmed_up {
            self.warm(&sale).await?;
        }
        self.view(sale).await
    }

    pub async fn set_state(
        &self,
        caller: &Caller,
        request_id: &str,
        id: SaleId,
        state: AdminState,
    ) -> Result<SaleView> {
        let method = if state == AdminState::Cancelled {
            "CancelSale"
        } else {
            "EndSale"
        };
        let key = idempotency::Key::new(
            SERVICE,
            method,
            &caller.user_id,
            request_id,
            id.to_string().as_bytes(),
        )?;
        let mut sale = self.load(id).await?;
        if sale.state != state {
            if sale.state != AdminState::Scheduled {
                return Err(FlashSaleError::SaleClosed {
                    id,
                    what: sale.state.as_str(),
                });
            }
            sale.state = state;
            self.sales.set_state(&key, id, state).await?;
        }
        // Also when the state was already set: the first call's warm may have failed, and its
        // retry (an idempotent replay) is what brings the change to Redis.
        if sale.warmed_up {
            self.warm(&sale).await?;
        }
        self.view(sale).await
    }

    /// Loads (or reloads) a sale's rules into Redis and rebuilds its stock from PostgreSQL's
    /// orders and the reservations Redis holds, never from counters Redis may have lost.
    async fn warm(&self, sale: &FlashSale) -> Result<Healed> {
        let ttl = std::time::Duration::from_secs(self.settings.reservation_ttl_seconds);
        let orders = self.sales.orders_of(sale.id).await?;
        let healed = self.stock.warm(sale, ttl, &orders).await?;
        if healed.oversold > 0 {
            tracing::error!(sale = %sale.id, oversold = healed.oversold, "flash sale oversold: more units sold or held than its total");
        }
        Ok(healed)
    }

    pub async fn warm_up(&self, id: SaleId) -> Result<SaleView> {
        let mut sale = self.load(id).await?;
        if sale.state != AdminState::Scheduled || self.now() >= sale.spec.ends_at {
            return Err(FlashSaleError::SaleClosed { id, what: "over" });
        }
        self.warm(&sale).await?;
        if !sale.warmed_up {
            self.sales.mark_warmed(id).await?;
            sale.warmed_up = true;
        }
        self.view(sale).await
    }

    pub async fn stats(&self, id: SaleId) -> Result<Stats> {
        let sale = self.load(id).await?;
        if !sale.warmed_up {
            return Ok(Stats {
                level: StockLevel {
                    available: sale.spec.total_quantity,
                    ..StockLevel::default()
                },
                ..Stats::default()
            });
        }
        self.stock.stats(id).await
    }

    // ---- buyers ----

    pub async fn list(&self) -> Result<Vec<SaleView>> {
        let now = self.now();
        let sales = self.sales.list_open(now, 100).await?;
        let warmed: Vec<SaleId> = sales.iter().filter(|s| s.warmed_up).map(|s| s.id).collect();
        let mut levels = self.stock.levels(&warmed).await?.into_iter();
        Ok(sales
            .into_iter()
            .map(|sale| {
                let level = if sale.warmed_up {
                    levels.next().flatten()
                } else {
                    None
                };
                SaleView {
                    status: sale.status(now, level),
                    sale,
                    level,
                    now,
                }
            })
            .collect())
    }

    /// `sale` with its stock read again (Redis only; for streams that poll).
    pub async fn refresh(&self, sale: FlashSale) -> Result<SaleView> {
        self.view(sale).await
    }

    /// A sale as a buyer sees it now, without counting a view (for streams).
    pub async fn view_of(&self, id: SaleId) -> Result<SaleView> {
        self.view(self.load(id).await?).await
    }

    pub async fn get(&self, id: SaleId) -> Result<SaleView> {
        let sale = self.load(id).await?;
        if sale.warmed_up {
            self.stock.count_view(id).await?;
        }
        self.view(sale).await
    }

    /// The first view of a `WatchSale` stream, within the buyer's budget of openings: each
    /// opening reads both stores, so a client reconnecting in a loop is refused with
    /// `RATE_LIMITED` before it costs a read (the stream's later views come from the sale's
    /// shared poller and cost the buyer nothing).
    pub async fn watch(&self, caller: &Caller, id: SaleId) -> Result<SaleView> {
        self.stock
            .admit_watch(&caller.user_id, self.buyer_limit())
            .await??;
        self.get(id).await
    }

    /// A buyer's budget per scope: `rateLimitBurst` calls, then one per `rateLimitIntervalMs`.
    fn buyer_limit(&self) -> RateLimit {
        RateLimit {
            burst: self.settings.rate_limit_burst,
            interval: std::time::Duration::from_millis(self.settings.rate_limit_interval_ms),
        }
    }

    pub async fn challenge(&self, caller: &Caller, id: SaleId) -> Result<Challenge> {
        let sale = self.load(id).await?;
        if sale.spec.pow_difficulty == 0 {
            return Err(FlashSaleError::Invalid(format!(
                "sale {id} does not require a proof of work"
            )));
        }
        let challenge = format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple());
        let ttl = std::time::Duration::from_secs(self.settings.challenge_ttl_seconds);
        // The same budget as attempts: a challenge is only worth one attempt.
        self.stock
            .issue_challenge(id, &caller.user_id, &challenge, ttl, self.buyer_limit())
            .await??;
        Ok(Challenge {
            challenge,
            difficulty: sale.spec.pow_difficulty,
            expires_at: self.now()
                + Duration::seconds(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX)),
        })
    }

    /// The hot path: one Lua script, no PostgreSQL. The proof of work's strength is computed
    /// here; the script compares it with the sale's difficulty and consumes the challenge.
    pub async fn attempt(
        &self,
        caller: &Caller,
        request_id: &str,
        sale: SaleId,
        quantity: u32,
        proof: Option<(&str, &str)>,
    ) -> Result<Reservation> {
        idempotency::Key::new(SERVICE, "AttemptPurchase", &caller.user_id, request_id, b"")?;
        let quantity = Quantity::new(quantity, crate::domain::sale::MAX_PER_USER)?;
        let challenge = proof
            .map(|(challenge, nonce)| (challenge, crate::domain::pow::strength(challenge, nonce)));
        let attempt = Attempt {
            sale,
            user: &caller.user_id,
            quantity,
            request_id,
            reservation: ReservationId::new(sale),
            challenge,
            now: self.now(),
        };
        let mut answer = self.stock.reserve(&attempt, &self.settings).await?;
        if matches!(answer, Err(Refusal::NotWarmedUp)) {
            // Off the hot path: the sale is unknown, not warmed yet, or Redis lost it; in the
            // last case it is rebuilt from PostgreSQL and the attempt goes on.
            let record = self.load(sale).await?;
            if record.warmed_up {
                self.warm(&record).await?;
                answer = self.stock.reserve(&attempt, &self.settings).await?;
            }
        }
        match answer {
            Ok(reservation) => {
                self.metrics.reserved();
                Ok(reservation)
            }
            Err(refusal) => {
                self.metrics.refused(refusal.reason());
                Err(refusal.into())
            }
        }
    }

    /// Turns `buyer`'s reservation into an order. Money is decided here, so only a service
    /// identity (the payment system, once the payment settled) may call it: a buyer could
    /// otherwise name any payment reference.
    pub async fn confirm(
        &self,
        caller: &Caller,
        request_id: &str,
        buyer: &str,
        reservation: &str,
        payment_reference: &str,
    ) -> Result<Order> {
        caller.require_service("ConfirmPurchase", "attempt and cancel purchases")?;
        let id = ReservationId::parse(reservation)?;
        if buyer.is_empty() {
            return Err(FlashSaleError::Invalid(
                "buyer_id is required: the user the reservation was made for".into(),
            ));
        }
        if payment_reference.is_empty()
            || payment_reference.len() > 128
            || !payment_reference.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(FlashSaleError::Invalid(
                "payment_reference must be 1 to 128 printable ASCII characters".into(),
            ));
        }
        let body = idempotency::composite(&[reservation, buyer, payment_reference]);
        let key = idempotency::Key::new(
            SERVICE,
            "ConfirmPurchase",
            &caller.user_id,
            request_id,
            body.as_bytes(),
        )?;
        let sale = self.load(id.sale).await?;
        // Before Redis: a replay, a reused id or an order already recorded must not move stock
        // (and a recorded order whose confirm Redis lost is marked confirmed again, so it can
        // never expire back into stock).
        if let Some(order) = self.sales.recorded(&key, reservation).await? {
            if order.user_id != buyer {
                return Err(FlashSaleError::NotOwner(id));
            }
            self.stock.restore(id.sale, &[Sold::from(&order)]).await?;
            return Ok(order);
        }
        let quantity = match self.stock.confirm(id, buyer, self.now()).await? {
            HoldOutcome::Done { quantity } => quantity,
            other => return Err(hold_error(id, other)),
        };
        let unit_price = sale.spec.sale_price;
        let total = unit_price
            .times(quantity)
            .map_err(|e| FlashSaleError::Invalid(e.to_string()))?;
        let order = Order {
            id: Uuid::now_v7(),
            sale_id: sale.id,
            reservation_id: id.to_string(),
            user_id: buyer.to_owned(),
            quantity,
            unit_price,
            total,
            payment_reference: payment_reference.to_owned(),
            created_at: self.now(),
        };
        let purchased = Purchased {
            order_id: order.id,
            sale_id: sale.id,
            product_id: sale.spec.product_id.clone(),
            user_id: order.user_id.clone(),
            quantity,
            total,
        };
        let event = Envelope::new(&self.cell, PURCHASED, 1, &purchased)?;
        let recorded = self.sales.record_order(&key, &order, &event).await?;
        if recorded.id == order.id {
            self.metrics.confirmed();
        }
        Ok(recorded)
    }

    pub async fn cancel(&self, caller: &Caller, request_id: &str, reservation: &str) -> Result<()> {
        idempotency::Key::new(
            SERVICE,
            "CancelReservation",
            &caller.user_id,
            request_id,
            b"",
        )?;
        let id = ReservationId::parse(reservation)?;
        match self.stock.cancel(id, &caller.user_id).await? {
            HoldOutcome::Done { .. } => Ok(()),
            other => Err(hold_error(id, other)),
        }
    }

    // ---- background ----

    /// Warms every sale that starts within the warm-up window, so no admin has to; returns how
    /// many were warmed.
    pub async fn warm_due(&self) -> Result<usize> {
        let now = self.now();
        let window =
            Duration::seconds(i64::try_from(self.settings.warm_up_seconds).unwrap_or(i64::MAX));
        let due = self.sales.list_unwarmed(now, now + window).await?;
        for sale in &due {
            self.warm_up(sale.id).await?;
            tracing::info!(sale = %sale.id, starts_at = %sale.spec.starts_at, "flash sale warmed up ahead of its start");
        }
        Ok(due.len())
    }

    /// Returns every expired reservation's stock; run by the sweeper task. A due reservation
    /// that PostgreSQL has an order for (its confirm lost by Redis) is confirmed again instead.
    pub async fn sweep(&self) -> Result<u32> {
        let now = self.now();
        let mut released = 0;
        for sale in self.sales.list_warmed(now).await? {
            for _ in 0..SWEEP_ROUNDS {
                let due = self.stock.due(sale.id, now, SWEEP_BATCH).await?;
                let paid = if due.is_empty() {
                    Vec::new()
                } else {
                    self.sales.orders_for(&due).await?
                };
                if !paid.is_empty() {
                    let healed = self.stock.restore(sale.id, &paid).await?;
                    tracing::warn!(sale = %sale.id, orders = paid.len(), oversold = healed.oversold, "recorded orders redis had lost were confirmed again");
                }
                // Also with nothing due: the pass gives keys created since the warm-up their
                // expiry.
                released += self.stock.sweep(sale.id, now, &due).await?;
                if due.len() < SWEEP_BATCH {
                    break;
                }
            }
        }
        self.metrics.expired(released);
        Ok(released)
    }

    /// Compares Redis and PostgreSQL for every warmed sale and repairs the sales that disagree
    /// by re-warming them from PostgreSQL; returns the drifts found (before the repair).
    pub async fn reconcile(&self) -> Result<Vec<Drift>> {
        let sales = self.sales.list_warmed(self.now()).await?;
        let ids: Vec<SaleId> = sales.iter().map(|s| s.id).collect();
        let levels = self.stock.levels(&ids).await?;
        let mut drifts = Vec::new();
        for (sale, level) in sales.iter().zip(levels) {
            let recorded = self.sales.units_sold(sale.id).await?;
            let drift = match level {
                None => Drift {
                    sale: sale.id,
                    redis_sold: None,
                    recorded_sold: recorded,
                    unaccounted: 0,
                },
                Some(l) => {
                    let accounted =
                        i64::from(l.available) + i64::from(l.reserved) + i64::from(l.sold);
                    Drift {
                        sale: sale.id,
                        redis_sold: Some(u64::from(l.sold)),
                        recorded_sold: recorded,
                        unaccounted: i64::from(sale.spec.total_quantity) - accounted,
                    }
                }
            };
            if !drift.is_clean() {
                tracing::warn!(sale = %sale.id, ?drift, "flash sale stock drift between redis and postgres; re-warming from postgres");
                self.warm(sale).await?;
                drifts.push(drift);
            }
        }
        self.metrics.drift(&drifts);
        Ok(drifts)
    }
}

/// Due reservations checked against PostgreSQL and released per round trip of the sweeper.
const SWEEP_BATCH: usize = 500;
/// Batches per sale and pass; what is left waits for the next pass (every `sweepIntervalMs`).
const SWEEP_ROUNDS: usize = 20;

/// How Redis and PostgreSQL disagree about one sale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drift {
    pub sale: SaleId,
    /// Units Redis counts as sold; `None` when Redis lost the sale's keys.
    pub redis_sold: Option<u64>,
    pub recorded_sold: u64,
    /// total − (available + reserved + sold): non-zero means units appeared or vanished.
    pub unaccounted: i64,
}

impl Drift {
    pub fn is_clean(&self) -> bool {
        self.redis_sold == Some(self.recorded_sold) && self.unaccounted == 0
    }

    /// Units in disagreement, for the metric.
    pub fn units(&self) -> u64 {
        let sold = self
            .redis_sold
            .map_or(self.recorded_sold, |r| r.abs_diff(self.recorded_sold));
        sold + self.unaccounted.unsigned_abs()
    }
}

fn hold_error(id: ReservationId, outcome: HoldOutcome) -> FlashSaleError {
    match outcome {
        HoldOutcome::NotFound | HoldOutcome::Done { .. } => FlashSaleError::ReservationNotFound(id),
        HoldOutcome::NotOwner => FlashSaleError::NotOwner(id),
        HoldOutcome::Expired => FlashSaleError::ReservationGone {
            id,
            what: "expired; its units went back on sale",
            reason: "RESERVATION_EXPIRED",
        },
        HoldOutcome::Cancelled => FlashSaleError::ReservationGone {
            id,
            what: "been cancelled",
            reason: "RESERVATION_CANCELLED",
        },
        HoldOutcome::Confirmed => FlashSaleError::ReservationGone {
            id,
            what: "already been paid for",
            reason: "ALREADY_CONFIRMED",
        },
    }
}

fn spec_bytes(spec: &SaleSpec) -> Vec<u8> {
    serde_json::to_vec(spec).unwrap_or_default()
}

/// Payload of `flashsale.purchased` v1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Purchased {
    pub order_id: Uuid,
    pub sale_id: SaleId,
    pub product_id: String,
    pub user_id: String,
    pub quantity: u32,
    pub total: Money,
}
