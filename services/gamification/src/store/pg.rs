//! PostgreSQL: accounts, the ledger, badges, rewards and missions. Every balance change locks
//! the shopper's account row first and writes a ledger row with the balance after it, in one
//! transaction: changes of one shopper are serialised (no overdraft, no lost update), an award
//! is found again by its unique (user, reason, source) key, and a CHECK keeps balances
//! non-negative even against a bug here.

use std::sync::Arc;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use sqlx::{PgConnection, PgPool, Row, postgres::PgRow};
use titan_kit::{
    KitError,
    batch::{BatchOptions, Batcher},
    idempotency::{self, Begin},
};
use uuid::Uuid;

use crate::{
    app::{
        Account, Awarded, DayAward, GamificationError, Grant, LedgerStore, Mission,
        MissionProgress, Result, Reward, Transaction,
    },
    config::Settings,
    domain::{Action, Badge, Counters, Reason, badge::earned, level_for},
};

#[derive(Debug, Clone)]
pub struct PgLedger {
    pool: PgPool,
    /// `Award`'s group commit (`awards`).
    awards: Batcher<awards::Pending, Result<Awarded>>,
}

fn corrupt(what: impl std::fmt::Display) -> GamificationError {
    KitError::Other(format!("gamification record is invalid: {what}")).into()
}

fn u32_of(n: i64) -> u32 {
    u32::try_from(n.max(0)).unwrap_or(u32::MAX)
}

/// An account row as stored; locked for the transaction when it comes from [`lock`].
#[derive(Debug, Clone)]
struct AccountRow {
    user_id: String,
    balance: i64,
    lifetime: i64,
    purchases: i32,
    reviews: i32,
    last_login: Option<NaiveDate>,
    streak: i32,
    last_check_in: Option<NaiveDate>,
}

impl AccountRow {
    /// The row of a shopper who has never earned anything.
    fn empty(user: &str) -> Self {
        Self {
            user_id: user.to_owned(),
            balance: 0,
            lifetime: 0,
            purchases: 0,
            reviews: 0,
            last_login: None,
            streak: 0,
            last_check_in: None,
        }
    }

    /// Reads the columns `account_columns!` names.
    fn read(user: &str, r: &PgRow) -> Result<Self> {
        Ok(Self {
            user_id: user.to_owned(),
            balance: r.try_get("balance")?,
            lifetime: r.try_get("lifetime")?,
            purchases: r.try_get("purchases")?,
            reviews: r.try_get("reviews")?,
            last_login: r.try_get("last_login")?,
            streak: r.try_get("streak")?,
            last_check_in: r.try_get("last_check_in")?,
        })
    }

    /// The row after a change of `delta` for `reason`, and every badge its counters earn
    /// (held ones included).
    fn changed(&self, delta: i64, reason: Reason, settings: &Settings) -> (Self, Vec<Badge>) {
        let mut after = self.clone();
        after.balance += delta;
        if delta > 0 {
            after.lifetime += delta;
        }
        match reason {
            Reason::Purchase => after.purchases += 1,
            Reason::Review => after.reviews += 1,
            _ => {}
        }
        let (level, _) = level_for(after.lifetime, &settings.level_thresholds);
        let counters = Counters {
            purchases: u32_of(i64::from(after.purchases)),
            reviews: u32_of(i64::from(after.reviews)),
            level,
        };
        let earned = earned(counters, &settings.badges);
        (after, earned)
    }

    /// The account as the shopper sees it, holding `badges` (as stored, in award order).
    fn account<'a>(
        &self,
        badges: impl IntoIterator<Item = &'a str>,
        settings: &Settings,
    ) -> Account {
        let (level, next_level_at) = level_for(self.lifetime, &settings.level_thresholds);
        Account {
            user_id: self.user_id.clone(),
            balance: self.balance,
            lifetime: self.lifetime,
            level,
            next_level_at,
            badges: badges.into_iter().filter_map(Badge::parse).collect(),
            purchases: u32_of(i64::from(self.purchases)),
            reviews: u32_of(i64::from(self.reviews)),
            streak: u32_of(i64::from(self.streak)),
        }
    }
}

