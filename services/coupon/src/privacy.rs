//! The coupon service's part of a person's export and erasure (`titan_kit::privacy`), over the
//! two stores: redemptions and use counts in PostgreSQL, their loaded copies and the validation
//! budget in Redis. docs/coupon.md#privacy says what goes and what stays.

use std::collections::BTreeMap;

use serde::Serialize;
use titan_kit::privacy::{Erasure, Failure, PersonalData, Subject};

use crate::{
    app::{Redemption, Result},
    domain::CouponCode,
    store::{
        pg::PgCoupons,
        redis::{RedisCoupons, VALIDATE_SCOPE},
    },
};

/// The handler the runtime runs for the service's privacy tasks.
#[derive(Debug, Clone)]
pub struct Privacy {
    record: PgCoupons,
    cache: RedisCoupons,
}

/// What the service holds about one person: the export's document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Export {
    /// Every coupon used on the person's orders, applied or reversed.
    pub redemptions: Vec<Redemption>,
    /// Uses of each coupon counted against the person's per-shopper limit.
    pub uses: BTreeMap<String, u32>,
    /// Budgets in use (`coupon:validate`: validations).
    pub budgets: Vec<String>,
}

impl Privacy {
    pub fn new(record: PgCoupons, cache: RedisCoupons) -> Self {
        Self { record, cache }
    }

    pub async fn export_of(&self, user: &str) -> Result<Export> {
        Ok(Export {
            redemptions: self.record.redemptions_of_users(&[user]).await?,
            uses: self.record.uses_of_user(user).await?.into_iter().collect(),
            budgets: if self.cache.has_budget(user).await? {
                vec![VALIDATE_SCOPE.to_owned()]
            } else {
                Vec::new()
            },
        })
    }

    /// The record first, Redis after: a retry after a failure between the two still finds the
    /// coupons through the redemptions, now under the pseudonym.
    pub async fn erase_user(&self, user: &str, pseudonym: &str) -> Result<Erasure> {
        let record = self.record.pseudonymise(user, pseudonym).await?;
        let mut coupons: BTreeMap<String, (CouponCode, Vec<String>)> = BTreeMap::new();
        for r in self.record.redemptions_of_users(&[user, pseudonym]).await? {
            coupons
                .entry(r.code.to_string())
                .or_insert_with(|| (r.code.clone(), Vec::new()))
                .1
                .push(r.order_id);
        }
        for code in self.cache.codes_counting(user).await? {
            coupons
                .entry(code.to_string())
                .or_insert_with(|| (code, Vec::new()));
        }
        let (mut entries, mut counts) = (0, 0);
        for (code, orders) in coupons.values() {
            let f = self
                .cache
                .forget_shopper(code, user, pseudonym, orders)
                .await?;
            entries += f.entries;
            counts += f.counts;
        }
        let budgets = self.cache.forget_budget(user).await?;
        Ok(Erasure::default()
            .pseudonymised("redemptions", record.redemptions)
            .pseudonymised("usage counts", record.uses)
            .pseudonymised("cached redemptions", entries)
            .pseudonymised("cached usage counts", counts)
            .removed("validation budgets", budgets))
    }
}

impl PersonalData for Privacy {
    async fn export(&self, subject: &Subject) -> std::result::Result<serde_json::Value, Failure> {
        let export = self.export_of(&subject.user_id).await?;
        Ok(serde_json::to_value(export)?)
    }

    async fn erase(&self, subject: &Subject) -> std::result::Result<Erasure, Failure> {
        Ok(self
            .erase_user(&subject.user_id, &subject.pseudonym)
            .await?)
    }
}
