//! The fraud service's part of a person's export and erasure (`titan_kit::privacy`), over
//! PostgreSQL (`store::privacy`) and Redis (`RedisHot::forget`). docs/fraud.md#privacy says
//! what goes and what stays.

use sqlx::PgPool;
use titan_kit::privacy::{Erasure, Failure, PersonalData, Subject};

use crate::{
    app::FraudError,
    store::{
        privacy::{self, Records},
        redis::RedisHot,
    },
};

/// Why an erasure did not run.
#[derive(Debug, thiserror::Error)]
pub enum PrivacyError {
    /// Decisions about the user not stored in PostgreSQL yet: the sink would store them under
    /// the user's id after the erasure. The task is retried once its lease runs out; dead
    /// letters wait for an operator's replay.
    #[error(
        "{0} decisions about the user are still in the decision log or its dead letters (events:fraud-log); the erasure runs once the sink has stored them"
    )]
    Unstored(u64),
    #[error(transparent)]
    Store(#[from] FraudError),
}

/// The handler the runtime runs for the service's privacy tasks.
#[derive(Debug, Clone)]
pub struct Privacy {
    pool: PgPool,
    hot: RedisHot,
}

impl Privacy {
    pub fn new(pool: PgPool, hot: RedisHot) -> Self {
        Self { pool, hot }
    }

    /// Everything held about `user` (what Redis caches is a copy of these records).
    pub async fn export_of(&self, user: &str) -> Result<Records, PrivacyError> {
        Ok(privacy::records(&self.pool, user).await?)
    }

    /// Redis first, from the decisions while they still name the user and their devices, then
    /// PostgreSQL in one transaction: a retry after a failure between the two finds Redis
    /// cleared and redoes it, finding nothing more.
    pub async fn erase_user(&self, user: &str, pseudonym: &str) -> Result<Erasure, PrivacyError> {
        let unstored = self.hot.logged_for(user).await?;
        if unstored > 0 {
            return Err(PrivacyError::Unstored(unstored));
        }
        let entries = privacy::velocity_entries(&self.pool, user).await?;
        let forgotten = self.hot.forget(user, &entries).await?;
        let erased = privacy::erase(&self.pool, user, pseudonym).await?;
        Ok(Erasure::default()
            .pseudonymised("decisions", erased.decisions)
            .pseudonymised("cases", erased.cases)
            .pseudonymised("case audit entries", erased.case_audit)
            .pseudonymised("chargebacks", erased.chargebacks)
            .removed("trust profiles", erased.profiles)
            .removed("first-seen devices and ips", erased.seen)
            .removed("payment failures", erased.payment_failures)
            .removed("cached history keys", forgotten.history_keys)
            .removed("velocity keys", forgotten.velocity_keys)
            .removed("velocity entries", forgotten.velocity_entries)
            .removed("replay decisions", forgotten.replays))
    }
}

impl PersonalData for Privacy {
    async fn export(&self, subject: &Subject) -> Result<serde_json::Value, Failure> {
        let records = self.export_of(&subject.user_id).await?;
        Ok(serde_json::to_value(records)?)
    }

    async fn erase(&self, subject: &Subject) -> Result<Erasure, Failure> {
        Ok(self
            .erase_user(&subject.user_id, &subject.pseudonym)
            .await?)
    }
}
