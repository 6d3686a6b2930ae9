//! Reservations: units held for a buyer until they pay or the hold expires. The id carries the
//! sale's id, so any replica finds the sale's keys from the reservation alone.

use std::fmt;

use uuid::Uuid;

use super::sale::SaleId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReservationId {
    pub sale: SaleId,
    pub id: Uuid,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("reservation id {0:?} is not of the form <sale id>.<reservation uuid>")]
pub struct BadReservationId(pub String);

impl ReservationId {
    pub fn new(sale: SaleId) -> Self {
        Self {
            sale,
            id: Uuid::now_v7(),
        }
    }

    pub fn parse(s: &str) -> Result<Self, BadReservationId> {
        let bad = || BadReservationId(s.to_owned());
        let (sale, id) = s.split_once('.').ok_or_else(bad)?;
        Ok(Self {
            sale: SaleId::parse(sale).map_err(|_| bad())?,
            id: Uuid::parse_str(id).map_err(|_| bad())?,
        })
    }
}

impl fmt::Display for ReservationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.sale, self.id)
    }
}

/// RESERVED → CONFIRMED | EXPIRED | CANCELLED; only RESERVED moves, and each move happens once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReservationStatus {
    Reserved,
    Confirmed,
    Expired,
    Cancelled,
}

impl ReservationStatus {
    /// The one-letter code the Redis scripts store.
    pub fn code(self) -> char {
        match self {
            Self::Reserved => 'R',
            Self::Confirmed => 'C',
            Self::Expired => 'E',
            Self::Cancelled => 'X',
        }
    }

    pub fn from_code(c: char) -> Option<Self> {
        match c {
            'R' => Some(Self::Reserved),
            'C' => Some(Self::Confirmed),
            'E' => Some(Self::Expired),
            'X' => Some(Self::Cancelled),
            _ => None,
        }
    }

    /// The status's name, as a person's export shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reserved => "reserved",
            Self::Confirmed => "confirmed",
            Self::Expired => "expired",
            Self::Cancelled => "cancelled",
        }
    }

    /// Whether `self → to` is allowed.
    pub fn can_become(self, to: Self) -> bool {
        self == Self::Reserved && to != Self::Reserved
    }
}

/// A positive number of units, at most `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Quantity(u32);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("quantity must be between 1 and {max}, got {got}")]
pub struct BadQuantity {
    pub got: u32,
    pub max: u32,
}

impl Quantity {
    pub fn new(n: u32, max: u32) -> Result<Self, BadQuantity> {
        if n == 0 || n > max {
            Err(BadQuantity { got: n, max })
        } else {
            Ok(Self(n))
        }
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip() {
        let id = ReservationId::new(SaleId::new());
        assert_eq!(ReservationId::parse(&id.to_string()), Ok(id));
        assert!(ReservationId::parse("nope").is_err());
        assert!(ReservationId::parse("a.b").is_err());
    }

    #[test]
    fn only_reserved_moves() {
        use ReservationStatus::*;
        for s in [Reserved, Confirmed, Expired, Cancelled] {
            assert_eq!(ReservationStatus::from_code(s.code()), Some(s));
            for t in [Confirmed, Expired, Cancelled] {
                assert_eq!(s.can_become(t), s == Reserved);
            }
        }
        assert!(
            Quantity::new(0, 5).is_err()
                && Quantity::new(6, 5).is_err()
                && Quantity::new(5, 5).is_ok()
        );
    }
}