/// The columns [`AccountRow::read`] reads, for `concat!` into the statements that read them.
macro_rules! account_columns {
    () => {
        "balance, lifetime, purchases, reviews, last_login, streak, last_check_in"
    };
}

mod awards;

async fn lock(conn: &mut PgConnection, user: &str) -> Result<AccountRow> {
    // The no-op update on conflict locks the row (creating it when missing) and answers it as
    // committed last, after any wait for the lock, not as of the statement's snapshot: one
    // round trip where an insert and a SELECT … FOR UPDATE took two.
    let r = sqlx::query(concat!(
        "INSERT INTO gamification_accounts (user_id) VALUES ($1)
         ON CONFLICT (user_id) DO UPDATE SET user_id = EXCLUDED.user_id
         RETURNING ",
        account_columns!()
    ))
    .bind(user)
    .fetch_one(&mut *conn)
    .await?;
    AccountRow::read(user, &r)
}

/// The points a source already earned, when it did.
async fn prior(
    conn: &mut PgConnection,
    user: &str,
    reason: Reason,
    source: &str,
) -> Result<Option<i64>> {
    Ok(sqlx::query_scalar(
        "SELECT delta FROM gamification_ledger WHERE user_id = $1 AND reason = $2 AND source_id = $3",
    )
    .bind(user)
    .bind(reason.as_str())
    .bind(source)
    .fetch_optional(&mut *conn)
    .await?)
}

/// What [`apply`] did.
#[derive(Debug)]
enum Applied {
    /// The change is written: the account after it, and the badges new with it.
    Written {
        account: Account,
        new_badges: Vec<Badge>,
    },
    /// The source had earned `points` before: nothing changed.
    Duplicate { points: i64, account: Account },
}

impl Applied {
    /// The written change, for callers whose source cannot have earned before (a fresh
    /// redemption id, a date past the last one, a mission checked under the same lock): a
    /// duplicate there means the record is broken.
    fn written(self, reason: Reason, source: &str) -> Result<(Account, Vec<Badge>)> {
        match self {
            Self::Written {
                account,
                new_badges,
            } => Ok((account, new_badges)),
            Self::Duplicate { account, .. } => Err(corrupt(format_args!(
                "the ledger of {} holds {} {source} already",
                account.user_id,
                reason.as_str()
            ))),
        }
    }
}

/// Writes the change `delta` of the locked account `a` unless its source earned before (see
/// `sql/apply.sql`): its ledger row, the account, and any badge it earns now, in one round trip.
async fn apply(
    conn: &mut PgConnection,
    a: AccountRow,
    delta: i64,
    reason: Reason,
    source: &str,
    at: DateTime<Utc>,
    settings: &Settings,
) -> Result<Applied> {
    let (after, earned) = a.changed(delta, reason, settings);
    let names: Vec<&str> = earned.iter().map(|b| b.as_str()).collect();
    let r = sqlx::query(include_str!("sql/apply.sql"))
        .bind(&after.user_id)
        .bind(reason.as_str())
        .bind(source)
        .bind(delta)
        .bind(at)
        .bind(after.balance)
        .bind(after.lifetime)
        .bind(after.purchases)
        .bind(after.reviews)
        .bind(after.last_login)
        .bind(after.streak)
        .bind(after.last_check_in)
        .bind(&names)
        // Planned with its values each time, not as a generic plan that may scan the accounts
        // whole (see `awards`).
        .persistent(false)
        .fetch_one(&mut *conn)
        .await?;
    let badges: Vec<String> = r.try_get("badges")?;
    if let Some(points) = r.try_get::<Option<i64>, _>("prior")? {
        return Ok(Applied::Duplicate {
            points,
            account: a.account(badges.iter().map(String::as_str), settings),
        });
    }
    let inserted: Vec<String> = r.try_get("new_badges")?;
    Ok(Applied::Written {
        account: after.account(badges.iter().map(String::as_str), settings),
        new_badges: earned
            .into_iter()
            .filter(|b| inserted.iter().any(|i| i == b.as_str()))
            .collect(),
    })
}

