//! Config of the real-time communication services: chat, livestream, videocall (defaults from
//! `services/communication.md` of the design).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ConfigError, TitanConfig, ensure, in_range, origins};
use crate::kind::ServiceKind;

/// Configuration of the chat service.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct ChatConfig {
    /// How long a typing indicator lasts without a refresh, in seconds.
    #[schemars(range(min = 1, max = 60))]
    pub typing_ttl_seconds: u32,
    /// How long a user stays online without a heartbeat, in seconds.
    #[schemars(range(min = 5, max = 3600))]
    pub presence_ttl_seconds: u32,
    /// Most messages one history page may return.
    #[schemars(range(min = 1, max = 100))]
    pub history_page_limit: u32,
    /// Largest message content accepted, in bytes.
    #[schemars(range(min = 1, max = 1048576))]
    pub max_message_bytes: u32,
    /// Most members a GROUP conversation may have, its admins included.
    #[schemars(range(min = 2, max = 10000))]
    pub max_group_members: u32,
    /// How long after sending its sender may still edit a message, in seconds.
    #[schemars(range(min = 0, max = 604800))]
    pub edit_window_seconds: u32,
    /// Messages one user may send at once before the rate applies.
    #[schemars(range(min = 1, max = 10000))]
    pub send_burst: u32,
    /// Then one message per this many milliseconds, per user, across replicas.
    #[schemars(range(min = 1, max = 60000))]
    pub send_interval_ms: u32,
    /// Origins (`scheme://host[:port]`) whose browser pages may open this service's
    /// WebSockets. Empty = no browser page; apps and servers, which send no `Origin`, connect
    /// with their token alone.
    pub allowed_origins: Vec<String>,
}

impl Default for ChatConfig {
    fn default() -> Self {
        Self {
            typing_ttl_seconds: 5,
            presence_ttl_seconds: 60,
            history_page_limit: 100,
            max_message_bytes: 16384,
            max_group_members: 256,
            edit_window_seconds: 900,
            send_burst: 20,
            send_interval_ms: 200,
            allowed_origins: Vec::new(),
        }
    }
}

impl TitanConfig for ChatConfig {
    const SERVICE: ServiceKind = ServiceKind::Chat;

    fn validate(&self) -> Result<(), ConfigError> {
        let s = Self::SERVICE;
        in_range(s, "typingTtlSeconds", self.typing_ttl_seconds, 1, 60)?;
        in_range(s, "presenceTtlSeconds", self.presence_ttl_seconds, 5, 3600)?;
        in_range(s, "historyPageLimit", self.history_page_limit, 1, 100)?;
        in_range(s, "maxMessageBytes", self.max_message_bytes, 1, 1048576)?;
        in_range(s, "maxGroupMembers", self.max_group_members, 2, 10000)?;
        in_range(s, "editWindowSeconds", self.edit_window_seconds, 0, 604800)?;
        in_range(s, "sendBurst", self.send_burst, 1, 10000)?;
        in_range(s, "sendIntervalMs", self.send_interval_ms, 1, 60000)?;
        origins(s, "allowedOrigins", &self.allowed_origins)
    }
}

/// Configuration of the livestream service.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct LivestreamConfig {
    /// A viewer without a heartbeat for this long stops counting, in seconds.
    #[schemars(range(min = 5, max = 600))]
    pub viewer_ttl_seconds: u32,
    /// Random bytes in a generated stream key.
    #[schemars(range(min = 16, max = 64))]
    pub stream_key_bytes: u32,
    /// Comments pinned at once per stream.
    #[schemars(range(min = 0, max = 10))]
    pub max_pinned_comments: u32,
    /// Base URL of HLS playback; absent = taken from the cell's media status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hls_base_url: Option<String>,
    /// Origins (`scheme://host[:port]`) whose browser pages may open this service's
    /// WebSockets. Empty = no browser page; apps and servers, which send no `Origin`, connect
    /// with their token alone.
    pub allowed_origins: Vec<String>,
}

impl Default for LivestreamConfig {
    fn default() -> Self {
        Self {
            viewer_ttl_seconds: 30,
            stream_key_bytes: 24,
            max_pinned_comments: 3,
            hls_base_url: None,
            allowed_origins: Vec::new(),
        }
    }
}

impl TitanConfig for LivestreamConfig {
    const SERVICE: ServiceKind = ServiceKind::Livestream;

