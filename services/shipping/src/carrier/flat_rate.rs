//! The built-in flat-rate carrier: prices from a [`FlatRateTable`], books without calling
//! anyone, and issues tracking numbers `FR` + 16 hex digits derived from the booking
//! reference, so booking the same shipment twice gives the same number.

use futures::{FutureExt, future::BoxFuture};
use sha2::{Digest, Sha256};
use titan_crds::config::FlatRateCarrier;

use super::{Booking, Carrier, CarrierError, QuoteRequest, Scan};
use crate::domain::{FlatRateTable, Quote, TrackingNumber};

/// The name its quotes and shipments carry.
pub const NAME: &str = titan_crds::config::FLAT_RATE_NAME;

#[derive(Debug, Clone)]
pub struct FlatRate {
    table: FlatRateTable,
}

impl FlatRate {
    pub fn new(table: FlatRateTable) -> Self {
        Self { table }
    }

    pub fn from_config(c: &FlatRateCarrier) -> Self {
        Self::new(FlatRateTable::from_config(c))
    }
}

impl Carrier for FlatRate {
    fn name(&self) -> &str {
        NAME
    }

    fn quote<'a>(
        &'a self,
        request: &'a QuoteRequest,
    ) -> BoxFuture<'a, Result<Vec<Quote>, CarrierError>> {
        let quotes = self
            .table
            .offers(&request.to, &request.parcels)
            .map(|offers| {
                offers
                    .into_iter()
                    .map(|o| Quote {
                        carrier: NAME.into(),
                        level: o.level,
                        amount_minor: o.amount_minor,
                        currency: self.table.currency.clone(),
                        days: o.days,
                    })
                    .collect()
            })
            .map_err(|reason| CarrierError::NoRate {
                carrier: NAME.into(),
                reason,
            });
        futures::future::ready(quotes).boxed()
    }

    fn create<'a>(
        &'a self,
        booking: &'a Booking,
    ) -> BoxFuture<'a, Result<TrackingNumber, CarrierError>> {
        let digest = Sha256::digest(booking.reference.as_bytes());
        let hex: String = digest[..8].iter().map(|b| format!("{b:02X}")).collect();
        let number = TrackingNumber::parse("tracking_number", &format!("FR{hex}")).map_err(|e| {
            CarrierError::BadResponse {
                carrier: NAME.into(),
                message: e.to_string(),
            }
        });
        futures::future::ready(number).boxed()
    }

    fn cancel<'a>(&'a self, _: &'a TrackingNumber) -> BoxFuture<'a, Result<(), CarrierError>> {
        // Nothing was booked outside: the shipment row is the booking.
        futures::future::ready(Ok(())).boxed()
    }

    fn track<'a>(
        &'a self,
        _: &'a TrackingNumber,
    ) -> BoxFuture<'a, Result<Vec<Scan>, CarrierError>> {
        // No one scans flat-rate parcels for us; the tracking service records their events.
        futures::future::ready(Ok(Vec::new())).boxed()
    }
}
