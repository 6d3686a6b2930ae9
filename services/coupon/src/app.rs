//! Coupon use cases over two ports: [`CouponStore`] (PostgreSQL, the record, with its own
//! guards on the limits) and [`CouponCache`] (Redis: the fast lookup and the live counters,
//! changed only by Lua scripts). Redemption consumes in Redis first and records in PostgreSQL
//! second, and reversal the other way round, so a crash in between leaves Redis counting a use
//! too many — never too few — until the reconcile job lines it up with the record.

use std::{collections::BTreeMap, future::Future};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use titan_kit::{
    ErrorCode, KitError, ServiceError,
    auth::{Caller, NotAService},
    events::Envelope,
    idempotency::{self, IdempotencyError},
    money::Money,
    ratelimit::{RateLimit, RateLimited},
};
use uuid::Uuid;

use crate::{
    config::Settings,
    domain::{
        BadCode, Cart, CartError, Coupon, CouponCode, CouponSpec, CouponStatus, REDEEMED, REVERSED,
        RawSpec, Refusal, SERVICE, SpecError, UsageSnapshot, discount::combine, evaluate, stack,
    },
    metrics::Metrics,
};

/// Entries of Redis's ledger younger than this and unknown to PostgreSQL are redemptions in
/// flight, which reconcile leaves alone.
pub const IN_FLIGHT_GRACE: std::time::Duration = std::time::Duration::from_secs(60);
/// A shopper's budget of `ValidateCoupon`: 20 at once, then 10 a second.
pub const VALIDATION_LIMIT: RateLimit = RateLimit {
    burst: 20,
    interval: std::time::Duration::from_millis(100),
};
/// Most coupons one `GenerateCoupons` call creates.
pub const MAX_GENERATED: u32 = 10_000;
/// Coupons `GenerateCoupons` loads into Redis at once.
const WARM_IN_FLIGHT: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum CouponError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Code(#[from] BadCode),
    #[error(transparent)]
    Cart(#[from] CartError),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error("coupon {0} already exists")]
    AlreadyExists(CouponCode),
    #[error("order {0} has no coupon redemptions")]
    OrderNotFound(String),
    #[error("order {0} redeemed its coupons as another shopper")]
    NotOwner(String),
    #[error(
        "order {order} already used coupon {code} and gave it back; an order redeems a coupon once"
    )]
    AlreadyReversed { code: CouponCode, order: String },
    #[error("total_limit {limit} is below the {uses} uses coupon {code} already has")]
    LimitBelowUses {
        code: CouponCode,
        limit: u32,
        uses: u32,
    },
    #[error(transparent)]
    Idempotency(#[from] IdempotencyError),
    #[error(transparent)]
    NotAService(#[from] NotAService),
    #[error(transparent)]
    RateLimited(#[from] RateLimited),
    #[error(transparent)]
    Kit(#[from] KitError),
}

titan_kit::datastore_errors!(CouponError);

impl ServiceError for CouponError {
    fn code(&self) -> ErrorCode {
        match self {
            Self::Spec(_) | Self::Code(_) | Self::Cart(_) | Self::Invalid(_) => {
                ErrorCode::InvalidArgument
            }
            Self::Refused(Refusal::NotFound(_)) | Self::OrderNotFound(_) => ErrorCode::NotFound,
            Self::Refused(
                Refusal::TooMany(_)
                | Refusal::DuplicateCode(_)
                | Refusal::DuplicateType(..)
                | Refusal::Exclusive(_),
            ) => ErrorCode::InvalidArgument,
            Self::Refused(_) | Self::AlreadyReversed { .. } | Self::LimitBelowUses { .. } => {
                ErrorCode::FailedPrecondition
            }
            Self::AlreadyExists(_) => ErrorCode::AlreadyExists,
            Self::NotOwner(_) => ErrorCode::PermissionDenied,
            Self::Idempotency(e) => e.code(),
            Self::NotAService(e) => e.code(),
            Self::RateLimited(e) => e.code(),
            Self::Kit(e) => e.code(),
        }
    }

    fn reason(&self) -> Option<&'static str> {
        match self {
            Self::Refused(r) => Some(r.reason()),
            Self::AlreadyExists(_) => Some("COUPON_EXISTS"),
            Self::AlreadyReversed { .. } => Some("REDEMPTION_REVERSED"),
            Self::LimitBelowUses { .. } => Some("LIMIT_BELOW_USES"),
            Self::Idempotency(e) => e.reason(),
            Self::NotAService(e) => e.reason(),
            Self::RateLimited(e) => e.reason(),
            _ => None,
        }
    }
}

pub type Result<T> = std::result::Result<T, CouponError>;

/// A coupon with its consumed uses, as PostgreSQL records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCoupon {
    pub coupon: Coupon,
    pub uses: u32,
}

/// One coupon used by one order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Redemption {
    pub id: Uuid,
    pub code: CouponCode,
    pub campaign: String,
    pub order_id: String,
    pub user_id: String,
    pub discount: Money,
    pub reversed: bool,
    pub redeemed_at: DateTime<Utc>,
}

