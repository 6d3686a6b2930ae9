//! Shipments: the checked create request, carrier tracking numbers, and the status machine.
//! A shipment is LABEL_CREATED once its carrier booked it and its label is stored; CANCEL
//! leaves only from there (a carrier takes cancellations before pickup), and CANCELLED is
//! final. The tracking service moves shipments on from carrier scans (issue 24, part three).

use std::fmt;

use serde::{Deserialize, Serialize};
use titan_kit::input::ident;

use super::{Address, InputError, Parcel, ServiceLevel, Strategy, parcels};

/// Where a shipment is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShipmentStatus {
    LabelCreated,
    Cancelled,
}

titan_kit::names!(ShipmentStatus {
    LabelCreated => "LABEL_CREATED",
    Cancelled => "CANCELLED",
});

/// A step of the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShipmentAction {
    Cancel,
}

titan_kit::names!(ShipmentAction { Cancel => "CANCEL" });

impl ShipmentAction {
    /// The statuses the action leaves from; the store's guard.
    pub fn leaves_from(self) -> &'static [ShipmentStatus] {
        match self {
            Self::Cancel => &[ShipmentStatus::LabelCreated],
        }
    }

    pub fn target(self) -> ShipmentStatus {
        match self {
            Self::Cancel => ShipmentStatus::Cancelled,
        }
    }

    /// The status the action leads to from `from`, or the refusal naming `from`.
    pub fn apply(self, from: ShipmentStatus) -> Result<ShipmentStatus, IllegalTransition> {
        if self.leaves_from().contains(&from) {
            Ok(self.target())
        } else {
            Err(IllegalTransition {
                action: self,
                current: from,
            })
        }
    }
}

/// An action the current status does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cannot {action} a shipment that is {current}")]
pub struct IllegalTransition {
    pub action: ShipmentAction,
    pub current: ShipmentStatus,
}

/// A carrier's tracking number: 6 to 24 upper-case letters and digits, which is what every
/// carrier issues and what a Code 128 symbol on a 4 in label holds at a scannable size.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TrackingNumber(String);

/// Longest tracking number: 24 characters are 299 modules, 319 with the quiet zones, so
/// 0.85 pt each (2.4 dots at 203 dpi, 3.5 at 300 dpi) across a 4 in label.
pub const MAX_TRACKING: usize = 24;

impl TrackingNumber {
    pub fn parse(field: &str, s: &str) -> Result<Self, InputError> {
        if !(6..=MAX_TRACKING).contains(&s.len())
            || !s
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        {
            return Err(InputError::new(
                field,
                format!("{s:?} is not 6 to {MAX_TRACKING} upper-case letters and digits"),
            ));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TrackingNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A quote request as the client sent it, before checks.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RawQuote {
    pub from: Address,
    pub to: Address,
    pub parcels: Vec<Parcel>,
    pub carrier: String,
    pub service_level: String,
    pub strategy: String,
}

/// A checked quote request: where from and to, what, and which quotes count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuoteQuery {
    pub from: Address,
    pub to: Address,
    pub parcels: Vec<Parcel>,
    /// Only this carrier's quotes when set.
    pub carrier: Option<String>,
    /// Only this level's quotes when set.
    pub service_level: Option<ServiceLevel>,
    /// How to choose; the cell's default when unset.
    pub strategy: Option<Strategy>,
}

impl QuoteQuery {
    /// Checks every field in request order, naming the first bad one.
    pub fn parse(raw: &RawQuote) -> Result<Self, InputError> {
        let from = Address::parse("from", &raw.from)?;
        let to = Address::parse("to", &raw.to)?;
        let parcels = parcels(&raw.parcels)?;
        let carrier = if raw.carrier.is_empty() {
            None
        } else {
            Some(ident("carrier", &raw.carrier)?.to_owned())
        };
        let service_level = ServiceLevel::optional("service_level", &raw.service_level)?;
        let strategy = if raw.strategy.is_empty() {
            None
        } else {
            Some(Strategy::parse("strategy", &raw.strategy)?)
        };
        Ok(Self {
            from,
            to,
            parcels,
            carrier,
            service_level,
            strategy,
        })
    }
}

/// A create request as the client sent it, before checks.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RawShipment {
    pub order_id: String,
    pub owner_id: String,
    pub from: Address,
    pub to: Address,
    pub parcels: Vec<Parcel>,
    pub carrier: String,
    pub service_level: String,
    pub strategy: String,
}

/// A checked create request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShipmentRequest {
    pub order_id: String,
    /// The user the shipment is for; they may read it.
    pub owner_id: String,
    pub from: Address,
    pub to: Address,
    pub parcels: Vec<Parcel>,
    /// Only this carrier's quotes when set.
    pub carrier: Option<String>,
    /// Only this level's quotes when set.
    pub service_level: Option<ServiceLevel>,
    /// How to choose; the cell's default when unset.
    pub strategy: Option<Strategy>,
}

