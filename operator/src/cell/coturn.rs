//! Renders coturn's `turnserver.conf` for a cell's TURN server: TURN REST authentication
//! (`use-auth-secret`), the realm, ports and relay range of the spec, and relaying refused to
//! private addresses so the server cannot be used to reach into the cluster.
//!
//! The shared secret is not in the file (which lives in a ConfigMap): the pod passes it with
//! `--static-auth-secret` from the cell's credentials Secret.

use std::fmt::Write as _;

use titan_crds::cell::Turn;

/// Peer ranges a client may not relay to: this network, private, carrier-grade NAT and
/// link-local (cloud metadata) addresses. Loopback is refused by coturn unless allowed.
const DENIED_PEERS: [&str; 6] = [
    "0.0.0.0-0.255.255.255",
    "10.0.0.0-10.255.255.255",
    "100.64.0.0-100.127.255.255",
    "169.254.0.0-169.254.255.255",
    "172.16.0.0-172.31.255.255",
    "192.168.0.0-192.168.255.255",
];

/// The `turnserver.conf` of `cell`'s TURN server.
pub fn render(cell: &str, turn: &Turn) -> String {
    let mut out = format!(
        "# turnserver.conf of cell {cell}, rendered by titan-operator: edits are overwritten.\n\
         # The shared secret comes from the command line (--static-auth-secret).\n"
    );
    let mut line = |text: String| {
        // Writing to a String cannot fail.
        let _ = writeln!(out, "{text}");
    };
    line(format!("listening-port={}", turn.listening_port));
    line(format!("min-port={}", turn.min_port));
    line(format!("max-port={}", turn.max_port));
    if let Some(realm) = &turn.realm {
        line(format!("realm={realm}"));
    }
    if let Some(address) = &turn.external_address {
        line(format!("external-ip={address}"));
    }
    for setting in [
        "use-auth-secret",
        "fingerprint",
        // Credentials are short-lived; a nonce lives no longer than ten minutes either.
        "stale-nonce=600",
        // TLS terminates elsewhere (or not at all) for TURN over UDP and TCP.
        "no-tls",
        "no-dtls",
        "no-cli",
        "no-multicast-peers",
        "no-software-attribute",
        "log-file=stdout",
        "simple-log",
    ] {
        line(setting.to_string());
    }
    for range in DENIED_PEERS {
        line(format!("denied-peer-ip={range}"));
    }
    out
}
