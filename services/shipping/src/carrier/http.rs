//! A carrier's HTTP API, JSON over HTTPS with `Authorization: Bearer <apiKey>`:
//! `POST /v1/rates` → `{rates: [{service_level, amount_minor, currency, days}]}`,
//! `POST /v1/shipments` (header `Idempotency-Key`: our shipment id) → `{tracking_number}`,
//! `POST /v1/shipments/{tracking}/cancel`, `GET /v1/shipments/{tracking}/events` →
//! `{events: [{type, location, at}]}`. A timeout, a connection failure, a 5xx or a 429 is
//! tried again after a doubling pause (every call is safe to repeat); any other 4xx is the
//! carrier's refusal and is returned at once with the carrier's `error` message.

use std::time::Duration;

use futures::{FutureExt, future::BoxFuture};
use reqwest::{Method, StatusCode};
use serde::{Deserialize, de::DeserializeOwned};
use titan_kit::KitError;

use super::{Booking, Carrier, CarrierError, QuoteRequest, Scan};
use crate::domain::{Quote, ServiceLevel, TrackingNumber};

/// How calls are tried again.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    /// Tries in all, the first included.
    pub attempts: u32,
    /// Pause before the second try; doubled before each next.
    pub backoff: Duration,
    /// Longest one try may take.
    pub timeout: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Self {
            attempts: 3,
            backoff: Duration::from_millis(200),
            timeout: Duration::from_secs(5),
        }
    }
}

/// Longest refusal message kept from a carrier's body.
const MAX_MESSAGE: usize = 200;

#[derive(Debug, Clone)]
pub struct HttpCarrier {
    name: String,
    base_url: String,
    api_key: String,
    retry: Retry,
    client: reqwest::Client,
}

#[derive(Deserialize)]
struct Rates {
    rates: Vec<Rate>,
}

#[derive(Deserialize)]
struct Rate {
    service_level: String,
    amount_minor: u64,
    currency: String,
    days: u32,
}

#[derive(Deserialize)]
struct Created {
    tracking_number: String,
}

#[derive(Deserialize)]
struct Events {
    events: Vec<Scan>,
}

#[derive(Deserialize)]
struct Refusal {
    error: String,
}

impl HttpCarrier {
    pub fn new(
        name: &str,
        base_url: &str,
        api_key: String,
        retry: Retry,
    ) -> Result<Self, KitError> {
        let client = reqwest::Client::builder()
            .timeout(retry.timeout)
            .build()
            .map_err(|e| KitError::Other(format!("cannot build the {name} HTTP client: {e}")))?;
        Ok(Self {
            name: name.to_owned(),
            base_url: base_url.trim_end_matches('/').to_owned(),
            api_key,
            retry,
            client,
        })
    }

    fn bad(&self, message: impl Into<String>) -> CarrierError {
        CarrierError::BadResponse {
            carrier: self.name.clone(),
            message: message.into(),
        }
    }

    /// Sends one call, trying again as the module says; the body of the 2xx answer.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
        idempotency_key: Option<&str>,
    ) -> Result<T, CarrierError> {
        let url = format!("{}{path}", self.base_url);
        let mut pause = self.retry.backoff;
        let mut cause = String::new();
        for attempt in 1..=self.retry.attempts.max(1) {
            if attempt > 1 {
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
            let mut request = self
                .client
                .request(method.clone(), &url)
                .bearer_auth(&self.api_key);
            if let Some(body) = body {
                request = request.json(body);
            }
            if let Some(key) = idempotency_key {
                request = request.header("Idempotency-Key", key);
            }
            let response = match request.send().await {
                Ok(r) => r,
                Err(e) => {
                    cause = if e.is_timeout() {
                        format!("no answer within {:?}", self.retry.timeout)
                    } else {
                        format!("cannot reach {url}: {e}")
                    };
                    continue;
                }
            };
            let status = response.status();
            let text = match response.text().await {
                Ok(t) => t,
                Err(e) => {
                    cause = format!("the answer was cut off: {e}");
                    continue;
                }
            };
            if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
                cause = format!("HTTP {}", status.as_u16());
                continue;
            }
            if !status.is_success() {
                let message = serde_json::from_str::<Refusal>(&text)
                    .map(|r| r.error)
                    .unwrap_or(text);
                return Err(CarrierError::Refused {
                    carrier: self.name.clone(),
                    status: status.as_u16(),
                    message: message.chars().take(MAX_MESSAGE).collect(),
                });
            }
            return serde_json::from_str(&text).map_err(|e| self.bad(format!("{path}: {e}")));
        }
        Err(CarrierError::Unavailable {
            carrier: self.name.clone(),
            attempts: self.retry.attempts.max(1),
            cause,
        })
    }

    fn tracking(&self, s: &str) -> Result<TrackingNumber, CarrierError> {
        TrackingNumber::parse("tracking_number", s).map_err(|e| self.bad(e.to_string()))
    }
}

impl Carrier for HttpCarrier {
    fn name(&self) -> &str {
        &self.name
    }

    fn quote<'a>(
        &'a self,
        request: &'a QuoteRequest,
    ) -> BoxFuture<'a, Result<Vec<Quote>, CarrierError>> {
        async move {
            let body = serde_json::to_value(request).map_err(|e| self.bad(e.to_string()))?;
            let rates: Rates = self
                .call(Method::POST, "/v1/rates", Some(&body), None)
                .await?;
            // A level we do not know is left out, not guessed: it cannot be chosen anyway.
            Ok(rates
                .rates
                .into_iter()
                .filter_map(|r| {
                    Some(Quote {
                        carrier: self.name.clone(),
                        level: ServiceLevel::from_name(&r.service_level)?,
                        amount_minor: r.amount_minor,
                        currency: r.currency,
                        days: r.days,
                    })
                })
                .collect())
        }
        .boxed()
    }

    fn create<'a>(
        &'a self,
        booking: &'a Booking,
    ) -> BoxFuture<'a, Result<TrackingNumber, CarrierError>> {
        async move {
            let body = serde_json::to_value(booking).map_err(|e| self.bad(e.to_string()))?;
            let created: Created = self
                .call(
                    Method::POST,
                    "/v1/shipments",
                    Some(&body),
                    Some(&booking.reference),
                )
                .await?;
            self.tracking(&created.tracking_number)
        }
        .boxed()
    }

    fn cancel<'a>(
        &'a self,
        tracking: &'a TrackingNumber,
    ) -> BoxFuture<'a, Result<(), CarrierError>> {
        async move {
            let path = format!("/v1/shipments/{tracking}/cancel");
            let _: serde_json::Value = self.call(Method::POST, &path, None, None).await?;
            Ok(())
        }
        .boxed()
    }

    fn track<'a>(
        &'a self,
        tracking: &'a TrackingNumber,
    ) -> BoxFuture<'a, Result<Vec<Scan>, CarrierError>> {
        async move {
            let path = format!("/v1/shipments/{tracking}/events");
            let events: Events = self.call(Method::GET, &path, None, None).await?;
            Ok(events.events)
        }
        .boxed()
    }
}