/// Usage analytics of a coupon or a campaign.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    pub redemptions: u64,
    pub reversals: u64,
    pub unique_users: u64,
    /// Discount given by applied redemptions, per currency code.
    pub discount_given: BTreeMap<String, i64>,
}

/// A redemption of the record, as reconcile gives it to Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    pub order_id: String,
    pub user_id: String,
    pub applied: bool,
}

/// What Redis holds of a coupon for one shopper (and order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub coupon: Coupon,
    pub usage: UsageSnapshot,
    /// The order already holds a use of this coupon (a retried redemption).
    pub held: Option<Hold>,
}

/// What Redis knows of a code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cached {
    Hit(Snapshot),
    /// Recently looked up and not found in the record.
    Missing,
    /// Not loaded.
    Cold,
}

/// An order's hold on a coupon, in Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    Applied,
    Reversed,
    /// Held by another shopper.
    OtherUser,
}

/// The answer of the consume script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consume {
    /// A use was taken now.
    Taken,
    /// The order already held it (a retry): nothing taken.
    AlreadyHeld,
    NotWarm,
    Refused(&'static str),
}

/// The answer of a recording transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    Done(Vec<Redemption>),
    /// The record's own guard refused (Redis had drifted): nothing was written.
    Refused(Refusal),
}

