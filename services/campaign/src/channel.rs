//! Channel providers behind one trait: EMAIL over SMTP (lettre, a pooled connection per
//! relay), PUSH and SMS as a JSON POST to an HTTP provider (the generic webhook provider).
//! Each failure is classified: worth retrying, a refused recipient (a bounce), or permanent.

pub mod pool;

use std::{future::Future, time::Duration};

use std::sync::Arc;

use lettre::{
    Message,
    message::{
        Body, SinglePart,
        header::{ContentTransferEncoding, ContentType, HeaderName, HeaderValue},
    },
    transport::smtp::{authentication::Credentials, client::TlsParameters, response::Category},
};
use serde::Serialize;

use self::pool::{Pool, PoolError, Relay};

use crate::domain::{Channel, bounce::message_id_header};

/// Messages of one batch in flight at once: a message spends most of its time waiting on
/// the relay's replies (a few round trips), so throughput grows with messages in flight.
const CONCURRENCY: usize = 128;
/// A provider that has not answered by then failed (and is retried).
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(10);

/// One rendered message to one recipient.
#[derive(Debug, Clone, Serialize)]
pub struct Outgoing {
    #[serde(skip)]
    pub channel: Channel,
    /// Email address, E.164 phone or push token.
    pub to: String,
    pub subject: String,
    pub body: String,
    pub unsubscribe_url: String,
    /// Stable per delivery: providers de-duplicate on it (`Idempotency-Key`, `Message-ID`).
    pub message_id: String,
}

/// Why a send failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Unreachable provider, timeout, 5xx, 429 or a transient SMTP reply: try again.
    #[error("{0}")]
    Retry(String),
    /// The recipient was refused for good (SMTP 55x): recorded as a bounce.
    #[error("{0}")]
    Bounce(String),
    /// Any other refusal; retrying would not help.
    #[error("{0}")]
    Permanent(String),
}

/// A channel's provider.
pub trait Provider: Send + Sync {
    fn send(&self, m: &Outgoing) -> impl Future<Output = Result<(), SendError>> + Send;
}

/// Email through an SMTP relay.
#[derive(Clone)]
pub struct Smtp {
    pool: Arc<Pool>,
    from: lettre::message::Mailbox,
}

impl std::fmt::Debug for Smtp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Smtp")
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

impl Smtp {
    /// A relay at `host:port`; port 25 and loopback relays speak plain SMTP, others must offer
    /// STARTTLS.
    pub fn new(
        host: &str,
        port: u16,
        from: &str,
        credentials: Option<(String, String)>,
        pool: u32,
    ) -> Result<Self, String> {
        let from = from
            .parse()
            .map_err(|e| format!("smtp.from {from:?} is not a mailbox: {e}"))?;
        let plain = port == 25 || host == "localhost" || host.starts_with("127.");
        let tls = if plain {
            None
        } else {
            Some(
                TlsParameters::new(host.to_owned())
                    .map_err(|e| format!("smtp.host {host:?}: {e}"))?,
            )
        };
        let relay = Relay {
            host: host.to_owned(),
            port,
            tls,
            credentials: credentials.map(|(user, password)| Credentials::new(user, password)),
        };
        Ok(Self {
            pool: Arc::new(Pool::new(relay, pool, PROVIDER_TIMEOUT)),
            from,
        })
    }

    fn message(&self, m: &Outgoing) -> Result<Message, SendError> {
        let to =
            m.to.parse()
                .map_err(|e| SendError::Bounce(format!("address {:?} refused: {e}", m.to)))?;
        let header = |name: &'static str, value: &str| {
            HeaderValue::new(HeaderName::new_from_ascii_str(name), value.to_owned())
        };
        // Base64 whatever the body holds: HTML lines may pass SMTP's 998-byte limit.
        let body = Body::new_with_encoding(m.body.clone(), ContentTransferEncoding::Base64)
            .map_err(|_| SendError::Permanent("body cannot be encoded".into()))?;
        Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(m.subject.clone())
            .message_id(Some(message_id_header(&m.message_id)))
            // RFC 2369 and RFC 8058: mail clients show an unsubscribe button that POSTs here.
            .raw_header(header(
                "List-Unsubscribe",
                &format!("<{}>", m.unsubscribe_url),
            ))
            .raw_header(header(
                "List-Unsubscribe-Post",
                "List-Unsubscribe=One-Click",
            ))
            .singlepart(
                SinglePart::builder()
                    .header(ContentType::TEXT_HTML)
                    .body(body),
            )
            .map_err(|e| SendError::Permanent(format!("message not built: {e}")))
    }
}

