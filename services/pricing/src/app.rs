//! Pricing use cases over the store traits: products, rules, competitor prices, the
//! re-optimisation round (scheduled on one replica at a time through a lease in the store, and
//! on demand), the per-replica price cache that `GetPrice`/`GetPrices` read, elasticity and
//! revenue impact.

use std::{
    collections::HashMap,
    future::Future,
    sync::{Arc, RwLock},
};

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use titan_kit::{Clock, ErrorCode, KitError, ServiceError, idempotency, money::Money};
use uuid::Uuid;

use crate::{
    config::Settings,
    domain::{
        CompetitorPrice, Computed, Fit, InputError, NotEnoughData, Observation, ProductId, Rule,
        Segment, Signals, Strategy,
        competitor::reference,
        elasticity::{self, daily_observations},
        price::{self, Inputs},
        revenue::{self, Impact},
        rule::{MAX_COMPETITOR_AGE_SECONDS, winner},
    },
    metrics::Metrics,
};

/// Products priced per store transaction (and per ClickHouse demand query) in a round.
pub const BATCH: usize = 2_000;
/// Most rules a cell may hold: every round reads them all.
pub const MAX_RULES: usize = 10_000;
/// Days of price history and sales an elasticity is estimated from.
pub const ELASTICITY_DAYS: i64 = 90;

#[derive(Debug, thiserror::Error)]
pub enum PricingError {
    #[error(transparent)]
    Invalid(#[from] InputError),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    NotEnoughData(#[from] NotEnoughData),
    #[error("the cell already has its maximum of {MAX_RULES} rules")]
    TooManyRules,
    #[error(transparent)]
    Idempotency(#[from] idempotency::IdempotencyError),
    #[error(transparent)]
    Kit(#[from] KitError),
}

titan_kit::datastore_errors!(PricingError);

impl ServiceError for PricingError {
    fn code(&self) -> ErrorCode {
        match self {
            Self::Invalid(_) => ErrorCode::InvalidArgument,
            Self::NotFound(_) => ErrorCode::NotFound,
            Self::NotEnoughData(_) | Self::TooManyRules => ErrorCode::FailedPrecondition,
            Self::Idempotency(e) => e.code(),
            Self::Kit(e) => e.code(),
        }
    }

    fn reason(&self) -> Option<&'static str> {
        match self {
            Self::Invalid(_) => Some("INVALID_ARGUMENT"),
            Self::NotFound(_) => Some("NOT_FOUND"),
            Self::NotEnoughData(_) => Some("NOT_ENOUGH_DATA"),
            Self::TooManyRules => Some("TOO_MANY_RULES"),
            Self::Idempotency(e) => e.reason(),
            Self::Kit(e) => e.reason(),
        }
    }
}

pub type Result<T, E = PricingError> = std::result::Result<T, E>;

/// A product as pricing knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    pub id: ProductId,
    pub category: String,
    /// Stock level in basis points, 0..=10000.
    pub inventory_bps: u32,
}

/// A current price.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Price {
    pub product_id: ProductId,
    pub segment: Segment,
    pub price: Money,
    pub rule_id: Uuid,
    pub strategy: String,
    pub updated_at: DateTime<Utc>,
}

/// A computed price for the store to write if it is a real change.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub product_id: ProductId,
    pub rule: Arc<Rule>,
    pub computed: Computed,
}

/// One written change of price history.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub id: i64,
    pub product_id: ProductId,
    pub segment: Segment,
    pub old: Option<Money>,
    pub new: Money,
    pub rule_id: Uuid,
    pub strategy: String,
    pub inputs: serde_json::Value,
    pub reason: String,
    pub changed_at: DateTime<Utc>,
}

/// The `pricing.changed` payload.
#[derive(Debug, Serialize)]
pub struct PriceChanged<'a> {
    pub product_id: &'a str,
    pub segment: &'a str,
    pub old_price: Option<Money>,
    pub new_price: Money,
    pub strategy: &'a str,
    pub rule_id: Uuid,
    pub reason: &'a str,
    pub changed_at: DateTime<Utc>,
}

/// Which products a round prices.
#[derive(Debug, Clone)]
pub enum Scope {
    All,
    Category(String),
    Products(Vec<ProductId>),
}

/// What a round did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RoundReport {
    pub products: u64,
    pub without_rule: u64,
    pub computed: u64,
    pub changed: u64,
}

impl RoundReport {
    fn absorb(&mut self, other: Self) {
        self.products += other.products;
        self.without_rule += other.without_rule;
        self.computed += other.computed;
        self.changed += other.changed;
    }
}