impl ShipmentRequest {
    /// Checks every field in request order, naming the first bad one.
    pub fn parse(raw: &RawShipment) -> Result<Self, InputError> {
        let order_id = ident("order_id", &raw.order_id)?.to_owned();
        let owner_id = ident("owner_id", &raw.owner_id)?.to_owned();
        let q = QuoteQuery::parse(&raw.quote())?;
        Ok(Self {
            order_id,
            owner_id,
            from: q.from,
            to: q.to,
            parcels: q.parcels,
            carrier: q.carrier,
            service_level: q.service_level,
            strategy: q.strategy,
        })
    }

    /// What to quote for it.
    pub fn query(&self) -> QuoteQuery {
        QuoteQuery {
            from: self.from.clone(),
            to: self.to.clone(),
            parcels: self.parcels.clone(),
            carrier: self.carrier.clone(),
            service_level: self.service_level,
            strategy: self.strategy,
        }
    }
}

impl RawShipment {
    /// The quote part of the request, as sent.
    pub fn quote(&self) -> RawQuote {
        RawQuote {
            from: self.from.clone(),
            to: self.to.clone(),
            parcels: self.parcels.clone(),
            carrier: self.carrier.clone(),
            service_level: self.service_level.clone(),
            strategy: self.strategy.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::address::tests::address;

    pub(crate) fn raw() -> RawShipment {
        RawShipment {
            order_id: "order-1".into(),
            owner_id: "ann".into(),
            from: address("SG", "098585"),
            to: address("SG", "530123"),
            parcels: vec![Parcel {
                weight_g: 900,
                length_mm: 200,
                width_mm: 150,
                height_mm: 100,
            }],
            ..RawShipment::default()
        }
    }

    #[test]
    fn cancel_leaves_only_from_label_created() {
        assert_eq!(
            ShipmentAction::Cancel.apply(ShipmentStatus::LabelCreated),
            Ok(ShipmentStatus::Cancelled)
        );
        let refused = ShipmentAction::Cancel
            .apply(ShipmentStatus::Cancelled)
            .expect_err("final");
        assert_eq!(
            refused.to_string(),
            "cannot CANCEL a shipment that is CANCELLED"
        );
    }

    #[test]
    fn tracking_numbers() {
        assert_eq!(
            TrackingNumber::parse("t", "FR0123456789AB").map(|t| t.to_string()),
            Ok("FR0123456789AB".into())
        );
        for bad in [
            "",
            "ABC12",
            "fr0123456789",
            "FR-0123456",
            &"A".repeat(MAX_TRACKING + 1),
        ] {
            assert!(TrackingNumber::parse("t", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn requests_name_the_first_bad_field() {
        let field = |r: RawShipment| ShipmentRequest::parse(&r).map_err(|e| e.field);
        assert_eq!(
            field(RawShipment {
                order_id: String::new(),
                ..raw()
            }),
            Err("order_id".into())
        );
        assert_eq!(
            field(RawShipment {
                owner_id: "a b".into(),
                ..raw()
            }),
            Err("owner_id".into())
        );
        assert_eq!(
            field(RawShipment {
                to: address("SG", "?"),
                ..raw()
            }),
            Err("to.postcode".into())
        );
        assert_eq!(
            field(RawShipment {
                parcels: vec![],
                ..raw()
            }),
            Err("parcels".into())
        );
        assert_eq!(
            field(RawShipment {
                service_level: "SLOW".into(),
                ..raw()
            }),
            Err("service_level".into())
        );
        assert_eq!(
            field(RawShipment {
                strategy: "BEST".into(),
                ..raw()
            }),
            Err("strategy".into())
        );
        let ok = ShipmentRequest::parse(&RawShipment {
            carrier: "dhl".into(),
            service_level: "EXPRESS".into(),
            strategy: "FASTEST".into(),
            ..raw()
        })
        .expect("valid");
        assert_eq!(
            (ok.carrier.as_deref(), ok.service_level, ok.strategy),
            (
                Some("dhl"),
                Some(ServiceLevel::Express),
                Some(Strategy::Fastest)
            )
        );
    }
}
