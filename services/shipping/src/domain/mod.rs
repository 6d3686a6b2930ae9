//! Shipping rules, pure: addresses ([`address`]) and parcels with their dimensional weight
//! ([`parcel`]), the flat-rate tables — zones by country and postcode, weight bands per
//! service level ([`rates`]) — rate shopping with its tie order ([`shopping`]), the shipment
//! request, tracking numbers and the status machine ([`shipment`]), and the label's layout
//! with its Code 128 symbol ([`label`]). No I/O: carriers, PDF bytes and rows live outside.

pub mod address;
pub mod label;
pub mod parcel;
pub mod rates;
pub mod shipment;
pub mod shopping;

pub use address::Address;
pub use label::{Bar, LabelLayout, Text, code128_modules};
pub use parcel::{MAX_PARCELS, Parcel, parcels};
pub use rates::{Band, FlatRateTable, NoRate, Offer, Rate, ServiceLevel, Zone};
pub use shipment::{
    IllegalTransition, QuoteQuery, RawQuote, RawShipment, ShipmentAction, ShipmentRequest,
    ShipmentStatus, TrackingNumber,
};
pub use shopping::{Quote, Strategy, shop};
pub use titan_kit::input::InputError;

/// The service's name: its migrations, its stream and its config section.
pub const SERVICE: &str = "shipping";
