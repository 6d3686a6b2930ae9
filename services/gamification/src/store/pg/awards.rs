//! The group commit of `Award`: concurrent awards are queued (kit's `Batcher`) and a few writer
//! tasks each write what has queued in one transaction of three reads and one write, instead of
//! a transaction of two statements per award. The transaction locks every account of the batch
//! (in one order, so two batches cannot deadlock), reads the sources those shoppers were awarded
//! already and the badges they hold, decides each award in Rust in queue order — as the
//! single path would, one after another — and writes the ledger rows, the accounts and the new
//! badges in one statement (`sql/award_batch.sql`). When anything of it fails, each award is
//! written alone on the single path (kit's `or_one_by_one`), which answers each precisely.
//!
//! The reads and the write that join the batch's rows with the tables are not kept as prepared
//! statements (`persistent(false)`: planned for each batch with its values). A prepared one
//! switches to a generic plan after five runs, and one made while a new cell's tables were
//! nearly empty scans them whole; PostgreSQL plans it again only after the next ANALYZE, up to
//! a minute later. Measured: a burst of awards into a new cell spent 1.4 of the 2 cores in
//! PostgreSQL on sequential scans of the accounts. Planning costs a fraction of a millisecond
//! per batch.

use std::{
    collections::{HashMap, hash_map::Entry},
    sync::Arc,
};

use chrono::{DateTime, NaiveDate, Utc};
use futures::FutureExt;
use sqlx::{PgPool, Row};
use titan_kit::batch::or_one_by_one;

use super::{AccountRow, award_in, corrupt};
use crate::{
    app::{Awarded, Grant, Result},
    config::Settings,
    domain::Badge,
};

/// The batcher's name in logs.
pub(super) const NAME: &str = "gamification_awards";

/// One award waiting for the group commit, with the settings of the call that queued it.
#[derive(Debug)]
pub(super) struct Pending {
    pub grant: Grant,
    pub settings: Arc<Settings>,
}

/// The group commit's handler: one answer per award, in order.
pub(super) async fn write(pool: PgPool, batch: Vec<Pending>) -> Vec<Result<Awarded>> {
    or_one_by_one(NAME, &batch, |items| {
        let pool = pool.clone();
        async move {
            match items {
                // One award alone takes the two-statement path: fewer round trips than the
                // batch's four.
                [one] => {
                    let mut tx = pool.begin().await?;
                    let awarded = award_in(&mut tx, &one.grant, &one.settings).await?;
                    tx.commit().await?;
                    Ok(vec![awarded])
                }
                _ => together(&pool, items).await,
            }
        }
        .boxed()
    })
    .await
}

/// A shopper's account and badges as the batch has decided them so far.
struct Held {
    row: AccountRow,
    /// (awarded at, badge), in the order the single path answers them: by time, then name.
    badges: Vec<(DateTime<Utc>, String)>,
    /// Whether an award of the batch changed the account.
    changed: bool,
}

impl Held {
    fn account(&self, settings: &Settings) -> crate::app::Account {
        self.row
            .account(self.badges.iter().map(|(_, b)| b.as_str()), settings)
    }
}

/// The rows [`together`] writes, as the columns `sql/award_batch.sql` unnests.
#[derive(Default)]
struct Writes {
    user: Vec<String>,
    delta: Vec<i64>,
    reason: Vec<&'static str>,
    source: Vec<String>,
    balance_after: Vec<i64>,
    at: Vec<DateTime<Utc>>,
    badge_user: Vec<String>,
    badge: Vec<&'static str>,
    badge_at: Vec<DateTime<Utc>>,
}

