//! Fraud's use cases over a [`FraudStore`] (PostgreSQL) and a [`HotStore`] (Redis): the
//! caller comes from the token, every input is validated before any I/O, a check reads the
//! user's history and velocity in one Redis round trip (PostgreSQL only when the history is not
//! cached or Redis does not answer), scores signals, model and rules, and answers once the
//! decision is in the decision log in Redis, whose sink stores it with its event and case in
//! PostgreSQL (directly when Redis does not answer or the log is full). Rules and the active model are held in memory and
//! reloaded every second (and at once after a local change), so scoring never parses.

use std::{
    future::Future,
    sync::{Arc, RwLock},
    time::Duration,
};

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use titan_kit::{Clock, ErrorCode, KitError, ServiceError, auth::Caller};
use uuid::Uuid;

use crate::{
    config::Settings,
    domain::{
        CaseStatus, Decision, Dimension, Facts, InputError, Level, Transaction, Velocity, Verdict,
        case::{CaseRefusal, may_assign, may_decide},
        decide,
        model::Model,
        profile::{Known, Snapshot},
        rules::{self, Action, Context, Hit, Mode, ParseError, Rule},
        signals,
        transaction::{ident, optional_ident},
        trust,
    },
    metrics::{Metrics, Stage},
};

/// Role of analysts (cases).
pub const ANALYST: &str = "analyst";
/// Role of administrators (rules, models).
pub const ADMIN: &str = "admin";
/// Role of the services on the checkout path.
pub const SERVICE: &str = titan_kit::auth::SERVICE_ROLE;
/// Largest page of cases.
pub const MAX_PAGE: i64 = 100;
/// How often rules and the active model are reloaded from the store.
pub const RELOAD_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum FraudError {
    #[error(transparent)]
    Invalid(#[from] InputError),
    #[error(transparent)]
    Condition(#[from] ParseError),
    #[error("this call needs one of the roles {roles:?}")]
    Forbidden { roles: &'static [&'static str] },
    #[error(
        "transaction_id {0:?} was already checked with another user or amount; send a new id for a new transaction"
    )]
    TransactionReused(String),
    #[error("no decision is stored for transaction {0}")]
    UnknownTransaction(String),
    #[error("transaction {transaction} belongs to user {owner}, not {given}")]
    UserMismatch {
        transaction: String,
        owner: String,
        given: String,
    },
    #[error("no case {0}")]
    UnknownCase(Uuid),
    #[error(transparent)]
    Case(#[from] CaseRefusal),
    #[error("no model version {0}")]
    UnknownModel(i64),
    #[error(transparent)]
    Kit(#[from] KitError),
}

titan_kit::datastore_errors!(FraudError);

impl ServiceError for FraudError {
    fn code(&self) -> ErrorCode {
        match self {
            Self::Invalid(_) | Self::Condition(_) => ErrorCode::InvalidArgument,
            Self::Forbidden { .. } => ErrorCode::PermissionDenied,
            Self::TransactionReused(_) | Self::UserMismatch { .. } | Self::Case(_) => {
                ErrorCode::FailedPrecondition
            }
            Self::UnknownTransaction(_) | Self::UnknownCase(_) | Self::UnknownModel(_) => {
                ErrorCode::NotFound
            }
            Self::Kit(e) => e.code(),
        }
    }

    fn reason(&self) -> Option<&'static str> {
        match self {
            Self::Invalid(_) | Self::Condition(_) => Some("INVALID_ARGUMENT"),
            Self::Forbidden { .. } => Some("ROLE_REQUIRED"),
            Self::TransactionReused(_) => Some("TRANSACTION_ID_REUSED"),
            Self::UnknownTransaction(_) => Some("UNKNOWN_TRANSACTION"),
            Self::UserMismatch { .. } => Some("USER_MISMATCH"),
            Self::UnknownCase(_) => Some("UNKNOWN_CASE"),
            Self::Case(_) => Some("CASE_CLOSED"),
            Self::UnknownModel(_) => Some("UNKNOWN_MODEL"),
            Self::Kit(_) => None,
        }
    }
}

