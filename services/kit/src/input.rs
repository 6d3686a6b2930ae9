//! Input as it arrives from clients, checked before any I/O: [`InputError`] names the request
//! field a refusal is about (`product_id`, `rules[3].min_price`), and [`ident`] is the one rule
//! for identifiers every service takes (ids, names, subjects).

/// Longest identifier [`ident`] accepts, in bytes (token subjects such as `auth0|…` fit).
pub const MAX_IDENT: usize = 128;

/// Invalid input and the request field it came in; shown as `field: message`.
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

#[cfg(test)]
mod tests {
    use super::*;

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
