//! TURN REST credentials (draft-uberti-behave-turn-rest, coturn's `use-auth-secret`): a
//! time-limited username and password derived from the secret a cell's TURN server shares with
//! the videocall service, so no per-user state is kept anywhere.
//!
//! The videocall service mints them for its clients; the operator's tests mint them the same
//! way to check that the TURN server it configures accepts them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::{Engine as _, engine::general_purpose::STANDARD};
use hmac::{Hmac, Mac};
use sha1::Sha1;

/// A username and password a TURN client presents; valid until `expires_at`.
#[derive(Clone, PartialEq, Eq)]
pub struct TurnCredential {
    /// `<unix expiry>:<user>`: the server reads the expiry from it.
    pub username: String,
    /// base64(HMAC-SHA1(secret, username)).
    pub password: String,
    /// Seconds since the Unix epoch after which the server refuses the credential.
    pub expires_at: u64,
}

impl std::fmt::Debug for TurnCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The password grants relay use until it expires: keep it out of logs.
        f.debug_struct("TurnCredential")
            .field("username", &self.username)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// The credential of `user` that expires at `expires_at` (seconds since the Unix epoch).
pub fn mint(secret: &[u8], user: &str, expires_at: u64) -> TurnCredential {
    let username = format!("{expires_at}:{user}");
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(secret).expect("hmac takes any key length");
    mac.update(username.as_bytes());
    TurnCredential {
        password: STANDARD.encode(mac.finalize().into_bytes()),
        username,
        expires_at,
    }
}

/// The credential of `user` valid for `ttl` from `now`.
pub fn mint_for(secret: &[u8], user: &str, now: SystemTime, ttl: Duration) -> TurnCredential {
    // A clock before 1970 is not a clock a TURN server agrees with; treat it as the epoch.
    let now = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    mint(secret, user, now.saturating_add(ttl).as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_is_the_base64_hmac_sha1_of_the_username() {
        // Computed independently: base64(hmac.new(secret, username, sha1).digest()).
        let credential = mint(b"north-sea-secret", "alice", 1_767_225_600);
        assert_eq!(credential.username, "1767225600:alice");
        assert_eq!(credential.password, "lvQtcFpATS9YFK4V8q0pgqbUTDY=");
    }

    #[test]
    fn the_expiry_is_now_plus_the_ttl_and_the_password_stays_out_of_debug() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000);
        let credential = mint_for(b"s", "bob", now, Duration::from_secs(600));
        assert_eq!(credential.expires_at, 1_600);
        assert!(credential.username.starts_with("1600:"));
        assert!(!format!("{credential:?}").contains(&credential.password));
    }
}
