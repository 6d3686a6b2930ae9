//! Shipping rules, pure: addresses ([`address`]) and parcels with their dimensional weight
//! ([`parcel`]), the flat-rate tables — zones by country and postcode, weight bands per
//! service level ([`rates`]) — rate shopping with its tie order ([`shopping`]), the shipment
//! request, tracking numbers and the status machine ([`shipment`]), and the label's layout
//! with its Code 128 symbol ([`label`]). No I/O: carriers, PDF bytes and rows live outside.

/// Names of an enum's values as clients and rows spell them, both ways, with the parse that
/// refuses any other name naming the request field.
macro_rules! names {
    ($t:ident { $($v:ident => $s:literal),+ $(,)? }) => {
        impl $t {
            pub const ALL: &'static [$t] = &[$($t::$v),+];

            pub fn as_str(self) -> &'static str {
                match self { $($t::$v => $s),+ }
            }

            /// The value named `s` (as [`Self::as_str`] writes it), for rows read back.
            pub fn from_name(s: &str) -> Option<Self> {
                match s { $($s => Some($t::$v),)+ _ => None }
            }

            /// The value a client named in `field`; any other name is refused with the list.
            pub fn parse(field: impl Into<String>, s: &str) -> Result<Self, $crate::domain::InputError> {
                Self::from_name(s).ok_or_else(|| {
                    let names: Vec<&str> = Self::ALL.iter().map(|v| v.as_str()).collect();
                    $crate::domain::InputError::new(field, format!("{s:?} is not one of {}", names.join(", ")))
                })
            }
        }

        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

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
    IllegalTransition, RawShipment, ShipmentAction, ShipmentRequest, ShipmentStatus, TrackingNumber,
};
pub use shopping::{Quote, Strategy, shop};
pub use titan_kit::input::InputError;

/// The service's name: its migrations, its stream and its config section.
pub const SERVICE: &str = "shipping";
