//! SMTP connections kept open between messages, opened with Nagle's algorithm off.
//!
//! lettre's own pool (0.11.23) opens its sockets with Nagle on, and lettre writes a message's
//! body and its closing `.` as two writes: the `.` then waits for the relay's delayed ACK of
//! the body (40 ms on Linux) before it leaves, so every message cost 40 ms of nothing and 128
//! connections topped out near 1,600 emails/s with both ends idle (lettre/lettre#1159 fixes
//! it upstream, after the last release). This pool connects the socket itself, sets
//! `TCP_NODELAY`, and hands it to lettre's connection for the protocol.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use lettre::{
    address::Envelope,
    transport::smtp::{
        authentication::{Credentials, Mechanism},
        client::{AsyncSmtpConnection, TlsParameters},
        extension::ClientId,
    },
};
use tokio::{net::TcpStream, sync::Semaphore};

/// A connection idle for less than this is reused without asking the relay first (relays
/// close idle sessions after minutes, not seconds); an older one answers a NOOP first.
const TRUSTED_IDLE: Duration = Duration::from_secs(5);

/// Why a send through the pool failed before the relay judged the message.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("connecting to {relay}: {error}")]
    Connect { relay: String, error: String },
    #[error("no answer from {relay} within {timeout:?}")]
    Timeout { relay: String, timeout: Duration },
    /// What the relay (or the session with it) answered.
    #[error(transparent)]
    Smtp(#[from] lettre::transport::smtp::Error),
}

/// Where and how to open a session.
#[derive(Clone)]
pub struct Relay {
    pub host: String,
    pub port: u16,
    /// STARTTLS with these parameters, required when set.
    pub tls: Option<TlsParameters>,
    pub credentials: Option<Credentials>,
}

impl std::fmt::Debug for Relay {
    // By hand: the login stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("starttls", &self.tls.is_some())
            .field("login", &self.credentials.is_some())
            .finish()
    }
}

struct Idle {
    conn: AsyncSmtpConnection,
    since: Instant,
}

/// At most `size` open sessions to one relay, each carrying one message at a time.
pub struct Pool {
    relay: Relay,
    hello: ClientId,
    timeout: Duration,
    idle: Mutex<Vec<Idle>>,
    open: Semaphore,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("relay", &self.relay)
            .field("free", &self.open.available_permits())
            .finish_non_exhaustive()
    }
}

impl Pool {
    /// `timeout` bounds one message's whole exchange, the connect included.
    pub fn new(relay: Relay, size: u32, timeout: Duration) -> Self {
        Self {
            relay,
            hello: ClientId::default(),
            timeout,
            idle: Mutex::new(Vec::new()),
            open: Semaphore::new(size as usize),
        }
    }

    fn name(&self) -> String {
        format!("{}:{}", self.relay.host, self.relay.port)
    }

    /// Sends one message on an idle session or a new one; a session that failed is closed,
    /// never reused.
    pub async fn send(&self, envelope: &Envelope, email: &[u8]) -> Result<(), PoolError> {
        // The pool is never closed, so acquiring cannot fail.
        let _permit = self.open.acquire().await.ok();
        let exchange = async {
            let mut conn = self.checkout().await?;
            let sent = conn.send(envelope, email).await;
            if !conn.has_broken() {
                self.checkin(conn);
            }
            sent.map(drop).map_err(PoolError::from)
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .unwrap_or_else(|_| {
                Err(PoolError::Timeout {
                    relay: self.name(),
                    timeout: self.timeout,
                })
            })
    }

    fn take_idle(&self) -> Option<Idle> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop()
    }

    fn checkin(&self, conn: AsyncSmtpConnection) {
        self.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Idle {
                conn,
                since: Instant::now(),
            });
    }

    async fn checkout(&self) -> Result<AsyncSmtpConnection, PoolError> {
        while let Some(mut idle) = self.take_idle() {
            if idle.since.elapsed() < TRUSTED_IDLE || idle.conn.test_connected().await {
                return Ok(idle.conn);
            }
        }
        self.connect().await
    }

    async fn connect(&self) -> Result<AsyncSmtpConnection, PoolError> {
        let failed = |error: String| PoolError::Connect {
            relay: self.name(),
            error,
        };
        let stream = TcpStream::connect((self.relay.host.as_str(), self.relay.port))
            .await
            .map_err(|e| failed(e.to_string()))?;
        stream
            .set_nodelay(true)
            .map_err(|e| failed(e.to_string()))?;
        let mut conn =
            AsyncSmtpConnection::connect_with_transport(Box::new(stream), &self.hello).await?;
        if let Some(tls) = &self.relay.tls {
            conn.starttls(tls.clone(), &self.hello).await?;
        }
        if let Some(credentials) = &self.relay.credentials {
            conn.auth(&[Mechanism::Plain, Mechanism::Login], credentials)
                .await?;
        }
        Ok(conn)
    }
}
