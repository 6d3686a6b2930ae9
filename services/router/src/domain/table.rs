//! The routing table: a fixed number of buckets (a power of two), each owned by exactly one
//! cell, under a version that grows with every change of ownership. A key's bucket is its
//! hash modulo the bucket count (the hash's low bits), so its cell changes only when the table
//! does.

use super::{cell::CellName, key::PartitionKey};

/// The bucket count of a new table.
pub const DEFAULT_BUCKETS: u32 = 16_384;
/// The most buckets a table may have: the stored form of the most fragmented table still fits
/// in a ConfigMap (1 MiB).
pub const MAX_BUCKETS: u32 = 65_536;
/// The most cells a table may name (owners are stored as `u16` indexes).
pub const MAX_CELLS: usize = 4_096;

/// A table's bucket count: a power of two from 1 to [`MAX_BUCKETS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketCount(u32);

impl BucketCount {
    pub fn new(count: u32) -> Result<Self, TableError> {
        if count.is_power_of_two() && count <= MAX_BUCKETS {
            Ok(Self(count))
        } else {
            Err(TableError::BucketCount(count))
        }
    }

    pub fn get(self) -> u32 {
        self.0
    }

    /// The bucket of `hash`.
    pub fn bucket_of(self, hash: u64) -> u32 {
        // Lossless: the mask is below MAX_BUCKETS.
        #[allow(clippy::cast_possible_truncation)]
        let bucket = (hash & u64::from(self.0 - 1)) as u32;
        bucket
    }
}

impl Default for BucketCount {
    fn default() -> Self {
        Self(DEFAULT_BUCKETS)
    }
}

/// The count as a number (what a flag or setting takes).
impl std::fmt::Display for BucketCount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    #[error("bucket count {0} is not a power of two from 1 to {MAX_BUCKETS}")]
    BucketCount(u32),
    #[error("a table names at most {MAX_CELLS} cells, not {0}")]
    TooManyCells(usize),
    #[error("cells must be listed once each in name order; {0} is out of place")]
    CellOrder(CellName),
    #[error("bucket {bucket} is owned by cell index {index}, but the table names {cells} cells")]
    Owner {
        bucket: usize,
        index: u16,
        cells: usize,
    },
    #[error("table version must be at least 1")]
    Version,
}

/// Which cell serves a key, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route<'t> {
    pub cell: &'t CellName,
    pub bucket: u32,
    pub table_version: u64,
}

/// A versioned assignment of every bucket to one cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    version: u64,
    /// In name order, each once; `owners` indexes into it.
    cells: Vec<CellName>,
    /// One entry per bucket: the index of its cell.
    owners: Vec<u16>,
}

impl Table {
    /// A table from its parts, refused unless every bucket has a cell of `cells`, the cells
    /// are in name order without repeats and the bucket count is valid.
    pub fn new(version: u64, cells: Vec<CellName>, owners: Vec<u16>) -> Result<Self, TableError> {
        if version == 0 {
            return Err(TableError::Version);
        }
        let count = u32::try_from(owners.len()).map_err(|_| TableError::BucketCount(u32::MAX))?;
        BucketCount::new(count)?;
        if cells.len() > MAX_CELLS {
            return Err(TableError::TooManyCells(cells.len()));
        }
        if let Some(pair) = cells.windows(2).find(|pair| pair[0] >= pair[1]) {
            return Err(TableError::CellOrder(pair[1].clone()));
        }
        if let Some((bucket, &index)) = owners
            .iter()
            .enumerate()
            .find(|(_, i)| usize::from(**i) >= cells.len())
        {
            return Err(TableError::Owner {
                bucket,
                index,
                cells: cells.len(),
            });
        }
        Ok(Self {
            version,
            cells,
            owners,
        })
    }