/// PostgreSQL: coupons, redemptions, usage, and their events.
pub trait CouponStore: Send + Sync + 'static {
    /// Inserts coupons under an idempotency key; `AlreadyExists` when a code is taken. Answers
    /// the codes created, by the first call of the key on a replay.
    fn create(
        &self,
        key: &idempotency::Key,
        coupons: &[Coupon],
    ) -> impl Future<Output = Result<Vec<CouponCode>>> + Send;
    /// Replaces a coupon's spec and pause flag (not its uses).
    fn update(
        &self,
        key: &idempotency::Key,
        coupon: &Coupon,
    ) -> impl Future<Output = Result<()>> + Send;
    fn get(&self, code: &CouponCode) -> impl Future<Output = Result<Option<StoredCoupon>>> + Send;
    /// Coupons by code after `after`, of `campaign` when given.
    fn list(
        &self,
        campaign: Option<&str>,
        after: Option<&CouponCode>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<StoredCoupon>>> + Send;
    fn usage(&self, codes: &[CouponCode]) -> impl Future<Output = Result<Vec<Usage>>> + Send;
    /// Usage of a campaign and how many coupons it has.
    fn campaign_usage(&self, campaign: &str) -> impl Future<Output = Result<(Usage, u32)>> + Send;
    /// Records the redemptions of one order with their events, guarding both limits again; a
    /// replay of the key or an order that already holds a coupon answers what was recorded.
    /// Takes them by value: they are handed on to the writers of the group commit.
    fn redeem(
        &self,
        key: idempotency::Key,
        redemptions: Vec<(Redemption, u32, u32, Envelope)>,
    ) -> impl Future<Output = Result<Recorded>> + Send;
    /// Reverses an order's applied redemptions with their events; returns those reversed now.
    fn reverse(
        &self,
        key: &idempotency::Key,
        order_id: &str,
        events: &(dyn Fn(&Redemption, &str) -> Result<Envelope> + Sync),
    ) -> impl Future<Output = Result<Vec<Redemption>>> + Send;
    fn ledger(&self, code: &CouponCode) -> impl Future<Output = Result<Vec<LedgerEntry>>> + Send;
    /// Codes and recorded uses of coupons that have not expired.
    fn live_uses(
        &self,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<(CouponCode, u32)>>> + Send;
}

/// Redis: the fast lookup and the live counters of coupons.
pub trait CouponCache: Send + Sync + 'static {
    fn snapshot(
        &self,
        code: &CouponCode,
        user: &str,
        order: Option<&str>,
    ) -> impl Future<Output = Result<Cached>> + Send;
    /// Remembers for a short while that no coupon has this code, so guessing codes does not
    /// reach PostgreSQL each time; loading the coupon forgets it.
    fn mark_missing(&self, code: &CouponCode) -> impl Future<Output = Result<()>> + Send;
    /// Forgets that these codes were missing (they have just been created).
    fn forget_missing(&self, codes: &[CouponCode]) -> impl Future<Output = Result<()>> + Send;
    fn consume(
        &self,
        code: &CouponCode,
        user: &str,
        order: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Consume>> + Send;
    /// Gives an order's use back: `forget` for a redemption that was never recorded, otherwise
    /// it is marked reversed. Returns whether a use came back.
    fn release(
        &self,
        code: &CouponCode,
        order: &str,
        forget: bool,
    ) -> impl Future<Output = Result<bool>> + Send;
    /// Loads a coupon and its ledger, keeping entries in flight; returns the uses now counted.
    fn sync(
        &self,
        coupon: &Coupon,
        ledger: &[LedgerEntry],
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<u32>> + Send;
    /// Live use counters; `None` for coupons not loaded.
    fn uses(&self, codes: &[CouponCode]) -> impl Future<Output = Result<Vec<Option<u32>>>> + Send;
    /// Takes one `ValidateCoupon` of `user`'s budget, or says when to retry.
    fn throttle(
        &self,
        user: &str,
        limit: RateLimit,
    ) -> impl Future<Output = Result<std::result::Result<(), RateLimited>>> + Send;
}

/// The clock, replaceable in tests.
pub use titan_kit::Clock;

/// What `ValidateCoupon` answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validation {
    pub discount: Money,
    pub refusal: Option<Refusal>,
}

/// A coupon with its status and usage, for admins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CouponView {
    pub coupon: Coupon,
    pub status: CouponStatus,
    pub uses: u32,
    pub usage: Usage,
}

/// A coupon whose Redis counter disagreed with the record at reconcile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drift {
    pub code: CouponCode,
    pub redis: u32,
    pub postgres: u32,
}

#[derive(Clone)]
pub struct Coupons<P, C> {
    store: P,
    cache: C,
    settings: Settings,
    cell: String,
    clock: Clock,
    metrics: Metrics,
    validations: RateLimit,
}

impl<P, C> std::fmt::Debug for Coupons<P, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coupons")
            .field("settings", &self.settings)
            .field("cell", &self.cell)
            .finish_non_exhaustive()
    }
}

fn body(value: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

fn check_order_id(order_id: &str) -> Result<()> {
    if order_id.is_empty()
        || order_id.len() > 128
        || !order_id.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(CouponError::Invalid(
            "order_id is required: at most 128 printable ASCII characters".into(),
        ));
    }
    Ok(())
}

/// Payload of `coupon.redeemed` and `coupon.reversed` v1; `total` is the discount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedemptionEvent {
    pub redemption_id: Uuid,
    pub code: String,
    pub campaign: String,
    pub coupon_type: String,
    pub user_id: String,
    pub order_id: String,
    pub total: Money,
}

impl<P: CouponStore, C: CouponCache> Coupons<P, C> {
    pub fn new(
        store: P,
        cache: C,
        settings: Settings,
        cell: String,
        clock: Clock,
        metrics: Metrics,
    ) -> Self {
        Self {
            store,
            cache,
            settings,
            cell,
            clock,
            metrics,
            validations: VALIDATION_LIMIT,
        }
    }

    /// Replaces the per-shopper budget of `ValidateCoupon` ([`VALIDATION_LIMIT`]).
    #[must_use]
    pub fn with_validation_limit(mut self, limit: RateLimit) -> Self {
        self.validations = limit;
        self
    }

