//! A person's shipments for the privacy jobs (`crate::privacy`): everything held about them,
//! and their erasure (docs/shipping.md#privacy). Shipments stay (carriers' invoices and
//! disputes need them) with the owner replaced by the pseudonym and the recipient's name and
//! address blanked but for the country; the label PDF, which prints them, leaves the bucket.
//! The stored answers of the calls that booked or cancelled those shipments (kit's
//! idempotency records, kept under the booking service's id) name the owner, so kit's part of
//! the erasure deletes them after this one.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgPool, types::Json};
use titan_kit::{
    KitError,
    objects::{ObjectKey, ObjectStorage},
};
use uuid::Uuid;

use crate::domain::{Address, Parcel};

#[derive(Debug, thiserror::Error)]
pub enum PrivacyError {
    #[error("stored label key {key:?} of shipment {shipment} is not an object key: {reason}")]
    LabelKey {
        shipment: Uuid,
        key: String,
        reason: String,
    },
    #[error(transparent)]
    Kit(#[from] KitError),
}

titan_kit::datastore_errors!(PrivacyError);

pub type Result<T> = std::result::Result<T, PrivacyError>;

/// A shipment to the person, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct ShipmentRecord {
    pub id: Uuid,
    pub order_id: String,
    pub carrier: String,
    pub service_level: String,
    pub tracking_number: String,
    pub status: String,
    #[sqlx(rename = "from_address")]
    pub from: Json<Address>,
    #[sqlx(rename = "to_address")]
    pub to: Json<Address>,
    pub parcels: Json<Vec<Parcel>>,
    pub amount_minor: i64,
    pub currency: String,
    pub days: i32,
    /// The label PDF's key in the cell's bucket.
    pub label_key: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A shipment the person booked (an admin's call), with the request id they sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct BookedRecord {
    pub id: Uuid,
    pub request_id: String,
    pub created_at: DateTime<Utc>,
}

/// Everything the service holds about one person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Records {
    pub user_id: String,
    /// The shipments they own, oldest first.
    pub shipments: Vec<ShipmentRecord>,
    /// The shipments they booked for others, oldest first.
    pub booked: Vec<BookedRecord>,
}

/// What an erasure did, by kind of record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Erased {
    pub shipments: u64,
    pub labels: u64,
    pub booked: u64,
}

#[derive(Debug, Clone)]
pub struct PersonalStore {
    pool: PgPool,
    objects: ObjectStorage,
}

impl PersonalStore {
    pub fn new(pool: PgPool, objects: ObjectStorage) -> Self {
        Self { pool, objects }
    }

    /// Everything held about `user`, all of it (no page limits), from one snapshot.
    pub async fn records(&self, user: &str) -> Result<Records> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .execute(&mut *tx)
            .await?;
        let shipments = sqlx::query_as(
            "SELECT id, order_id, carrier, service_level, tracking_number, status, from_address,
                    to_address, parcels, amount_minor, currency, days, label_key, created_at,
                    updated_at
             FROM shipping_shipments WHERE owner_id = $1 ORDER BY created_at, id",
        )
        .bind(user)
        .fetch_all(&mut *tx)
        .await?;
        let booked = sqlx::query_as(
            "SELECT id, request_id, created_at FROM shipping_shipments
             WHERE created_by = $1 ORDER BY created_at, id",
        )
        .bind(user)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Records {
            user_id: user.to_owned(),
            shipments,
            booked,
        })
    }

    /// Erases `user` in one transaction holding their shipments' rows (a cancellation
    /// waits): the labels are deleted first, so a failure before the commit leaves the rows
    /// naming the person and the next run does it all again (deleting a missing label
    /// succeeds). A second run finds nothing and reports zeros.
    pub async fn erase(&self, user: &str, pseudonym: &str) -> Result<Erased> {
        let mut tx = self.pool.begin().await?;
        let owned: Vec<(Uuid, String)> = sqlx::query_as(
            "SELECT id, label_key FROM shipping_shipments WHERE owner_id = $1
             ORDER BY id FOR UPDATE",
        )
        .bind(user)
        .fetch_all(&mut *tx)
        .await?;
        let mut labels = 0;
        for (shipment, key) in &owned {
            let object = ObjectKey::parse(key).map_err(|e| PrivacyError::LabelKey {
                shipment: *shipment,
                key: key.clone(),
                reason: e.to_string(),
            })?;
            self.objects.delete(&object).await?;
            labels += 1;
        }
        let ids: Vec<Uuid> = owned.iter().map(|(id, _)| *id).collect();
        // The country stays: invoices and customs figures are by country, and it names no
        // one. Only the rows whose labels went: one booked meanwhile is the next run's.
        let shipments = sqlx::query(
            "UPDATE shipping_shipments
             SET owner_id = $2,
                 to_address = jsonb_build_object('name', '', 'line1', '', 'line2', '',
                     'city', '', 'postcode', '', 'country', to_address->'country')
             WHERE id = ANY($1)",
        )
        .bind(&ids)
        .bind(pseudonym)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        // (created_by, request_id) stays unique: the pseudonym is the person's alone, and
        // their request ids were unique among their own.
        let booked =
            sqlx::query("UPDATE shipping_shipments SET created_by = $2 WHERE created_by = $1")
                .bind(user)
                .bind(pseudonym)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        tx.commit().await?;
        Ok(Erased {
            shipments,
            labels,
            booked,
        })
    }
}