/// One reason of a decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reason {
    pub code: String,
    pub message: String,
    pub contribution: f64,
}

/// A stored decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decided {
    pub transaction_id: String,
    pub user_id: String,
    pub amount: i64,
    pub score: f64,
    pub level: Level,
    pub decision: Decision,
    pub reasons: Vec<Reason>,
    pub rule_hits: Vec<Hit>,
    pub degraded: bool,
    pub model_version: Option<i64>,
    pub case_id: Option<Uuid>,
    pub decided_at: DateTime<Utc>,
}

/// A decision about to be stored, with everything it was made from (as it travels through the
/// decision log).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewDecision {
    pub decided: Decided,
    pub transaction: Transaction,
    pub facts: Facts,
    pub features: Vec<f64>,
}

/// The payload of `fraud.decided` v1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecidedEvent {
    pub transaction_id: String,
    pub user_id: String,
    pub amount: i64,
    pub currency: String,
    pub score: f64,
    pub level: Level,
    pub decision: String,
    pub reasons: Vec<String>,
    pub degraded: bool,
    pub model_version: Option<i64>,
    pub case_id: Option<Uuid>,
}

/// A rule version as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct SavedRule {
    pub rule: Rule,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
}

/// A trained model version.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelVersion {
    pub version: i64,
    pub model: Model,
    pub auc: f64,
    pub brier: f64,
    pub train_examples: i64,
    pub test_examples: i64,
    pub active: bool,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    pub id: Uuid,
    pub transaction_id: String,
    pub user_id: String,
    pub score: f64,
    pub level: Level,
    pub status: CaseStatus,
    pub assignee: Option<String>,
    pub verdict: Option<Verdict>,
    pub reason: Option<String>,
    pub opened_at: DateTime<Utc>,
    pub decided_at: Option<DateTime<Utc>>,
}

/// A user's trust and its parts.
#[derive(Debug, Clone, PartialEq)]
pub struct Trust {
    pub trust: f64,
    pub account_age_days: u32,
    pub successful_orders: i64,
    pub chargebacks: i64,
}

/// PostgreSQL: users, first-seen history, decisions, rules, models, cases, chargebacks.
pub trait FraudStore: Send + Sync + 'static {
    /// What PostgreSQL holds about `t`'s user before `t` (failures after `since_7d`).
    fn snapshot(
        &self,
        t: &Transaction,
        since_7d: DateTime<Utc>,
    ) -> impl Future<Output = Result<Snapshot, FraudError>> + Send;
    /// Stores the decision, the user's first-seen device and IP, its case and its event in one
    /// transaction; when the transaction id is already stored, returns the stored decision.
    fn record(&self, d: &NewDecision) -> impl Future<Output = Result<Decided, FraudError>> + Send;
    /// Stores decisions read from the decision log, each as [`FraudStore::record`] would, in as
    /// few statements as the batch allows; one answer per decision, in order.
    fn record_logged(
        &self,
        batch: Vec<NewDecision>,
    ) -> impl Future<Output = Vec<Result<Decided, FraudError>>> + Send;
    fn rules(&self) -> impl Future<Output = Result<Vec<SavedRule>, FraudError>> + Send;
    /// Stores `rule` as the next version of its name unless it equals the current version,
    /// which is returned instead.
    fn save_rule(
        &self,
        rule: &Rule,
        by: &str,
        at: DateTime<Utc>,
    ) -> impl Future<Output = Result<SavedRule, FraudError>> + Send;
    fn active_model(&self)
    -> impl Future<Output = Result<Option<ModelVersion>, FraudError>> + Send;
    fn models(&self) -> impl Future<Output = Result<Vec<ModelVersion>, FraudError>> + Send;
    fn promote(
        &self,
        version: i64,
    ) -> impl Future<Output = Result<ModelVersion, FraudError>> + Send;
    fn chargeback(
        &self,
        transaction_id: &str,
        user_id: &str,
        amount: i64,
        reason: &str,
        at: DateTime<Utc>,
    ) -> impl Future<Output = Result<i64, FraudError>> + Send;
    fn payment_failure(
        &self,
        payment_id: &str,
        user_id: &str,
        at: DateTime<Utc>,
        since_7d: DateTime<Utc>,
    ) -> impl Future<Output = Result<i64, FraudError>> + Send;
    fn cases(
        &self,
        status: Option<CaseStatus>,
        after: Option<Uuid>,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<Case>, FraudError>> + Send;
    fn assign(
        &self,
        case: Uuid,
        assignee: &str,
        actor: &str,
        at: DateTime<Utc>,
    ) -> impl Future<Output = Result<Case, FraudError>> + Send;
    fn decide_case(
        &self,
        case: Uuid,
        verdict: Verdict,
        reason: &str,
        actor: &str,
        at: DateTime<Utc>,
    ) -> impl Future<Output = Result<Case, FraudError>> + Send;
}