impl Provider for Smtp {
    async fn send(&self, m: &Outgoing) -> Result<(), SendError> {
        let message = self.message(m)?;
        match self
            .pool
            .send(message.envelope(), &message.formatted())
            .await
        {
            Ok(()) => Ok(()),
            Err(PoolError::Smtp(e)) => Err(classify(e)),
            Err(e) => Err(SendError::Retry(format!("smtp: {e}"))),
        }
    }
}

/// A relay's refusal or a broken session, as a [`SendError`].
fn classify(e: lettre::transport::smtp::Error) -> SendError {
    match e {
        // 55x is about the mailbox (unknown user, refused recipient): a bounce. Other
        // permanent replies — 535 for a refused login, say — are the relay's, not the
        // recipient's, and must not suppress the address.
        e if e.is_permanent() => match e.status() {
            Some(code) if code.category == Category::MailSystem => {
                SendError::Bounce(format!("smtp refused: {e}"))
            }
            _ => SendError::Permanent(format!("smtp refused: {e}")),
        },
        e => SendError::Retry(format!("smtp: {e}")),
    }
}

/// PUSH or SMS: `POST <url>` with the message as JSON (`to`, `subject`, `body`,
/// `unsubscribe_url`, `message_id`) and `Idempotency-Key: <message_id>`; 2xx = accepted.
#[derive(Debug, Clone)]
pub struct Webhook {
    client: reqwest::Client,
    url: String,
    token: Option<String>,
}

impl Webhook {
    /// `token`, when given, is sent as `Authorization: Bearer`.
    pub fn new(url: &str, token: Option<String>) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(PROVIDER_TIMEOUT)
            .build()
            .map_err(|e| format!("http client: {e}"))?;
        Ok(Self {
            client,
            url: url.to_owned(),
            token,
        })
    }
}

impl Provider for Webhook {
    async fn send(&self, m: &Outgoing) -> Result<(), SendError> {
        let mut request = self
            .client
            .post(&self.url)
            .header("Idempotency-Key", &m.message_id)
            .json(m);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .map_err(|e| SendError::Retry(format!("provider {}: {e}", self.url)))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            Err(SendError::Retry(format!(
                "provider {} answered {status}",
                self.url
            )))
        } else {
            Err(SendError::Permanent(format!(
                "provider {} answered {status}",
                self.url
            )))
        }
    }
}

/// The providers of this cell; a channel without one is off.
#[derive(Debug, Clone, Default)]
pub struct Channels {
    pub email: Option<Smtp>,
    pub push: Option<Webhook>,
    pub sms: Option<Webhook>,
}

impl Channels {
    pub fn configured(&self, channel: Channel) -> bool {
        match channel {
            Channel::Email => self.email.is_some(),
            Channel::Push => self.push.is_some(),
            Channel::Sms => self.sms.is_some(),
            Channel::Banner | Channel::Popup => true,
        }
    }

    pub fn concurrency(&self) -> usize {
        CONCURRENCY
    }

    pub async fn send(&self, m: &Outgoing) -> Result<(), SendError> {
        let off = || {
            SendError::Permanent(format!(
                "the {} channel is not configured",
                m.channel.as_str()
            ))
        };
        match m.channel {
            Channel::Email => self.email.as_ref().ok_or_else(off)?.send(m).await,
            Channel::Push => self.push.as_ref().ok_or_else(off)?.send(m).await,
            Channel::Sms => self.sms.as_ref().ok_or_else(off)?.send(m).await,
            Channel::Banner | Channel::Popup => Err(off()),
        }
    }
}
