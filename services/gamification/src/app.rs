//! Gamification use cases over two ports: [`LedgerStore`] (PostgreSQL: accounts, the ledger of
//! every points change, rewards, missions) and [`Leaderboards`] (Redis sorted sets fed from the
//! ledger). The caller always comes from the token.

use std::{future::Future, sync::Arc};

use chrono::NaiveDate;
use chrono::{DateTime, Utc};
use titan_kit::{
    ErrorCode, KitError, ServiceError,
    auth::Caller,
    idempotency::{self, IdempotencyError},
    money::Money,
};
use uuid::Uuid;

use crate::{
    config::Settings,
    domain::{Action, Badge, Period, Reason, SERVICE, local_date},
    metrics::Metrics,
};

#[derive(Debug, thiserror::Error)]
pub enum GamificationError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0} does not exist")]
    NotFound(String),
    #[error("{0}")]
    NotAllowed(String),
    #[error("reward {reward} costs {cost} points; the balance is {balance}")]
    InsufficientPoints {
        reward: Uuid,
        cost: i64,
        balance: i64,
    },
    #[error("reward {0} is out of stock")]
    OutOfStock(Uuid),
    #[error("mission {id} needs {target} actions; {progress} so far")]
    MissionNotDone {
        id: Uuid,
        progress: u32,
        target: u32,
    },
    #[error("mission {0} is not running now")]
    MissionClosed(Uuid),
    #[error(transparent)]
    Idempotency(#[from] IdempotencyError),
    #[error(transparent)]
    Kit(#[from] KitError),
}

titan_kit::datastore_errors!(GamificationError);

impl ServiceError for GamificationError {
    fn code(&self) -> ErrorCode {
        match self {
            Self::Invalid(_) => ErrorCode::InvalidArgument,
            Self::NotFound(_) => ErrorCode::NotFound,
            Self::NotAllowed(_) => ErrorCode::PermissionDenied,
            Self::InsufficientPoints { .. }
            | Self::MissionNotDone { .. }
            | Self::MissionClosed(_) => ErrorCode::FailedPrecondition,
            Self::OutOfStock(_) => ErrorCode::ResourceExhausted,
            Self::Idempotency(e) => e.code(),
            Self::Kit(e) => e.code(),
        }
    }

    fn reason(&self) -> Option<&'static str> {
        match self {
            Self::InsufficientPoints { .. } => Some("INSUFFICIENT_POINTS"),
            Self::OutOfStock(_) => Some("OUT_OF_STOCK"),
            Self::MissionNotDone { .. } => Some("MISSION_NOT_DONE"),
            Self::MissionClosed(_) => Some("MISSION_CLOSED"),
            Self::Idempotency(e) => e.reason(),
            _ => None,
        }
    }
}

pub type Result<T> = std::result::Result<T, GamificationError>;

/// A shopper's points, level and badges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub user_id: String,
    pub balance: i64,
    pub lifetime: i64,
    pub level: u32,
    pub next_level_at: Option<u64>,
    pub badges: Vec<Badge>,
    pub purchases: u32,
    pub reviews: u32,
    pub streak: u32,
}

/// What an award did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Awarded {
    pub points: i64,
    /// The source had been awarded before: nothing changed.
    pub duplicate: bool,
    pub account: Account,
    pub new_badges: Vec<Badge>,
}

/// A daily login or check-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayAward {
    pub awarded: bool,
    pub points: i64,
    pub streak: u32,
    pub account: Account,
}