/// PostgreSQL: products, rules, prices, history, competitor prices, the round lease.
pub trait PricingStore: Send + Sync + 'static {
    fn put_product(
        &self,
        key: &idempotency::Key,
        product: &Product,
        at: DateTime<Utc>,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Stores `rule` unless the cell has [`MAX_RULES`]; a replay returns the first rule.
    fn create_rule(
        &self,
        key: &idempotency::Key,
        rule: &Rule,
    ) -> impl Future<Output = Result<Rule>> + Send;
    /// Deletes a rule; `None` when it does not exist (a replay returns the first answer).
    fn delete_rule(
        &self,
        key: &idempotency::Key,
        id: Uuid,
    ) -> impl Future<Output = Result<Option<Rule>>> + Send;
    fn rules(&self) -> impl Future<Output = Result<Vec<Rule>>> + Send;
    /// Up to `limit` products after `after` in id order, of `category` when given.
    fn products_after(
        &self,
        after: Option<&ProductId>,
        category: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Product>>> + Send;
    fn products(&self, ids: &[ProductId]) -> impl Future<Output = Result<Vec<Product>>> + Send;
    /// Observations of `products` observed at or after `since`.
    fn competitor_prices(
        &self,
        products: &[ProductId],
        since: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<(ProductId, CompetitorPrice)>>> + Send;
    fn record_competitor_price(
        &self,
        key: &idempotency::Key,
        product: &ProductId,
        observation: &CompetitorPrice,
        at: DateTime<Utc>,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Writes the candidates that are real changes (under the rows' locks, so concurrent rounds
    /// write a change once), with history and `pricing.changed`, in one transaction.
    fn apply(
        &self,
        candidates: &[Candidate],
        at: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<Change>>> + Send;
    /// Prices written by transactions at or after `since` (all without it), and the cursor of
    /// the next call.
    fn prices_since(
        &self,
        since: Option<i64>,
    ) -> impl Future<Output = Result<(Vec<Price>, i64)>> + Send;
    /// A product's history newest first, before history id `before`.
    fn history(
        &self,
        product: &ProductId,
        before: Option<i64>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Change>>> + Send;
    /// The default segment's changes since `since`, oldest first, and the last one before it.
    fn price_path(
        &self,
        product: &ProductId,
        since: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<(DateTime<Utc>, i64)>>> + Send;
    /// Claims the scheduled round when it is due and no other replica holds it (a lease that
    /// expires, so a replica that dies mid-round does not stop the schedule).
    fn claim_round(
        &self,
        instance: &str,
        now: DateTime<Utc>,
        interval: chrono::Duration,
        lease: chrono::Duration,
    ) -> impl Future<Output = Result<bool>> + Send;
    fn release_round(&self, instance: &str) -> impl Future<Output = Result<()>> + Send;
}

/// ClickHouse: the demand signals of `analytics_events`.
pub trait DemandSource: Send + Sync + 'static {
    /// Signal counts of `products` (inventory left 0), in one query.
    fn signals(
        &self,
        products: &[ProductId],
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<HashMap<ProductId, Signals>>> + Send;
    /// Signal counts of every product with events, in one query (one scan of the week).
    fn all_signals(
        &self,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<HashMap<ProductId, Signals>>> + Send;
    /// Verified orders of `product` per day in `[from, to)`.
    fn daily_sales(
        &self,
        product: &ProductId,
        from: NaiveDate,
        to: NaiveDate,
    ) -> impl Future<Output = Result<Vec<(NaiveDate, u64)>>> + Send;
}

/// The per-replica price cache: every read RPC is answered from memory.
#[derive(Debug, Default)]
pub struct Cache {
    prices: RwLock<HashMap<ProductId, Vec<Price>>>,
}

impl Cache {
    fn put(&self, price: Price) {
        let mut map = self
            .prices
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let list = map.entry(price.product_id.clone()).or_default();
        match list.iter_mut().find(|p| p.segment == price.segment) {
            Some(p) => {
                // A refresh may bring an older row back than a change this replica applied.
                if p.updated_at <= price.updated_at {
                    *p = price;
                }
            }
            None => list.push(price),
        }
    }

    /// The price of `segment`, or the default segment's.
    pub fn get(&self, product: &ProductId, segment: &Segment) -> Option<Price> {
        let map = self
            .prices
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let list = map.get(product)?;
        list.iter()
            .find(|p| &p.segment == segment)
            .or_else(|| list.iter().find(|p| p.segment.is_default()))
            .cloned()
    }
}

pub struct Pricing<S, D> {
    store: S,
    demand: D,
    settings: Settings,
    clock: Clock,
    cache: Cache,
    /// Where the next cache refresh starts.
    cursor: tokio::sync::Mutex<Option<i64>>,
    metrics: Metrics,
    instance: String,
}

impl<S, D> std::fmt::Debug for Pricing<S, D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pricing")
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

/// The outcome of an elasticity estimate.
#[derive(Debug, Clone)]
pub struct Estimate {
    pub fit: Fit,
    pub observations: usize,
}

impl<S: PricingStore, D: DemandSource> Pricing<S, D> {
    pub fn new(
        store: S,
        demand: D,
        settings: Settings,
        clock: Clock,
        metrics: Metrics,
        instance: String,
    ) -> Self {
        Self {
            store,
            demand,
            settings,
            clock,
            cache: Cache::default(),
            cursor: tokio::sync::Mutex::new(None),
            metrics,
            instance,
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn now(&self) -> DateTime<Utc> {
        (self.clock)()
    }

    /// Loads prices written since the last refresh into the cache (all at the first call).
    pub async fn refresh(&self) -> Result<usize> {
        let mut cursor = self.cursor.lock().await;
        let (prices, next) = self.store.prices_since(*cursor).await?;
        let n = prices.len();
        for p in prices {
            self.cache.put(p);
        }
        *cursor = Some(next);
        Ok(n)
    }

    pub fn price(&self, product: &ProductId, segment: &Segment) -> Option<Price> {
        self.metrics.read();
        self.cache.get(product, segment)
    }

    pub async fn put_product(&self, key: &idempotency::Key, product: Product) -> Result<()> {
        self.store.put_product(key, &product, self.now()).await?;
        self.reoptimize(Scope::Products(vec![product.id])).await?;
        Ok(())
    }

    /// Stores a rule and prices what it targets at once.
    pub async fn create_rule(&self, key: &idempotency::Key, rule: Rule) -> Result<Rule> {
        let rule = self.store.create_rule(key, &rule).await?;
        self.reoptimize(scope_of(&rule)).await?;
        Ok(rule)
    }

    /// Deletes a rule and re-prices what it targeted (by the next best rule, if any).
    pub async fn delete_rule(&self, key: &idempotency::Key, id: Uuid) -> Result<Rule> {
        let rule = self
            .store
            .delete_rule(key, id)
            .await?
            .ok_or_else(|| PricingError::NotFound(format!("rule {id} does not exist")))?;
        self.reoptimize(scope_of(&rule)).await?;
        Ok(rule)
    }

    pub async fn rules(&self) -> Result<Vec<Rule>> {
        self.store.rules().await
    }

    pub async fn record_competitor_price(
        &self,
        key: &idempotency::Key,
        product: ProductId,
        observation: CompetitorPrice,
    ) -> Result<()> {
        let now = self.now();
        if observation.observed_at > now + chrono::Duration::minutes(5) {
            return Err(
                InputError::new("observed_at", "is more than 5 minutes in the future").into(),
            );
        }
        self.store
            .record_competitor_price(key, &product, &observation, now)
            .await
    }

    pub async fn competitor_prices(&self, product: &ProductId) -> Result<Vec<CompetitorPrice>> {
        let since = self.now() - chrono::Duration::seconds(i64::from(MAX_COMPETITOR_AGE_SECONDS));
        Ok(self
            .store
            .competitor_prices(std::slice::from_ref(product), since)
            .await?
            .into_iter()
            .map(|(_, o)| o)
            .collect())
    }

    pub async fn history(
        &self,
        product: &ProductId,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<Change>> {
        self.store.history(product, before, limit).await
    }

    /// Runs the scheduled round when this replica claims it.
    pub async fn scheduled_round(&self) -> Result<Option<RoundReport>> {
        let interval =
            chrono::Duration::seconds(i64::from(self.settings.reoptimize_interval_seconds));
        // A round of 100,000 products takes seconds; a lease of ten intervals (at least ten
        // minutes) outlives any round, yet frees the schedule soon after a replica dies.
        let lease = (interval * 10).max(chrono::Duration::minutes(10));
        if !self
            .store
            .claim_round(&self.instance, self.now(), interval, lease)
            .await?
        {
            return Ok(None);
        }
        let report = self.reoptimize(Scope::All).await;
        self.store.release_round(&self.instance).await?;
        report.map(Some)
    }

    /// Re-prices `scope` in batches of [`BATCH`].
    pub async fn reoptimize(&self, scope: Scope) -> Result<RoundReport> {
        let started = std::time::Instant::now();
        let rules = RuleIndex::new(self.store.rules().await?);
        let mut report = RoundReport::default();
        // A whole-catalogue round reads demand in one query for every product: per batch,
        // ClickHouse would scan the week's events once per batch instead of once.
        let demand = match scope {
            Scope::All => Demand::Known(self.demand.all_signals(self.now()).await?),
            _ => Demand::PerBatch,
        };
        match scope {
            Scope::Products(ids) => {
                for chunk in ids.chunks(BATCH) {
                    let products = self.store.products(chunk).await?;
                    self.reprice(&rules, &products, &demand, &mut report)
                        .await?;
                }
            }
            Scope::All | Scope::Category(_) => {
                let category = match &scope {
                    Scope::Category(c) => Some(c.as_str()),
                    _ => None,
                };
                // Two batches at a time: one computes or reads while the other's transaction
                // writes. Their products are disjoint, so their row locks never meet.
                let mut after: Option<ProductId> = None;
                loop {
                    let mut pair = [Vec::new(), Vec::new()];
                    for batch in &mut pair {
                        *batch = self
                            .store
                            .products_after(after.as_ref(), category, BATCH)
                            .await?;
                        match batch.last() {
                            Some(last) if batch.len() == BATCH => after = Some(last.id.clone()),
                            _ => {
                                after = None;
                                break;
                            }
                        }
                    }
                    let [first, second] = &pair;
                    let (mut a, mut b) = (RoundReport::default(), RoundReport::default());
                    futures::try_join!(
                        self.reprice(&rules, first, &demand, &mut a),
                        self.reprice(&rules, second, &demand, &mut b),
                    )?;
                    report.absorb(a);
                    report.absorb(b);
                    if after.is_none() {
                        break;
                    }
                }
            }
        }
        self.metrics.round(started.elapsed(), report.changed);
        Ok(report)
    }

    async fn reprice(
        &self,
        rules: &RuleIndex,
        products: &[Product],
        demand: &Demand,
        report: &mut RoundReport,
    ) -> Result<()> {
        let now = self.now();
        report.products += products.len() as u64;
        let chosen: Vec<(&Product, &Arc<Rule>)> = products
            .iter()
            .filter_map(|p| rules.winner(p).map(|r| (p, r)))
            .collect();
        report.without_rule += (products.len() - chosen.len()) as u64;
        let ids_of = |pred: fn(&Strategy) -> bool| -> Vec<ProductId> {
            chosen
                .iter()
                .filter(|(_, r)| pred(&r.strategy))
                .map(|(p, _)| p.id.clone())
                .collect()
        };
        let dynamic = ids_of(|s| matches!(s, Strategy::Dynamic));
        let fetched;
        let signals = match demand {
            Demand::Known(all) => all,
            Demand::PerBatch if dynamic.is_empty() => {
                fetched = HashMap::new();
                &fetched
            }
            Demand::PerBatch => {
                fetched = self.demand.signals(&dynamic, now).await?;
                &fetched
            }
        };
        let competitive = ids_of(|s| matches!(s, Strategy::Competitive { .. }));
        let mut observed: HashMap<ProductId, Vec<CompetitorPrice>> = HashMap::new();
        if !competitive.is_empty() {
            let since = now - chrono::Duration::seconds(i64::from(MAX_COMPETITOR_AGE_SECONDS));
            for (p, o) in self.store.competitor_prices(&competitive, since).await? {
                observed.entry(p).or_default().push(o);
            }
        }
        let multipliers = (
            self.settings.dynamic_multiplier.min,
            self.settings.dynamic_multiplier.max,
        );
        let mut candidates = Vec::with_capacity(chosen.len());
        for (product, rule) in chosen {
            let mut s = signals.get(&product.id).copied().unwrap_or_default();
            s.inventory = f64::from(product.inventory_bps) / 10_000.0;
            let competitors = match &rule.strategy {
                Strategy::Competitive {
                    max_age_seconds, ..
                } => observed
                    .get(&product.id)
                    .and_then(|o| reference(o, rule.base.currency, now, *max_age_seconds)),
                _ => None,
            };
            let inputs = Inputs {
                now,
                demand: s.score(),
                competitors,
                multipliers,
            };
            for mut computed in price::compute(rule, &inputs) {
                if matches!(rule.strategy, Strategy::Dynamic)
                    && let serde_json::Value::Object(map) = &mut computed.inputs
                {
                    map.insert("signals".into(), serde_json::json!(s));
                }
                candidates.push(Candidate {
                    product_id: product.id.clone(),
                    rule: rule.clone(),
                    computed,
                });
            }
        }
        report.computed += candidates.len() as u64;
        let changes = self.store.apply(&candidates, now).await?;
        report.changed += changes.len() as u64;
        for c in changes {
            self.cache.put(Price {
                product_id: c.product_id,
                segment: c.segment,
                price: c.new,
                rule_id: c.rule_id,
                strategy: c.strategy,
                updated_at: c.changed_at,
            });
        }
        Ok(())
    }

    /// The elasticity of `observations` (validated by the caller).
    pub fn estimate(&self, observations: &[Observation]) -> Result<Estimate> {
        let min = usize::try_from(self.settings.elasticity_min_samples).unwrap_or(usize::MAX);
        let fit = elasticity::estimate(observations, min)?;
        Ok(Estimate {
            fit,
            observations: observations.len(),
        })
    }

    /// The elasticity of a product from its price history and daily verified orders over the
    /// last [`ELASTICITY_DAYS`] days (days without sales have no log and are left out).
    pub async fn product_elasticity(&self, product: &ProductId) -> Result<Estimate> {
        let now = self.now();
        let from = now - chrono::Duration::days(ELASTICITY_DAYS);
        let path = self.store.price_path(product, from).await?;
        let sales = self
            .demand
            .daily_sales(product, from.date_naive(), now.date_naive())
            .await?;
        let observations = daily_observations(&path, &sales);
        self.estimate(&observations)
    }

    /// The revenue impact of `proposed` for a product: its elasticity, its current price and
    /// its verified orders per day over the last 7 days.
    pub async fn revenue_impact(
        &self,
        product: &ProductId,
        proposed: Money,
    ) -> Result<(Estimate, Price, f64, Impact)> {
        let current = self
            .cache
            .get(product, &Segment::DEFAULT)
            .ok_or_else(|| PricingError::NotFound(format!("product {product} has no price")))?;
        if current.price.currency != proposed.currency {
            return Err(InputError::new(
                "proposed_price.currency",
                format!(
                    "is {}; the product is priced in {}",
                    proposed.currency, current.price.currency
                ),
            )
            .into());
        }
        let estimate = self.product_elasticity(product).await?;
        let signals = self
            .demand
            .signals(std::slice::from_ref(product), self.now())
            .await?;
        #[allow(clippy::cast_precision_loss)]
        let per_day = signals
            .get(product)
            .map_or(0.0, |s| s.purchases_7d as f64 / 7.0);
        let impact = revenue::impact(
            current.price.minor_units,
            proposed.minor_units,
            per_day,
            &estimate.fit,
        );
        Ok((estimate, current, per_day, impact))
    }
}

/// Where a round's batches get their demand signals.
enum Demand {
    /// Read once for the whole round.
    Known(HashMap<ProductId, Signals>),
    /// One query per batch, for its DYNAMIC products.
    PerBatch,
}

/// The rules of a round, by product and by category, so each product looks at its own only.
struct RuleIndex {
    by_product: HashMap<String, Vec<Arc<Rule>>>,
    by_category: HashMap<String, Vec<Arc<Rule>>>,
}

impl RuleIndex {
    fn new(rules: Vec<Rule>) -> Self {
        let (mut by_product, mut by_category) = (HashMap::new(), HashMap::new());
        for rule in rules {
            let (map, key) = match &rule.target {
                crate::domain::Target::Product(p) => (&mut by_product, p.as_str().to_owned()),
                crate::domain::Target::Category(c) => (&mut by_category, c.clone()),
            };
            map.entry(key).or_insert_with(Vec::new).push(Arc::new(rule));
        }
        Self {
            by_product,
            by_category,
        }
    }

    fn winner(&self, product: &Product) -> Option<&Arc<Rule>> {
        let own = self
            .by_product
            .get(product.id.as_str())
            .into_iter()
            .flatten();
        let category = self
            .by_category
            .get(&product.category)
            .into_iter()
            .flatten();
        let all: Vec<&Arc<Rule>> = own.chain(category).collect();
        let won = winner(
            all.iter().map(|r| r.as_ref()),
            &product.id,
            &product.category,
        )?
        .id;
        all.into_iter().find(|r| r.id == won)
    }
}

fn scope_of(rule: &Rule) -> Scope {
    match &rule.target {
        crate::domain::Target::Product(p) => Scope::Products(vec![p.clone()]),
        crate::domain::Target::Category(c) => Scope::Category(c.clone()),
    }
}
