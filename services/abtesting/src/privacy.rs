//! The service's part of a person's export and erasure (`titan_kit::privacy`): their
//! exposures and the flag rules that target them ([`store::privacy`](crate::store::privacy)).
//! docs/abtesting.md#privacy says what goes and what stays.

use serde_json::json;
use titan_kit::privacy::{Erasure, Failure, PersonalData, Subject};

use crate::store::privacy::PersonalStore;

impl PersonalData for PersonalStore {
    async fn export(&self, subject: &Subject) -> Result<serde_json::Value, Failure> {
        let exposures = self.exposures(&subject.user_id).await?;
        let targeting = self.targeting(&subject.user_id).await?;
        Ok(json!({
            "user_id": subject.user_id,
            "exposures": exposures,
            "flag_targeting": targeting,
        }))
    }

    async fn erase(&self, subject: &Subject) -> Result<Erasure, Failure> {
        let e = self.erase(&subject.user_id, &subject.pseudonym).await?;
        Ok(Erasure::default()
            .pseudonymised("exposures", e.exposures)
            .removed("flag targeting conditions", e.flag_targeting))
    }
}
