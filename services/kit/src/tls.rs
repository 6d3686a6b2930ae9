//! TLS for the gRPC and HTTP servers and for kit's gRPC clients (rustls, ring).
//!
//! Servers: the certificate chain and key come from PEM files (a Kubernetes Secret mounted into
//! the pod, which the kubelet updates in place) and are read again every `tls.reloadSeconds`:
//! a renewed certificate is served from the next handshake on without a restart, and
//! connections already open keep the session they have, so no call in flight is dropped. A
//! pair that does not load (half-written, a key of another certificate) is refused and the
//! served one kept: a bad rotation must not take a cell off the air.
//!
//! Handshakes run beside the accept loop, each within [`HANDSHAKE_TIMEOUT`] and at most
//! [`MAX_HANDSHAKES`] at once, so a client that connects and says nothing holds neither the
//! listener nor memory for long.
//!
//! Clients: [`endpoint`] gives the tonic endpoint of another service, verifying an `https` URL
//! against the cell's CA (`tls.caFile`); [`ca_pem`] and [`roots`] read a datastore's CA file
//! (`redis.caFile`, `clickhouse.caFile`).

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, RwLock},
    time::Duration,
};

use prometheus::{IntCounterVec, Opts, Registry};
use rustls::{
    RootCertStore, ServerConfig,
    crypto::CryptoProvider,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{Semaphore, mpsc},
};
use tokio_rustls::{TlsAcceptor, server::TlsStream};
use tokio_util::sync::CancellationToken;

use crate::{KitError, config::TlsConfig, metrics::register};

/// Longest a client may take to finish its handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once; further connections wait in the kernel's backlog.
pub const MAX_HANDSHAKES: usize = 256;

/// Why a certificate and key could not be served.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: String },
    #[error("{path} is not a PEM private key (PKCS#8, PKCS#1 or SEC1): {reason}")]
    Key { path: String, reason: String },
    #[error("{path}: {reason}")]
    Invalid { path: String, reason: String },
}

impl From<TlsError> for KitError {
    fn from(e: TlsError) -> Self {
        KitError::config("tls", e.to_string())
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// The CA file of a datastore client (the value of `setting`, such as `redis.caFile`): its PEM
/// bytes and certificates, so a wrong file fails at start naming the setting.
fn ca(setting: &str, path: &Path) -> Result<(Vec<u8>, Vec<CertificateDer<'static>>), KitError> {
    let named = |e: TlsError| KitError::config(setting, e.to_string());
    let pem = read(path).map_err(named)?;
    let certs = certificates(path, &pem).map_err(named)?;
    Ok((pem, certs))
}

/// The PEM bytes of the CA file of `setting`, checked to hold certificates.
pub fn ca_pem(setting: &str, path: &Path) -> Result<Vec<u8>, KitError> {
    Ok(ca(setting, path)?.0)
}

/// The certificates of the CA file of `setting`, as the roots a client trusts.
pub fn roots(setting: &str, path: &Path) -> Result<RootCertStore, KitError> {
    let mut roots = RootCertStore::empty();
    for cert in ca(setting, path)?.1 {
        roots
            .add(cert)
            .map_err(|e| KitError::config(setting, format!("{}: {e}", path.display())))?;
    }
    Ok(roots)
}

/// The certificates of a PEM file, in order (leaf first for a chain).
pub fn certificates(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Invalid {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.display().to_string(),
        });
    }
    Ok(certs)
}

/// The served pair: chain and key, checked to belong together.
fn certified(
    provider: &CryptoProvider,
    (cert_file, cert_pem): (&Path, &[u8]),
    (key_file, key_pem): (&Path, &[u8]),
) -> Result<CertifiedKey, TlsError> {
    let chain = certificates(cert_file, cert_pem)?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::Key {
        path: key_file.display().to_string(),
        reason: e.to_string(),
    })?;
    let key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| TlsError::Key {
            path: key_file.display().to_string(),
            reason: e.to_string(),
        })?;
    let pair = CertifiedKey::new(chain, key);
    // A key of another certificate would fail every handshake: refuse it here instead. A key
    // whose public half cannot be derived (`Unknown`) is left to the handshake.
    match pair.keys_match() {
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Err(TlsError::Invalid {
                path: cert_file.display().to_string(),
                reason: format!(
                    "the certificate is not the one of the private key in {}",
                    key_file.display()
                ),
            })
        }
        _ => Ok(pair),
    }
}

/// Counters of what the TLS side did: `titan_tls_reloads_total{outcome}` (`ok`, `failed`) and
/// `titan_tls_handshake_failures_total{server}`.
#[derive(Debug, Clone)]
struct TlsMetrics {
    reloads: IntCounterVec,
    handshake_failures: IntCounterVec,
}

impl TlsMetrics {
    fn new(registry: &Registry) -> Result<Self, KitError> {
        Ok(Self {
            reloads: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "titan_tls_reloads_total",
                        "certificate files read again after a change (outcome: ok, failed; a \
                         failed one leaves the served certificate in place)",
                    ),
                    &["outcome"],
                )?,
            )?,
            handshake_failures: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "titan_tls_handshake_failures_total",
                        "connections dropped before a TLS session (bad handshake, plaintext, \
                         timeout), by server",
                    ),
                    &["server"],
                )?,
            )?,
        })
    }
}

