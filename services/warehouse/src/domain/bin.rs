//! Inventory locations: a warehouse is divided into zones, a zone into bins. A bin code reads
//! as the path through the warehouse (`A-02-10`: aisle A, rack 2, shelf 10), so bins are
//! walked in [`BinCode`] order — segment by segment, numbers by value (`A-2` before `A-10`)
//! — which orders pick lists and putaway suggestions.

use std::cmp::Ordering;

use uuid::Uuid;

use super::InputError;

/// Longest bin code, in characters.
pub const MAX_BIN: usize = 32;
/// Longest zone code, in characters.
pub const MAX_ZONE: usize = 8;
/// Largest capacity of one bin, in units.
pub const MAX_BIN_CAPACITY: i64 = 10_000_000;

/// A zone code: 1 to [`MAX_ZONE`] upper-case letters and digits (lower case is upper-cased).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ZoneCode(String);

impl ZoneCode {
    pub fn parse(field: &str, s: &str) -> Result<Self, InputError> {
        let code = s.to_ascii_uppercase();
        if code.is_empty()
            || code.len() > MAX_ZONE
            || !code.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Err(InputError::new(
                field,
                format!("{s:?} must be 1 to {MAX_ZONE} letters and digits"),
            ));
        }
        Ok(Self(code))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One hyphen-separated part of a bin code; numbers come before words at the same depth.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Segment<'a> {
    Number(u64),
    Word(&'a str),
}

/// A bin code: hyphen-separated segments of upper-case letters and digits, 1 to [`MAX_BIN`]
/// characters (lower case is upper-cased). Ordered as a walk through the warehouse.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BinCode(String);

impl BinCode {
    pub fn parse(field: &str, s: &str) -> Result<Self, InputError> {
        let code = s.to_ascii_uppercase();
        let ok = !code.is_empty()
            && code.len() <= MAX_BIN
            && code
                .split('-')
                .all(|seg| !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_alphanumeric()));
        if !ok {
            return Err(InputError::new(
                field,
                format!(
                    "{s:?} must be 1 to {MAX_BIN} characters: letters and digits in hyphen-separated parts, like A-02-10"
                ),
            ));
        }
        Ok(Self(code))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn segments(&self) -> impl Iterator<Item = Segment<'_>> {
        self.0.split('-').map(|seg| {
            // Digits only and short enough for u64 (at most 32 characters overall, so a
            // longer run of digits compares as a word, still deterministically).
            match seg.parse::<u64>() {
                Ok(n) if seg.bytes().all(|b| b.is_ascii_digit()) => Segment::Number(n),
                _ => Segment::Word(seg),
            }
        })
    }
}

impl Ord for BinCode {
    fn cmp(&self, other: &Self) -> Ordering {
        // Equal values with different spellings (`A-2`, `A-02`) fall back to the text, so
        // the order stays total and agrees with `Eq`.
        self.segments()
            .cmp(other.segments())
            .then_with(|| self.0.cmp(&other.0))
    }
}

impl PartialOrd for BinCode {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A bin as putaway sees it: its room and whether it already holds the product.
#[derive(Debug, Clone, PartialEq)]
pub struct Slot {
    pub bin_id: Uuid,
    pub code: BinCode,
    pub capacity: i64,
    /// Units of any product in it now (available and reserved).
    pub used: i64,
    /// Whether some of the product being put away is already in it.
    pub holds_product: bool,
}

/// Where to put received units: bins with their quantities, and what did not fit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Putaway {
    pub lines: Vec<(Uuid, BinCode, i64)>,
    pub unplaced: i64,
}