/// Redis: velocity per user, card, device and IP, and a copy of each active user's
/// [`Known`] so a check needs no PostgreSQL read.
pub trait HotStore: Send + Sync + 'static {
    /// In one round trip: the user's cached history as it was before `t` (`None` when nothing
    /// complete is cached), the user's cache epoch, and `t` added to each key's velocity window
    /// (once per transaction id, older than 7 days dropped) and to the cached history.
    fn record(
        &self,
        keys: &[(Dimension, &str)],
        t: &Transaction,
        at: DateTime<Utc>,
    ) -> impl Future<Output = Result<Hot, FraudError>> + Send;
    /// Caches what PostgreSQL holds about `user` unless the user was invalidated after
    /// `epoch` was read (the snapshot may then predate the change). True when it was cached.
    fn fill(
        &self,
        user: &str,
        snapshot: &Snapshot,
        epoch: u64,
    ) -> impl Future<Output = Result<bool, FraudError>> + Send;
    /// Drops `user`'s cached history after PostgreSQL changed it, so the next check reads it.
    fn invalidate(&self, user: &str) -> impl Future<Output = Result<(), FraudError>> + Send;
    /// Appends `d` to the decision log (which a sink stores in PostgreSQL) and keeps it for
    /// replays of its transaction id, unless a decision was logged for that id before.
    fn log(&self, d: &NewDecision) -> impl Future<Output = Result<Logged, FraudError>> + Send;
    /// Keeps a decision stored in PostgreSQL directly (the log full, or unreachable) for
    /// replays, unless one is kept already.
    fn remember(&self, d: &Decided) -> impl Future<Output = Result<(), FraudError>> + Send;
}

/// What [`HotStore::log`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Logged {
    /// Logged: the decision is the answer, and the sink stores it.
    Logged,
    /// This transaction id was decided before: that decision is the answer.
    Earlier(Decided),
    /// The log is full (its sink is behind): store the decision directly.
    Full,
}

/// What one round trip to Redis answered for a check.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Hot {
    pub velocity: Velocity,
    pub known: Option<Known>,
    pub epoch: u64,
    /// The decision already taken for this transaction id (a replay).
    pub earlier: Option<Decided>,
    /// What checks wrote to the cache whether or not a whole history is cached (the device
    /// and IP flags, the newest amounts): PostgreSQL may not hold the newest of it yet, while
    /// the decision log's sink is storing it.
    pub written: Known,
}

/// What scoring reads on every check, swapped whole on reload.
#[derive(Debug, Default)]
struct Loaded {
    rules: Vec<Rule>,
    model: Option<(i64, Model)>,
}

pub struct Fraud<S, V> {
    store: S,
    hot: V,
    settings: Settings,
    clock: Clock,
    metrics: Metrics,
    loaded: RwLock<Arc<Loaded>>,
}

impl<S, V> std::fmt::Debug for Fraud<S, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fraud").finish_non_exhaustive()
    }
}

pub fn require(caller: &Caller, roles: &'static [&'static str]) -> Result<(), FraudError> {
    if caller.has_any_role(roles) {
        Ok(())
    } else {
        Err(FraudError::Forbidden { roles })
    }
}

