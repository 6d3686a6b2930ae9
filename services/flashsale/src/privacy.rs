//! The flash-sale service's part of a person's export and erasure (`titan_kit::privacy`), over
//! the two stores: orders in PostgreSQL, reservations, replays, unit counts, budgets and
//! challenges in Redis. docs/flashsale.md#privacy says what goes and what stays.

use std::collections::BTreeMap;

use serde::Serialize;
use titan_kit::privacy::{Erasure, Failure, PersonalData, Subject};

use crate::{
    app::{Order, Result},
    domain::SaleId,
    store::{
        pg::PgSales,
        redis::{BuyerKeys, HeldReservation, RedisStock},
    },
};

/// The handler the runtime runs for the service's privacy tasks.
#[derive(Debug, Clone)]
pub struct Privacy {
    sales: PgSales,
    stock: RedisStock,
}

/// What the service holds about one person: the export's document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Export {
    /// Confirmed purchases.
    pub orders: Vec<Order>,
    /// Reservations the sales' live keys still hold, by sale.
    pub reservations: BTreeMap<String, Vec<HeldReservation>>,
    /// Units each sale counts the person as holding (reserved or bought).
    pub units_held: BTreeMap<String, i64>,
    /// Sales whose attempt budget of the person is in use.
    pub attempt_budgets: Vec<String>,
    /// Budgets outside any sale in use (`flashsale:challenge`, `flashsale:watch`).
    pub budgets: Vec<String>,
    /// Sales with a live proof-of-work challenge issued to the person.
    pub challenges: Vec<String>,
}

impl Privacy {
    pub fn new(sales: PgSales, stock: RedisStock) -> Self {
        Self { sales, stock }
    }

    /// Each sale whose Redis keys hold something of `user`, with what they hold. `paid`: the
    /// reservations of the orders recorded for the person (under their id or their pseudonym),
    /// which a warm-up may have rebuilt without a replay to find them by.
    async fn buyer_keys(&self, user: &str, paid: &[Order]) -> Result<Vec<(SaleId, BuyerKeys)>> {
        let mut found = Vec::new();
        let mut after = None;
        loop {
            let page = self.sales.warmed_sales(after).await?;
            let Some(last) = page.last().copied() else {
                return Ok(found);
            };
            after = Some(last);
            for sale in self.stock.sales_holding(&page, user).await? {
                let of_sale: Vec<String> = paid
                    .iter()
                    .filter(|o| o.sale_id == sale)
                    .map(|o| o.reservation_id.clone())
                    .collect();
                let keys = self.stock.buyer_keys(sale, user, &of_sale).await?;
                if keys != BuyerKeys::default() {
                    found.push((sale, keys));
                }
            }
        }
    }

    pub async fn export_of(&self, user: &str) -> Result<Export> {
        let orders = self.sales.orders_of_users(&[user]).await?;
        let mut export = Export {
            budgets: self
                .stock
                .budgets_of(user)
                .await?
                .into_iter()
                .map(str::to_owned)
                .collect(),
            challenges: self
                .stock
                .challenges_of(user)
                .await?
                .into_iter()
                .map(|(sale, _)| sale)
                .collect(),
            ..Export::default()
        };
        for (sale, keys) in self.buyer_keys(user, &orders).await? {
            let sale = sale.to_string();
            if !keys.reservations.is_empty() {
                export.reservations.insert(sale.clone(), keys.reservations);
            }
            if let Some(units) = keys.units_held {
                export.units_held.insert(sale.clone(), units);
            }
            if keys.budget {
                export.attempt_budgets.push(sale);
            }
        }
        export.orders = orders;
        Ok(export)
    }

    /// PostgreSQL first, Redis after: a retry after a failure between the two still finds the
    /// paid reservations through the orders, now under the pseudonym.
    pub async fn erase_user(&self, user: &str, pseudonym: &str) -> Result<Erasure> {
        let orders = self.sales.pseudonymise_orders(user, pseudonym).await?;
        let paid = self.sales.orders_of_users(&[user, pseudonym]).await?;
        let mut erasure = Erasure::default()
            .pseudonymised("orders", orders)
            .pseudonymised("paid reservations", 0)
            .removed("reservations", 0)
            .removed("attempt replays", 0)
            .removed("unit counts", 0)
            .removed("attempt budgets", 0);
        for (sale, keys) in self.buyer_keys(user, &paid).await? {
            let f = self
                .stock
                .forget_buyer(sale, user, pseudonym, &keys)
                .await?;
            erasure = erasure
                .pseudonymised("paid reservations", f.paid)
                .removed("reservations", f.reservations)
                .removed("attempt replays", f.replays)
                .removed("unit counts", f.counts)
                .removed("attempt budgets", f.budgets);
        }
        let challenges: Vec<String> = self
            .stock
            .challenges_of(user)
            .await?
            .into_iter()
            .map(|(_, key)| key)
            .collect();
        let challenges = self.stock.forget_challenges(&challenges).await?;
        let budgets = self.stock.forget_budgets(user).await?;
        Ok(erasure
            .removed("challenges", challenges)
            .removed("attempt budgets", budgets))
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