    pub fn now(&self) -> DateTime<Utc> {
        (self.clock)()
    }

    pub fn code(&self, raw: &str) -> Result<CouponCode> {
        Ok(CouponCode::parse(raw, self.settings.max_code_length)?)
    }

    async fn load(&self, code: &CouponCode) -> Result<StoredCoupon> {
        self.store
            .get(code)
            .await?
            .ok_or_else(|| Refusal::NotFound(code.clone()).into())
    }

    /// Loads a coupon into Redis from the record.
    async fn warm(&self, code: &CouponCode) -> Result<u32> {
        let stored = self.load(code).await?;
        let ledger = self.store.ledger(code).await?;
        self.cache.sync(&stored.coupon, &ledger, self.now()).await
    }

    /// What Redis says of a coupon for a shopper, loading it on a miss.
    async fn snapshot(
        &self,
        code: &CouponCode,
        user: &str,
        order: Option<&str>,
    ) -> Result<Snapshot> {
        match self.cache.snapshot(code, user, order).await? {
            Cached::Hit(s) => return Ok(s),
            Cached::Missing => return Err(Refusal::NotFound(code.clone()).into()),
            Cached::Cold => {}
        }
        match self.warm(code).await {
            Err(CouponError::Refused(Refusal::NotFound(_))) => {
                self.cache.mark_missing(code).await?;
                return Err(Refusal::NotFound(code.clone()).into());
            }
            other => other?,
        };
        match self.cache.snapshot(code, user, order).await? {
            Cached::Hit(s) => Ok(s),
            _ => Err(
                KitError::Other(format!("coupon {code} vanished from redis after loading")).into(),
            ),
        }
    }

    async fn view(&self, stored: StoredCoupon) -> Result<CouponView> {
        let usage = self
            .store
            .usage(std::slice::from_ref(&stored.coupon.spec.code))
            .await?
            .pop()
            .unwrap_or_default();
        Ok(CouponView {
            status: stored.coupon.status(self.now(), stored.uses),
            coupon: stored.coupon,
            uses: stored.uses,
            usage,
        })
    }

    // ---- admin ----

    #[tracing::instrument(skip(self, raw), fields(admin = %caller.user_id))]
    pub async fn create(
        &self,
        caller: &Caller,
        request_id: &str,
        raw: RawSpec,
    ) -> Result<CouponView> {
        let spec = CouponSpec::new(raw, self.settings.max_code_length)?;
        let key = idempotency::Key::new(
            SERVICE,
            "CreateCoupon",
            &caller.user_id,
            request_id,
            &body(&spec),
        )?;
        let coupon = Coupon {
            spec,
            paused: false,
        };
        self.store
            .create(&key, std::slice::from_ref(&coupon))
            .await?;
        self.warm(&coupon.spec.code).await?;
        self.view(self.load(&coupon.spec.code).await?).await
    }

