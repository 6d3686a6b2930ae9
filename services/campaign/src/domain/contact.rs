//! A contact: how to reach a user on each channel and the fields templates may use. Stored by
//! services (the account service knows the addresses), read at send time.

use titan_kit::input::{InputError, ident};

/// A validated contact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    pub user_id: String,
    /// Empty = not reachable by email.
    pub email: String,
    /// E.164 or empty.
    pub phone: String,
    /// The push provider's device token or empty.
    pub push_token: String,
    pub time_zone: chrono_tz::Tz,
    pub level: u32,
    pub first_name: String,
    /// ISO 3166-1 alpha-2 or empty.
    pub country: String,
}

impl Contact {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        user_id: &str,
        email: &str,
        phone: &str,
        push_token: &str,
        time_zone: &str,
        level: u32,
        first_name: &str,
        country: &str,
    ) -> Result<Self, InputError> {
        ident("user_id", user_id)?;
        if !email.is_empty() {
            let ok = email.len() <= 254
                && email.split_once('@').is_some_and(|(local, domain)| {
                    !local.is_empty() && domain.contains('.') && !domain.contains('@')
                })
                && email.bytes().all(|b| b.is_ascii_graphic());
            if !ok {
                return Err(InputError::new(
                    "email",
                    "is not an address like name@example.com of at most 254 characters",
                ));
            }
        }
        if !phone.is_empty() {
            let digits = phone.strip_prefix('+').unwrap_or("");
            if !(8..=15).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(InputError::new(
                    "phone",
                    "is not an E.164 number like +33612345678",
                ));
            }
        }
        if push_token.len() > 512 || !push_token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(InputError::new(
                "push_token",
                "must be at most 512 printable ASCII characters",
            ));
        }
        let time_zone = if time_zone.is_empty() {
            chrono_tz::UTC
        } else {
            time_zone.parse().map_err(|_| {
                InputError::new(
                    "time_zone",
                    format!(
                        "{:?} is not an IANA time zone like Europe/Paris",
                        super::campaign::cut(time_zone)
                    ),
                )
            })?
        };
        if level > 10 {
            return Err(InputError::new(
                "level",
                format!("{level} is outside 0..=10"),
            ));
        }
        if first_name.chars().count() > 100 || first_name.chars().any(char::is_control) {
            return Err(InputError::new(
                "first_name",
                "must be at most 100 characters without control characters",
            ));
        }
        if !country.is_empty()
            && (country.len() != 2 || !country.bytes().all(|b| b.is_ascii_uppercase()))
        {
            return Err(InputError::new(
                "country",
                "is not an ISO 3166-1 alpha-2 code like FR",
            ));
        }
        Ok(Self {
            user_id: user_id.to_owned(),
            email: email.to_owned(),
            phone: phone.to_owned(),
            push_token: push_token.to_owned(),
            time_zone,
            level,
            first_name: first_name.to_owned(),
            country: country.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_bad_field_is_named() {
        let ok = Contact::new(
            "u1",
            "a@b.io",
            "+33612345678",
            "tok",
            "Europe/Paris",
            3,
            "Ann",
            "FR",
        );
        assert_eq!(ok.map(|c| c.time_zone), Ok(chrono_tz::Europe::Paris));
        for (c, field) in [
            (Contact::new("", "", "", "", "", 0, "", ""), "user_id"),
            (Contact::new("u", "no-at", "", "", "", 0, "", ""), "email"),
            (Contact::new("u", "", "0612", "", "", 0, "", ""), "phone"),
            (
                Contact::new("u", "", "", "a b", "", 0, "", ""),
                "push_token",
            ),
            (
                Contact::new("u", "", "", "", "Mars/Base", 0, "", ""),
                "time_zone",
            ),
            (Contact::new("u", "", "", "", "", 11, "", ""), "level"),
            (
                Contact::new("u", "", "", "", "", 0, "a\nb", ""),
                "first_name",
            ),
            (
                Contact::new("u", "", "", "", "", 0, "", "France"),
                "country",
            ),
        ] {
            assert_eq!(c.map_err(|e| e.field), Err(field.to_string()));
        }
    }
}
