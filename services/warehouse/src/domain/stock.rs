//! The stock ledger's vocabulary: a [`Quantity`] moved, the [`MovementType`]s, and the
//! [`Delta`] each one makes to a stock row's `available` and `reserved`. A stock row always
//! equals the sum of its movements' deltas, and neither column goes below zero: a delta that
//! would is refused (the store's guard is `available + delta >= 0`).

use super::InputError;

/// Most units one movement, adjustment or order line may carry.
pub const MAX_QUANTITY: i64 = 1_000_000;
/// Longest reference (purchase order, order id, reason), in characters.
pub const MAX_REFERENCE: usize = 200;

/// A positive number of units, at most [`MAX_QUANTITY`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Quantity(i64);

impl Quantity {
    pub fn parse(field: &str, n: i64) -> Result<Self, InputError> {
        if (1..=MAX_QUANTITY).contains(&n) {
            Ok(Self(n))
        } else {
            Err(InputError::new(
                field,
                format!("is {n}; it must be 1 to {MAX_QUANTITY} units"),
            ))
        }
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

/// Why stock changed. The spec's five kinds of physical movement, plus RESERVE and RELEASE:
/// moving units between `available` and `reserved` changes a stock row too, and every change
/// is a movement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MovementType {
    /// Units received from a supplier.
    Inbound,
    /// Reserved units shipped out.
    Outbound,
    /// One leg of a transfer between bins or warehouses (two rows, one transaction).
    Transfer,
    /// A count correction, up or down, with a reason.
    Adjustment,
    /// Units a customer sent back, available again.
    Return,
    /// Available units set aside for an order.
    Reserve,
    /// Reserved units made available again (released or expired).
    Release,
}

titan_kit::names!(MovementType {
    Inbound => "INBOUND",
    Outbound => "OUTBOUND",
    Transfer => "TRANSFER",
    Adjustment => "ADJUSTMENT",
    Return => "RETURN",
    Reserve => "RESERVE",
    Release => "RELEASE",
});

/// What one movement adds to a stock row's `available` and `reserved`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delta {
    pub kind: MovementType,
    pub available: i64,
    pub reserved: i64,
}

impl Delta {
    /// INBOUND or RETURN: units arrive on the shelf.
    pub fn receipt(kind: ReceiptKind, q: Quantity) -> Self {
        let kind = match kind {
            ReceiptKind::Inbound => MovementType::Inbound,
            ReceiptKind::Return => MovementType::Return,
        };
        Self {
            kind,
            available: q.0,
            reserved: 0,
        }
    }

    /// A counted correction: `by` units more (or fewer) than recorded.
    pub fn adjustment(by: Adjustment) -> Self {
        Self {
            kind: MovementType::Adjustment,
            available: by.0,
            reserved: 0,
        }
    }

    /// The leg of a transfer that leaves (`outgoing`) or arrives.
    pub fn transfer(q: Quantity, outgoing: bool) -> Self {
        Self {
            kind: MovementType::Transfer,
            available: if outgoing { -q.0 } else { q.0 },
            reserved: 0,
        }
    }

    pub fn reserve(q: Quantity) -> Self {
        Self {
            kind: MovementType::Reserve,
            available: -q.0,
            reserved: q.0,
        }
    }

    pub fn release(q: Quantity) -> Self {
        Self {
            kind: MovementType::Release,
            available: q.0,
            reserved: -q.0,
        }
    }

    /// Reserved units leave the warehouse.
    pub fn ship(q: Quantity) -> Self {
        Self {
            kind: MovementType::Outbound,
            available: 0,
            reserved: -q.0,
        }
    }

    /// The row after this movement, or `None` when either column would go negative.
    pub fn apply(self, available: i64, reserved: i64) -> Option<(i64, i64)> {
        let a = available.checked_add(self.available)?;
        let r = reserved.checked_add(self.reserved)?;
        (a >= 0 && r >= 0).then_some((a, r))
    }
}

/// The movements a receipt may record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptKind {
    Inbound,
    Return,
}

titan_kit::names!(ReceiptKind {
    Inbound => "INBOUND",
    Return => "RETURN",
});

/// A non-zero correction of at most [`MAX_QUANTITY`] units either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Adjustment(i64);

impl Adjustment {
    pub fn parse(field: &str, n: i64) -> Result<Self, InputError> {
        if n != 0 && n.unsigned_abs() <= MAX_QUANTITY.unsigned_abs() {
            Ok(Self(n))
        } else {
            Err(InputError::new(
                field,
                format!("is {n}; it must be -{MAX_QUANTITY} to {MAX_QUANTITY} and not 0"),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn quantities_are_bounded() {
        assert_eq!(Quantity::parse("quantity", 1).map(Quantity::get), Ok(1));
        assert_eq!(
            Quantity::parse("lines[0].quantity", 0)
                .expect_err("0")
                .field,
            "lines[0].quantity"
        );
        assert!(Quantity::parse("q", MAX_QUANTITY + 1).is_err());
        assert!(Quantity::parse("q", -5).is_err());
        assert!(Adjustment::parse("delta", 0).is_err());
        assert!(Adjustment::parse("delta", -MAX_QUANTITY).is_ok());
        assert!(Adjustment::parse("delta", i64::MIN).is_err());
        assert_eq!(
            ReceiptKind::parse("type", "ADJUSTMENT")
                .expect_err("not a receipt")
                .field,
            "type"
        );
    }

    #[test]
    fn each_movement_moves_the_columns_it_names() {
        let q = Quantity::parse("q", 3).expect("3");
        assert_eq!(Delta::reserve(q).apply(5, 0), Some((2, 3)));
        assert_eq!(Delta::reserve(q).apply(2, 0), None);
        assert_eq!(Delta::release(q).apply(2, 3), Some((5, 0)));
        assert_eq!(Delta::ship(q).apply(2, 3), Some((2, 0)));
        assert_eq!(Delta::ship(q).apply(9, 2), None);
        assert_eq!(Delta::transfer(q, true).apply(3, 1), Some((0, 1)));
        assert_eq!(Delta::transfer(q, false).apply(0, 0), Some((3, 0)));
        assert_eq!(
            Delta::receipt(ReceiptKind::Return, q).kind,
            MovementType::Return
        );
    }

    fn delta() -> impl Strategy<Value = Delta> {
        (0u8..6, 1i64..50).prop_map(|(k, n)| {
            let q = Quantity::parse("q", n).expect("positive");
            match k {
                0 => Delta::receipt(ReceiptKind::Inbound, q),
                1 => Delta::reserve(q),
                2 => Delta::release(q),
                3 => Delta::ship(q),
                4 => Delta::transfer(q, true),
                _ => Delta::adjustment(Adjustment::parse("d", -n).expect("non-zero")),
            }
        })
    }

    proptest! {
        /// Applying only the movements the guard lets through keeps both columns at or above
        /// zero and the row equal to the sum of the movements kept.
        #[test]
        fn the_guard_keeps_the_ledger_balanced(deltas in prop::collection::vec(delta(), 0..200)) {
            let (mut a, mut r) = (0i64, 0i64);
            let (mut sum_a, mut sum_r) = (0i64, 0i64);
            for d in deltas {
                if let Some((na, nr)) = d.apply(a, r) {
                    (a, r) = (na, nr);
                    sum_a += d.available;
                    sum_r += d.reserved;
                }
                prop_assert!(a >= 0 && r >= 0);
            }
            prop_assert_eq!((a, r), (sum_a, sum_r));
        }
    }
}