async fn load(conn: &mut PgConnection, user: &str, settings: &Settings) -> Result<Account> {
    let row = sqlx::query(concat!(
        "SELECT ",
        account_columns!(),
        " FROM gamification_accounts WHERE user_id = $1"
    ))
    .bind(user)
    .fetch_optional(&mut *conn)
    .await?;
    let row = match row {
        Some(r) => AccountRow::read(user, &r)?,
        None => AccountRow::empty(user),
    };
    let badges: Vec<String> = sqlx::query_scalar(
        "SELECT badge FROM gamification_badges WHERE user_id = $1 ORDER BY awarded_at, badge",
    )
    .bind(user)
    .fetch_all(&mut *conn)
    .await?;
    Ok(row.account(badges.iter().map(String::as_str), settings))
}

/// Awards `grant` inside `conn`'s transaction (the event consumer's, or one of [`PgLedger`]):
/// two statements, the lock and [`apply`], which also finds a repeat of the source.
pub async fn award_in(
    conn: &mut PgConnection,
    grant: &Grant,
    settings: &Settings,
) -> Result<Awarded> {
    let account = lock(conn, &grant.user_id).await?;
    let points = grant.action.points(&settings.points);
    let reason = grant.action.reason();
    Ok(
        match apply(
            conn,
            account,
            points,
            reason,
            &grant.source_id,
            grant.at,
            settings,
        )
        .await?
        {
            Applied::Written {
                account,
                new_badges,
            } => Awarded {
                points,
                duplicate: false,
                account,
                new_badges,
            },
            Applied::Duplicate { points, account } => Awarded {
                points,
                duplicate: true,
                account,
                new_badges: Vec::new(),
            },
        },
    )
}

fn reward_from_row(r: &PgRow) -> Result<Reward> {
    Ok(Reward {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        cost: r.try_get("cost")?,
        stock: u32_of(i64::from(r.try_get::<i32, _>("stock")?)),
    })
}

fn mission_from_row(r: &PgRow) -> Result<Mission> {
    Ok(Mission {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        reason: r.try_get("reason")?,
        target: u32_of(i64::from(r.try_get::<i32, _>("target")?)),
        points: r.try_get("points")?,
        starts_at: r.try_get("starts_at")?,
        ends_at: r.try_get("ends_at")?,
    })
}

/// Actions of `reason` by `user` inside the mission's window.
async fn progress(conn: &mut PgConnection, user: &str, m: &Mission) -> Result<u32> {
    let n: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM gamification_ledger
         WHERE user_id = $1 AND reason = $2 AND created_at >= $3 AND created_at < $4",
    )
    .bind(user)
    .bind(&m.reason)
    .bind(m.starts_at)
    .bind(m.ends_at)
    .fetch_one(&mut *conn)
    .await?;
    Ok(u32_of(n))
}

impl PgLedger {
    /// Starts the award writers on the current Tokio runtime.
    pub fn new(pool: PgPool) -> Self {
        let writers = pool.clone();
        Self {
            awards: Batcher::spawn(awards::NAME, BatchOptions::default(), move |batch| {
                awards::write(writers.clone(), batch)
            }),
            pool,
        }
    }
}

impl LedgerStore for PgLedger {
    async fn award(&self, grant: Grant, settings: &Arc<Settings>) -> Result<Awarded> {
        self.awards
            .submit(awards::Pending {
                grant,
                settings: settings.clone(),
            })
            .await?
    }