    /// Creates `count` coupons like `template`, each with `prefix` and a random suffix.
    #[tracing::instrument(skip(self, template), fields(admin = %caller.user_id))]
    pub async fn generate(
        &self,
        caller: &Caller,
        request_id: &str,
        mut template: RawSpec,
        prefix: &str,
        count: u32,
    ) -> Result<Vec<CouponCode>> {
        if !(1..=MAX_GENERATED).contains(&count) {
            return Err(CouponError::Invalid(format!(
                "count must be 1 to {MAX_GENERATED}, got {count}"
            )));
        }
        const SUFFIX: usize = 10;
        let prefix = prefix.trim().to_ascii_uppercase();
        if prefix.len() + SUFFIX > self.settings.max_code_length as usize {
            return Err(CouponError::Invalid(format!(
                "prefix {prefix:?} leaves no room for the {SUFFIX}-character random part within {} characters",
                self.settings.max_code_length
            )));
        }
        // The template's code is replaced; checking it with the prefix alone validates the rest.
        template.code = format!("{prefix}{}", "0".repeat(SUFFIX));
        let spec = CouponSpec::new(template, self.settings.max_code_length)?;
        let mut request = body(&spec);
        request.extend(count.to_be_bytes());
        let key = idempotency::Key::new(
            SERVICE,
            "GenerateCoupons",
            &caller.user_id,
            request_id,
            &request,
        )?;
        let mut codes = std::collections::BTreeSet::new();
        while codes.len() < count as usize {
            codes.insert(self.code(&format!("{prefix}{}", random_suffix(SUFFIX)))?);
        }
        let coupons: Vec<Coupon> = codes
            .iter()
            .map(|code| Coupon {
                spec: CouponSpec {
                    code: code.clone(),
                    ..spec.clone()
                },
                paused: false,
            })
            .collect();
        // A replay creates nothing and answers the codes of the first call.
        let created = self.store.create(&key, &coupons).await?;
        self.cache.forget_missing(&created).await?;
        // Loaded into Redis now, so each coupon's first redemption — for single-use codes,
        // the only one — takes the fast path instead of two reads of the record and a load.
        // Only coupons this call created: their record has no redemption yet, so an empty
        // ledger is the truth. A replay answers the first call's codes (not the random ones
        // drawn above), and those may have been redeemed since; they load on first use.
        if created.iter().eq(coupons.iter().map(|c| &c.spec.code)) {
            let now = self.now();
            for chunk in coupons.chunks(WARM_IN_FLIGHT) {
                let loads: Vec<_> = chunk.iter().map(|c| self.cache.sync(c, &[], now)).collect();
                futures::future::try_join_all(loads).await?;
            }
        }
        Ok(created)
    }

    #[tracing::instrument(skip(self, raw), fields(admin = %caller.user_id))]
    pub async fn update(
        &self,
        caller: &Caller,
        request_id: &str,
        raw: RawSpec,
    ) -> Result<CouponView> {
        let spec = CouponSpec::new(raw, self.settings.max_code_length)?;
        let key = idempotency::Key::new(
            SERVICE,
            "UpdateCoupon",
            &caller.user_id,
            request_id,
            &body(&spec),
        )?;
        let stored = self.load(&spec.code).await?;
        if spec.total_limit > 0 && spec.total_limit < stored.uses {
            return Err(CouponError::LimitBelowUses {
                code: spec.code,
                limit: spec.total_limit,
                uses: stored.uses,
            });
        }
        let coupon = Coupon {
            spec,
            paused: stored.coupon.paused,
        };
        self.store.update(&key, &coupon).await?;
        self.warm(&coupon.spec.code).await?;
        self.view(self.load(&coupon.spec.code).await?).await
    }

    pub async fn set_paused(
        &self,
        caller: &Caller,
        request_id: &str,
        code: &str,
        paused: bool,
    ) -> Result<CouponView> {
        let code = self.code(code)?;
        let key = idempotency::Key::new(
            SERVICE,
            "SetCouponPaused",
            &caller.user_id,
            request_id,
            format!("{code}|{paused}").as_bytes(),
        )?;
        let mut stored = self.load(&code).await?;
        stored.coupon.paused = paused;
        self.store.update(&key, &stored.coupon).await?;
        self.warm(&code).await?;
        self.view(self.load(&code).await?).await
    }

    /// A page of coupons with their usage, and the code to continue after.
    pub async fn list(
        &self,
        campaign: &str,
        page_size: u32,
        after: &str,
    ) -> Result<(Vec<CouponView>, Option<CouponCode>)> {
        let size = match page_size {
            0 => 50,
            1..=500 => page_size,
            _ => {
                return Err(CouponError::Invalid(format!(
                    "page_size must be 1 to 500, got {page_size}"
                )));
            }
        };
        let after = match after {
            "" => None,
            token => Some(self.code(token).map_err(|_| {
                CouponError::Invalid(format!("page_token {token:?} is not one this service gave"))
            })?),
        };
        let campaign = (!campaign.trim().is_empty()).then(|| campaign.trim());
        let page = self.store.list(campaign, after.as_ref(), size + 1).await?;
        let more = page.len() > size as usize;
        let page: Vec<StoredCoupon> = page.into_iter().take(size as usize).collect();
        let codes: Vec<CouponCode> = page.iter().map(|s| s.coupon.spec.code.clone()).collect();
        let usage = self.store.usage(&codes).await?;
        let now = self.now();
        let next = more.then(|| codes.last().cloned()).flatten();
        let views = page
            .into_iter()
            .zip(usage)
            .map(|(s, usage)| CouponView {
                status: s.coupon.status(now, s.uses),
                coupon: s.coupon,
                uses: s.uses,
                usage,
            })
            .collect();
        Ok((views, next))
    }