    fn validate(&self) -> Result<(), ConfigError> {
        let s = Self::SERVICE;
        in_range(s, "viewerTtlSeconds", self.viewer_ttl_seconds, 5, 600)?;
        in_range(s, "streamKeyBytes", self.stream_key_bytes, 16, 64)?;
        in_range(s, "maxPinnedComments", self.max_pinned_comments, 0, 10)?;
        if let Some(url) = &self.hls_base_url {
            ensure(
                url.starts_with("https://") || url.starts_with("http://"),
                s,
                "hlsBaseUrl",
                || format!("{url:?} is not an http(s) URL"),
            )?;
        }
        origins(s, "allowedOrigins", &self.allowed_origins)
    }
}

/// Configuration of the videocall service.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct VideocallConfig {
    /// A RINGING call nobody answers becomes MISSED after this long, in seconds.
    #[schemars(range(min = 5, max = 600))]
    pub ring_timeout_seconds: u32,
    /// The longest a call may last once answered, in seconds: it is ended then (reason
    /// MAX_DURATION), and no TURN credential handed out for it outlives it.
    #[schemars(range(min = 60, max = 86400))]
    pub max_call_seconds: u32,
    /// Time-limited TURN REST credentials handed to the parties.
    pub turn: TurnCredentials,
    /// Whether calls may be recorded (still only with both parties' consent).
    pub recording_allowed: bool,
    /// The largest recording a participant may upload, in bytes (default 512 MiB: about an
    /// hour of 720p WebM at 1 Mbit/s). Uploads stop at this size and store nothing.
    #[schemars(range(min = 1048576, max = 5368709120u64))]
    pub max_recording_bytes: u64,
    /// Origins (`scheme://host[:port]`) whose browser pages may open this service's
    /// WebSockets. Empty = no browser page; apps and servers, which send no `Origin`, connect
    /// with their token alone.
    pub allowed_origins: Vec<String>,
}

impl Default for VideocallConfig {
    fn default() -> Self {
        Self {
            ring_timeout_seconds: 60,
            max_call_seconds: 7200,
            turn: TurnCredentials::default(),
            recording_allowed: true,
            max_recording_bytes: 512 << 20,
            allowed_origins: Vec::new(),
        }
    }
}

impl TitanConfig for VideocallConfig {
    const SERVICE: ServiceKind = ServiceKind::Videocall;

    fn validate(&self) -> Result<(), ConfigError> {
        let s = Self::SERVICE;
        in_range(s, "ringTimeoutSeconds", self.ring_timeout_seconds, 5, 600)?;
        in_range(s, "maxCallSeconds", self.max_call_seconds, 60, 86400)?;
        in_range(
            s,
            "maxRecordingBytes",
            self.max_recording_bytes,
            1 << 20,
            5 << 30,
        )?;
        in_range(
            s,
            "turn.credentialTtlSeconds",
            self.turn.credential_ttl_seconds,
            60,
            86400,
        )?;
        for uri in &self.turn.uris {
            ensure(
                uri.starts_with("turn:") || uri.starts_with("turns:") || uri.starts_with("stun:"),
                s,
                "turn.uris",
                || format!("{uri:?} is not a turn:, turns: or stun: URI"),
            )?;
        }
        origins(s, "allowedOrigins", &self.allowed_origins)
    }
}

/// TURN REST credentials (username `expiry:user`, password HMAC-SHA1 of the shared secret).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct TurnCredentials {
    /// How long minted credentials stay valid, in seconds.
    #[schemars(range(min = 60, max = 86400))]
    pub credential_ttl_seconds: u32,
    /// STUN and TURN URIs handed to clients; empty = the cell's TURN server.
    pub uris: Vec<String>,
}

impl Default for TurnCredentials {
    fn default() -> Self {
        Self {
            credential_ttl_seconds: 3600,
            uris: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn communication_defaults_follow_the_design() {
        assert_eq!(ChatConfig::default().typing_ttl_seconds, 5);
        assert_eq!(ChatConfig::default().presence_ttl_seconds, 60);
        assert_eq!(VideocallConfig::default().ring_timeout_seconds, 60);
        assert_eq!(VideocallConfig::default().turn.credential_ttl_seconds, 3600);
        assert_eq!(VideocallConfig::default().max_recording_bytes, 536_870_912);
    }

    #[test]
    fn origins_must_be_bare_origins() {
        let c = ChatConfig {
            allowed_origins: vec!["https://shop.example/path".into()],
            ..Default::default()
        };
        assert_eq!(
            c.validate().map_err(|e| e.to_string()),
            Err("chat.allowedOrigins: \"https://shop.example/path\" is not an origin like https://shop.example".into())
        );
    }

    #[test]
    fn turn_uris_need_a_turn_scheme() {
        let mut c = VideocallConfig::default();
        c.turn.uris = vec!["http://turn".into()];
        assert!(c.validate().is_err());
    }
}