/// Whole days from `from` to `to`, 0 when `from` is later.
fn days(from: DateTime<Utc>, to: DateTime<Utc>) -> u32 {
    u32::try_from((to - from).num_days().max(0)).unwrap_or(u32::MAX)
}

/// Rule names: 1 to 64 of a-z, 0-9, '-' and '_'.
fn rule_name(s: &str) -> Result<String, InputError> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(s.to_owned())
    } else {
        Err(InputError::new(
            "rule.name",
            format!("{s:?} must be 1 to 64 of a-z, 0-9, '-' and '_'"),
        ))
    }
}

/// A rule as an admin submits it, before checks.
#[derive(Debug, Clone)]
pub struct RuleInput {
    pub name: String,
    pub priority: i32,
    pub condition: String,
    pub action: Option<Action>,
    pub mode: Option<Mode>,
}

impl<S: FraudStore, V: HotStore> Fraud<S, V> {
    pub fn new(store: S, hot: V, settings: Settings, clock: Clock, metrics: Metrics) -> Self {
        Self {
            store,
            hot,
            settings,
            clock,
            metrics,
            loaded: RwLock::new(Arc::new(Loaded::default())),
        }
    }

    fn loaded(&self) -> Arc<Loaded> {
        // A poisoned lock still holds a whole `Arc` (it is only ever replaced).
        self.loaded
            .read()
            .map_or_else(|p| p.into_inner().clone(), |l| l.clone())
    }

    /// Reads the current rules and the active model into memory.
    pub async fn reload(&self) -> Result<(), FraudError> {
        let mut rules: Vec<Rule> = self
            .store
            .rules()
            .await?
            .into_iter()
            .map(|s| s.rule)
            .collect();
        rules::order(&mut rules);
        let model = self
            .store
            .active_model()
            .await?
            .map(|m| (m.version, m.model));
        let next = Arc::new(Loaded { rules, model });
        match self.loaded.write() {
            Ok(mut l) => *l = next,
            Err(p) => *p.into_inner() = next,
        }
        Ok(())
    }

    /// Scores `t` and stores the decision. See `CheckTransaction` in the proto.
    pub async fn check(&self, caller: &Caller, t: Transaction) -> Result<Decided, FraudError> {
        require(caller, &[SERVICE])?;
        let started = std::time::Instant::now();
        let decided = self.score_and_store(t).await?;
        self.metrics.checked(started.elapsed());
        Ok(decided)
    }

