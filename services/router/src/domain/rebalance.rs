//! How the table follows the fleet: [`initial`] builds version 1 for a set of cells, and
//! [`rebalance`] derives the next table from the previous one and the cells as they are now.
//!
//! Semantics, chosen so that as few users as possible change cells:
//! - **Fair share.** The buckets not held by draining cells (the pool) are shared among the
//!   other cells in proportion to their weights. Each such cell ends with its share rounded
//!   down or up (`floor(share)` or `floor(share) + 1`), so it is within one bucket of it.
//! - **Adding** a cell moves buckets only to it: the cells above their new quota give their
//!   surplus, taken from the end of their holdings; where rounding leaves a choice, the cells
//!   that already hold more keep the extra bucket, so no other cell has to receive one.
//! - **Removing** a cell moves only its buckets, to the cells below their new quota.
//! - Both are exact for cells of equal weight. With unequal weights they are exact when each
//!   cell's share changes by at least one bucket (many more buckets than cells, as with
//!   16,384 buckets and dozens of cells); with only a few buckets per cell, keeping every cell
//!   within one bucket of its share may also move a bucket between two other cells. Balance
//!   wins that tie, because an unbalanced cell is a capacity problem for as long as it lasts.
//! - **Draining** a cell freezes it: it keeps every bucket it holds (its users stay, sessions
//!   and data are not moved under them) and takes no new one, however the others change.
//!   Removing it from the list later hands its buckets out. So "no new users" without a
//!   migration of the existing ones, which is the operator's separate, explicit step.
//! - **Unchanged** input gives back the previous table, version included; any change of
//!   ownership makes `version + 1`.
//!
//! Everything is deterministic: the same previous table and cells give the same table.

use super::{
    cell::{CellEntry, CellName},
    table::{BucketCount, MAX_CELLS, Table},
};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RebalanceError {
    #[error("cell {0} is listed twice")]
    Duplicate(CellName),
    #[error("cell {0} has weight 0; weights start at 1")]
    ZeroWeight(CellName),
    #[error("{0} cells are listed; a table names at most {MAX_CELLS}")]
    TooManyCells(usize),
    #[error("no cell can take buckets: every listed cell is draining, or none is listed")]
    NoActiveCell,
}

/// Version 1 of a table of `buckets` buckets over `cells`: each cell a contiguous range.
pub fn initial(buckets: BucketCount, cells: &[CellEntry]) -> Result<Table, RebalanceError> {
    let cells = checked(cells)?;
    let owners = assign(
        &cells,
        vec![None; buckets.get() as usize],
        &vec![true; cells.len()],
    )?;
    Ok(Table::assembled(1, names(&cells), owners))
}

/// The table for `cells` that moves the fewest buckets from `previous` (see the module doc).
pub fn rebalance(previous: &Table, cells: &[CellEntry]) -> Result<Table, RebalanceError> {
    let cells = checked(cells)?;
    // Each previous cell's index in the new list, or None when it was removed.
    let renumbered: Vec<Option<u16>> = previous
        .cells()
        .iter()
        .map(|name| {
            cells
                .binary_search_by(|c| c.name.cmp(name))
                .ok()
                .and_then(|i| u16::try_from(i).ok())
        })
        .collect();
    let owners = previous
        .owners()
        .iter()
        .map(|&o| renumbered[usize::from(o)])
        .collect();
    let added: Vec<bool> = cells
        .iter()
        .map(|c| previous.cells().binary_search(&c.name).is_err())
        .collect();
    let owners = assign(&cells, owners, &added)?;
    let names = names(&cells);
    if names == previous.cells() && owners == previous.owners() {
        return Ok(previous.clone());
    }
    Ok(Table::assembled(previous.version() + 1, names, owners))
}

/// The cells in name order, each once, with valid weights.
fn checked(cells: &[CellEntry]) -> Result<Vec<&CellEntry>, RebalanceError> {
    if cells.len() > MAX_CELLS {
        return Err(RebalanceError::TooManyCells(cells.len()));
    }
    if let Some(cell) = cells.iter().find(|c| c.weight == 0) {
        return Err(RebalanceError::ZeroWeight(cell.name.clone()));
    }
    let mut sorted: Vec<&CellEntry> = cells.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    if let Some(pair) = sorted.windows(2).find(|pair| pair[0].name == pair[1].name) {
        return Err(RebalanceError::Duplicate(pair[0].name.clone()));
    }
    Ok(sorted)
}