/// A ledger row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    pub id: i64,
    pub delta: i64,
    pub reason: Reason,
    pub source_id: String,
    pub balance_after: i64,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Reward {
    pub id: Uuid,
    pub name: String,
    pub cost: i64,
    pub stock: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Mission {
    pub id: Uuid,
    pub name: String,
    pub reason: String,
    pub target: u32,
    pub points: i64,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissionProgress {
    pub mission: Mission,
    pub progress: u32,
    pub claimed: bool,
}

/// One place on a leaderboard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// 1-based.
    pub rank: u64,
    pub user_id: String,
    pub points: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RankView {
    pub entry: Option<Entry>,
    pub above: Vec<Entry>,
    pub below: Vec<Entry>,
}

/// Points for an action, once per source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub user_id: String,
    pub action: Action,
    pub source_id: String,
    pub at: DateTime<Utc>,
}

/// PostgreSQL: accounts, the ledger, badges, rewards and missions. Every balance change is a
/// ledger row written under the shopper's account lock.
pub trait LedgerStore: Send + Sync + 'static {
    /// Awards `grant` once per (user, reason, source); a repeat answers `duplicate`. Both are
    /// owned because a group commit keeps them past the call.
    fn award(
        &self,
        grant: Grant,
        settings: &Arc<Settings>,
    ) -> impl Future<Output = Result<Awarded>> + Send;
    /// The daily login (`check_in` false) or check-in of the shopper's `date`, once per date.
    fn day_award(
        &self,
        user: &str,
        date: NaiveDate,
        check_in: bool,
        now: DateTime<Utc>,
        settings: &Settings,
    ) -> impl Future<Output = Result<DayAward>> + Send;
    fn account(
        &self,
        user: &str,
        settings: &Settings,
    ) -> impl Future<Output = Result<Account>> + Send;
    /// Ledger rows newest first, below the id `before`.
    fn transactions(
        &self,
        user: &str,
        before: Option<i64>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Transaction>>> + Send;
    fn create_reward(
        &self,
        key: &idempotency::Key,
        reward: &Reward,
    ) -> impl Future<Output = Result<Reward>> + Send;
    fn rewards(&self) -> impl Future<Output = Result<Vec<Reward>>> + Send;
    /// Spends the cost and takes a unit of stock together; answers the redemption id.
    fn redeem_reward(
        &self,
        key: &idempotency::Key,
        user: &str,
        id: Uuid,
        now: DateTime<Utc>,
        settings: &Settings,
    ) -> impl Future<Output = Result<(Uuid, Reward, Account)>> + Send;
    fn create_mission(
        &self,
        key: &idempotency::Key,
        mission: &Mission,
    ) -> impl Future<Output = Result<Mission>> + Send;
    /// Missions running at `now`, with the shopper's progress.
    fn missions(
        &self,
        user: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<MissionProgress>>> + Send;
    fn claim_mission(
        &self,
        user: &str,
        id: Uuid,
        now: DateTime<Utc>,
        settings: &Settings,
    ) -> impl Future<Output = Result<Awarded>> + Send;
}

/// The leaderboards: boards per period, fed from the ledger, rebuilt from it when lost.
pub trait Leaderboards: Send + Sync + 'static {
    /// Moves one batch of ledger rows onto the boards; returns the rows taken (0 = drained).
    fn feed(&self, now: DateTime<Utc>) -> impl Future<Output = Result<u32>> + Send;
    /// Rebuilds the boards from the ledger now if they were lost.
    fn ensure_built(&self, now: DateTime<Utc>) -> impl Future<Output = Result<()>> + Send;
    /// Entries `start..=stop` (0-based) of a board, best first.
    fn page(
        &self,
        board: &str,
        start: u64,
        stop: u64,
    ) -> impl Future<Output = Result<Vec<Entry>>> + Send;
    fn rank(
        &self,
        board: &str,
        user: &str,
        neighbours: u64,
    ) -> impl Future<Output = Result<RankView>> + Send;
}

/// The clock, replaceable in tests.
pub use titan_kit::Clock;

/// Actions an award or a mission may name.
pub const MISSION_REASONS: [Reason; 5] = [
    Reason::Purchase,
    Reason::Review,
    Reason::Referral,
    Reason::SocialShare,
    Reason::DailyLogin,
];

fn check_id(field: &str, id: &str) -> Result<()> {
    if id.is_empty() || id.len() > 128 || !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(GamificationError::Invalid(format!(
            "{field} is required: at most 128 printable ASCII characters"
        )));
    }
    Ok(())
}

#[derive(Clone)]
pub struct Gamification<L, B> {
    ledger: L,
    boards: B,
    settings: Arc<Settings>,
    clock: Clock,
    metrics: Metrics,
}

