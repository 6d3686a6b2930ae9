//! The service's part of a person's export and erasure (`titan_kit::privacy`): what
//! [`store::privacy`](crate::store::privacy) finds and erases, as the runtime's handler.
//! docs/shipping.md#privacy says what goes and what stays.

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
            .removed("shipping labels", e.labels)
            .pseudonymised("shipments received", e.shipments)
            .pseudonymised("shipments booked", e.booked))
    }
}