/// Writes every award of `batch` in one transaction.
async fn together(pool: &PgPool, batch: &[Pending]) -> Result<Vec<Awarded>> {
    let mut users: Vec<&str> = batch.iter().map(|p| p.grant.user_id.as_str()).collect();
    users.sort_unstable();
    users.dedup();
    let mut tx = pool.begin().await?;
    // Lock-or-create every account, as `lock` does for one, in PostgreSQL's order of the ids:
    // every batch takes its locks in that one order.
    let rows = sqlx::query(concat!(
        "INSERT INTO gamification_accounts (user_id)
         SELECT u FROM unnest($1::TEXT[]) AS u ORDER BY u
         ON CONFLICT (user_id) DO UPDATE SET user_id = EXCLUDED.user_id
         RETURNING user_id, ",
        account_columns!()
    ))
    .bind(&users)
    .fetch_all(&mut *tx)
    .await?;
    let mut held: HashMap<String, Held> = HashMap::with_capacity(rows.len());
    for r in &rows {
        let user: String = r.try_get("user_id")?;
        let row = AccountRow::read(&user, r)?;
        held.insert(
            user,
            Held {
                row,
                badges: Vec::new(),
                changed: false,
            },
        );
    }
    // Both reads run after the locks were granted, so they see every award committed under
    // them (READ COMMITTED takes each statement's snapshot when it starts).
    // A lookup per award through the unique index; `LIMIT 1` keeps the subquery from being
    // pulled up into a join that may hash the ledger (the unique key allows one row anyway).
    let prior_rows = sqlx::query(
        "SELECT k.user_id, k.reason, k.source_id, l.delta
         FROM unnest($1::TEXT[], $2::TEXT[], $3::TEXT[]) AS k (user_id, reason, source_id)
         CROSS JOIN LATERAL (
             SELECT delta FROM gamification_ledger
             WHERE user_id = k.user_id AND reason = k.reason AND source_id = k.source_id
             LIMIT 1
         ) AS l",
    )
    .bind(
        batch
            .iter()
            .map(|p| p.grant.user_id.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        batch
            .iter()
            .map(|p| p.grant.action.reason().as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        batch
            .iter()
            .map(|p| p.grant.source_id.as_str())
            .collect::<Vec<_>>(),
    )
    .persistent(false)
    .fetch_all(&mut *tx)
    .await?;
    let mut priors: HashMap<(String, String, String), i64> = HashMap::new();
    for r in &prior_rows {
        priors.insert(
            (
                r.try_get("user_id")?,
                r.try_get("reason")?,
                r.try_get("source_id")?,
            ),
            r.try_get("delta")?,
        );
    }
    let badge_rows = sqlx::query(
        "SELECT user_id, badge, awarded_at FROM gamification_badges
         WHERE user_id = ANY($1) ORDER BY awarded_at, badge",
    )
    .bind(&users)
    .persistent(false)
    .fetch_all(&mut *tx)
    .await?;
    for r in &badge_rows {
        let user: String = r.try_get("user_id")?;
        if let Some(h) = held.get_mut(&user) {
            h.badges
                .push((r.try_get("awarded_at")?, r.try_get("badge")?));
        }
    }

    let mut writes = Writes::default();
    let mut answers = Vec::with_capacity(batch.len());
    for p in batch {
        let g = &p.grant;
        let reason = g.action.reason();
        let h = held
            .get_mut(&g.user_id)
            .ok_or_else(|| corrupt(format_args!("the lock did not answer {}", g.user_id)))?;
        match priors.entry((
            g.user_id.clone(),
            reason.as_str().to_owned(),
            g.source_id.clone(),
        )) {
            Entry::Occupied(prior) => answers.push(Awarded {
                points: *prior.get(),
                duplicate: true,
                account: h.account(&p.settings),
                new_badges: Vec::new(),
            }),
            Entry::Vacant(slot) => {
                let points = g.action.points(&p.settings.points);
                slot.insert(points);
                let (after, earned) = h.row.changed(points, reason, &p.settings);
                let new_badges: Vec<Badge> = earned
                    .into_iter()
                    .filter(|b| !h.badges.iter().any(|(_, held)| held == b.as_str()))
                    .collect();
                for b in &new_badges {
                    h.badges.push((g.at, b.as_str().to_owned()));
                    writes.badge_user.push(g.user_id.clone());
                    writes.badge.push(b.as_str());
                    writes.badge_at.push(g.at);
                }
                h.badges.sort();
                writes.user.push(g.user_id.clone());
                writes.delta.push(points);
                writes.reason.push(reason.as_str());
                writes.source.push(g.source_id.clone());
                writes.balance_after.push(after.balance);
                writes.at.push(g.at);
                h.row = after;
                h.changed = true;
                answers.push(Awarded {
                    points,
                    duplicate: false,
                    account: h.account(&p.settings),
                    new_badges,
                });
            }
        }
    }

    if !writes.user.is_empty() {
        let accounts: Vec<&AccountRow> = held
            .values()
            .filter(|h| h.changed)
            .map(|h| &h.row)
            .collect();
        let r = sqlx::query(include_str!("../sql/award_batch.sql"))
            .bind(&writes.user)
            .bind(&writes.delta)
            .bind(&writes.reason)
            .bind(&writes.source)
            .bind(&writes.balance_after)
            .bind(&writes.at)
            .bind(
                accounts
                    .iter()
                    .map(|a| a.user_id.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(accounts.iter().map(|a| a.balance).collect::<Vec<_>>())
            .bind(accounts.iter().map(|a| a.lifetime).collect::<Vec<_>>())
            .bind(accounts.iter().map(|a| a.purchases).collect::<Vec<_>>())
            .bind(accounts.iter().map(|a| a.reviews).collect::<Vec<_>>())
            .bind(
                accounts
                    .iter()
                    .map(|a| a.last_login)
                    .collect::<Vec<Option<NaiveDate>>>(),
            )
            .bind(accounts.iter().map(|a| a.streak).collect::<Vec<_>>())
            .bind(
                accounts
                    .iter()
                    .map(|a| a.last_check_in)
                    .collect::<Vec<Option<NaiveDate>>>(),
            )
            .bind(&writes.badge_user)
            .bind(&writes.badge)
            .bind(&writes.badge_at)
            .persistent(false)
            .fetch_one(&mut *tx)
            .await?;
        let written = (
            r.try_get::<i64, _>("ledger")?,
            r.try_get::<i64, _>("accounts")?,
            r.try_get::<i64, _>("badges")?,
        );
        let expected = (writes.user.len(), accounts.len(), writes.badge.len());
        if written
            != (
                i64::try_from(expected.0).unwrap_or(i64::MAX),
                i64::try_from(expected.1).unwrap_or(i64::MAX),
                i64::try_from(expected.2).unwrap_or(i64::MAX),
            )
        {
            // The transaction is dropped, so nothing of it is kept; the awards go one by one.
            return Err(corrupt(format_args!(
                "a batch wrote (ledger, accounts, badges) {written:?} of {expected:?}"
            )));
        }
    }
    tx.commit().await?;
    Ok(answers)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use titan_kit::{datastores::postgres, money::Money, testing::TestPostgres};

    use super::*;
    use crate::domain::Action;

    async fn db() -> TestPostgres {
        let db = TestPostgres::new().await;
        postgres::migrate(&db.pool, "gamification", sqlx::migrate!("./migrations"))
            .await
            .expect("migrate");
        db
    }

    fn pending(user: &str, action: Action, source: &str, second: u32) -> Pending {
        Pending {
            grant: Grant {
                user_id: user.into(),
                action,
                source_id: source.into(),
                at: Utc
                    .with_ymd_and_hms(2026, 12, 7, 10, 0, second)
                    .single()
                    .expect("time"),
            },
            settings: Arc::new(Settings::default()),
        }
    }

    fn usd(minor: i64) -> Action {
        Action::Purchase(Money::parse(minor, "USD").expect("usd"))
    }

    /// Everything stored that an award writes, in a stable order.
    async fn stored(
        pool: &PgPool,
    ) -> (
        Vec<(String, i64, String, String, i64)>,
        Vec<(String, String)>,
    ) {
        let ledger = sqlx::query_as(
            "SELECT user_id, delta, reason, source_id, balance_after FROM gamification_ledger ORDER BY id",
        )
        .fetch_all(pool)
        .await
        .expect("ledger");
        let badges = sqlx::query_as(
            "SELECT user_id, badge FROM gamification_badges ORDER BY user_id, awarded_at, badge",
        )
        .fetch_all(pool)
        .await
        .expect("badges");
        (ledger, badges)
    }

    /// A batch with what a batch can meet: a source awarded before it, a source repeated inside
    /// it, a badge earned part-way (the 10th purchase earns Loyal) and shoppers interleaved.
    fn batch() -> Vec<Pending> {
        let mut b = vec![pending("ann", usd(1_000), "before", 0)];
        for n in 1..=9 {
            b.push(pending("ann", usd(100 * i64::from(n)), &format!("o{n}"), n));
            b.push(pending("bob", Action::Review, &format!("r{n}"), n));
        }
        b.push(pending("ann", usd(900), "o9", 10));
        b.push(pending("cat", Action::Referral, "ref", 11));
        b.push(pending("bob", Action::Review, "r1", 12));
        b
    }

    #[tokio::test]
    async fn a_batch_answers_and_stores_exactly_what_the_awards_one_by_one_do() {
        let (alone, together_db) = (db().await, db().await);
        let all = batch();
        // The first award is stored before the batch in both, so the batch meets a prior.
        let mut expected = Vec::new();
        for p in &all {
            let mut tx = alone.pool.begin().await.expect("begin");
            expected.push(
                award_in(&mut tx, &p.grant, &p.settings)
                    .await
                    .expect("alone"),
            );
            tx.commit().await.expect("commit");
        }
        let mut tx = together_db.pool.begin().await.expect("begin");
        let first = award_in(&mut tx, &all[0].grant, &all[0].settings)
            .await
            .expect("first");
        tx.commit().await.expect("commit");
        let mut answers = vec![first];
        answers.extend(
            together(&together_db.pool, &all)
                .await
                .expect("the batch is written together")
                .into_iter()
                .skip(1),
        );
        // The batch's own first award repeats the stored one.
        assert_eq!(answers.len(), expected.len());
        for (n, (got, want)) in answers.iter().zip(&expected).enumerate() {
            assert_eq!(got, want, "award {n}");
        }
        let loyal: Vec<usize> = answers
            .iter()
            .enumerate()
            .filter(|(_, a)| a.new_badges == [Badge::Loyal])
            .map(|(n, _)| n)
            .collect();
        assert_eq!(loyal, [17], "ann's 10th purchase (o9) earns Loyal once");
        assert_eq!(
            answers.iter().filter(|a| a.duplicate).count(),
            2,
            "the repeated o9 and r1 are duplicates"
        );
        assert_eq!(stored(&together_db.pool).await, stored(&alone.pool).await);
    }

    #[tokio::test]
    async fn a_batch_meeting_a_source_stored_before_it_writes_no_row_for_it() {
        let db = db().await;
        let all = vec![
            pending("dan", Action::Review, "r", 0),
            pending("dan", Action::Review, "r", 1),
        ];
        let first = together(&db.pool, &all[..1]).await.expect("first");
        assert_eq!((first[0].points, first[0].duplicate), (50, false));
        let again = together(&db.pool, &all).await.expect("again");
        assert_eq!(
            again
                .iter()
                .map(|a| (a.points, a.duplicate, a.account.balance))
                .collect::<Vec<_>>(),
            [(50, true, 50), (50, true, 50)]
        );
        let (ledger, _) = stored(&db.pool).await;
        assert_eq!(
            ledger,
            [("dan".into(), 50, "review".into(), "r".into(), 50)]
        );
    }
}