    /// The daily login (`check_in` false) or check-in of `date`, once per date.
    async fn day_award(
        &self,
        user: &str,
        date: NaiveDate,
        check_in: bool,
        now: DateTime<Utc>,
        settings: &Settings,
    ) -> Result<DayAward> {
        let mut tx = self.pool.begin().await?;
        let mut a = lock(&mut tx, user).await?;
        let last = if check_in {
            a.last_check_in
        } else {
            a.last_login
        };
        // Dates only move forward, so a shopper who changes time zone cannot earn a day twice.
        if last.is_some_and(|l| l >= date) {
            let account = load(&mut tx, user, settings).await?;
            tx.commit().await?;
            return Ok(DayAward {
                awarded: false,
                points: 0,
                streak: account.streak,
                account,
            });
        }
        let (reason, points) = if check_in {
            a.streak = if last.is_some_and(|l| l + Duration::days(1) == date) {
                a.streak.saturating_add(1)
            } else {
                1
            };
            a.last_check_in = Some(date);
            let streak = u32_of(i64::from(a.streak));
            (
                Reason::CheckIn,
                Action::CheckIn { streak }.points(&settings.points),
            )
        } else {
            a.last_login = Some(date);
            (
                Reason::DailyLogin,
                Action::DailyLogin.points(&settings.points),
            )
        };
        let source = date.to_string();
        let (account, _) = apply(&mut tx, a, points, reason, &source, now, settings)
            .await?
            .written(reason, &source)?;
        tx.commit().await?;
        Ok(DayAward {
            awarded: true,
            points,
            streak: account.streak,
            account,
        })
    }

    async fn account(&self, user: &str, settings: &Settings) -> Result<Account> {
        let mut conn = self.pool.acquire().await?;
        load(&mut conn, user, settings).await
    }

