//! Chat's part of a person's export and erasure (`titan_kit::privacy`): what
//! [`store::privacy`](crate::store::privacy) finds and erases, as the runtime's handler.
//! docs/chat.md#privacy says what goes and what stays.

use titan_kit::privacy::{Erasure, Failure, PersonalData, Subject};

use crate::store::privacy::PersonalStore;

impl PersonalData for PersonalStore {
    async fn export(&self, subject: &Subject) -> Result<serde_json::Value, Failure> {
        let records = self.records(&subject.user_id).await?;
        Ok(serde_json::to_value(records)?)
    }

    async fn erase(&self, subject: &Subject) -> Result<Erasure, Failure> {
        let e = self.erase(&subject.user_id, &subject.pseudonym).await?;
        Ok(Erasure::default()
            .removed("message bodies", e.message_bodies)
            .removed("receipts", e.receipts)
            .removed("presence records", e.presence)
            .removed("typing indicators", e.typing)
            .removed("send rate budgets", e.rate)
            .pseudonymised("messages", e.messages)
            .pseudonymised("system notes", e.notes)
            .pseudonymised("memberships", e.memberships)
            .pseudonymised("conversations", e.conversations))
    }
}
