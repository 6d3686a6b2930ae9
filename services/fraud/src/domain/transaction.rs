//! A transaction to score, validated field by field before any I/O: each refusal names the
//! field it is about.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use titan_kit::input::InputError;

/// Longest identifier accepted (ids, fingerprints, subjects).
pub const MAX_ID: usize = titan_kit::input::MAX_IDENT;
/// Longest user agent kept.
pub const MAX_USER_AGENT: usize = 512;

/// A required identifier: 1 to 128 printable ASCII characters without spaces.
pub fn ident(field: &'static str, s: &str) -> Result<String, InputError> {
    titan_kit::input::ident(field, s).map(str::to_owned)
}

/// An optional identifier: empty means absent.
pub fn optional_ident(field: &'static str, s: &str) -> Result<Option<String>, InputError> {
    if s.is_empty() {
        return Ok(None);
    }
    ident(field, s).map(Some)
}

/// An optional ISO 3166-1 alpha-2 country code (upper-case).
pub fn country(field: &'static str, s: &str) -> Result<Option<String>, InputError> {
    if s.is_empty() {
        return Ok(None);
    }
    if s.len() == 2 && s.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(Some(s.to_owned()))
    } else {
        Err(InputError::new(
            field,
            format!("{s:?} is not an upper-case ISO 3166-1 alpha-2 code"),
        ))
    }
}

/// A required ISO 4217 currency code (three upper-case letters).
pub fn currency(field: &'static str, s: &str) -> Result<String, InputError> {
    if s.len() == 3 && s.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(s.to_owned())
    } else {
        Err(InputError::new(
            field,
            format!("{s:?} is not an upper-case ISO 4217 code"),
        ))
    }
}

/// A positive amount in minor units.
pub fn amount(field: &'static str, minor: i64) -> Result<i64, InputError> {
    if minor > 0 {
        Ok(minor)
    } else {
        Err(InputError::new(
            field,
            format!("must be a positive amount in minor units, got {minor}"),
        ))
    }
}

/// An optional IPv4 or IPv6 address, kept in its canonical text form.
pub fn ip(field: &'static str, s: &str) -> Result<Option<String>, InputError> {
    if s.is_empty() {
        return Ok(None);
    }
    s.parse::<IpAddr>()
        .map(|a| Some(a.to_string()))
        .map_err(|_| InputError::new(field, format!("{s:?} is not an IP address")))
}

/// An optional e-mail domain, lower-cased: letters, digits, '-' and '.', with a dot.
pub fn email_domain(field: &'static str, s: &str) -> Result<Option<String>, InputError> {
    if s.is_empty() {
        return Ok(None);
    }
    let ok = s.len() <= 253
        && s.contains('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if ok {
        Ok(Some(s.to_ascii_lowercase()))
    } else {
        Err(InputError::new(
            field,
            format!("{s:?} is not a domain name like example.com"),
        ))
    }
}

/// A user agent: at most 512 bytes (longer ones are refused rather than cut, so the stored
/// one is what the caller sent).
pub fn user_agent(field: &'static str, s: &str) -> Result<String, InputError> {
    if s.len() > MAX_USER_AGENT {
        return Err(InputError::new(
            field,
            format!(
                "has {} bytes; at most {MAX_USER_AGENT} are allowed",
                s.len()
            ),
        ));
    }
    Ok(s.to_owned())
}

/// A transaction on the checkout path, every field validated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transaction {
    pub transaction_id: String,
    pub user_id: String,
    /// Minor units, positive.
    pub amount: i64,
    pub currency: String,
    pub ip: Option<String>,
    pub device: Option<String>,
    pub card: Option<String>,
    pub email_domain: Option<String>,
    pub user_agent: String,
    /// Country of the IP address (the caller's geolocation).
    pub country: Option<String>,
    pub billing_country: Option<String>,
    pub shipping_country: Option<String>,
    /// When the user's account was created, as the caller knows it; else the first time this
    /// service saw the user.
    pub account_created_at: Option<DateTime<Utc>>,
}

impl Transaction {
    /// IP, billing and shipping countries that were given disagree.
    pub fn country_mismatch(&self) -> bool {
        let given: Vec<&str> = [&self.country, &self.billing_country, &self.shipping_country]
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect();
        given.windows(2).any(|w| w[0] != w[1])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_named_in_refusals() {
        assert_eq!(
            ident("user_id", "")
                .expect_err("refused in this test")
                .field,
            "user_id"
        );
        assert_eq!(
            ident("user_id", "a b")
                .expect_err("refused in this test")
                .to_string(),
            "user_id: must be printable ASCII without spaces"
        );
        assert_eq!(
            country("billing_country", "fr")
                .expect_err("refused in this test")
                .to_string(),
            "billing_country: \"fr\" is not an upper-case ISO 3166-1 alpha-2 code"
        );
        assert_eq!(
            amount("amount", 0).expect_err("refused in this test").field,
            "amount"
        );
        assert_eq!(
            currency("currency", "usd")
                .expect_err("refused in this test")
                .field,
            "currency"
        );
        assert_eq!(
            ip("ip", "1.2.3").expect_err("refused in this test").field,
            "ip"
        );
        assert_eq!(
            ip("ip", "::1").expect("valid in this test"),
            Some("::1".to_owned())
        );
        assert_eq!(
            email_domain("email_domain", "Mail.EXAMPLE.com").expect("valid in this test"),
            Some("mail.example.com".to_owned())
        );
        assert!(email_domain("email_domain", "nodot").is_err());
        assert!(user_agent("user_agent", &"x".repeat(513)).is_err());
        assert_eq!(
            ident("x", &"a".repeat(129))
                .expect_err("refused in this test")
                .field,
            "x"
        );
    }

    #[test]
    fn countries_mismatch_only_among_those_given() {
        let mut t = Transaction {
            transaction_id: "t".into(),
            user_id: "u".into(),
            amount: 1,
            currency: "EUR".into(),
            ip: None,
            device: None,
            card: None,
            email_domain: None,
            user_agent: String::new(),
            country: Some("FR".into()),
            billing_country: None,
            shipping_country: Some("FR".into()),
            account_created_at: None,
        };
        assert!(!t.country_mismatch());
        t.billing_country = Some("FR".into());
        assert!(!t.country_mismatch());
        t.billing_country = Some("DE".into());
        assert!(t.country_mismatch());
        t.country = None;
        t.billing_country = Some("FR".into());
        t.shipping_country = Some("US".into());
        assert!(t.country_mismatch());
    }
}
