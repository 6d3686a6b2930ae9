//! The campaign service's part of a person's export and erasure (`titan_kit::privacy`), over
//! PostgreSQL (`store::privacy`): the service keeps nothing about a person in Redis (only the
//! bus) or ClickHouse (it reads the analytics service's events). docs/campaign.md#privacy says
//! what goes and what stays.

use sqlx::PgPool;
use titan_kit::privacy::{Erasure, Failure, PersonalData, Subject};

use crate::{
    app::Result,
    store::privacy::{self, Records},
};

/// The handler the runtime runs for the service's privacy tasks.
#[derive(Debug, Clone)]
pub struct Privacy {
    pool: PgPool,
}

impl Privacy {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    pub async fn export_of(&self, user: &str) -> Result<Records> {
        privacy::records(&self.pool, user).await
    }

    pub async fn erase_user(&self, user: &str, pseudonym: &str) -> Result<Erasure> {
        let e = privacy::erase(&self.pool, user, pseudonym).await?;
        Ok(Erasure::default()
            .removed("contacts", e.contacts)
            .removed("suppressions", e.suppressions)
            .removed("unsent messages", e.unsent)
            .removed("trigger records", e.triggers)
            .pseudonymised("messages", e.deliveries)
            .pseudonymised("opens and clicks", e.engagements)
            .pseudonymised("purchases", e.purchases))
    }
}

impl PersonalData for Privacy {
    async fn export(&self, subject: &Subject) -> std::result::Result<serde_json::Value, Failure> {
        let records = self.export_of(&subject.user_id).await?;
        Ok(serde_json::to_value(records)?)
    }

    async fn erase(&self, subject: &Subject) -> std::result::Result<Erasure, Failure> {
        Ok(self
            .erase_user(&subject.user_id, &subject.pseudonym)
            .await?)
    }
}
