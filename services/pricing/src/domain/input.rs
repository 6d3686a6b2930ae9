//! Identifiers as they arrive from clients, parsed once: products, categories, customer
//! segments, competitors. A refusal names the field it came in.

use std::fmt;

use serde::{Deserialize, Serialize};

pub use titan_kit::input::InputError;

/// Longest identifier accepted (products, categories, segments, competitors, sources).
pub const MAX_ID: usize = titan_kit::input::MAX_IDENT;

/// A non-empty printable-ASCII name without spaces of at most [`MAX_ID`] bytes.
pub fn name(field: &str, s: &str) -> Result<String, InputError> {
    titan_kit::input::ident(field, s).map(str::to_owned)
}

/// A product, as the catalogue names it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ProductId(String);

impl ProductId {
    pub fn parse(field: &str, s: &str) -> Result<Self, InputError> {
        name(field, s).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ProductId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A customer segment of SEGMENTED prices; the empty segment is everyone else's price.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct Segment(String);

impl Segment {
    /// The price for callers who name no segment (or one without a price of its own).
    pub const DEFAULT: Segment = Segment(String::new());

    /// An optional segment: empty is [`Segment::DEFAULT`].
    pub fn parse(field: &str, s: &str) -> Result<Self, InputError> {
        if s.is_empty() {
            return Ok(Self::DEFAULT);
        }
        name(field, s).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_default(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_bounded_printable_ascii() {
        assert_eq!(name("product_id", "sku-1"), Ok("sku-1".to_owned()));
        assert_eq!(
            name("product_id", ""),
            Err(InputError::new("product_id", "is required"))
        );
        assert_eq!(
            name("product_id", "a b").map_err(|e| e.field),
            Err("product_id".to_owned())
        );
        assert!(name("x", &"a".repeat(129)).is_err());
        assert!(name("x", &"a".repeat(128)).is_ok());
        assert!(Segment::parse("segment", "").expect("empty").is_default());
    }
}
