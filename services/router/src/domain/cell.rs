//! Cells as the table names them, and a cell as `rebalance` receives it from the fleet.

use std::fmt;

/// A cell's name: a DNS label, as the `Cell` resource's name is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CellName(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cell name {0:?} is not a DNS label (lower-case letters, digits and '-', at most 63)")]
pub struct CellNameError(pub String);

impl CellName {
    pub fn parse(name: &str) -> Result<Self, CellNameError> {
        if titan_kit::config::is_dns_label(name) {
            Ok(Self(name.to_owned()))
        } else {
            Err(CellNameError(name.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CellName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One cell of the fleet, as the operator sees it when it rebalances.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellEntry {
    pub name: CellName,
    /// Relative capacity: a cell of weight 2 gets twice the buckets of a cell of weight 1.
    /// At least 1.
    pub weight: u32,
    /// Takes no new buckets and keeps the ones it has until it is removed from the list (see
    /// [`rebalance`](super::rebalance::rebalance)).
    pub draining: bool,
}

impl CellEntry {
    /// A cell of weight 1, not draining.
    pub fn new(name: CellName) -> Self {
        Self {
            name,
            weight: 1,
            draining: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_dns_labels() {
        assert_eq!(
            CellName::parse("sg-1").map(|n| n.to_string()),
            Ok("sg-1".into())
        );
        for bad in ["", "SG-1", "-sg", "sg-", "sg_1", &"a".repeat(64)] {
            assert_eq!(
                CellName::parse(bad),
                Err(CellNameError(bad.to_owned())),
                "{bad}"
            );
        }
    }
}
