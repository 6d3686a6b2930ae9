//! Allocation: an order's lines split across ACTIVE warehouses — by default nearest to the
//! destination first (great-circle distance), then higher priority, then code — taking from
//! each warehouse's bins in walk order; what no warehouse has is answered as short. Pure: the
//! store feeds it the stock rows it locked, then reserves exactly the picks.

use uuid::Uuid;

use super::{BinCode, Location, OrderLine, Quantity, WarehouseCode, WarehouseStatus};

/// Which warehouses are tried first (the config's `allocation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preference {
    /// Nearest to the destination first, then higher priority.
    NearestFirst,
    /// Higher priority first, then nearest.
    PriorityFirst,
}

/// A warehouse as allocation sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub id: Uuid,
    pub code: WarehouseCode,
    pub status: WarehouseStatus,
    pub location: Location,
    pub priority: i32,
}

/// Available units of a product in one bin of a warehouse.
#[derive(Debug, Clone, PartialEq)]
pub struct Stocked {
    pub warehouse_id: Uuid,
    pub product_id: String,
    pub bin_id: Uuid,
    pub bin: BinCode,
    pub available: i64,
}

/// Units to reserve from one bin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pick {
    pub warehouse_id: Uuid,
    pub product_id: String,
    pub bin_id: Uuid,
    pub bin: BinCode,
    pub quantity: Quantity,
}

/// What of a line no ACTIVE warehouse could give.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shortage {
    pub product_id: String,
    pub requested: i64,
    pub short: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Allocation {
    /// In line order; within a line, in warehouse order and then bin walk order.
    pub picks: Vec<Pick>,
    pub short: Vec<Shortage>,
}

/// The ACTIVE warehouses in the order `preference` tries them for `destination`.
pub fn ranked<'a>(
    warehouses: &'a [Candidate],
    destination: &Location,
    preference: Preference,
) -> Vec<&'a Candidate> {
    let mut active: Vec<(&Candidate, f64)> = warehouses
        .iter()
        .filter(|w| w.status == WarehouseStatus::Active)
        .map(|w| (w, w.location.distance_m(destination)))
        .collect();
    active.sort_by(|(a, da), (b, db)| {
        let near = da.total_cmp(db);
        let prio = b.priority.cmp(&a.priority);
        let first = match preference {
            Preference::NearestFirst => near.then(prio),
            Preference::PriorityFirst => prio.then(near),
        };
        first.then_with(|| a.code.cmp(&b.code))
    });
    active.into_iter().map(|(w, _)| w).collect()
}

