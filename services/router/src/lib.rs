//! The cell router: answers "which cell serves this key?" from a table of buckets.
#![forbid(unsafe_code)]

pub mod domain;
