//! Input as it arrives from clients, checked before any I/O: [`InputError`] names the request
//! field a refusal is about (`product_id`, `rules[3].min_price`), and [`ident`] is the one rule
//! for identifiers every service takes (ids, names, subjects).

/// Longest identifier [`ident`] accepts, in bytes (token subjects such as `auth0|…` fit).
pub const MAX_IDENT: usize = 128;

/// Invalid input and the request field it came in; shown as `field: message`.
/// The names of a field-less enum as the API and the store write them: `ALL`, `as_str`,
/// `from_name` (for rows read back), `parse` (a client's value, refused with the list of names
/// under the field it came in) and `Display`.
///
/// ```
/// #[derive(Debug, Clone, Copy, PartialEq, Eq)]
/// enum Size { Small, Large }
/// titan_kit::names!(Size { Small => "SMALL", Large => "LARGE" });
///
/// assert_eq!(Size::parse("parcel.size", "LARGE"), Ok(Size::Large));
/// assert_eq!(
///     Size::parse("parcel.size", "HUGE").map_err(|e| e.to_string()),
///     Err("parcel.size: \"HUGE\" is not one of SMALL, LARGE".to_owned())
/// );
/// assert_eq!(Size::from_name("SMALL"), Some(Size::Small));
/// assert_eq!(Size::Large.to_string(), "LARGE");
/// ```
#[macro_export]
macro_rules! names {
    ($t:ty { $($v:ident => $s:literal),+ $(,)? }) => {
        impl $t {
            pub const ALL: &'static [$t] = &[$(<$t>::$v),+];

            pub fn as_str(self) -> &'static str {
                match self { $(<$t>::$v => $s),+ }
            }

            /// The value named `s` (as [`Self::as_str`] writes it), for rows read back.
            pub fn from_name(s: &str) -> Option<Self> {
                match s { $($s => Some(<$t>::$v),)+ _ => None }
            }

            /// The value a client named in `field`; any other name is refused with the list.
            pub fn parse(
                field: impl Into<String>,
                s: &str,
            ) -> Result<Self, $crate::input::InputError> {
                Self::from_name(s).ok_or_else(|| {
                    let names: Vec<&str> = Self::ALL.iter().map(|v| v.as_str()).collect();
                    $crate::input::InputError::new(
                        field,
                        format!("{s:?} is not one of {}", names.join(", ")),
                    )
                })
            }
        }

        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct InputError {
    /// The request field, as the client named it.
    pub field: String,
    /// What is wrong with it, lower case, for a person to act on.
    pub message: String,
}

impl InputError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// An identifier: 1 to [`MAX_IDENT`] printable ASCII characters without spaces, so it can go
/// into a key, a log line or a URL as it is.
pub fn ident(field: impl Into<String>, s: &str) -> Result<&str, InputError> {
    if s.is_empty() {
        return Err(InputError::new(field, "is required"));
    }
    if s.len() > MAX_IDENT {
        return Err(InputError::new(
            field,
            format!("has {} bytes; at most {MAX_IDENT} are allowed", s.len()),
        ));
    }
    if !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(InputError::new(
            field,
            "must be printable ASCII without spaces",
        ));
    }
    Ok(s)
}

/// A UUID a client names in `field` (required).
pub fn uuid(field: &str, s: &str) -> Result<uuid::Uuid, InputError> {
    if s.is_empty() {
        return Err(InputError::new(field, "is required"));
    }
    uuid::Uuid::try_parse(s).map_err(|_| InputError::new(field, format!("{s:?} is not a UUID")))
}

/// A page size of 1 to `max`, 0 asking for `max`: a listing is never unbounded.
pub fn page_size(field: &str, size: u32, max: u32) -> Result<u32, InputError> {
    match size {
        0 => Ok(max),
        n if n <= max => Ok(n),
        n => Err(InputError::new(
            field,
            format!("is {n}; at most {max} (0 for {max})"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_uuid_and_a_page_size_name_their_field() {
        let id = "0190b4a4-0a4e-7c3e-9f57-4b0c1a2b3c4d";
        assert_eq!(
            uuid("shipment_id", id).map(|u| u.to_string()),
            Ok(id.into())
        );
        assert_eq!(
            uuid("shipment_id", ""),
            Err(InputError::new("shipment_id", "is required"))
        );
        assert_eq!(
            uuid("shipment_id", "42"),
            Err(InputError::new("shipment_id", "\"42\" is not a UUID"))
        );
        assert_eq!(page_size("page_size", 0, 100), Ok(100));
        assert_eq!(page_size("page_size", 100, 100), Ok(100));
        assert_eq!(
            page_size("page_size", 101, 100),
            Err(InputError::new(
                "page_size",
                "is 101; at most 100 (0 for 100)"
            ))
        );
    }

    #[test]
    fn an_identifier_is_short_printable_ascii() {
        assert_eq!(ident("user_id", "auth0|42"), Ok("auth0|42"));
        assert_eq!(
            ident("user_id", "").map_err(|e| e.to_string()),
            Err("user_id: is required".into())
        );
        assert_eq!(
            ident("user_id", "a b").map_err(|e| e.to_string()),
            Err("user_id: must be printable ASCII without spaces".into())
        );
        assert_eq!(
            ident("user_id", "é").map_err(|e| e.to_string()),
            Err("user_id: must be printable ASCII without spaces".into())
        );
        let long = "x".repeat(MAX_IDENT + 1);
        assert_eq!(
            ident(format!("items[{}].id", 2), &long).map_err(|e| e.to_string()),
            Err("items[2].id: has 129 bytes; at most 128 are allowed".into())
        );
        assert!(ident("id", &long[..MAX_IDENT]).is_ok());
    }
}