/// Splits `lines` over `stock` (any rows; only ACTIVE warehouses' are used).
pub fn allocate(
    lines: &[OrderLine],
    destination: &Location,
    preference: Preference,
    warehouses: &[Candidate],
    stock: &[Stocked],
) -> Allocation {
    let order = ranked(warehouses, destination, preference);
    let mut out = Allocation::default();
    for line in lines {
        let mut left = line.quantity.get();
        for w in &order {
            let mut bins: Vec<&Stocked> = stock
                .iter()
                .filter(|s| s.warehouse_id == w.id && s.product_id == line.product_id)
                .filter(|s| s.available > 0)
                .collect();
            bins.sort_by(|a, b| a.bin.cmp(&b.bin));
            for s in bins {
                if left == 0 {
                    break;
                }
                let take = left.min(s.available);
                // `take` is between 1 and the line's own (valid) quantity.
                let Ok(quantity) = Quantity::parse("quantity", take) else {
                    continue;
                };
                out.picks.push(Pick {
                    warehouse_id: w.id,
                    product_id: line.product_id.clone(),
                    bin_id: s.bin_id,
                    bin: s.bin.clone(),
                    quantity,
                });
                left -= take;
            }
        }
        if left > 0 {
            out.short.push(Shortage {
                product_id: line.product_id.clone(),
                requested: line.quantity.get(),
                short: left,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::domain::parse_lines;

    fn wh(
        n: u128,
        code: &str,
        status: WarehouseStatus,
        at: (f64, f64),
        priority: i32,
    ) -> Candidate {
        Candidate {
            id: Uuid::from_u128(n),
            code: WarehouseCode::parse("code", code).expect("code"),
            status,
            location: Location::parse("l", at.0, at.1).expect("on the globe"),
            priority,
        }
    }

    fn row(w: u128, product: &str, bin: &str, available: i64) -> Stocked {
        Stocked {
            warehouse_id: Uuid::from_u128(w),
            product_id: product.into(),
            bin_id: Uuid::from_u128(
                (w << 64)
                    | u128::from(
                        bin.bytes()
                            .fold(0u64, |h, b| h.wrapping_mul(131).wrapping_add(u64::from(b))),
                    ),
            ),
            bin: BinCode::parse("bin", bin).expect("bin"),
            available,
        }
    }

    fn order(l: &[(&str, i64)]) -> Vec<OrderLine> {
        let l: Vec<(String, i64)> = l.iter().map(|(p, q)| ((*p).into(), *q)).collect();
        parse_lines("lines", &l).expect("lines")
    }

    fn picks(a: &Allocation) -> Vec<(u128, &str, &str, i64)> {
        a.picks
            .iter()
            .map(|p| {
                (
                    p.warehouse_id.as_u128(),
                    p.product_id.as_str(),
                    p.bin.as_str(),
                    p.quantity.get(),
                )
            })
            .collect()
    }

    use WarehouseStatus::*;

    /// Singapore (1), Kuala Lumpur (2, priority 50), Jakarta (3, inactive), Johor Bahru (4).
    fn region() -> Vec<Candidate> {
        vec![
            wh(1, "SIN", Active, (1.3521, 103.8198), 10),
            wh(2, "KUL", Active, (3.1390, 101.6869), 50),
            wh(3, "CGK", Inactive, (-6.2088, 106.8456), 90),
            wh(4, "JHB", Active, (1.4927, 103.7414), 10),
        ]
    }

    #[test]
    fn nearest_first_then_bins_in_walk_order_then_short() {
        let stock = [
            row(1, "tee", "B-1", 4),
            row(1, "tee", "A-10", 3),
            row(1, "tee", "A-2", 2),
            row(4, "tee", "A-1", 5),
            row(2, "tee", "A-1", 100),
            row(3, "tee", "A-1", 100),
            row(1, "mug", "A-1", 1),
        ];
        // A destination in Singapore: SIN (about 8 km), JHB (about 26 km), KUL (about 316 km);
        // CGK is not ACTIVE and is never used.
        let dest = Location::parse("d", 1.29, 103.85).expect("dest");
        let a = allocate(
            &order(&[("tee", 12), ("mug", 3)]),
            &dest,
            Preference::NearestFirst,
            &region(),
            &stock,
        );
        assert_eq!(
            picks(&a),
            [
                (1, "tee", "A-2", 2),
                (1, "tee", "A-10", 3),
                (1, "tee", "B-1", 4),
                (4, "tee", "A-1", 3),
                (1, "mug", "A-1", 1),
            ]
        );
        assert_eq!(
            a.short,
            [Shortage {
                product_id: "mug".into(),
                requested: 3,
                short: 2
            }]
        );
        // The same order by priority: KUL (50) gives all the tees.
        let a = allocate(
            &order(&[("tee", 12)]),
            &dest,
            Preference::PriorityFirst,
            &region(),
            &stock,
        );
        assert_eq!(picks(&a), [(2, "tee", "A-1", 12)]);
        assert!(a.short.is_empty());
    }

    #[test]
    fn equal_distance_goes_to_the_higher_priority_then_the_code() {
        let ws = [
            wh(1, "AAA", Active, (10.0, 10.0), 1),
            wh(2, "BBB", Active, (10.0, 10.0), 7),
            wh(3, "CCC", Active, (10.0, 10.0), 7),
        ];
        let dest = Location::parse("d", 0.0, 0.0).expect("dest");
        let codes: Vec<&str> = ranked(&ws, &dest, Preference::NearestFirst)
            .iter()
            .map(|w| w.code.as_str())
            .collect();
        assert_eq!(codes, ["BBB", "CCC", "AAA"]);
        let stock = [
            row(1, "p", "A-1", 5),
            row(2, "p", "A-1", 1),
            row(3, "p", "A-1", 1),
        ];
        let a = allocate(
            &order(&[("p", 4)]),
            &dest,
            Preference::NearestFirst,
            &ws,
            &stock,
        );
        assert_eq!(
            picks(&a),
            [(2, "p", "A-1", 1), (3, "p", "A-1", 1), (1, "p", "A-1", 2)]
        );
    }

    #[test]
    fn nothing_in_stock_is_all_short() {
        let dest = Location::parse("d", 0.0, 0.0).expect("dest");
        let a = allocate(
            &order(&[("p", 4)]),
            &dest,
            Preference::NearestFirst,
            &region(),
            &[],
        );
        assert!(a.picks.is_empty());
        assert_eq!(
            a.short,
            [Shortage {
                product_id: "p".into(),
                requested: 4,
                short: 4
            }]
        );
    }

    fn status() -> impl Strategy<Value = WarehouseStatus> {
        prop::sample::select(WarehouseStatus::ALL.to_vec())
    }

    proptest! {
        /// Never more than a bin holds, never from a warehouse that is not ACTIVE, and every
        /// unit requested is either picked or short.
        #[test]
        fn allocation_respects_stock_and_status(
            ws in prop::collection::vec((status(), -80.0f64..80.0, -170.0f64..170.0, 0i32..5), 1..6),
            rows in prop::collection::vec((0usize..6, 0usize..3, 0usize..4, 0i64..20), 0..40),
            wants in prop::collection::vec(1i64..60, 1..3),
            dest in (-80.0f64..80.0, -170.0f64..170.0),
            by_priority in any::<bool>(),
        ) {
            let warehouses: Vec<Candidate> = ws.iter().enumerate()
                .map(|(i, &(s, lat, lng, p))| wh(i as u128, &format!("W{i}"), s, (lat, lng), p))
                .collect();
            // Distinct (warehouse, product, bin) rows, as the stock table's key makes them.
            let mut stock: Vec<Stocked> = Vec::new();
            for &(w, p, b, n) in &rows {
                let r = row((w % warehouses.len()) as u128, &format!("p{p}"), &format!("A-{b}"), n);
                if !stock.iter().any(|s| s.warehouse_id == r.warehouse_id && s.product_id == r.product_id && s.bin == r.bin) {
                    stock.push(r);
                }
            }
            let lines: Vec<(String, i64)> = wants.iter().enumerate().map(|(i, &q)| (format!("p{i}"), q)).collect();
            let lines = parse_lines("lines", &lines).expect("lines");
            let dest = Location::parse("d", dest.0, dest.1).expect("dest");
            let pref = if by_priority { Preference::PriorityFirst } else { Preference::NearestFirst };
            let a = allocate(&lines, &dest, pref, &warehouses, &stock);
            for p in &a.picks {
                let w = warehouses.iter().find(|w| w.id == p.warehouse_id).expect("known");
                prop_assert_eq!(w.status, Active);
                let s = stock.iter().find(|s| s.warehouse_id == p.warehouse_id && s.product_id == p.product_id && s.bin_id == p.bin_id).expect("a row");
                let taken: i64 = a.picks.iter().filter(|q| q.bin_id == p.bin_id && q.product_id == p.product_id).map(|q| q.quantity.get()).sum();
                prop_assert!(taken <= s.available);
            }
            for l in &lines {
                let picked: i64 = a.picks.iter().filter(|p| p.product_id == l.product_id).map(|p| p.quantity.get()).sum();
                let short = a.short.iter().find(|s| s.product_id == l.product_id).map_or(0, |s| s.short);
                prop_assert_eq!(picked + short, l.quantity.get());
                // Short only when every ACTIVE bin of the product was emptied.
                if short > 0 {
                    let active: i64 = stock.iter().filter(|s| s.product_id == l.product_id
                        && warehouses.iter().any(|w| w.id == s.warehouse_id && w.status == Active)).map(|s| s.available).sum();
                    prop_assert_eq!(picked, active);
                }
            }
        }
    }
}
