//! Reservations for orders: units set aside (RESERVED) are picked off the shelves (PICKED) and
//! shipped (SHIPPED, they leave the stock), or handed back (RELEASED) — by the order's service,
//! or by the expiry job when a RESERVED reservation outlives its time (EXPIRED). Each action
//! leaves from a fixed set of statuses, which is the store's guard.

use chrono::Duration;
use titan_kit::input::ident;

use super::{InputError, MAX_LINES, Quantity};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReservationStatus {
    Reserved,
    Picked,
    Shipped,
    Released,
    Expired,
}

titan_kit::names!(ReservationStatus {
    Reserved => "RESERVED",
    Picked => "PICKED",
    Shipped => "SHIPPED",
    Released => "RELEASED",
    Expired => "EXPIRED",
});

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReservationAction {
    Pick,
    Ship,
    Release,
    Expire,
}

titan_kit::names!(ReservationAction {
    Pick => "PICK",
    Ship => "SHIP",
    Release => "RELEASE",
    Expire => "EXPIRE",
});

impl ReservationAction {
    /// The statuses the action leaves from. A PICKED reservation may still be released (an
    /// order cancelled at the packing bench puts its units back) but no longer expires: it
    /// is being worked on.
    pub fn leaves_from(self) -> &'static [ReservationStatus] {
        use ReservationStatus::*;
        match self {
            Self::Pick | Self::Expire => &[Reserved],
            Self::Ship => &[Picked],
            Self::Release => &[Reserved, Picked],
        }
    }

    pub fn target(self) -> ReservationStatus {
        match self {
            Self::Pick => ReservationStatus::Picked,
            Self::Ship => ReservationStatus::Shipped,
            Self::Release => ReservationStatus::Released,
            Self::Expire => ReservationStatus::Expired,
        }
    }

    pub fn apply(self, from: ReservationStatus) -> Result<ReservationStatus, IllegalTransition> {
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

/// An action the reservation's status does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cannot {action} a reservation that is {current}")]
pub struct IllegalTransition {
    pub action: ReservationAction,
    pub current: ReservationStatus,
}

/// One product and quantity of an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderLine {
    pub product_id: String,
    pub quantity: Quantity,
}

/// An order's lines as sent in `field`: 1 to [`MAX_LINES`], each product once.
pub fn parse_lines(field: &str, lines: &[(String, i64)]) -> Result<Vec<OrderLine>, InputError> {
    if lines.is_empty() {
        return Err(InputError::new(field, "needs at least one line"));
    }
    if lines.len() > MAX_LINES {
        return Err(InputError::new(
            field,
            format!("has {} lines; at most {MAX_LINES} are allowed", lines.len()),
        ));
    }
    let mut out: Vec<OrderLine> = Vec::with_capacity(lines.len());
    for (i, (product, quantity)) in lines.iter().enumerate() {
        let product_id = ident(format!("{field}[{i}].product_id"), product)?.to_owned();
        if let Some(first) = out.iter().position(|l| l.product_id == product_id) {
            return Err(InputError::new(
                format!("{field}[{i}].product_id"),
                format!("{product_id:?} is already on {field}[{first}]; one line per product"),
            ));
        }
        let quantity = Quantity::parse(&format!("{field}[{i}].quantity"), *quantity)?;
        out.push(OrderLine {
            product_id,
            quantity,
        });
    }
    Ok(out)
}

/// How long a RESERVED reservation holds its units before the expiry job releases them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ttl(i64);

impl Ttl {
    /// What an order gets when it names no time.
    pub const DEFAULT_SECONDS: i64 = 15 * 60;
    pub const MIN_SECONDS: i64 = 60;
    pub const MAX_SECONDS: i64 = 7 * 24 * 3600;

    /// `0` is the default; anything else must be within the bounds.
    pub fn parse(field: &str, seconds: i64) -> Result<Self, InputError> {
        match seconds {
            0 => Ok(Self(Self::DEFAULT_SECONDS)),
            s if (Self::MIN_SECONDS..=Self::MAX_SECONDS).contains(&s) => Ok(Self(s)),
            s => Err(InputError::new(
                field,
                format!(
                    "is {s}; it must be 0 (the default, {} s) or {} to {} seconds",
                    Self::DEFAULT_SECONDS,
                    Self::MIN_SECONDS,
                    Self::MAX_SECONDS
                ),
            )),
        }
    }

    pub fn duration(self) -> Duration {
        Duration::seconds(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_machine_goes_reserve_pick_ship_or_release() {
        use ReservationAction::*;
        use ReservationStatus::*;
        assert_eq!(Pick.apply(Reserved), Ok(Picked));
        assert_eq!(Ship.apply(Picked), Ok(Shipped));
        assert_eq!(Release.apply(Reserved), Ok(Released));
        assert_eq!(Release.apply(Picked), Ok(Released));
        assert_eq!(Expire.apply(Reserved), Ok(Expired));
        for a in ReservationAction::ALL {
            for s in ReservationStatus::ALL {
                match a.apply(*s) {
                    Ok(t) => assert!(a.leaves_from().contains(s) && t == a.target()),
                    Err(e) => {
                        assert!(!a.leaves_from().contains(s));
                        assert_eq!(
                            e.to_string(),
                            format!("cannot {a} a reservation that is {s}")
                        );
                    }
                }
            }
        }
        // Nothing leaves a final status, and a picked reservation does not expire.
        for a in ReservationAction::ALL {
            assert!(a.apply(Shipped).is_err() && a.apply(Released).is_err());
            assert!(a.apply(Expired).is_err());
        }
        assert!(Expire.apply(Picked).is_err());
        assert!(Ship.apply(Reserved).is_err());
    }

    fn lines(l: &[(&str, i64)]) -> Vec<(String, i64)> {
        l.iter().map(|(p, q)| ((*p).to_owned(), *q)).collect()
    }

    #[test]
    fn order_lines_name_the_bad_one() {
        let ok = parse_lines("lines", &lines(&[("sku-1", 2), ("sku-2", 1)])).expect("valid");
        assert_eq!(ok[1].product_id, "sku-2");
        let field = |l: &[(&str, i64)]| parse_lines("lines", &lines(l)).expect_err("bad").field;
        assert_eq!(field(&[]), "lines");
        assert_eq!(field(&[("sku-1", 2), ("sku 2", 1)]), "lines[1].product_id");
        assert_eq!(field(&[("sku-1", 2), ("sku-1", 1)]), "lines[1].product_id");
        assert_eq!(field(&[("sku-1", 0)]), "lines[0].quantity");
        let many: Vec<(String, i64)> = (0..=MAX_LINES).map(|i| (format!("p{i}"), 1)).collect();
        assert_eq!(
            parse_lines("lines", &many).expect_err("too many").field,
            "lines"
        );
    }

    #[test]
    fn ttl_defaults_and_bounds() {
        assert_eq!(
            Ttl::parse("ttl_seconds", 0).map(Ttl::duration),
            Ok(Duration::minutes(15))
        );
        assert_eq!(
            Ttl::parse("ttl_seconds", 60).map(Ttl::duration),
            Ok(Duration::minutes(1))
        );
        assert!(Ttl::parse("ttl_seconds", 59).is_err());
        assert!(Ttl::parse("ttl_seconds", -1).is_err());
        assert!(Ttl::parse("ttl_seconds", Ttl::MAX_SECONDS + 1).is_err());
    }
}
