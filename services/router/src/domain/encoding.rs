//! The table's stored form, written by the operator and read by the router: one JSON
//! document, canonical (the same table always encodes to the same text) and compact, with the
//! owners run-length encoded in bucket order.
//!
//! ```json
//! {"format":1,"version":7,"buckets":16384,"cells":["sg-1","sg-2"],"runs":[[0,8192],[1,8192]]}
//! ```
//! `cells` in name order, each once; `runs` are `[cell index, bucket count]` pairs covering
//! every bucket from 0 upwards, adjacent runs of one cell merged. Cell names are DNS labels,
//! so the text is plain ASCII whatever it carries.

use serde::{Deserialize, Serialize};

use super::{
    cell::{CellName, CellNameError},
    table::{BucketCount, MAX_BUCKETS, Table, TableError},
};

/// The only format this release reads and writes.
pub const FORMAT: u32 = 1;
/// The largest document read: what a ConfigMap can hold.
pub const MAX_ENCODED_BYTES: usize = 1 << 20;

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    format: u32,
    version: u64,
    buckets: u32,
    cells: Vec<String>,
    runs: Vec<(u16, u32)>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("table document has {0} bytes; at most {MAX_ENCODED_BYTES} are read")]
    TooLarge(usize),
    #[error("table document is not valid: {0}")]
    Json(String),
    #[error("table format {0} is not supported; this release reads format {FORMAT}")]
    Format(u32),
    #[error(transparent)]
    CellName(#[from] CellNameError),
    #[error("run {0} is empty")]
    EmptyRun(usize),
    #[error("runs cover {covered} buckets, but the table has {buckets}")]
    Coverage { covered: u64, buckets: u32 },
    #[error("runs {0} and {next} name the same cell; they must be merged", next = .0 + 1)]
    Unmerged(usize),
    #[error(transparent)]
    Table(#[from] TableError),
}

/// The canonical text of `table`.
pub fn encode(table: &Table) -> String {
    let mut runs: Vec<(u16, u32)> = Vec::new();
    for &owner in table.owners() {
        match runs.last_mut() {
            Some((cell, count)) if *cell == owner => *count += 1,
            _ => runs.push((owner, 1)),
        }
    }
    let wire = Wire {
        format: FORMAT,
        version: table.version(),
        buckets: table.bucket_count().get(),
        cells: table
            .cells()
            .iter()
            .map(|c| c.as_str().to_owned())
            .collect(),
        runs,
    };
    serde_json::to_string(&wire).expect("a struct of strings and integers always serialises")
}

/// The table `text` encodes, refused with the first thing wrong in it.
pub fn decode(text: &str) -> Result<Table, DecodeError> {
    if text.len() > MAX_ENCODED_BYTES {
        return Err(DecodeError::TooLarge(text.len()));
    }
    let wire: Wire = serde_json::from_str(text).map_err(|e| DecodeError::Json(e.to_string()))?;
    if wire.format != FORMAT {
        return Err(DecodeError::Format(wire.format));
    }
    let buckets = BucketCount::new(wire.buckets)?;
    let cells = wire
        .cells
        .iter()
        .map(|c| CellName::parse(c))
        .collect::<Result<Vec<_>, _>>()?;
    let covered: u64 = wire.runs.iter().map(|&(_, n)| u64::from(n)).sum();
    if covered != u64::from(buckets.get()) {
        return Err(DecodeError::Coverage {
            covered,
            buckets: buckets.get(),
        });
    }
    if let Some(i) = wire.runs.iter().position(|&(_, n)| n == 0) {
        return Err(DecodeError::EmptyRun(i));
    }
    if let Some(i) = wire.runs.windows(2).position(|w| w[0].0 == w[1].0) {
        return Err(DecodeError::Unmerged(i));
    }
    // Bounded by the coverage check: at most MAX_BUCKETS entries.
    debug_assert!(covered <= u64::from(MAX_BUCKETS));
    let mut owners = Vec::with_capacity(buckets.get() as usize);
    for &(cell, count) in &wire.runs {
        owners.extend(std::iter::repeat_n(cell, count as usize));
    }
    Ok(Table::new(wire.version, cells, owners)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{CellEntry, initial};

    fn cells(names: &[&str]) -> Vec<CellEntry> {
        names
            .iter()
            .map(|n| CellEntry::new(CellName::parse(n).expect("valid name")))
            .collect()
    }

    #[test]
    fn a_table_round_trips_through_its_canonical_text() {
        let table = initial(BucketCount::default(), &cells(&["sg-2", "sg-1", "sg-3"]))
            .expect("three cells");
        let text = encode(&table);
        assert_eq!(
            text,
            r#"{"format":1,"version":1,"buckets":16384,"cells":["sg-1","sg-2","sg-3"],"runs":[[0,5462],[1,5461],[2,5461]]}"#
        );
        assert_eq!(decode(&text), Ok(table));
    }

    #[test]
    fn malformed_documents_are_refused_with_what_is_wrong() {
        let doc = |format: u32, buckets: u32, cells: &str, runs: &str| {
            format!(
                r#"{{"format":{format},"version":2,"buckets":{buckets},"cells":[{cells}],"runs":[{runs}]}}"#
            )
        };
        let cases = [
            (doc(2, 4, r#""a""#, "[0,4]"), DecodeError::Format(2)),
            (
                doc(1, 6, r#""a""#, "[0,6]"),
                DecodeError::Table(TableError::BucketCount(6)),
            ),
            (
                doc(1, 4, r#""A""#, "[0,4]"),
                DecodeError::CellName(CellNameError("A".into())),
            ),
            (
                doc(1, 4, r#""a""#, "[0,3]"),
                DecodeError::Coverage {
                    covered: 3,
                    buckets: 4,
                },
            ),
            (
                doc(1, 4, r#""a","b""#, "[0,4],[1,0]"),
                DecodeError::EmptyRun(1),
            ),
            (
                doc(1, 4, r#""a","b""#, "[0,2],[0,2]"),
                DecodeError::Unmerged(0),
            ),
            (
                doc(1, 4, r#""a","b""#, "[0,2],[2,2]"),
                DecodeError::Table(TableError::Owner {
                    bucket: 2,
                    index: 2,
                    cells: 2,
                }),
            ),
            (
                doc(1, 4, r#""b","a""#, "[0,4]"),
                DecodeError::Table(TableError::CellOrder(CellName::parse("a").expect("valid"))),
            ),
        ];
        for (text, error) in cases {
            assert_eq!(decode(&text), Err(error), "{text}");
        }
        assert!(matches!(decode("{"), Err(DecodeError::Json(_))));
        assert!(matches!(
            decode(r#"{"format":1,"version":1,"buckets":1,"cells":["a"],"runs":[[0,1]],"x":1}"#),
            Err(DecodeError::Json(m)) if m.contains("unknown field `x`")
        ));
        assert_eq!(
            decode(&" ".repeat(MAX_ENCODED_BYTES + 1)),
            Err(DecodeError::TooLarge(MAX_ENCODED_BYTES + 1))
        );
    }
}