/// Suggests bins for `quantity` units of a product: first bins that already hold it (to keep
/// a product together), then empty bins, then bins holding other products, each group in walk
/// order, filling each to its capacity.
pub fn suggest_putaway(slots: &[Slot], quantity: i64) -> Putaway {
    let mut order: Vec<&Slot> = slots.iter().filter(|s| s.capacity > s.used).collect();
    let tier = |s: &Slot| match (s.holds_product, s.used) {
        (true, _) => 0,
        (false, 0) => 1,
        (false, _) => 2,
    };
    order.sort_by(|a, b| tier(a).cmp(&tier(b)).then_with(|| a.code.cmp(&b.code)));
    let mut left = quantity.max(0);
    let mut lines = Vec::new();
    for slot in order {
        if left == 0 {
            break;
        }
        let take = left.min(slot.capacity - slot.used);
        lines.push((slot.bin_id, slot.code.clone(), take));
        left -= take;
    }
    Putaway {
        lines,
        unplaced: left,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn bin(s: &str) -> BinCode {
        BinCode::parse("bin", s).expect("valid bin")
    }

    #[test]
    fn bins_are_walked_number_by_number() {
        let mut bins = [
            bin("B-1-1"),
            bin("A-10-1"),
            bin("a-2-3"),
            bin("A-2-10"),
            bin("A-2"),
        ];
        bins.sort();
        let codes: Vec<&str> = bins.iter().map(BinCode::as_str).collect();
        assert_eq!(codes, ["A-2", "A-2-3", "A-2-10", "A-10-1", "B-1-1"]);
        assert!(bin("A-02") < bin("A-2"), "equal values order by their text");
        assert!(bin("A-9") < bin("A-X"), "numbers before words");
    }

    #[test]
    fn bad_codes_are_refused() {
        for bad in ["", "A--1", "-A", "A-", "A 1", "A_1", &"A".repeat(33)] {
            assert_eq!(BinCode::parse("bin", bad).expect_err(bad).field, "bin");
        }
        assert_eq!(ZoneCode::parse("zone", "a1").expect("ok").as_str(), "A1");
        assert!(ZoneCode::parse("zone", "A-1").is_err());
        assert!(ZoneCode::parse("zone", "").is_err());
    }

    fn slot(code: &str, capacity: i64, used: i64, holds: bool) -> Slot {
        Slot {
            bin_id: Uuid::from_u128(u128::from(code.as_bytes()[code.len() - 1])),
            code: bin(code),
            capacity,
            used,
            holds_product: holds,
        }
    }

    #[test]
    fn putaway_keeps_a_product_together_then_fills_empty_bins() {
        let slots = [
            slot("A-3", 100, 0, false),
            slot("A-1", 100, 40, false),
            slot("B-1", 50, 30, true),
            slot("A-2", 100, 0, false),
            slot("C-9", 10, 10, true),
        ];
        let p = suggest_putaway(&slots, 150);
        let lines: Vec<(&str, i64)> = p.lines.iter().map(|l| (l.1.as_str(), l.2)).collect();
        // B-1 holds it (20 free), then the empty in walk order; C-9 is full.
        assert_eq!(lines, [("B-1", 20), ("A-2", 100), ("A-3", 30)]);
        assert_eq!(p.unplaced, 0);
        let p = suggest_putaway(&slots, 1000);
        assert_eq!(p.unplaced, 1000 - 20 - 100 - 100 - 60);
        assert_eq!(p.lines.last().map(|l| l.1.as_str()), Some("A-1"));
    }

    proptest! {
        #[test]
        fn bin_order_is_total_and_consistent(a in "[A-C0-9]{1,3}(-[A-C0-9]{1,3}){0,3}",
                                             b in "[A-C0-9]{1,3}(-[A-C0-9]{1,3}){0,3}") {
            let (a, b) = (bin(&a), bin(&b));
            prop_assert_eq!(a.cmp(&b), b.cmp(&a).reverse());
            prop_assert_eq!(a.cmp(&b) == Ordering::Equal, a == b);
        }

        #[test]
        fn putaway_never_overfills(caps in prop::collection::vec((1i64..200, 0i64..200, any::<bool>()), 0..12),
                                   quantity in 0i64..3000) {
            let slots: Vec<Slot> = caps.iter().enumerate().map(|(i, &(cap, used, holds))| Slot {
                bin_id: Uuid::from_u128(i as u128),
                code: bin(&format!("A-{i}")),
                capacity: cap,
                used: used.min(cap),
                holds_product: holds,
            }).collect();
            let p = suggest_putaway(&slots, quantity);
            let placed: i64 = p.lines.iter().map(|l| l.2).sum();
            prop_assert_eq!(placed + p.unplaced, quantity);
            for (id, _, q) in &p.lines {
                let s = slots.iter().find(|s| s.bin_id == *id).expect("a slot");
                prop_assert!(*q > 0 && s.used + q <= s.capacity);
            }
        }
    }
}