fn names(cells: &[&CellEntry]) -> Vec<CellName> {
    cells.iter().map(|c| c.name.clone()).collect()
}

/// Gives every bucket an owner: `owners` holds each bucket's cell (an index into `cells`)
/// where it stays a candidate, `None` where its cell was removed; `added` marks the cells the
/// previous table did not list.
fn assign(
    cells: &[&CellEntry],
    mut owners: Vec<Option<u16>>,
    added: &[bool],
) -> Result<Vec<u16>, RebalanceError> {
    let mut counts = vec![0_usize; cells.len()];
    for &owner in owners.iter().flatten() {
        counts[usize::from(owner)] += 1;
    }
    let quotas = quotas(cells, &counts, added, owners.len())?;
    // Surplus leaves from the end of each cell's holdings.
    let mut surplus: Vec<usize> = counts
        .iter()
        .zip(&quotas)
        .map(|(count, quota)| count.saturating_sub(*quota))
        .collect();
    for owner in owners.iter_mut().rev() {
        if let Some(cell) = *owner {
            let cell = usize::from(cell);
            if surplus[cell] > 0 {
                surplus[cell] -= 1;
                counts[cell] -= 1;
                *owner = None;
            }
        }
    }
    // Free buckets go, in bucket order, to the cells below quota, in name order.
    let mut wanting = (0..cells.len())
        .flat_map(|cell| std::iter::repeat_n(cell, quotas[cell].saturating_sub(counts[cell])));
    owners
        .into_iter()
        .map(|owner| {
            owner
                .or_else(|| wanting.next().and_then(|cell| u16::try_from(cell).ok()))
                .ok_or(RebalanceError::NoActiveCell)
        })
        .collect()
}

