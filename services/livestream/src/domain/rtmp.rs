//! The callbacks of the cell's RTMP server (nginx-rtmp's `on_publish` / `on_publish_done`):
//! the form nginx posts, and who may post it.
//!
//! nginx sends `application/x-www-form-urlencoded` fields `call`, `addr`, `clientid`, `app`,
//! `flashver`, `swfurl`, `tcurl`, `pageurl`, `name` (the stream key the encoder published
//! to) and `type`, plus the publisher's own query arguments. Only `app` and `name` matter
//! here. An answer of 2xx admits the publisher, 3xx admits it under the stream name in
//! `Location` (here: the stream's id, so HLS files and recordings carry the id, never the key)
//! and anything else makes nginx drop the connection.
//!
//! The routes accept only the cell's media server, recognised by its source address: nginx
//! calls the service over the cluster network, so a request from outside the configured
//! networks (loopback and the private ranges by default) is refused before the form is read.

use std::net::IpAddr;

/// The RTMP application the operator renders (`application live`).
pub const APP: &str = "live";
/// `on_publish`, as `operator/src/cell/nginx.rs` renders it.
pub const ON_PUBLISH_PATH: &str = "/rtmp/publish";
/// `on_publish_done`, as `operator/src/cell/nginx.rs` renders it.
pub const ON_PUBLISH_DONE_PATH: &str = "/rtmp/publish-done";
/// Where `titan recorder` reports a stored recording (`name` = stream id, `key` = object key).
pub const RECORDED_PATH: &str = "/rtmp/recorded";

/// The fields of a callback that the service reads.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct Callback {
    #[serde(default)]
    pub app: String,
    #[serde(default)]
    pub name: String,
    /// The object key of a stored recording (the recorder's report only).
    #[serde(default)]
    pub key: String,
}

/// Whether `addr` may call the RTMP routes: nginx sits on the cell's private network (or on
/// loopback next to the service in tests and `xtask up`); a public address never does, so a
/// request from one — through an ingress that forwards the HTTP port, say — is refused.
pub fn media_source(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_private() || is_shared_v4(v4.octets()),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => media_source(IpAddr::V4(v4)),
            // fc00::/7: unique local addresses, what IPv6 clusters hand to pods.
            None => v6.is_loopback() || (v6.segments()[0] & 0xfe00) == 0xfc00,
        },
    }
}

/// 100.64.0.0/10 (carrier-grade NAT space), used as the pod network by some clusters.
fn is_shared_v4(o: [u8; 4]) -> bool {
    o[0] == 100 && (o[1] & 0xc0) == 64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_cluster_and_loopback_sources() {
        for ok in [
            "127.0.0.1",
            "10.244.1.7",
            "172.16.0.1",
            "192.168.3.4",
            "100.64.0.9",
            "::1",
            "fd00::5",
            "::ffff:10.0.0.1",
        ] {
            assert!(media_source(ok.parse().expect("ok")), "{ok}");
        }
        for refused in [
            "8.8.8.8",
            "100.128.0.1",
            "172.32.0.1",
            "2001:db8::1",
            "::ffff:1.1.1.1",
        ] {
            assert!(!media_source(refused.parse().expect("ok")), "{refused}");
        }
    }
}
