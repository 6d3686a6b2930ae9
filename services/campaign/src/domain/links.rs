//! Signed links in messages: the open pixel, the click redirect and the unsubscribe link each
//! carry (kind, campaign, occurrence, user, channel) and an HMAC-SHA256 tag, so nobody can
//! count an open, a click or an unsubscribe for someone else by editing a URL.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::campaign::{CampaignId, Channel};

/// Bytes of the tag kept in a link (128 bits).
const TAG_BYTES: usize = 16;

/// What a link does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkKind {
    Open,
    Click,
    Unsubscribe,
}

impl LinkKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Click => "click",
            Self::Unsubscribe => "unsubscribe",
        }
    }
}

/// What a verified link names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Linked {
    pub campaign: CampaignId,
    pub occurrence: u32,
    pub user_id: String,
    pub channel: Channel,
}

/// Signs and verifies link tokens with the service's key.
#[derive(Clone)]
pub struct LinkSigner {
    key: Vec<u8>,
}

impl std::fmt::Debug for LinkSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkSigner(..)")
    }
}

impl LinkSigner {
    /// The link key is derived from `secret` under a label of its own, so a link tag can
    /// never serve as a token signature or the other way round.
    pub fn derive(secret: &[u8]) -> Self {
        let mut mac = hmac_with(secret);
        mac.update(b"titan campaign links v1");
        Self {
            key: mac.finalize().into_bytes().to_vec(),
        }
    }

    fn mac(&self, kind: LinkKind, payload: &str) -> Hmac<Sha256> {
        let mut mac = hmac_with(&self.key);
        mac.update(kind.as_str().as_bytes());
        mac.update(b"\0");
        mac.update(payload.as_bytes());
        mac
    }

    /// `<hex payload>.<hex tag>`: URL-safe as it is.
    pub fn sign(&self, kind: LinkKind, l: &Linked) -> String {
        let payload = format!(
            "{}|{}|{}|{}",
            l.campaign,
            l.occurrence,
            l.channel.as_str(),
            l.user_id
        );
        let tag = self.mac(kind, &payload).finalize().into_bytes();
        format!(
            "{}.{}",
            hex::encode(payload),
            hex::encode(&tag[..TAG_BYTES])
        )
    }

    /// The link a token names, when its tag is this key's for `kind`.
    pub fn verify(&self, kind: LinkKind, token: &str) -> Option<Linked> {
        let (payload, tag) = token.split_once('.')?;
        if payload.len() > 1024 {
            return None;
        }
        let payload = String::from_utf8(hex::decode(payload).ok()?).ok()?;
        let tag = hex::decode(tag).ok()?;
        if tag.len() != TAG_BYTES {
            return None;
        }
        self.mac(kind, &payload).verify_truncated_left(&tag).ok()?;
        let mut parts = payload.splitn(4, '|');
        let campaign = CampaignId::parse("link", parts.next()?).ok()?;
        let occurrence = parts.next()?.parse().ok()?;
        let channel = Channel::parse(parts.next()?)?;
        let user_id = parts.next()?.to_owned();
        Some(Linked {
            campaign,
            occurrence,
            user_id,
            channel,
        })
    }
}

fn hmac_with(key: &[u8]) -> Hmac<Sha256> {
    #[allow(clippy::expect_used)]
    <Hmac<Sha256> as Mac>::new_from_slice(key).expect("hmac accepts keys of any length")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_verifies_only_for_its_kind_and_unchanged() {
        let s = LinkSigner::derive(b"secret-secret-secret-secret-secret");
        let l = Linked {
            campaign: CampaignId::generate(),
            occurrence: 2,
            user_id: "auth0|u.1".into(),
            channel: Channel::Email,
        };
        let t = s.sign(LinkKind::Click, &l);
        assert_eq!(s.verify(LinkKind::Click, &t), Some(l.clone()));
        assert_eq!(s.verify(LinkKind::Unsubscribe, &t), None);
        let other = LinkSigner::derive(b"another-secret-another-secret-xx");
        assert_eq!(other.verify(LinkKind::Click, &t), None);
        // Another user in the payload with the old tag.
        let (_, tag) = t.split_once('.').expect("dot");
        let forged = format!(
            "{}.{tag}",
            hex::encode(format!("{}|2|EMAIL|u2", l.campaign))
        );
        assert_eq!(s.verify(LinkKind::Click, &forged), None);
        // A shortened tag.
        assert_eq!(s.verify(LinkKind::Click, &t[..t.len() - 2]), None);
    }
}