    async fn score_and_store(&self, t: Transaction) -> Result<Decided, FraudError> {
        // PostgreSQL keeps microseconds: the first answer must equal its replays.
        let now = (self.clock)().trunc_subsecs(6);
        let c = &self.settings;
        let since_7d = now - chrono::Duration::days(7);
        let mut keys: Vec<(Dimension, &str)> = vec![(Dimension::User, t.user_id.as_str())];
        for (d, v) in [
            (Dimension::Card, &t.card),
            (Dimension::Device, &t.device),
            (Dimension::Ip, &t.ip),
        ] {
            if let Some(v) = v {
                keys.push((d, v.as_str()));
            }
        }
        let started = std::time::Instant::now();
        let budget = Duration::from_millis(u64::from(c.redis_budget_millis));
        // Redis may only take its budget; without it the check is degraded and PostgreSQL
        // answers for the history.
        let hot = match tokio::time::timeout(budget, self.hot.record(&keys, &t, now)).await {
            Ok(Ok(hot)) => Some(hot),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "redis unavailable; answering degraded");
                None
            }
            Err(_) => {
                tracing::warn!(
                    budget_ms = c.redis_budget_millis,
                    "redis took longer than its budget; answering degraded"
                );
                None
            }
        };
        if let Some(Hot {
            earlier: Some(earlier),
            ..
        }) = hot
        {
            self.metrics.stage(Stage::History, started.elapsed());
            return replayed(earlier, &t).map(|d| self.answered(d));
        }
        let (velocity, known) = match hot {
            Some(Hot {
                velocity,
                known: Some(known),
                ..
            }) => {
                self.metrics.history_read("redis");
                (Some(velocity), known)
            }
            Some(Hot {
                velocity,
                epoch,
                written,
                ..
            }) => (
                Some(velocity),
                self.read_and_cache(&t, since_7d, epoch)
                    .await?
                    .with_written(written),
            ),
            None => {
                self.metrics.degraded();
                self.metrics.history_read("postgres");
                (None, self.store.snapshot(&t, since_7d).await?.known)
            }
        };
        let scoring = std::time::Instant::now();
        self.metrics.stage(Stage::History, scoring - started);
        let created = t
            .account_created_at
            .or(known.account_created_at)
            .or(known.first_seen_at)
            .unwrap_or(now);
        let history: Vec<f64> = known
            .amounts_before(&t.transaction_id)
            .iter()
            .map(|&a| a as f64)
            .collect();
        let known_bad = [
            ("device", &t.device, &c.known_bad.devices),
            ("ip", &t.ip, &c.known_bad.ips),
            ("email_domain", &t.email_domain, &c.known_bad.email_domains),
        ]
        .into_iter()
        .find(|(_, v, list)| v.as_ref().is_some_and(|v| list.contains(v)))
        .map(|(name, ..)| name.to_owned());
        let facts = Facts {
            new_device: t.device.is_some() && !known.device_seen,
            new_ip: t.ip.is_some() && !known.ip_seen,
            high_risk_country: t
                .country
                .as_ref()
                .is_some_and(|x| c.high_risk_countries.contains(x)),
            country_mismatch: t.country_mismatch(),
            velocity,
            amount_z: crate::domain::stats::robust_z(&history, t.amount as f64),
            failed_payments_7d: known.failures_since(since_7d),
            account_age_days: days(created, now),
            known_bad,
            chargebacks: u64::try_from(known.chargebacks).unwrap_or(0),
        };
        let (signal_score, fired) = signals::score(&facts, c);
        let features = signals::features(&facts, c);
        let loaded = self.loaded();
        let (base, model_version) = match &loaded.model {
            Some((version, model)) if c.model_blend > 0.0 => (
                (1.0 - c.model_blend) * signal_score + c.model_blend * model.predict(&features),
                Some(*version),
            ),
            _ => (signal_score, None),
        };
        let trust = trust(
            facts.account_age_days,
            u64::try_from(known.successful_orders).unwrap_or(0),
            facts.chargebacks,
        );
        let velocity_strength = features[4];
        let outcome = rules::apply(
            &loaded.rules,
            &Context {
                transaction: &t,
                facts: &facts,
                score: base,
                trust,
                velocity: velocity_strength,
            },
        );
        let score = (base + outcome.added).clamp(0.0, 1.0);
        let level = Level::of(score, &c.thresholds);
        let degraded = facts.velocity.is_none();
        let decision = decide(
            level,
            outcome.decision,
            degraded,
            &c.decisions,
            c.degraded_decision,
        );
        let mut reasons: Vec<Reason> = fired
            .into_iter()
            .map(|f| Reason {
                code: f.signal.as_str().to_owned(),
                message: f.reason,
                contribution: f.contribution,
            })
            .collect();
        for hit in outcome.hits.iter().filter(|h| !h.shadow) {
            reasons.push(Reason {
                code: format!("rule:{}", hit.rule),
                message: format!("rule {} v{} matched", hit.rule, hit.version),
                contribution: match hit.action {
                    Action::AddScore(s) => s,
                    _ => 0.0,
                },
            });
        }
        if degraded {
            reasons.push(Reason {
                code: "degraded".into(),
                message: "velocity unknown: redis did not answer in time".into(),
                contribution: 0.0,
            });
        }
        for hit in outcome.hits.iter().filter(|h| h.shadow) {
            tracing::info!(rule = %hit.rule, version = hit.version, transaction = %t.transaction_id, "shadow rule matched");
        }
        let new = NewDecision {
            decided: Decided {
                transaction_id: t.transaction_id.clone(),
                user_id: t.user_id.clone(),
                amount: t.amount,
                score,
                level,
                decision,
                reasons,
                rule_hits: outcome.hits,
                degraded,
                model_version,
                case_id: level.opens_case().then(Uuid::now_v7),
                decided_at: now,
            },
            transaction: t,
            facts,
            features: features.to_vec(),
        };
        let storing = std::time::Instant::now();
        self.metrics.stage(Stage::Score, storing - scoring);
        let stored = if degraded {
            replayed(self.store.record(&new).await?, &new.transaction)
        } else {
            self.commit(new, budget).await
        };
        self.metrics.stage(Stage::Store, storing.elapsed());
        stored.map(|d| self.answered(d))
    }

    /// Counts a check's answer by level and decision.
    fn answered(&self, d: Decided) -> Decided {
        self.metrics.decided(d.level, d.decision);
        d
    }

    /// Makes `new` the decision of its transaction: appended to the decision log in Redis
    /// (its sink stores it in PostgreSQL with its event and case a few milliseconds later),
    /// so the answer waits for one Redis round trip rather than a PostgreSQL commit. When the
    /// log is full or Redis does not answer within `budget`, PostgreSQL stores it directly,
    /// as a degraded check's is; a log write that landed after all is stored once, the same.
    /// `new` moves in and its decision out as the answer: a check copies no decision.
    async fn commit(&self, new: NewDecision, budget: Duration) -> Result<Decided, FraudError> {
        match tokio::time::timeout(budget, self.hot.log(&new)).await {
            Ok(Ok(Logged::Logged)) => return Ok(new.decided),
            Ok(Ok(Logged::Earlier(earlier))) => return replayed(earlier, &new.transaction),
            Ok(Ok(Logged::Full)) => {
                self.metrics.log_full();
                tracing::warn!("the decision log is full (its sink is behind); storing directly");
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot log the decision; storing directly"),
            Err(_) => tracing::warn!(
                budget_ms = budget.as_millis(),
                "the decision log took longer than its budget; storing directly"
            ),
        }
        let stored = self.store.record(&new).await?;
        if let Err(e) = self.hot.remember(&stored).await {
            tracing::warn!(error = %e, transaction = %stored.transaction_id, "cannot keep the decision for replays in redis");
        }
        replayed(stored, &new.transaction)
    }

    /// Stores a batch read from the decision log (see [`FraudStore::record_logged`]). A
    /// transaction id stored before with another decision (replayed after [the replay
    /// window](crate::store::redis::REPLAY_WINDOW)) keeps the first, counted.
    pub async fn store_logged(&self, batch: Vec<NewDecision>) -> Vec<Result<Decided, FraudError>> {
        let logged: Vec<Decided> = batch.iter().map(|n| n.decided.clone()).collect();
        let stored = self.store.record_logged(batch).await;
        for (logged, stored) in logged.iter().zip(&stored) {
            match stored {
                Ok(stored) if stored != logged => {
                    self.metrics.log_conflict();
                    tracing::warn!(transaction = %logged.transaction_id, "a logged decision met another one stored earlier for its transaction id; the stored one is kept");
                }
                Ok(_) => self.metrics.logged_stored(),
                Err(_) => {}
            }
        }
        stored
    }

    /// The history from PostgreSQL, cached for the next checks when Redis answered. A failed
    /// fill only costs the next check another read, so it is logged, not returned.
    async fn read_and_cache(
        &self,
        t: &Transaction,
        since_7d: DateTime<Utc>,
        epoch: u64,
    ) -> Result<Known, FraudError> {
        self.metrics.history_read("postgres");
        let snapshot = self.store.snapshot(t, since_7d).await?;
        if snapshot.seen.is_some()
            && let Err(e) = self.hot.fill(&t.user_id, &snapshot, epoch).await
        {
            tracing::warn!(error = %e, user = %t.user_id, "cannot cache the user's history");
        }
        Ok(snapshot.known)
    }

    /// Drops `user`'s cached history after PostgreSQL changed it. When Redis does not answer,
    /// the copy lives until it expires ([`crate::store::redis::HISTORY_TTL`]) — logged and
    /// counted, not an error for a caller whose change is stored.
    pub async fn invalidate(&self, user: &str) {
        if let Err(e) = self.hot.invalidate(user).await {
            self.metrics.stale();
            tracing::warn!(error = %e, user, "cannot drop the user's cached history; it expires on its own");
        }
    }

    pub async fn chargeback(
        &self,
        caller: &Caller,
        transaction_id: &str,
        user_id: &str,
        amount: i64,
        reason: &str,
    ) -> Result<i64, FraudError> {
        require(caller, &[SERVICE])?;
        let transaction_id = ident("transaction_id", transaction_id)?;
        let user_id = ident("user_id", user_id)?;
        let amount = crate::domain::transaction::amount("amount", amount)?;
        if reason.len() > 200 {
            return Err(InputError::new("reason", "at most 200 bytes").into());
        }
        let n = self
            .store
            .chargeback(&transaction_id, &user_id, amount, reason, (self.clock)())
            .await?;
        self.invalidate(&user_id).await;
        Ok(n)
    }

    pub async fn payment_failure(
        &self,
        caller: &Caller,
        payment_id: &str,
        user_id: &str,
    ) -> Result<i64, FraudError> {
        require(caller, &[SERVICE])?;
        let payment_id = ident("payment_id", payment_id)?;
        let user_id = ident("user_id", user_id)?;
        let now = (self.clock)();
        let n = self
            .store
            .payment_failure(&payment_id, &user_id, now, now - chrono::Duration::days(7))
            .await?;
        self.invalidate(&user_id).await;
        Ok(n)
    }

    pub async fn trust(&self, caller: &Caller, user_id: &str) -> Result<Trust, FraudError> {
        require(caller, &[SERVICE, ANALYST])?;
        let user_id = ident("user_id", user_id)?;
        let now = (self.clock)();
        let probe = Transaction {
            transaction_id: String::new(),
            user_id,
            amount: 1,
            currency: String::new(),
            ip: None,
            device: None,
            card: None,
            email_domain: None,
            user_agent: String::new(),
            country: None,
            billing_country: None,
            shipping_country: None,
            account_created_at: None,
        };
        let p = self
            .store
            .snapshot(&probe, now - chrono::Duration::days(7))
            .await?
            .known;
        let age = p
            .account_created_at
            .or(p.first_seen_at)
            .map_or(0, |c| days(c, now));
        Ok(Trust {
            trust: trust(
                age,
                u64::try_from(p.successful_orders).unwrap_or(0),
                u64::try_from(p.chargebacks).unwrap_or(0),
            ),
            account_age_days: age,
            successful_orders: p.successful_orders,
            chargebacks: p.chargebacks,
        })
    }

    pub async fn save_rule(&self, caller: &Caller, r: RuleInput) -> Result<SavedRule, FraudError> {
        require(caller, &[ADMIN])?;
        let name = rule_name(&r.name)?;
        if !(-1_000_000..=1_000_000).contains(&r.priority) {
            return Err(
                InputError::new("rule.priority", "must be within -1000000..1000000").into(),
            );
        }
        let action = r
            .action
            .ok_or_else(|| InputError::new("rule.action", "is required"))?;
        if let Action::AddScore(s) = action
            && !(-1.0..=1.0).contains(&s)
        {
            return Err(
                InputError::new("rule.add_score", format!("{s} is not within -1..1")).into(),
            );
        }
        let mode = r
            .mode
            .ok_or_else(|| InputError::new("rule.mode", "is required"))?;
        let expr = rules::parse(&r.condition)?;
        let rule = Rule {
            name,
            version: 0,
            priority: r.priority,
            condition: r.condition,
            expr,
            action,
            mode,
        };
        let saved = self
            .store
            .save_rule(&rule, &caller.user_id, (self.clock)())
            .await?;
        self.reload().await?;
        Ok(saved)
    }

    pub async fn rules(&self, caller: &Caller) -> Result<Vec<SavedRule>, FraudError> {
        require(caller, &[ADMIN, ANALYST])?;
        let mut rules = self.store.rules().await?;
        rules.sort_by(|a, b| (a.rule.priority, &a.rule.name).cmp(&(b.rule.priority, &b.rule.name)));
        Ok(rules)
    }

    pub async fn models(&self, caller: &Caller) -> Result<Vec<ModelVersion>, FraudError> {
        require(caller, &[ADMIN, ANALYST])?;
        self.store.models().await
    }

    pub async fn promote(&self, caller: &Caller, version: i64) -> Result<ModelVersion, FraudError> {
        require(caller, &[ADMIN])?;
        if version <= 0 {
            return Err(InputError::new("version", "must be a positive model version").into());
        }
        let m = self.store.promote(version).await?;
        self.reload().await?;
        Ok(m)
    }

    pub async fn cases(
        &self,
        caller: &Caller,
        status: Option<CaseStatus>,
        page_size: i32,
        page_token: &str,
    ) -> Result<(Vec<Case>, Option<Uuid>), FraudError> {
        require(caller, &[ANALYST])?;
        let limit = match page_size {
            0 => 50,
            n if (1..=100).contains(&n) => i64::from(n),
            n => {
                return Err(
                    InputError::new("page_size", format!("{n} is not within 1..100")).into(),
                );
            }
        };
        let after =
            if page_token.is_empty() {
                None
            } else {
                Some(Uuid::try_parse(page_token).map_err(|_| {
                    InputError::new("page_token", "is not a token of an earlier page")
                })?)
            };
        let mut cases = self.store.cases(status, after, limit + 1).await?;
        let next = if cases.len() > usize::try_from(limit).unwrap_or(usize::MAX) {
            cases.pop();
            cases.last().map(|c| c.id)
        } else {
            None
        };
        Ok((cases, next))
    }

    fn case_id(s: &str) -> Result<Uuid, InputError> {
        Uuid::try_parse(s).map_err(|_| InputError::new("case_id", format!("{s:?} is not a UUID")))
    }

    pub async fn assign(
        &self,
        caller: &Caller,
        case_id: &str,
        assignee: &str,
    ) -> Result<Case, FraudError> {
        require(caller, &[ANALYST])?;
        let id = Self::case_id(case_id)?;
        let assignee =
            optional_ident("assignee", assignee)?.unwrap_or_else(|| caller.user_id.clone());
        self.store
            .assign(id, &assignee, &caller.user_id, (self.clock)())
            .await
    }

    pub async fn decide_case(
        &self,
        caller: &Caller,
        case_id: &str,
        verdict: Option<Verdict>,
        reason: &str,
    ) -> Result<Case, FraudError> {
        require(caller, &[ANALYST])?;
        let id = Self::case_id(case_id)?;
        let verdict = verdict.ok_or_else(|| InputError::new("verdict", "is required"))?;
        if reason.trim().is_empty() || reason.len() > 1000 {
            return Err(
                InputError::new("reason", "must be 1 to 1000 bytes (the audit reason)").into(),
            );
        }
        self.store
            .decide_case(id, verdict, reason, &caller.user_id, (self.clock)())
            .await
    }
}

/// The answer to a check whose decision `stored` is the one kept for its transaction id:
/// refused when that id was checked for another user or amount.
fn replayed(stored: Decided, t: &Transaction) -> Result<Decided, FraudError> {
    if stored.user_id != t.user_id || stored.amount != t.amount {
        return Err(FraudError::TransactionReused(stored.transaction_id));
    }
    Ok(stored)
}

/// Checks a case against the domain before the store changes it.
pub fn check_assign(c: &Case) -> Result<(), FraudError> {
    Ok(may_assign(&c.id.to_string(), c.status)?)
}

/// Whether the store must write the decision (`false`: the same decision again).
pub fn check_decide(c: &Case, verdict: Verdict, reason: &str) -> Result<bool, FraudError> {
    let previous = c.verdict.zip(c.reason.as_deref());
    Ok(may_decide(
        &c.id.to_string(),
        c.status,
        previous,
        verdict,
        reason,
    )?)
}