    async fn transactions(
        &self,
        user: &str,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<Transaction>> {
        let rows = sqlx::query(
            "SELECT id, delta, reason, source_id, balance_after, created_at FROM gamification_ledger
             WHERE user_id = $1 AND ($2::BIGINT IS NULL OR id < $2) ORDER BY id DESC LIMIT $3",
        )
        .bind(user)
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let reason: String = r.try_get("reason")?;
                Ok(Transaction {
                    id: r.try_get("id")?,
                    delta: r.try_get("delta")?,
                    reason: Reason::parse(&reason).ok_or_else(|| corrupt(reason))?,
                    source_id: r.try_get("source_id")?,
                    balance_after: r.try_get("balance_after")?,
                    at: r.try_get("created_at")?,
                })
            })
            .collect()
    }

    async fn create_reward(&self, key: &idempotency::Key, reward: &Reward) -> Result<Reward> {
        let mut tx = self.pool.begin().await?;
        if let Begin::Replay(answer) = idempotency::begin(&mut tx, key).await? {
            return serde_json::from_slice(&answer).map_err(corrupt);
        }
        sqlx::query(
            "INSERT INTO gamification_rewards (id, name, cost, stock) VALUES ($1, $2, $3, $4)",
        )
        .bind(reward.id)
        .bind(&reward.name)
        .bind(reward.cost)
        .bind(i32::try_from(reward.stock).unwrap_or(i32::MAX))
        .execute(&mut *tx)
        .await?;
        idempotency::finish(&mut tx, key, &serde_json::to_vec(reward).map_err(corrupt)?).await?;
        tx.commit().await?;
        Ok(reward.clone())
    }

    async fn rewards(&self) -> Result<Vec<Reward>> {
        let rows =
            sqlx::query("SELECT id, name, cost, stock FROM gamification_rewards ORDER BY cost, id")
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(reward_from_row).collect()
    }

    async fn redeem_reward(
        &self,
        key: &idempotency::Key,
        user: &str,
        id: Uuid,
        now: DateTime<Utc>,
        settings: &Settings,
    ) -> Result<(Uuid, Reward, Account)> {
        let mut tx = self.pool.begin().await?;
        if let Begin::Replay(answer) = idempotency::begin(&mut tx, key).await? {
            let (redemption, reward): (Uuid, Reward) =
                serde_json::from_slice(&answer).map_err(corrupt)?;
            let account = load(&mut tx, user, settings).await?;
            return Ok((redemption, reward, account));
        }
        // The account first, then the reward: every path locks in this order.
        let account = lock(&mut tx, user).await?;
        let taken = sqlx::query(
            "UPDATE gamification_rewards SET stock = stock - 1 WHERE id = $1 AND stock > 0
             RETURNING id, name, cost, stock",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = taken else {
            let exists: Option<i32> =
                sqlx::query_scalar("SELECT stock FROM gamification_rewards WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
            return Err(match exists {
                Some(_) => GamificationError::OutOfStock(id),
                None => GamificationError::NotFound(format!("reward {id}")),
            });
        };
        let reward = reward_from_row(&row)?;
        if account.balance < reward.cost {
            return Err(GamificationError::InsufficientPoints {
                reward: id,
                cost: reward.cost,
                balance: account.balance,
            });
        }
        let redemption = Uuid::now_v7();
        let source = redemption.to_string();
        let (account, _) = apply(
            &mut tx,
            account,
            -reward.cost,
            Reason::Reward,
            &source,
            now,
            settings,
        )
        .await?
        .written(Reason::Reward, &source)?;
        sqlx::query(
            "INSERT INTO gamification_reward_redemptions (id, reward_id, user_id, cost, created_at)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(redemption)
        .bind(id)
        .bind(user)
        .bind(reward.cost)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let answer = serde_json::to_vec(&(redemption, &reward)).map_err(corrupt)?;
        idempotency::finish(&mut tx, key, &answer).await?;
        tx.commit().await?;
        Ok((redemption, reward, account))
    }

    async fn create_mission(&self, key: &idempotency::Key, m: &Mission) -> Result<Mission> {
        let mut tx = self.pool.begin().await?;
        if let Begin::Replay(answer) = idempotency::begin(&mut tx, key).await? {
            return serde_json::from_slice(&answer).map_err(corrupt);
        }
        sqlx::query(
            "INSERT INTO gamification_missions (id, name, reason, target, points, starts_at, ends_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(m.id)
        .bind(&m.name)
        .bind(&m.reason)
        .bind(i32::try_from(m.target).unwrap_or(i32::MAX))
        .bind(m.points)
        .bind(m.starts_at)
        .bind(m.ends_at)
        .execute(&mut *tx)
        .await?;
        idempotency::finish(&mut tx, key, &serde_json::to_vec(m).map_err(corrupt)?).await?;
        tx.commit().await?;
        Ok(m.clone())
    }

    /// Missions running at `now`, with the shopper's progress.
    async fn missions(&self, user: &str, now: DateTime<Utc>) -> Result<Vec<MissionProgress>> {
        let mut conn = self.pool.acquire().await?;
        let rows = sqlx::query(
            "SELECT * FROM gamification_missions WHERE starts_at <= $1 AND ends_at > $1 ORDER BY ends_at, id",
        )
        .bind(now)
        .fetch_all(&mut *conn)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let mission = mission_from_row(row)?;
            let progress = progress(&mut conn, user, &mission).await?;
            let claimed = prior(&mut conn, user, Reason::Mission, &mission.id.to_string())
                .await?
                .is_some();
            out.push(MissionProgress {
                mission,
                progress,
                claimed,
            });
        }
        Ok(out)
    }

    async fn claim_mission(
        &self,
        user: &str,
        id: Uuid,
        now: DateTime<Utc>,
        settings: &Settings,
    ) -> Result<Awarded> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query("SELECT * FROM gamification_missions WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| GamificationError::NotFound(format!("mission {id}")))?;
        let mission = mission_from_row(&row)?;
        let account = lock(&mut tx, user).await?;
        let source = id.to_string();
        if let Some(points) = prior(&mut tx, user, Reason::Mission, &source).await? {
            let account = load(&mut tx, user, settings).await?;
            return Ok(Awarded {
                points,
                duplicate: true,
                account,
                new_badges: Vec::new(),
            });
        }
        if now < mission.starts_at || now >= mission.ends_at {
            return Err(GamificationError::MissionClosed(id));
        }
        let progress = progress(&mut tx, user, &mission).await?;
        if progress < mission.target {
            return Err(GamificationError::MissionNotDone {
                id,
                progress,
                target: mission.target,
            });
        }
        let (account, new_badges) = apply(
            &mut tx,
            account,
            mission.points,
            Reason::Mission,
            &source,
            now,
            settings,
        )
        .await?
        .written(Reason::Mission, &source)?;
        tx.commit().await?;
        Ok(Awarded {
            points: mission.points,
            duplicate: false,
            account,
            new_badges,
        })
    }
}
