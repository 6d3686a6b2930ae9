//! Coupon codes: trimmed, upper-cased, letters, digits, `-` and `_` only, bounded length. The
//! code is the coupon's identity, so every path (admin, shopper, Redis key) goes through here.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadCode {
    #[error("the coupon code is empty")]
    Empty,
    #[error("coupon code {code:?} is longer than {max} characters")]
    TooLong { code: String, max: u32 },
    #[error("coupon code {0:?} may only hold letters, digits, '-' and '_'")]
    Characters(String),
}

/// A normalised coupon code.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CouponCode(String);

impl CouponCode {
    /// Trims and upper-cases `raw`, then checks it; `max_len` is the configured longest code.
    pub fn parse(raw: &str, max_len: u32) -> Result<Self, BadCode> {
        let code = raw.trim().to_ascii_uppercase();
        if code.is_empty() {
            return Err(BadCode::Empty);
        }
        if code.chars().count() > max_len as usize {
            return Err(BadCode::TooLong { code, max: max_len });
        }
        if !code
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        {
            return Err(BadCode::Characters(code));
        }
        Ok(Self(code))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CouponCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_trimmed_and_upper_cased() {
        let c = CouponCode::parse("  summer-10 ", 32).expect("valid");
        assert_eq!(c.as_str(), "SUMMER-10");
        assert_eq!(CouponCode::parse("   ", 32), Err(BadCode::Empty));
        assert!(matches!(
            CouponCode::parse("ABCDE", 4),
            Err(BadCode::TooLong { max: 4, .. })
        ));
        assert!(matches!(
            CouponCode::parse("A B", 32),
            Err(BadCode::Characters(_))
        ));
        assert!(matches!(
            CouponCode::parse("ÉTÉ", 32),
            Err(BadCode::Characters(_))
        ));
    }
}
