//! The service's part of a person's export and erasure (`titan_kit::privacy`): their events,
//! exported as stored and kept under their pseudonym by an erasure
//! ([`store::privacy`](crate::store::privacy)). docs/analytics.md#privacy says what goes and what
//! stays.

use serde_json::json;
use titan_kit::privacy::{Erasure, Failure, PersonalData, Subject};

use crate::store::privacy::PersonalEvents;

impl PersonalData for PersonalEvents {
    async fn export(&self, subject: &Subject) -> Result<serde_json::Value, Failure> {
        let events = self.events(&subject.user_id).await?;
        Ok(json!({"user_id": subject.user_id, "events": events}))
    }

    async fn erase(&self, subject: &Subject) -> Result<Erasure, Failure> {
        let e = self.erase(&subject.user_id, &subject.pseudonym).await?;
        Ok(Erasure::default()
            .pseudonymised("events", e.events)
            .removed("active-day records", e.active_day_blocks))
    }
}
