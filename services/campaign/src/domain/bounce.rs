//! Asynchronous bounces: a DSN names the bounced message by the Message-ID this service wrote,
//! `<campaign>.<occurrence>.<hex of the user id>@titan.campaign`, which identifies the email
//! delivery it bounces.

use titan_kit::input::InputError;

use super::campaign::{CampaignId, cut};

/// The domain part of every Message-ID this service writes.
const DOMAIN: &str = "titan.campaign";
/// Longest diagnostic kept, in characters.
pub const MAX_DIAGNOSTIC: usize = 1000;

/// The local part of an email delivery's Message-ID (stable per delivery: relays and
/// providers de-duplicate on it).
pub fn message_id(campaign: CampaignId, occurrence: u32, user_id: &str) -> String {
    format!("{campaign}.{occurrence}.{}", hex::encode(user_id))
}

/// The full Message-ID header value.
pub fn message_id_header(local: &str) -> String {
    format!("<{local}@{DOMAIN}>")
}

/// A bounce reported for one email delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bounce {
    pub campaign: CampaignId,
    pub occurrence: u32,
    pub user_id: String,
    /// A hard bounce: the address is suppressed.
    pub permanent: bool,
    pub diagnostic: String,
}

impl Bounce {
    /// Parses `message_id` (with or without the angle brackets) as this service wrote it.
    pub fn new(message_id: &str, permanent: bool, diagnostic: &str) -> Result<Self, InputError> {
        let bad = || {
            InputError::new(
                "message_id",
                format!(
                    "{:?} is not a Message-ID this service wrote (<campaign>.<occurrence>.<user>@{DOMAIN})",
                    cut(message_id)
                ),
            )
        };
        let id = message_id.trim();
        let id = id
            .strip_prefix('<')
            .and_then(|s| s.strip_suffix('>'))
            .unwrap_or(id);
        let local = id
            .strip_suffix(DOMAIN)
            .and_then(|s| s.strip_suffix('@'))
            .ok_or_else(bad)?;
        let mut parts = local.splitn(3, '.');
        let (Some(campaign), Some(occurrence), Some(user)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let campaign = CampaignId::parse("message_id", campaign).map_err(|_| bad())?;
        let occurrence = occurrence.parse().map_err(|_| bad())?;
        let user_id = hex::decode(user)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .filter(|u| !u.is_empty())
            .ok_or_else(bad)?;
        if diagnostic.chars().count() > MAX_DIAGNOSTIC {
            return Err(InputError::new(
                "diagnostic",
                format!("has more than {MAX_DIAGNOSTIC} characters"),
            ));
        }
        Ok(Self {
            campaign,
            occurrence,
            user_id,
            permanent,
            diagnostic: diagnostic.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bounce_names_the_delivery_its_message_id_was_written_for() {
        let c = CampaignId::generate();
        let local = message_id(c, 3, "user.1");
        for given in [message_id_header(&local), format!("{local}@{DOMAIN}")] {
            let b = Bounce::new(&given, true, "5.1.1 user unknown").expect("parses");
            assert_eq!(
                (b.campaign, b.occurrence, b.user_id.as_str()),
                (c, 3, "user.1")
            );
        }
        for bad in [
            "<x@example.com>".to_owned(),
            format!("<{c}.3@{DOMAIN}>"),
            format!("<{c}.three.{}@{DOMAIN}>", hex::encode("u")),
            format!("<{c}.3.zz@{DOMAIN}>"),
            format!("<nope.3.{}@{DOMAIN}>", hex::encode("u")),
        ] {
            assert_eq!(
                Bounce::new(&bad, true, "").map_err(|e| e.field),
                Err("message_id".to_owned()),
                "{bad}"
            );
        }
        assert_eq!(
            Bounce::new(&message_id_header(&local), false, &"x".repeat(1001)).map_err(|e| e.field),
            Err("diagnostic".to_owned())
        );
    }
}