/// Each cell's bucket count after rebalancing: draining cells keep theirs, the others share
/// the rest by weight, `floor(share)` each plus one for as many as the rounding leaves over.
fn quotas(
    cells: &[&CellEntry],
    counts: &[usize],
    added: &[bool],
    buckets: usize,
) -> Result<Vec<usize>, RebalanceError> {
    let mut quotas = counts.to_vec();
    let active: Vec<usize> = (0..cells.len()).filter(|&i| !cells[i].draining).collect();
    let held: usize = (0..cells.len())
        .filter(|&i| cells[i].draining)
        .map(|i| counts[i])
        .sum();
    let pool = buckets - held;
    if active.is_empty() {
        // Only a table whose every bucket stays with a draining cell can be built.
        return if pool == 0 {
            Ok(quotas)
        } else {
            Err(RebalanceError::NoActiveCell)
        };
    }
    let total_weight: u128 = active.iter().map(|&i| u128::from(cells[i].weight)).sum();
    let mut given = 0;
    for &i in &active {
        // Below `pool`, so it fits.
        #[allow(clippy::cast_possible_truncation)]
        let share = (pool as u128 * u128::from(cells[i].weight) / total_weight) as usize;
        quotas[i] = share;
        given += share;
    }
    // The rounding's leftover (fewer than the active cells) goes first to the cells holding
    // most above their floor, which keep a bucket instead of giving it away; then to the added
    // cells, so that an existing cell receives only when nothing else balances; then to the
    // emptiest.
    let mut order = active;
    order.sort_by_key(|&i| {
        let excess = counts[i] as i128 - quotas[i] as i128;
        if excess > 0 {
            (0, -excess)
        } else if added[i] {
            (1, excess)
        } else {
            (2, excess)
        }
    });
    for &i in order.iter().take(pool - given) {
        quotas[i] += 1;
    }
    Ok(quotas)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn entry(name: &str, weight: u32, draining: bool) -> CellEntry {
        CellEntry {
            name: CellName::parse(name).expect("valid name"),
            weight,
            draining,
        }
    }

    fn counts_by_name(table: &Table) -> Vec<(String, usize)> {
        table
            .cells()
            .iter()
            .map(|c| c.to_string())
            .zip(table.counts())
            .collect()
    }

    #[test]
    fn a_new_table_gives_each_cell_a_contiguous_fair_range() {
        let cells = [
            entry("b", 1, false),
            entry("a", 1, false),
            entry("c", 2, false),
        ];
        let table = initial(BucketCount::new(8).expect("valid"), &cells).expect("cells");
        assert_eq!(table.version(), 1);
        assert_eq!(table.owners(), &[0, 0, 1, 1, 2, 2, 2, 2]);
    }

    #[test]
    fn adding_a_cell_takes_from_the_most_loaded_only() {
        let buckets = BucketCount::new(16).expect("valid");
        let two = [entry("a", 1, false), entry("b", 1, false)];
        let before = initial(buckets, &two).expect("cells");
        let three = [
            entry("a", 1, false),
            entry("b", 1, false),
            entry("c", 1, false),
        ];
        let after = rebalance(&before, &three).expect("cells");
        assert_eq!(after.version(), 2);
        // 16 / 3: a keeps one above its floor (it held the most first, by name).
        assert_eq!(
            counts_by_name(&after),
            vec![("a".into(), 6), ("b".into(), 5), ("c".into(), 5)]
        );
        let moved: Vec<usize> = (0..16)
            .filter(|&b| before.owners()[b] != after.owners()[b])
            .collect();
        assert_eq!(moved, vec![6, 7, 13, 14, 15]);
        assert!(moved.iter().all(|&b| after.owners()[b] == 2));
    }

    #[test]
    fn draining_cells_keep_their_buckets_and_take_none() {
        let buckets = BucketCount::new(16).expect("valid");
        let before =
            initial(buckets, &[entry("a", 1, false), entry("b", 1, false)]).expect("cells");
        let drained = [
            entry("a", 1, true),
            entry("b", 1, false),
            entry("c", 1, false),
        ];
        let after = rebalance(&before, &drained).expect("cells");
        assert_eq!(
            counts_by_name(&after),
            vec![("a".into(), 8), ("b".into(), 4), ("c".into(), 4)]
        );
        assert_eq!(&after.owners()[..8], &[0; 8]);
        // Removing the drained cell hands its buckets to the others, and only those move.
        let removed = rebalance(&after, &drained[1..]).expect("cells");
        assert_eq!(
            counts_by_name(&removed),
            vec![("b".into(), 8), ("c".into(), 8)]
        );
        assert_eq!(
            removed.owners(),
            &[0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1]
        );
    }

    #[test]
    fn bad_cell_lists_are_refused() {
        let buckets = BucketCount::new(4).expect("valid");
        assert_eq!(
            initial(buckets, &[entry("a", 1, false), entry("a", 2, false)]),
            Err(RebalanceError::Duplicate(
                CellName::parse("a").expect("valid")
            ))
        );
        assert_eq!(
            initial(buckets, &[entry("a", 0, false)]),
            Err(RebalanceError::ZeroWeight(
                CellName::parse("a").expect("valid")
            ))
        );
        assert_eq!(initial(buckets, &[]), Err(RebalanceError::NoActiveCell));
        assert_eq!(
            initial(buckets, &[entry("a", 1, true)]),
            Err(RebalanceError::NoActiveCell)
        );
        let table = initial(buckets, &[entry("a", 1, false), entry("b", 1, false)]).expect("cells");
        assert_eq!(
            rebalance(&table, &[entry("a", 1, true)]),
            Err(RebalanceError::NoActiveCell)
        );
        // Every cell draining, none removed: nothing has to move, so the table stands.
        assert_eq!(
            rebalance(&table, &[entry("a", 1, true), entry("b", 1, true)]),
            Ok(table)
        );
    }

    /// One change to the fleet.
    #[derive(Debug, Clone)]
    enum Op {
        Add { weight: u32 },
        Remove(usize),
        Drain(usize),
        Undrain(usize),
        Reweigh(usize, u32),
    }

    fn op(max_weight: u32) -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (1..=max_weight).prop_map(|weight| Op::Add { weight }),
            2 => any::<usize>().prop_map(Op::Remove),
            1 => any::<usize>().prop_map(Op::Drain),
            1 => any::<usize>().prop_map(Op::Undrain),
            1 => (any::<usize>(), 1..=max_weight).prop_map(|(i, w)| Op::Reweigh(i, w)),
        ]
    }

    /// What every table must satisfy: every bucket has one listed owner, and each cell that is
    /// not draining holds its weighted share of the buckets draining cells do not hold, within
    /// one bucket.
    fn check_invariants(table: &Table, cells: &[CellEntry]) -> Result<(), TestCaseError> {
        let mut names: Vec<&CellName> = cells.iter().map(|c| &c.name).collect();
        names.sort();
        prop_assert_eq!(table.cells().iter().collect::<Vec<_>>(), names);
        let counts = table.counts();
        prop_assert_eq!(counts.iter().sum::<usize>(), table.owners().len());
        let count_of = |name: &CellName| {
            counts[table
                .cells()
                .iter()
                .position(|c| c == name)
                .expect("listed")]
        };
        let held: usize = cells
            .iter()
            .filter(|c| c.draining)
            .map(|c| count_of(&c.name))
            .sum();
        let pool = (table.owners().len() - held) as u128;
        let total: u128 = cells
            .iter()
            .filter(|c| !c.draining)
            .map(|c| u128::from(c.weight))
            .sum();
        for cell in cells.iter().filter(|c| !c.draining) {
            // |count - pool * w / W| <= 1, in integers.
            let scaled = count_of(&cell.name) as u128 * total;
            let share = pool * u128::from(cell.weight);
            prop_assert!(
                scaled.abs_diff(share) <= total,
                "cell {} holds {} buckets; its share is {}/{}",
                cell.name,
                count_of(&cell.name),
                share,
                total
            );
        }
        Ok(())
    }

    /// The buckets whose cell differs between two tables, as (bucket, before, after) names.
    fn moves<'t>(before: &'t Table, after: &'t Table) -> Vec<(usize, &'t CellName, &'t CellName)> {
        (0..before.owners().len())
            .filter_map(|b| {
                let (from, to) = (
                    before.owner(b as u32).expect("bucket"),
                    after.owner(b as u32).expect("bucket"),
                );
                (from != to).then_some((b, from, to))
            })
            .collect()
    }

    fn fleet_history(max_weight: u32) -> impl Strategy<Value = (u32, usize, Vec<Op>)> {
        (
            0_u32..=14,
            1_usize..=6,
            proptest::collection::vec(op(max_weight), 1..24),
        )
    }

    /// Replays `ops` from a table over `initial_cells` cells and checks every step.
    /// `equal_weights` runs also check the strict stability of adding and removing.
    fn replay(
        log2_buckets: u32,
        initial_cells: usize,
        ops: &[Op],
        equal_weights: bool,
    ) -> Result<(), TestCaseError> {
        let buckets = BucketCount::new(1 << log2_buckets).expect("power of two");
        let mut next_name = 0;
        let mut fresh = |weight| {
            next_name += 1;
            entry(&format!("cell-{next_name}"), weight, false)
        };
        let mut cells: Vec<CellEntry> = (0..initial_cells).map(|_| fresh(1)).collect();
        let mut table = initial(buckets, &cells).expect("cells");
        check_invariants(&table, &cells)?;
        for op in ops {
            let mut next = cells.clone();
            let pick = |i: &usize| i % cells.len().max(1);
            match op {
                Op::Add { weight } => next.push(fresh(if equal_weights { 1 } else { *weight })),
                Op::Remove(i) if !cells.is_empty() => {
                    next.remove(pick(i));
                }
                Op::Drain(i) if !cells.is_empty() => next[pick(i)].draining = true,
                Op::Undrain(i) if !cells.is_empty() => next[pick(i)].draining = false,
                Op::Reweigh(i, w) if !cells.is_empty() && !equal_weights => {
                    next[pick(i)].weight = *w
                }
                _ => continue,
            }
            let after = match rebalance(&table, &next) {
                Ok(after) => after,
                Err(e) => {
                    // Only a change that leaves buckets without any cell able to take them.
                    prop_assert_eq!(e, RebalanceError::NoActiveCell);
                    prop_assert!(next.iter().all(|c| c.draining));
                    continue;
                }
            };
            check_invariants(&after, &next)?;
            // Determinism: the order of the list does not matter.
            let mut reversed = next.clone();
            reversed.reverse();
            prop_assert_eq!(&rebalance(&table, &reversed).expect("same input"), &after);
            // Unchanged input: the same table, the same version.
            prop_assert_eq!(&rebalance(&after, &next).expect("same input"), &after);
            // A table change is a version change, and only then do keys move.
            prop_assert_eq!(
                after.same_assignment(&table),
                after.version() == table.version()
            );
            let moved = moves(&table, &after);
            prop_assert!(moved.is_empty() || after.version() == table.version() + 1);
            // Draining cells never receive, and keep what they hold while they stay listed.
            for (_, from, to) in &moved {
                prop_assert!(
                    !next.iter().any(|c| &c.name == *to && c.draining),
                    "draining {} received",
                    to
                );
                prop_assert!(
                    !next.iter().any(|c| &c.name == *from && c.draining),
                    "draining {} gave",
                    from
                );
            }
            match op {
                Op::Add { .. } if equal_weights => {
                    let new = &next[next.len() - 1].name;
                    prop_assert!(
                        moved.iter().all(|(_, _, to)| *to == new),
                        "adding {} moved {:?}",
                        new,
                        moved
                    );
                }
                Op::Remove(i) if equal_weights => {
                    let gone = &cells[pick(i)].name;
                    prop_assert!(
                        moved.iter().all(|(_, from, _)| *from == gone),
                        "removing {} moved {:?}",
                        gone,
                        moved
                    );
                }
                _ => {}
            }
            cells = next;
            table = after;
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn equal_cells_move_only_what_they_must((log2, n, ops) in fleet_history(1)) {
            replay(log2, n, &ops, true)?;
        }

        #[test]
        fn weighted_cells_stay_balanced_and_deterministic((log2, n, ops) in fleet_history(5)) {
            replay(log2, n, &ops, false)?;
        }

        /// With weights too, adding moves buckets only to the new cell and removing only the
        /// removed cell's buckets, when every cell's share moves by a bucket or more (1,024 to
        /// 16,384 buckets, up to 11 cells of weights 1 to 8). With a few buckets per cell, the
        /// ±1 balance may need one between two other cells: see the module doc.
        #[test]
        fn weighted_add_and_remove_are_minimal(
            log2 in 10_u32..=14,
            weights in proptest::collection::vec(1_u32..=8, 1..12),
            new_weight in 1_u32..=8,
            removed in any::<usize>(),
        ) {
            let buckets = BucketCount::new(1 << log2).expect("power of two");
            let cells: Vec<CellEntry> = weights.iter().enumerate()
                .map(|(i, &w)| entry(&format!("cell-{i}"), w, false)).collect();
            let table = initial(buckets, &cells).expect("cells");
            let mut added = cells.clone();
            added.push(entry("cell-new", new_weight, false));
            let after = rebalance(&table, &added).expect("cells");
            let new = CellName::parse("cell-new").expect("valid");
            for (bucket, _, to) in moves(&table, &after) {
                prop_assert_eq!(to, &new, "bucket {} moved elsewhere", bucket);
            }
            if cells.len() > 1 {
                let mut fewer = cells.clone();
                let gone = fewer.remove(removed % cells.len()).name;
                let after = rebalance(&table, &fewer).expect("cells");
                for (bucket, from, _) in moves(&table, &after) {
                    prop_assert_eq!(from, &gone, "bucket {} moved from elsewhere", bucket);
                }
            }
        }

        /// Every key goes to the owner of its bucket, on every table.
        #[test]
        fn a_key_follows_its_bucket(key in "\\PC{1,64}", n in 1_usize..8) {
            let cells: Vec<CellEntry> = (0..n).map(|i| entry(&format!("c{i}"), 1, false)).collect();
            let table = initial(BucketCount::default(), &cells).expect("cells");
            let key = crate::domain::PartitionKey::parse(&key).expect("1 to 64 characters fit");
            let route = table.route(key);
            prop_assert_eq!(Some(route.cell), table.owner(route.bucket));
            prop_assert_eq!(route.bucket as u64, key.hash() % 16_384);
        }
    }
}