    pub async fn usage(&self, code: &str) -> Result<Usage> {
        let code = self.code(code)?;
        self.load(&code).await?;
        Ok(self.store.usage(&[code]).await?.pop().unwrap_or_default())
    }

    pub async fn campaign_usage(&self, campaign: &str) -> Result<(Usage, u32)> {
        let campaign = campaign.trim();
        if campaign.is_empty() {
            return Err(CouponError::Invalid("campaign is required".into()));
        }
        self.store.campaign_usage(campaign).await
    }

    // ---- shoppers ----

    /// Whether `code` applies to `cart` for `caller`, and what it takes off; consumes nothing.
    /// Each call reads the store, so each shopper has a budget of them.
    pub async fn validate(&self, caller: &Caller, code: &str, cart: &Cart) -> Result<Validation> {
        self.cache
            .throttle(&caller.user_id, self.validations)
            .await??;
        let code = self.code(code)?;
        let zero = Money {
            minor_units: 0,
            currency: cart.currency(),
        };
        let snapshot = match self.snapshot(&code, &caller.user_id, None).await {
            Ok(s) => s,
            Err(CouponError::Refused(r)) => {
                self.metrics.validated(r.reason());
                return Ok(Validation {
                    discount: zero,
                    refusal: Some(r),
                });
            }
            Err(e) => return Err(e),
        };
        match evaluate(&snapshot.coupon, snapshot.usage, cart, self.now()) {
            Ok(d) => {
                self.metrics.validated("valid");
                Ok(Validation {
                    discount: Money {
                        minor_units: d,
                        ..zero
                    },
                    refusal: None,
                })
            }
            Err(r) => {
                self.metrics.validated(r.reason());
                Ok(Validation {
                    discount: zero,
                    refusal: Some(r),
                })
            }
        }
    }

    /// Consumes one use of each code for `order_id` of `shopper`, all or nothing. The cart's
    /// prices decide the discount, so only a service identity (checkout, which priced the cart
    /// itself) may redeem; a shopper validates.
    #[tracing::instrument(skip(self, cart), fields(service = %caller.user_id))]
    pub async fn redeem(
        &self,
        caller: &Caller,
        request_id: &str,
        shopper: &str,
        codes: &[String],
        cart: &Cart,
        order_id: &str,
    ) -> Result<Vec<Redemption>> {
        let result = self
            .try_redeem(caller, request_id, shopper, codes, cart, order_id)
            .await;
        match &result {
            Ok(_) => self.metrics.redeemed("redeemed"),
            Err(CouponError::Refused(r)) => self.metrics.redeemed(r.reason()),
            Err(_) => self.metrics.redeemed("error"),
        }
        result
    }