/// The certificate the servers present, replaced when its files change.
#[derive(Debug)]
pub struct Certificates {
    cert_file: PathBuf,
    key_file: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
    /// The files' bytes behind `current`: a read that finds them unchanged does nothing.
    loaded: Mutex<(Vec<u8>, Vec<u8>)>,
    metrics: TlsMetrics,
}

impl Certificates {
    /// Loads the pair of `config`; a pair that does not load fails the start, with the file.
    pub fn load(
        cert_file: &Path,
        key_file: &Path,
        registry: &Registry,
    ) -> Result<Arc<Self>, KitError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let (cert_pem, key_pem) = (read(cert_file)?, read(key_file)?);
        let pair = certified(&provider, (cert_file, &cert_pem), (key_file, &key_pem))?;
        Ok(Arc::new(Self {
            cert_file: cert_file.to_owned(),
            key_file: key_file.to_owned(),
            provider,
            current: RwLock::new(Arc::new(pair)),
            loaded: Mutex::new((cert_pem, key_pem)),
            metrics: TlsMetrics::new(registry)?,
        }))
    }

    /// Reads the files again and serves their pair if they changed and load. `Ok(true)` when a
    /// new pair is served.
    pub fn reload(&self) -> Result<bool, TlsError> {
        let (cert_pem, key_pem) = (read(&self.cert_file)?, read(&self.key_file)?);
        let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        if loaded.0 == cert_pem && loaded.1 == key_pem {
            return Ok(false);
        }
        let outcome = certified(
            &self.provider,
            (&self.cert_file, &cert_pem),
            (&self.key_file, &key_pem),
        );
        let label = if outcome.is_ok() { "ok" } else { "failed" };
        self.metrics.reloads.with_label_values(&[label]).inc();
        let pair = outcome?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(pair);
        *loaded = (cert_pem, key_pem);
        Ok(true)
    }

    /// Reloads every `period` until `shutdown`; a failure is logged and the served pair kept
    /// (the kubelet may be between writing the certificate and the key).
    pub async fn watch(self: Arc<Self>, period: Duration, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            match self.reload() {
                Ok(true) => {
                    tracing::info!(cert = %self.cert_file.display(), "serving a new tls certificate")
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "tls certificate not reloaded; the served one stays")
                }
            }
        }
    }

    /// A server configuration presenting the current pair, offering `alpn` protocols.
    pub fn server_config(self: &Arc<Self>, alpn: &[&[u8]]) -> Result<Arc<ServerConfig>, KitError> {
        let mut config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| KitError::config("tls", e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}

/// Accepts TCP connections on `listener` and hands over those that complete a TLS handshake
/// with `config`, until `stop`. `server` names the listener in metrics and logs.
pub fn accept(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    certificates: &Certificates,
    server: &'static str,
    stop: CancellationToken,
) -> mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)> {
    let (tx, rx) = mpsc::channel(MAX_HANDSHAKES);
    let acceptor = TlsAcceptor::from(config);
    let failures = certificates
        .metrics
        .handshake_failures
        .with_label_values(&[server]);
    let permits = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    tokio::spawn(async move {
        loop {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return;
            };
            let (stream, peer) = tokio::select! {
                () = stop.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors and the like: pause rather than spin.
                        tracing::warn!(server, error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            // Small single writes (WebSocket frames, unary answers) must not wait for an ACK.
            if let Err(e) = stream.set_nodelay(true) {
                tracing::warn!(server, error = %e, "cannot set TCP_NODELAY");
            }
            let (acceptor, tx, failures) = (acceptor.clone(), tx.clone(), failures.clone());
            tokio::spawn(async move {
                let _permit = permit;
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => {
                        let _ = tx.send((tls, peer)).await;
                    }
                    Ok(Err(e)) => {
                        failures.inc();
                        tracing::debug!(server, %peer, error = %e, "tls handshake failed");
                    }
                    Err(_) => {
                        failures.inc();
                        tracing::debug!(server, %peer, "tls handshake timed out");
                    }
                }
            });
        }
    });
    rx
}

/// The HTTP server's listener over TLS (axum's [`axum::serve::Listener`]).
#[derive(Debug)]
pub struct TlsListener {
    accepted: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    pub fn new(
        accepted: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
        local: SocketAddr,
    ) -> Self {
        Self { accepted, local }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.accepted.recv().await {
            Some(accepted) => accepted,
            // The accept loop stops only at shutdown, after the server stopped accepting.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// The tonic endpoint of another service at `url` (the value of `setting`): `https` is
/// verified against `tls.caFile` (the cell's CA), which it then requires; `http` stays
/// plaintext.
pub fn endpoint(
    setting: &str,
    url: &str,
    tls: &TlsConfig,
) -> Result<tonic::transport::Endpoint, KitError> {
    let endpoint = tonic::transport::Endpoint::from_shared(url.to_owned())
        .map_err(|e| KitError::config(setting, format!("{url:?} is not a URL: {e}")))?;
    if !url.starts_with("https://") {
        return Ok(endpoint);
    }
    let ca_file = tls.ca_file.as_deref().ok_or_else(|| {
        KitError::config(
            "tls.caFile",
            format!(
                "{url} is https: set TITAN_TLS_CA_FILE (or tls.caFile) to the CA that signs it"
            ),
        )
    })?;
    let pem = read(ca_file)?;
    certificates(ca_file, &pem)?;
    endpoint
        .tls_config(
            tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(pem)),
        )
        .map_err(|e| KitError::config("tls.caFile", e.to_string()))
}
