//! The service's part of a person's export and erasure (`titan_kit::privacy`): their events,
//! exported as stored and kept under their pseudonym by an erasure
//! ([`store::privacy`](crate::store::privacy)). docs/analytics.md#privacy says what goes and what
//! stays.

use futures::{FutureExt, future::BoxFuture};
use serde_json::json;
use titan_kit::privacy::{Erasure, Failure, PersonalData, Subject};

use crate::store::privacy::PersonalEvents;

#[derive(Debug, Clone)]
pub struct Privacy {
    events: PersonalEvents,
}

impl Privacy {
    pub fn new(events: PersonalEvents) -> Self {
        Self { events }
    }
}

impl PersonalData for Privacy {
    fn export<'a>(
        &'a self,
        subject: &'a Subject,
    ) -> BoxFuture<'a, Result<serde_json::Value, Failure>> {
        async move {
            let events = self.events.events(&subject.user_id).await?;
            Ok(json!({"user_id": subject.user_id, "events": events}))
        }
        .boxed()
    }

    fn erase<'a>(&'a self, subject: &'a Subject) -> BoxFuture<'a, Result<Erasure, Failure>> {
        async move {
            let e = self
                .events
                .erase(&subject.user_id, &subject.pseudonym)
                .await?;
            Ok(Erasure::default()
                .pseudonymised("events", e.events)
                .removed("active-day records", e.active_day_blocks))
        }
        .boxed()
    }
}
