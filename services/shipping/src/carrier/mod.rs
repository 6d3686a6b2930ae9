//! Carriers behind one trait: quote, create (a tracking number for a booked shipment),
//! cancel and track. [`flat_rate`] is the built-in carrier that prices from tables and needs
//! no account; [`http`] adapts a carrier's HTTP API configured by base URL and API key.
//! The label is ours whatever the carrier (see `crate::label`): it carries the carrier's
//! tracking number, which is what the carrier scans.

pub mod flat_rate;
pub mod http;

use std::{fmt::Debug, sync::Arc};

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use titan_crds::config::ShippingConfig;
use titan_kit::{ErrorCode, KitError, ServiceError};

use crate::domain::{Address, NoRate, Parcel, Quote, ServiceLevel, TrackingNumber};

/// What a quote is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QuoteRequest {
    pub from: Address,
    pub to: Address,
    pub parcels: Vec<Parcel>,
}

/// A shipment to book with a carrier at a level it quoted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Booking {
    /// Our shipment id: the carrier's idempotency key, so a retried booking is one booking.
    pub reference: String,
    pub service_level: ServiceLevel,
    pub from: Address,
    pub to: Address,
    pub parcels: Vec<Parcel>,
}

/// One scan a carrier reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scan {
    /// The carrier's event type (`PICKED_UP`, `IN_TRANSIT`, ...).
    #[serde(rename = "type")]
    pub kind: String,
    pub location: String,
    pub at: chrono::DateTime<chrono::Utc>,
}

/// Why a carrier gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum CarrierError {
    #[error("carrier {carrier} has no rate: {reason}")]
    NoRate { carrier: String, reason: NoRate },
    #[error("carrier {carrier} refused the request (HTTP {status}): {message}")]
    Refused {
        carrier: String,
        status: u16,
        message: String,
    },
    #[error("carrier {carrier} did not answer after {attempts} attempts: {cause}")]
    Unavailable {
        carrier: String,
        attempts: u32,
        cause: String,
    },
    #[error("carrier {carrier} answered something unreadable: {message}")]
    BadResponse { carrier: String, message: String },
}

impl ServiceError for CarrierError {
    fn code(&self) -> ErrorCode {
        match self {
            Self::NoRate { .. } | Self::Refused { .. } => ErrorCode::FailedPrecondition,
            Self::Unavailable { .. } | Self::BadResponse { .. } => ErrorCode::Unavailable,
        }
    }
    fn reason(&self) -> Option<&'static str> {
        Some(match self {
            Self::NoRate { .. } => "NO_RATE",
            Self::Refused { .. } => "CARRIER_REFUSED",
            Self::Unavailable { .. } => "CARRIER_UNAVAILABLE",
            Self::BadResponse { .. } => "CARRIER_BAD_RESPONSE",
        })
    }
}

/// A carrier. Calls may be retried by the caller: `create` is idempotent by
/// [`Booking::reference`], `cancel` of a cancelled shipment succeeds.
pub trait Carrier: Send + Sync + Debug {
    /// The name quotes and shipments carry.
    fn name(&self) -> &str;
    /// Its quotes for `request`, one per service level it offers.
    fn quote<'a>(
        &'a self,
        request: &'a QuoteRequest,
    ) -> BoxFuture<'a, Result<Vec<Quote>, CarrierError>>;
    /// Books `booking`; the tracking number the carrier scans.
    fn create<'a>(
        &'a self,
        booking: &'a Booking,
    ) -> BoxFuture<'a, Result<TrackingNumber, CarrierError>>;
    /// Cancels a booked shipment before pickup.
    fn cancel<'a>(
        &'a self,
        tracking: &'a TrackingNumber,
    ) -> BoxFuture<'a, Result<(), CarrierError>>;
    /// The carrier's scans of a shipment, oldest first.
    fn track<'a>(
        &'a self,
        tracking: &'a TrackingNumber,
    ) -> BoxFuture<'a, Result<Vec<Scan>, CarrierError>>;
}

/// The enabled carriers of `config`, flat-rate first; each HTTP carrier's API key is read
/// with `key` from its variable (`HttpCarrier::api_key_env`, which the operator sets from
/// the carrier's secret), and a missing one fails at start naming it.
pub fn from_config(
    config: &ShippingConfig,
    key: impl Fn(&str) -> Option<String>,
) -> Result<Vec<Arc<dyn Carrier>>, KitError> {
    let mut carriers: Vec<Arc<dyn Carrier>> = Vec::new();
    if config.flat_rate.enabled {
        carriers.push(Arc::new(flat_rate::FlatRate::from_config(
            &config.flat_rate,
        )));
    }
    for c in &config.carriers {
        let variable = c.api_key_env();
        let api_key = key(&variable).filter(|k| !k.is_empty()).ok_or_else(|| {
            KitError::config(
                variable.clone(),
                format!(
                    "carrier {:?} needs its API key (the apiKey of secret {:?})",
                    c.name, c.credentials_secret
                ),
            )
        })?;
        carriers.push(Arc::new(http::HttpCarrier::new(
            &c.name,
            &c.base_url,
            api_key,
            http::Retry::default(),
        )?));
    }
    Ok(carriers)
}

#[cfg(test)]
mod tests {
    use titan_crds::config::HttpCarrier as Configured;

    use super::*;

    #[test]
    fn carriers_come_from_the_config_with_their_keys() {
        let names =
            |c: &[Arc<dyn Carrier>]| c.iter().map(|c| c.name().to_owned()).collect::<Vec<_>>();
        let mut config = ShippingConfig::default();
        let only = from_config(&config, |_| None).expect("flat-rate needs no key");
        assert_eq!(names(&only), ["flat-rate"]);

        config.carriers.push(Configured {
            name: "dhl-express".into(),
            base_url: "https://api.dhl.example".into(),
            credentials_secret: "dhl".into(),
        });
        let missing = from_config(&config, |_| None).map(|c| names(&c));
        assert_eq!(
            missing.map_err(|e| e.to_string()),
            Err("invalid setting TITAN_SHIPPING_DHL_EXPRESS_API_KEY: carrier \"dhl-express\" needs its API key (the apiKey of secret \"dhl\")".into())
        );
        let both = from_config(&config, |v| {
            (v == "TITAN_SHIPPING_DHL_EXPRESS_API_KEY").then(|| "k".to_owned())
        })
        .expect("keyed");
        assert_eq!(names(&both), ["flat-rate", "dhl-express"]);
    }

    #[tokio::test]
    async fn flat_rate_numbers_follow_the_booking() {
        let c = flat_rate::FlatRate::from_config(&Default::default());
        let a = crate::domain::address::Address {
            name: "A".into(),
            line1: "1 Road".into(),
            line2: String::new(),
            city: "Singapore".into(),
            postcode: "098585".into(),
            country: "SG".into(),
        };
        let booking = |reference: &str| Booking {
            reference: reference.into(),
            service_level: ServiceLevel::Standard,
            from: a.clone(),
            to: a.clone(),
            parcels: Vec::new(),
        };
        let first = c.create(&booking("s-1")).await.expect("booked");
        assert_eq!(c.create(&booking("s-1")).await.expect("booked"), first);
        assert_ne!(c.create(&booking("s-2")).await.expect("booked"), first);
        assert!(first.as_str().starts_with("FR") && first.as_str().len() == 18);
    }
}