    async fn try_redeem(
        &self,
        caller: &Caller,
        request_id: &str,
        shopper: &str,
        codes: &[String],
        cart: &Cart,
        order_id: &str,
    ) -> Result<Vec<Redemption>> {
        caller.require_service("RedeemCoupon", "validate coupons")?;
        check_order_id(order_id)?;
        if shopper.is_empty() {
            return Err(CouponError::Invalid(
                "shopper_id is required: the user whose order this is".into(),
            ));
        }
        if codes.is_empty() {
            return Err(CouponError::Invalid(
                "codes: give at least one coupon code".into(),
            ));
        }
        // Before any lookup: a request with a thousand codes costs one answer, not a thousand
        // reads.
        if codes.len() > self.settings.max_coupons_per_order as usize {
            return Err(Refusal::TooMany(self.settings.max_coupons_per_order).into());
        }
        let codes = codes
            .iter()
            .map(|c| self.code(c))
            .collect::<Result<Vec<_>>>()?;
        let user = shopper;
        let key = idempotency::Key::new(
            SERVICE,
            "RedeemCoupon",
            &caller.user_id,
            request_id,
            &body(&(&codes, order_id, user, cart_fingerprint(cart))),
        )?;
        let now = self.now();
        let mut snapshots = Vec::with_capacity(codes.len());
        for code in &codes {
            snapshots.push(self.snapshot(code, user, Some(order_id)).await?);
        }
        let specs: Vec<&CouponSpec> = snapshots.iter().map(|s| &s.coupon.spec).collect();
        stack(&specs, self.settings.max_coupons_per_order)?;
        let mut discounts = Vec::with_capacity(snapshots.len());
        for s in &snapshots {
            let mut usage = s.usage;
            match s.held {
                Some(Hold::OtherUser) => return Err(CouponError::NotOwner(order_id.to_owned())),
                Some(Hold::Reversed) => {
                    return Err(CouponError::AlreadyReversed {
                        code: s.coupon.spec.code.clone(),
                        order: order_id.to_owned(),
                    });
                }
                // A retry: the order's own use must not count against it.
                Some(Hold::Applied) => {
                    usage.uses = usage.uses.saturating_sub(1);
                    usage.user_uses = usage.user_uses.saturating_sub(1);
                }
                None => {}
            }
            discounts.push((s.coupon.spec.kind, evaluate(&s.coupon, usage, cart, now)?));
        }
        combine(cart, &mut discounts);

        // Take the uses in Redis, atomically per coupon; give back what was taken on any failure.
        let mut taken: Vec<&CouponCode> = Vec::new();
        let outcome = async {
            for code in &codes {
                let mut answer = self.cache.consume(code, user, order_id, now).await?;
                if answer == Consume::NotWarm {
                    self.warm(code).await?;
                    answer = self.cache.consume(code, user, order_id, now).await?;
                }
                match answer {
                    Consume::Taken => taken.push(code),
                    Consume::AlreadyHeld => {}
                    Consume::NotWarm => {
                        return Err(KitError::Other(format!("coupon {code} is not in redis after loading")).into());
                    }
                    Consume::Refused(reason) => return Err(self.refusal(code, reason, order_id, &snapshots)),
                }
            }
            let mut rows = Vec::with_capacity(codes.len());
            for (s, (_, discount)) in snapshots.iter().zip(&discounts) {
                let spec = &s.coupon.spec;
                let r = Redemption {
                    id: Uuid::now_v7(),
                    code: spec.code.clone(),
                    campaign: spec.campaign.clone(),
                    order_id: order_id.to_owned(),
                    user_id: user.to_owned(),
                    discount: Money { minor_units: *discount, currency: cart.currency() },
                    reversed: false,
                    redeemed_at: now,
                };
                let event = self.event(REDEEMED, &r, spec.kind.as_str())?;
                rows.push((r, spec.total_limit, spec.per_user_limit, event));
            }
            match self.store.redeem(key, rows).await? {
                Recorded::Done(done) => Ok(done),
                Recorded::Refused(r) => {
                    tracing::warn!(refusal = %r, "the record refused a redemption redis allowed; redis had drifted");
                    Err(r.into())
                }
            }
        }
        .await;
        if outcome.is_err() {
            for code in taken {
                if let Err(e) = self.cache.release(code, order_id, true).await {
                    // Redis now counts a use too many; reconcile gives it back.
                    tracing::warn!(%code, order_id, error = %e, "cannot give back a coupon use");
                }
            }
        }
        outcome
    }

    fn refusal(
        &self,
        code: &CouponCode,
        reason: &str,
        order_id: &str,
        snapshots: &[Snapshot],
    ) -> CouponError {
        let spec = snapshots
            .iter()
            .map(|s| &s.coupon.spec)
            .find(|s| &s.code == code);
        let code = code.clone();
        let (limit, per_user, from, until) = spec
            .map_or((0, 0, DateTime::UNIX_EPOCH, DateTime::UNIX_EPOCH), |s| {
                (s.total_limit, s.per_user_limit, s.valid_from, s.valid_until)
            });
        match reason {
            "PAUSED" => Refusal::Paused(code).into(),
            "NOT_STARTED" => Refusal::NotStarted { code, from }.into(),
            "EXPIRED" => Refusal::Expired { code, until }.into(),
            "DEPLETED" => Refusal::Depleted { code, limit }.into(),
            "USER_LIMIT" => Refusal::UserLimitReached {
                code,
                limit: per_user,
            }
            .into(),
            "REVERSED" => CouponError::AlreadyReversed {
                code,
                order: order_id.to_owned(),
            },
            "OTHER_USER" => CouponError::NotOwner(order_id.to_owned()),
            other => KitError::Other(format!("unexpected consume answer {other:?}")).into(),
        }
    }