    /// A table `rebalance` built: its invariants hold by construction.
    pub(super) fn assembled(version: u64, cells: Vec<CellName>, owners: Vec<u16>) -> Self {
        debug_assert!(Self::new(version, cells.clone(), owners.clone()).is_ok());
        Self {
            version,
            cells,
            owners,
        }
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn bucket_count(&self) -> BucketCount {
        // Checked in `new`.
        #[allow(clippy::cast_possible_truncation)]
        BucketCount(self.owners.len() as u32)
    }

    /// Every cell the table names, in name order (some may own no bucket).
    pub fn cells(&self) -> &[CellName] {
        &self.cells
    }

    /// The cell index of every bucket, in bucket order.
    pub fn owners(&self) -> &[u16] {
        &self.owners
    }

    /// The cell that owns `bucket`, if the table has that bucket.
    pub fn owner(&self, bucket: u32) -> Option<&CellName> {
        let index = *self.owners.get(usize::try_from(bucket).ok()?)?;
        self.cells.get(usize::from(index))
    }

    /// How many buckets each cell owns, in the order of [`cells`](Self::cells).
    pub fn counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.cells.len()];
        for &owner in &self.owners {
            counts[usize::from(owner)] += 1;
        }
        counts
    }

    /// Where `key` goes.
    pub fn route(&self, key: PartitionKey<'_>) -> Route<'_> {
        self.route_hash(key.hash())
    }

    /// Where a key of hash `hash` ([`key_hash`](super::key::key_hash)) goes.
    pub fn route_hash(&self, hash: u64) -> Route<'_> {
        let bucket = self.bucket_count().bucket_of(hash);
        // Every bucket has an owner among `cells` (checked in `new`).
        let cell = &self.cells[usize::from(self.owners[bucket as usize])];
        Route {
            cell,
            bucket,
            table_version: self.version,
        }
    }

    /// Whether both tables send every bucket to the same cell and name the same cells,
    /// whatever their versions.
    pub fn same_assignment(&self, other: &Self) -> bool {
        self.cells == other.cells && self.owners == other.owners
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> CellName {
        CellName::parse(s).expect("valid name")
    }

    #[test]
    fn bucket_counts_are_powers_of_two_up_to_the_maximum() {
        for ok in [1, 2, 16_384, MAX_BUCKETS] {
            assert_eq!(BucketCount::new(ok).map(BucketCount::get), Ok(ok));
        }
        for bad in [0, 3, 10_000, MAX_BUCKETS * 2] {
            assert_eq!(BucketCount::new(bad), Err(TableError::BucketCount(bad)));
        }
        assert_eq!(BucketCount::default().get(), 16_384);
        assert_eq!(BucketCount::default().bucket_of(0xffff_ffff_ffff_c005), 5);
    }

    #[test]
    fn tables_are_checked() {
        let (a, b) = (name("a"), name("b"));
        assert_eq!(
            Table::new(0, vec![a.clone()], vec![0; 4]),
            Err(TableError::Version)
        );
        assert_eq!(
            Table::new(1, vec![a.clone()], vec![0; 3]),
            Err(TableError::BucketCount(3))
        );
        assert_eq!(
            Table::new(1, vec![b.clone(), a.clone()], vec![0; 4]),
            Err(TableError::CellOrder(a.clone()))
        );
        assert_eq!(
            Table::new(1, vec![a.clone(), a.clone()], vec![0; 4]),
            Err(TableError::CellOrder(a.clone()))
        );
        assert_eq!(
            Table::new(1, vec![a.clone(), b.clone()], vec![0, 1, 2, 1]),
            Err(TableError::Owner {
                bucket: 2,
                index: 2,
                cells: 2
            })
        );
        let table = Table::new(3, vec![a.clone(), b.clone()], vec![0, 1, 1, 1]).expect("valid");
        assert_eq!(table.counts(), vec![1, 3]);
        assert_eq!(table.owner(0), Some(&a));
        assert_eq!(table.owner(3), Some(&b));
        assert_eq!(table.owner(4), None);
    }

    #[test]
    fn a_key_goes_to_the_owner_of_its_hash_bucket() {
        let (a, b) = (name("a"), name("b"));
        let table = Table::new(9, vec![a, b.clone()], vec![0, 0, 0, 1]).expect("valid");
        let key = PartitionKey::parse("user-42").expect("valid key");
        let bucket = BucketCount::new(4).expect("valid").bucket_of(key.hash());
        let route = table.route(key);
        assert_eq!(route.bucket, bucket);
        assert_eq!(route.table_version, 9);
        assert_eq!(route.cell, table.owner(bucket).expect("bucket exists"));
        assert_eq!(table.route_hash(7).cell, &b);
        assert_eq!(table.route_hash(7).bucket, 3);
    }
}