impl<L, B> std::fmt::Debug for Gamification<L, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gamification")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl<L: LedgerStore, B: Leaderboards> Gamification<L, B> {
    pub fn new(ledger: L, boards: B, settings: Settings, clock: Clock, metrics: Metrics) -> Self {
        Self {
            ledger,
            boards,
            settings: Arc::new(settings),
            clock,
            metrics,
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        (self.clock)()
    }

    /// Awards an action to `user`, once per source; trusted callers only (checked at the edge).
    #[tracing::instrument(skip(self))]
    pub async fn award(
        &self,
        user: &str,
        action: Reason,
        source_id: &str,
        purchase_total: Option<Money>,
    ) -> Result<Awarded> {
        check_id("user_id", user)?;
        check_id("source_id", source_id)?;
        let action = match (action, purchase_total) {
            (Reason::Purchase, Some(total)) => Action::Purchase(total),
            (Reason::Purchase, None) => {
                return Err(GamificationError::Invalid(
                    "a purchase award needs purchase_total".into(),
                ));
            }
            (Reason::Review, None) => Action::Review,
            (Reason::Referral, None) => Action::Referral,
            (Reason::SocialShare, None) => Action::SocialShare,
            (_, Some(_)) => {
                return Err(GamificationError::Invalid(
                    "purchase_total is only for purchase awards".into(),
                ));
            }
            (other, None) => {
                return Err(GamificationError::Invalid(format!(
                    "{} points are not awarded by this call",
                    other.as_str()
                )));
            }
        };
        let grant = Grant {
            user_id: user.to_owned(),
            action,
            source_id: source_id.to_owned(),
            at: self.now(),
        };
        let reason = grant.action.reason();
        let awarded = self.ledger.award(grant, &self.settings).await?;
        self.metrics.awarded(reason, &awarded);
        Ok(awarded)
    }

    /// Runs the leaderboard feeder until the ledger is drained; returns the rows applied.
    pub async fn feed_all(&self) -> Result<u64> {
        let mut total = 0;
        loop {
            let n = self.boards.feed(self.now()).await?;
            self.metrics.fed(u64::from(n));
            total += u64::from(n);
            if n == 0 {
                return Ok(total);
            }
        }
    }

    pub async fn record_login(&self, caller: &Caller, offset_minutes: i32) -> Result<DayAward> {
        let date = local_date(self.now(), offset_minutes).ok_or_else(|| {
            GamificationError::Invalid(format!(
                "utc_offset_minutes {offset_minutes} is outside -720..=840"
            ))
        })?;
        let day = self
            .ledger
            .day_award(&caller.user_id, date, false, self.now(), &self.settings)
            .await?;
        self.metrics.earned(Reason::DailyLogin, day.points);
        Ok(day)
    }

    pub async fn check_in(&self, caller: &Caller, offset_minutes: i32) -> Result<DayAward> {
        let date = local_date(self.now(), offset_minutes).ok_or_else(|| {
            GamificationError::Invalid(format!(
                "utc_offset_minutes {offset_minutes} is outside -720..=840"
            ))
        })?;
        let day = self
            .ledger
            .day_award(&caller.user_id, date, true, self.now(), &self.settings)
            .await?;
        self.metrics.earned(Reason::CheckIn, day.points);
        Ok(day)
    }

    /// The account of `user` (empty = the caller); another shopper's needs the admin role.
    pub async fn account(&self, caller: &Caller, user: &str) -> Result<Account> {
        let user = self.subject(caller, user)?;
        self.ledger.account(&user, &self.settings).await
    }

    fn subject(&self, caller: &Caller, user: &str) -> Result<String> {
        match user {
            "" => Ok(caller.user_id.clone()),
            u if u == caller.user_id || caller.has_role("admin") => Ok(u.to_owned()),
            other => Err(GamificationError::NotAllowed(format!(
                "the points of {other} are only visible to them and to admins"
            ))),
        }
    }

    /// Ledger rows newest first, after the page token (a ledger id).
    pub async fn transactions(
        &self,
        caller: &Caller,
        user: &str,
        page_size: u32,
        page_token: &str,
    ) -> Result<(Vec<Transaction>, Option<i64>)> {
        let user = self.subject(caller, user)?;
        let size = match page_size {
            0 => 50,
            1..=200 => page_size,
            _ => {
                return Err(GamificationError::Invalid(format!(
                    "page_size must be 1 to 200, got {page_size}"
                )));
            }
        };
        let before = match page_token {
            "" => None,
            t => Some(t.parse::<i64>().map_err(|_| {
                GamificationError::Invalid(format!("page_token {t:?} is not one this service gave"))
            })?),
        };
        let mut rows = self.ledger.transactions(&user, before, size + 1).await?;
        let more = rows.len() > size as usize;
        rows.truncate(size as usize);
        let next = more.then(|| rows.last().map(|r| r.id)).flatten();
        Ok((rows, next))
    }

    pub async fn create_reward(
        &self,
        caller: &Caller,
        request_id: &str,
        name: &str,
        cost: i64,
        stock: u32,
    ) -> Result<Reward> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 200 {
            return Err(GamificationError::Invalid(
                "name is required, at most 200 characters".into(),
            ));
        }
        if cost <= 0 {
            return Err(GamificationError::Invalid(format!(
                "cost must be more than 0 points, got {cost}"
            )));
        }
        let reward = Reward {
            id: Uuid::now_v7(),
            name: name.to_owned(),
            cost,
            stock,
        };
        let key = idempotency::Key::new(
            SERVICE,
            "CreateReward",
            &caller.user_id,
            request_id,
            format!("{name}|{cost}|{stock}").as_bytes(),
        )?;
        self.ledger.create_reward(&key, &reward).await
    }

    pub async fn rewards(&self) -> Result<Vec<Reward>> {
        self.ledger.rewards().await
    }

    /// Spends the reward's cost and takes one unit of its stock, together.
    #[tracing::instrument(skip(self), fields(user = %caller.user_id))]
    pub async fn redeem_reward(
        &self,
        caller: &Caller,
        request_id: &str,
        reward_id: &str,
    ) -> Result<(Uuid, Reward, Account)> {
        let id = Uuid::parse_str(reward_id).map_err(|_| {
            GamificationError::Invalid(format!("reward_id {reward_id:?} is not a UUID"))
        })?;
        let key = idempotency::Key::new(
            SERVICE,
            "RedeemReward",
            &caller.user_id,
            request_id,
            id.as_bytes(),
        )?;
        let result = self
            .ledger
            .redeem_reward(&key, &caller.user_id, id, self.now(), &self.settings)
            .await;
        match &result {
            Ok(_) => self.metrics.redeemed("redeemed"),
            Err(e) => self.metrics.redeemed(e.reason().unwrap_or("error")),
        }
        result
    }

    pub async fn create_mission(
        &self,
        caller: &Caller,
        request_id: &str,
        mut mission: Mission,
    ) -> Result<Mission> {
        mission.name = mission.name.trim().to_owned();
        if mission.name.is_empty() || mission.name.chars().count() > 200 {
            return Err(GamificationError::Invalid(
                "mission name is required, at most 200 characters".into(),
            ));
        }
        if !MISSION_REASONS.iter().any(|r| r.as_str() == mission.reason) {
            return Err(GamificationError::Invalid(
                "mission action must be purchase, review, referral, social_share or daily_login"
                    .into(),
            ));
        }
        if mission.target == 0 || mission.points <= 0 {
            return Err(GamificationError::Invalid(
                "mission target and points must be more than 0".into(),
            ));
        }
        if mission.ends_at <= mission.starts_at {
            return Err(GamificationError::Invalid(
                "mission ends_at must be after starts_at".into(),
            ));
        }
        mission.id = Uuid::now_v7();
        let body = serde_json::to_vec(&Mission {
            id: Uuid::nil(),
            ..mission.clone()
        })
        .unwrap_or_default();
        let key =
            idempotency::Key::new(SERVICE, "CreateMission", &caller.user_id, request_id, &body)?;
        self.ledger.create_mission(&key, &mission).await
    }

    pub async fn missions(&self, caller: &Caller) -> Result<Vec<MissionProgress>> {
        self.ledger.missions(&caller.user_id, self.now()).await
    }

    /// Claims a mission's points once its target is met inside its window.
    pub async fn claim_mission(&self, caller: &Caller, mission_id: &str) -> Result<Awarded> {
        let id = Uuid::parse_str(mission_id).map_err(|_| {
            GamificationError::Invalid(format!("mission_id {mission_id:?} is not a UUID"))
        })?;
        let awarded = self
            .ledger
            .claim_mission(&caller.user_id, id, self.now(), &self.settings)
            .await?;
        self.metrics.awarded(Reason::Mission, &awarded);
        Ok(awarded)
    }

    /// A page of the current board of `period`.
    pub async fn leaderboard(&self, period: Period, page: u32) -> Result<(String, Vec<Entry>)> {
        self.boards.ensure_built(self.now()).await?;
        let board = period.board(self.now());
        let size = u64::from(self.settings.leaderboard_page_size);
        let start = u64::from(page) * size;
        let entries = self.boards.page(&board, start, start + size - 1).await?;
        Ok((board, entries))
    }

    /// Where `user` (empty = the caller) stands on the current board, with neighbours.
    pub async fn rank(
        &self,
        caller: &Caller,
        period: Period,
        user: &str,
        neighbours: u32,
    ) -> Result<RankView> {
        if neighbours > 50 {
            return Err(GamificationError::Invalid(format!(
                "neighbours must be 0 to 50, got {neighbours}"
            )));
        }
        let user = if user.is_empty() {
            caller.user_id.clone()
        } else {
            user.to_owned()
        };
        self.boards.ensure_built(self.now()).await?;
        self.boards
            .rank(&period.board(self.now()), &user, u64::from(neighbours))
            .await
    }
}