    /// The `coupon.redeemed` or `coupon.reversed` event of a redemption.
    fn event(&self, kind: &str, r: &Redemption, coupon_type: &str) -> Result<Envelope> {
        Ok(Envelope::new(
            &self.cell,
            kind,
            1,
            &RedemptionEvent {
                redemption_id: r.id,
                code: r.code.to_string(),
                campaign: r.campaign.clone(),
                coupon_type: coupon_type.to_owned(),
                user_id: r.user_id.clone(),
                order_id: r.order_id.clone(),
                total: r.discount,
            },
        )?)
    }

    /// Gives back the coupon uses of a cancelled order, once. Only the service that cancels
    /// orders (or an admin) may: a shopper reversing their own redemption would get a
    /// single-use coupon back while keeping the discounted order.
    #[tracing::instrument(skip(self), fields(user = %caller.user_id))]
    pub async fn reverse(
        &self,
        caller: &Caller,
        request_id: &str,
        order_id: &str,
    ) -> Result<Vec<Redemption>> {
        if !caller.has_role("admin") {
            caller.require_service("ReverseRedemption", "validate coupons")?;
        }
        check_order_id(order_id)?;
        let key = idempotency::Key::new(
            SERVICE,
            "ReverseRedemption",
            &caller.user_id,
            request_id,
            order_id.as_bytes(),
        )?;
        let announce = |r: &Redemption, coupon_type: &str| self.event(REVERSED, r, coupon_type);
        let reversed = self.store.reverse(&key, order_id, &announce).await?;
        for r in &reversed {
            if let Err(e) = self.cache.release(&r.code, order_id, false).await {
                // Redis counts a use too many until reconcile lines it up with the record.
                tracing::warn!(code = %r.code, order_id, error = %e, "cannot give a coupon use back in redis");
            }
        }
        self.metrics.reversed(reversed.len());
        Ok(reversed)
    }

    /// Compares Redis's counters with the record and reloads the coupons that differ (keeping
    /// redemptions in flight); returns the drifts found.
    pub async fn reconcile(&self) -> Result<Vec<Drift>> {
        let live = self.store.live_uses(self.now()).await?;
        let mut drifts = Vec::new();
        for chunk in live.chunks(500) {
            let codes: Vec<CouponCode> = chunk.iter().map(|(c, _)| c.clone()).collect();
            let redis = self.cache.uses(&codes).await?;
            for ((code, pg), redis) in chunk.iter().zip(redis) {
                if let Some(redis) = redis
                    && redis != *pg
                {
                    drifts.push(Drift {
                        code: code.clone(),
                        redis,
                        postgres: *pg,
                    });
                }
            }
        }
        for d in &drifts {
            self.warm(&d.code).await?;
        }
        self.metrics.drift(&drifts);
        Ok(drifts)
    }
}

/// The parts of a cart that decide a discount, for the idempotency key's request hash.
fn cart_fingerprint(cart: &Cart) -> String {
    let items: Vec<String> = cart
        .items()
        .iter()
        .map(|i| {
            format!(
                "{:?}|{:?}|{}|{}",
                i.product_id, i.category_id, i.unit_price, i.quantity
            )
        })
        .collect();
    format!(
        "{}|{}|{}",
        cart.currency(),
        cart.shipping_fee(),
        items.join(";")
    )
}

/// Letters and digits that cannot be mistaken for each other when read aloud or typed.
const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";

fn random_suffix(len: usize) -> String {
    let mut out = String::with_capacity(len);
    while out.len() < len {
        // Bytes 6 and 8 of a v4 UUID carry its version and variant bits: not random.
        let uuid = Uuid::new_v4();
        let random = uuid
            .as_bytes()
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != 6 && *i != 8);
        for (_, b) in random {
            if out.len() == len {
                break;
            }
            // 256 is a multiple of the 32 letters, so every letter is equally likely.
            out.push(char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]));
        }
    }
    out
}
