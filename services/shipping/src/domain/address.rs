//! Postal addresses as a label prints them: every line bounded and printable, the country an
//! ISO 3166-1 alpha-2 code, the postcode normalised (upper case, inner spaces kept) so zone
//! prefixes match however a client spelled it.

use serde::{Deserialize, Serialize};

use super::InputError;

/// Longest name or address line, in characters: what fits one line of a 4 in label.
pub const MAX_LINE: usize = 60;
/// Longest postcode, in characters (the longest national formats have 10).
pub const MAX_POSTCODE: usize = 12;

/// A checked postal address.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    pub name: String,
    pub line1: String,
    /// Empty when the address has one street line.
    pub line2: String,
    pub city: String,
    pub postcode: String,
    /// ISO 3166-1 alpha-2, upper case.
    pub country: String,
}

fn line(field: &str, name: &str, s: &str, required: bool) -> Result<String, InputError> {
    let s = s.trim();
    let field = format!("{field}.{name}");
    if s.is_empty() {
        return if required {
            Err(InputError::new(field, "is required"))
        } else {
            Ok(String::new())
        };
    }
    let chars = s.chars().count();
    if chars > MAX_LINE {
        return Err(InputError::new(
            field,
            format!("has {chars} characters; at most {MAX_LINE} fit on a label line"),
        ));
    }
    if s.chars().any(char::is_control) {
        return Err(InputError::new(field, "contains a control character"));
    }
    Ok(s.to_owned())
}

impl Address {
    /// Checks every line of the address sent in `field` (`from`, `to`), naming the first bad
    /// one (`to.postcode`).
    pub fn parse(field: &str, raw: &Address) -> Result<Self, InputError> {
        let name = line(field, "name", &raw.name, true)?;
        let line1 = line(field, "line1", &raw.line1, true)?;
        let line2 = line(field, "line2", &raw.line2, false)?;
        let city = line(field, "city", &raw.city, true)?;
        let postcode = raw.postcode.trim().to_ascii_uppercase();
        if postcode.is_empty()
            || postcode.len() > MAX_POSTCODE
            || !postcode
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b' ' || b == b'-')
        {
            return Err(InputError::new(
                format!("{field}.postcode"),
                format!(
                    "{:?} is not a postcode: 1 to {MAX_POSTCODE} letters, digits, spaces or hyphens",
                    raw.postcode
                ),
            ));
        }
        let country = raw.country.trim();
        if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(InputError::new(
                format!("{field}.country"),
                format!(
                    "{:?} is not an ISO 3166-1 alpha-2 code such as SG",
                    raw.country
                ),
            ));
        }
        Ok(Self {
            name,
            line1,
            line2,
            city,
            postcode,
            country: country.to_ascii_uppercase(),
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn address(country: &str, postcode: &str) -> Address {
        Address {
            name: "Ada Lovelace".into(),
            line1: "1 Harbourfront Walk".into(),
            line2: String::new(),
            city: "Singapore".into(),
            postcode: postcode.into(),
            country: country.into(),
        }
    }

    #[test]
    fn addresses_are_normalised() {
        let mut raw = address(" sg ", " 098585 ");
        raw.name = "  Ada Lovelace ".into();
        let a = Address::parse("to", &raw).expect("valid");
        assert_eq!(
            (a.name.as_str(), a.country.as_str(), a.postcode.as_str()),
            ("Ada Lovelace", "SG", "098585")
        );
        let gb = Address::parse("to", &address("GB", "sw1a 1aa")).expect("valid");
        assert_eq!(gb.postcode, "SW1A 1AA");
    }

    #[test]
    fn the_first_bad_line_is_named() {
        let field = |raw: Address| Address::parse("to", &raw).map_err(|e| e.field);
        let mut raw = address("SG", "098585");
        raw.city = " ".into();
        assert_eq!(field(raw), Err("to.city".into()));
        let mut raw = address("SG", "098585");
        raw.line1 = "x".repeat(MAX_LINE + 1);
        assert_eq!(field(raw), Err("to.line1".into()));
        let mut raw = address("SG", "098585");
        raw.line2 = "a\nb".into();
        assert_eq!(field(raw), Err("to.line2".into()));
        assert_eq!(field(address("SGP", "098585")), Err("to.country".into()));
        assert_eq!(field(address("SG", "09_85")), Err("to.postcode".into()));
        assert_eq!(field(address("SG", "")), Err("to.postcode".into()));
    }
}
