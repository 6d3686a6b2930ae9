//! Signing keys published by an identity provider as a JWKS (`{"keys": [...]}` at its
//! `jwks_uri`), beside the static keys of [`super::Authenticator`].
//!
//! The set is fetched on a schedule (the response's `Cache-Control: max-age` within the
//! configured bounds, else `auth.jwksRefreshSeconds`) and on demand when a token names a `kid`
//! the set lacks: providers publish a new key before they sign with it, so the first token of a
//! rotation finds it there. On-demand fetches are single-flight (requests waiting for the same
//! fetch share it) and rate-limited, so forged kids cannot make every request a request to the
//! provider. A failed fetch keeps the last good set.
//!
//! Only signature keys of asymmetric algorithms are kept: a key whose `use` is not `sig`, whose
//! `key_ops` lack `verify`, whose `alg` does not fit its type, or which is symmetric (`oct`,
//! which anyone who reads a public key set would know) is ignored.

use std::{
    sync::{
        Arc, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use jsonwebtoken::{
    Algorithm, DecodingKey,
    jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyOperations, PublicKeyUse},
};
use prometheus::{IntCounterVec, IntGauge, Opts, Registry};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::Key;
use crate::{KitError, config::JwksConfig};

/// Largest key set read; real ones are a few KiB (Google's, Microsoft's, Okta's).
const MAX_BODY_BYTES: usize = 1 << 20;
/// Most keys a set may hold; a provider publishes two or three around a rotation.
const MAX_KEYS: usize = 100;

/// Why a fetch failed; logged and counted, never sent to a client.
#[derive(Debug, thiserror::Error)]
pub(super) enum JwksError {
    #[error("request failed: {0}")]
    Request(#[source] reqwest::Error),
    #[error("the server answered {0}")]
    Status(reqwest::StatusCode),
    #[error("the key set is larger than {MAX_BODY_BYTES} bytes")]
    TooLarge,
    #[error("not a JWKS (a JSON object with a keys array): {0}")]
    Malformed(#[source] serde_json::Error),
    #[error("{0} keys, more than the {MAX_KEYS} accepted")]
    TooManyKeys(usize),
    #[error("none of its {0} keys is a usable signature key")]
    NoSigningKey(usize),
}

/// One published key, with the only algorithm it verifies.
struct Published {
    kid: Option<String>,
    jwk: Jwk,
    key: Key,
}

/// The keys of the last good fetch.
#[derive(Default)]
pub(super) struct KeySet {
    /// Whether any fetch has succeeded yet.
    fetched: bool,
    keys: Vec<Published>,
}

/// Why a token found no published key to check.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Missing {
    /// No fetch has succeeded yet.
    NotFetched,
    /// The token names a key the set lacks.
    UnknownKid(String),
    /// The named key verifies another algorithm than the token's header says.
    WrongAlgorithm { kid: String, key: Algorithm },
    /// The token names no key and none of the set verifies its algorithm.
    NoKeyFor,
}

impl KeySet {
    /// The published keys a token with this `kid` and `alg` is checked against: the one it
    /// names, or without a kid every key of its algorithm.
    pub(super) fn candidates(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Vec<&Key>, Missing> {
        if !self.fetched {
            return Err(Missing::NotFetched);
        }
        match kid {
            Some(kid) => {
                let named = self
                    .keys
                    .iter()
                    .find(|p| p.kid.as_deref() == Some(kid))
                    .ok_or_else(|| Missing::UnknownKid(kid.to_owned()))?;
                if named.key.algorithm == alg {
                    Ok(vec![&named.key])
                } else {
                    Err(Missing::WrongAlgorithm {
                        kid: kid.to_owned(),
                        key: named.key.algorithm,
                    })
                }
            }
            None => {
                let keys: Vec<&Key> = self
                    .keys
                    .iter()
                    .map(|p| &p.key)
                    .filter(|k| k.algorithm == alg)
                    .collect();
                if keys.is_empty() {
                    Err(Missing::NoKeyFor)
                } else {
                    Ok(keys)
                }
            }
        }
    }

    /// Whether a token naming `kid` (or none) would now find a key to check.
    fn resolves(&self, kid: Option<&str>) -> bool {
        match kid {
            Some(kid) => self.keys.iter().any(|p| p.kid.as_deref() == Some(kid)),
            None => self.fetched,
        }
    }
}

/// What started a fetch, as the metric's `trigger` label.
#[derive(Debug, Clone, Copy)]
enum Trigger {
    Schedule,
    UnknownKid,
}

impl Trigger {
    fn label(self) -> &'static str {
        match self {
            Self::Schedule => "schedule",
            Self::UnknownKid => "unknown_kid",
        }
    }
}

/// `titan_auth_jwks_*`: fetches by trigger and outcome, keys held, time of the last success.
#[derive(Clone)]
struct Metrics {
    refreshes: IntCounterVec,
    keys: IntGauge,
    last_success: IntGauge,
}

impl Metrics {
    fn new() -> Result<Self, KitError> {
        Ok(Self {
            refreshes: IntCounterVec::new(
                Opts::new(
                    "titan_auth_jwks_refresh_total",
                    "Fetches of the identity provider's key set, by trigger (schedule, unknown_kid) and outcome (ok, error)",
                ),
                &["trigger", "outcome"],
            )?,
            keys: IntGauge::new(
                "titan_auth_jwks_keys",
                "Signature keys of the last good key set",
            )?,
            last_success: IntGauge::new(
                "titan_auth_jwks_last_success_timestamp_seconds",
                "When the key set was last fetched successfully (0: never)",
            )?,
        })
    }
}

/// The key set of one URL, refreshed as the module documentation says; shared by the clones
/// of an [`super::Authenticator`].
pub(super) struct Jwks {
    config: JwksConfig,
    client: reqwest::Client,
    set: RwLock<Arc<KeySet>>,
    /// Bumped whenever a key stops being published (or changes under its kid), so that
    /// tokens verified before under an older generation are checked again: a provider that
    /// withdraws a key means it.
    generation: AtomicU64,
    /// Held for the length of every fetch (one in flight at a time: requests waiting on an
    /// unknown kid share the fetch in progress); holds when the last on-demand fetch started.
    in_flight: tokio::sync::Mutex<Option<Instant>>,
    metrics: Metrics,
}

impl Jwks {
    pub(super) fn new(config: JwksConfig) -> Result<Self, KitError> {
        let client = reqwest::Client::builder()
            .timeout(config.fetch_timeout)
            .connect_timeout(config.fetch_timeout)
            .user_agent(concat!("titan/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                KitError::config("auth.jwksUrl", format!("cannot build its HTTP client: {e}"))
            })?;
        Ok(Self {
            config,
            client,
            set: RwLock::default(),
            generation: AtomicU64::new(0),
            in_flight: tokio::sync::Mutex::new(None),
            metrics: Metrics::new()?,
        })
    }

    pub(super) fn url(&self) -> &str {
        &self.config.url
    }

    /// The keys of the last good fetch.
    pub(super) fn current(&self) -> Arc<KeySet> {
        // Writers only swap the Arc, so a poisoned lock still holds a whole set.
        self.set
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The current generation of the key set: it changes when a key is withdrawn.
    pub(super) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub(super) fn register(&self, registry: &Registry) -> Result<(), KitError> {
        crate::metrics::register(registry, self.metrics.refreshes.clone())?;
        crate::metrics::register(registry, self.metrics.keys.clone())?;
        crate::metrics::register(registry, self.metrics.last_success.clone())?;
        Ok(())
    }

    /// Fetches the set again for a token naming `kid` (or no kid, before any fetch succeeded),
    /// unless a fetch that finished while this one waited brought it, or an on-demand fetch
    /// started less than `unknownKidInterval` ago. Returns once the set is as fresh as it will
    /// get; the caller checks the token again.
    pub(super) async fn refresh_for(&self, kid: Option<&str>) {
        let mut last = self.in_flight.lock().await;
        if self.current().resolves(kid) {
            return;
        }
        if last.is_some_and(|at| at.elapsed() < self.config.unknown_kid_interval) {
            tracing::debug!(url = %self.config.url, kid, "unknown kid: the last on-demand fetch is too recent");
            return;
        }
        *last = Some(Instant::now());
        // A failure is logged and counted there; the caller then refuses the token as unknown.
        let _ = self.refresh(Trigger::UnknownKid).await;
    }

    /// Fetches the set at once and then on schedule until `shutdown`: after a success when
    /// `max-age` (bounded) or `refresh` says, after a failure sooner, backing off from
    /// `unknownKidInterval` up to `refresh`.
    pub(super) async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut failures: u32 = 0;
        loop {
            let outcome = {
                let _flight = self.in_flight.lock().await;
                self.refresh(Trigger::Schedule).await
            };
            let delay = match outcome {
                Ok(max_age) => {
                    failures = 0;
                    period(max_age, &self.config)
                }
                Err(_) => {
                    failures = failures.saturating_add(1);
                    retry_delay(failures, &self.config)
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// One fetch, stored when good, logged and counted either way; the caller holds
    /// `in_flight`. Returns the response's `max-age`.
    async fn refresh(&self, trigger: Trigger) -> Result<Option<Duration>, JwksError> {
        let outcome = self.fetch().await;
        let label = if outcome.is_ok() { "ok" } else { "error" };
        self.metrics
            .refreshes
            .with_label_values(&[trigger.label(), label])
            .inc();
        match outcome {
            Ok((keys, max_age)) => {
                self.store(keys);
                self.metrics
                    .last_success
                    .set(i64::try_from(jsonwebtoken::get_current_timestamp()).unwrap_or(i64::MAX));
                Ok(max_age)
            }
            Err(e) => {
                let held = self.current().keys.len();
                tracing::warn!(
                    url = %self.config.url,
                    trigger = trigger.label(),
                    error = %e,
                    keys_kept = held,
                    "cannot refresh the JWKS; the last good key set stays in use"
                );
                Err(e)
            }
        }
    }

    async fn fetch(&self) -> Result<(Vec<Published>, Option<Duration>), JwksError> {
        let mut response = self
            .client
            .get(&self.config.url)
            .header(http::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(JwksError::Request)?;
        if !response.status().is_success() {
            return Err(JwksError::Status(response.status()));
        }
        if response
            .content_length()
            .is_some_and(|n| n > MAX_BODY_BYTES as u64)
        {
            return Err(JwksError::TooLarge);
        }
        let max_age = response
            .headers()
            .get(http::header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .and_then(max_age);
        // Read by chunks: a server that lies about (or omits) its length is cut at the limit
        // instead of filling memory.
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(JwksError::Request)? {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(JwksError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok((parse(&body)?, max_age))
    }

    fn store(&self, keys: Vec<Published>) {
        let old = self.current();
        let withdrawn = old
            .keys
            .iter()
            .filter(|o| !keys.iter().any(|n| n.kid == o.kid && n.jwk == o.jwk))
            .count();
        let added = keys
            .iter()
            .filter(|n| !old.keys.iter().any(|o| n.kid == o.kid && n.jwk == o.jwk))
            .count();
        let count = keys.len();
        let next = Arc::new(KeySet {
            fetched: true,
            keys,
        });
        *self
            .set
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = next;
        // After the swap: a verification that read the old set and the old generation stores
        // its answer under the old generation, which is now never served.
        if withdrawn > 0 {
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
        self.metrics
            .keys
            .set(i64::try_from(count).unwrap_or(i64::MAX));
        if withdrawn > 0 || added > 0 || !old.fetched {
            tracing::info!(url = %self.config.url, keys = count, added, withdrawn, "JWKS key set changed");
        }
    }
}

/// The usable keys of a JWKS document; an odd key is skipped (logged), a document that is
/// not a key set, too large, or holds no usable key is refused.
fn parse(body: &[u8]) -> Result<Vec<Published>, JwksError> {
    #[derive(Deserialize)]
    struct Document {
        keys: Vec<serde_json::Value>,
    }
    let document: Document = serde_json::from_slice(body).map_err(JwksError::Malformed)?;
    let total = document.keys.len();
    if total > MAX_KEYS {
        return Err(JwksError::TooManyKeys(total));
    }
    let mut usable = Vec::new();
    for value in document.keys {
        match usable_key(value) {
            Ok(published) => usable.push(published),
            Err((kid, why)) => tracing::debug!(kid, why, "JWKS key ignored"),
        }
    }
    if usable.is_empty() {
        return Err(JwksError::NoSigningKey(total));
    }
    Ok(usable)
}

/// A published key bound to its algorithm, or (its kid, why it is ignored).
fn usable_key(value: serde_json::Value) -> Result<Published, (Option<String>, String)> {
    let kid = value.get("kid").and_then(|k| k.as_str()).map(str::to_owned);
    let why = |s: String| (kid.clone(), s);
    let jwk: Jwk = serde_json::from_value(value).map_err(|e| why(format!("not a JWK: {e}")))?;
    match &jwk.common.public_key_use {
        None | Some(PublicKeyUse::Signature) => {}
        Some(other) => return Err(why(format!("use {other:?} is not sig"))),
    }
    if let Some(ops) = &jwk.common.key_operations
        && !ops.contains(&KeyOperations::Verify)
    {
        return Err(why("key_ops lacks verify".into()));
    }
    let algorithm = algorithm(&jwk).map_err(why)?;
    let key = DecodingKey::from_jwk(&jwk).map_err(|e| why(format!("unreadable key: {e}")))?;
    Ok(Published {
        kid,
        jwk,
        key: Key { algorithm, key },
    })
}

/// The one algorithm a key verifies: its `alg` when that fits its type, else the type's
/// usual one (RS256 for RSA, as OpenID Connect requires of providers).
fn algorithm(jwk: &Jwk) -> Result<Algorithm, String> {
    use Algorithm::{ES256, ES384, EdDSA, PS256, PS384, PS512, RS256, RS384, RS512};
    let (fits, usual): (&[Algorithm], Algorithm) = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => (&[RS256, RS384, RS512, PS256, PS384, PS512], RS256),
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => (&[ES256], ES256),
            EllipticCurve::P384 => (&[ES384], ES384),
            ref other => return Err(format!("curve {other:?} is not supported")),
        },
        AlgorithmParameters::OctetKeyPair(_) => (&[EdDSA], EdDSA),
        AlgorithmParameters::OctetKey(_) => {
            return Err("a symmetric (oct) key is never trusted from a public key set".into());
        }
        _ => return Err("unsupported key type".into()),
    };
    let Some(alg) = jwk.common.key_algorithm else {
        return Ok(usual);
    };
    match Algorithm::try_from(alg) {
        Ok(alg) if fits.contains(&alg) => Ok(alg),
        _ => Err(format!("alg {alg} does not fit the key type")),
    }
}

/// `max-age` of a `Cache-Control` value.
fn max_age(cache_control: &str) -> Option<Duration> {
    cache_control.split(',').find_map(|directive| {
        let (name, value) = directive.trim().split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("max-age")
            .then(|| value.trim().trim_matches('"').parse().ok())
            .flatten()
            .map(Duration::from_secs)
    })
}

/// The wait after a good fetch: the provider's `max-age` within the bounds, else `refresh`.
fn period(max_age: Option<Duration>, config: &JwksConfig) -> Duration {
    max_age.map_or(config.refresh, |age| {
        age.clamp(config.min_refresh, config.max_refresh)
    })
}

/// The wait after the `failures`-th failure in a row: `unknownKidInterval`, doubling, at most
/// `refresh`. A provider down at start (often one deployed beside the cell) is retried soon,
/// as kube-apiserver retries its OIDC issuer every 10 s, without hammering one that stays down.
fn retry_delay(failures: u32, config: &JwksConfig) -> Duration {
    let doubled = config
        .unknown_kid_interval
        .saturating_mul(1 << failures.saturating_sub(1).min(16));
    doubled.min(config.refresh)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn max_age_is_read_among_other_directives() {
        assert_eq!(
            max_age("public, max-age=600, must-revalidate"),
            Some(Duration::from_secs(600))
        );
        assert_eq!(max_age("Max-Age=\"60\""), Some(Duration::from_secs(60)));
        assert_eq!(max_age("no-cache"), None);
        assert_eq!(max_age("max-age=soon"), None);
    }

    #[test]
    fn the_period_honours_max_age_within_the_bounds() {
        let config = JwksConfig::new("https://idp.example/jwks");
        assert_eq!(period(None, &config), Duration::from_secs(300));
        assert_eq!(
            period(Some(Duration::from_secs(900)), &config),
            Duration::from_secs(900)
        );
        assert_eq!(
            period(Some(Duration::ZERO), &config),
            Duration::from_secs(30)
        );
        assert_eq!(
            period(Some(Duration::from_secs(86_400)), &config),
            Duration::from_secs(3600)
        );
    }

    #[test]
    fn failures_back_off_up_to_the_refresh_period() {
        let config = JwksConfig::new("https://idp.example/jwks");
        let delays: Vec<u64> = (1..=7).map(|n| retry_delay(n, &config).as_secs()).collect();
        assert_eq!(delays, [10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(retry_delay(u32::MAX, &config), Duration::from_secs(300));
    }

    /// A real modulus is not needed to test the filter: `from_jwk` only decodes the base64.
    fn rsa(extra: serde_json::Value) -> serde_json::Value {
        let mut key = json!({"kty": "RSA", "n": "sXchDaQebHnPiGvy", "e": "AQAB"});
        if let (Some(key), Some(extra)) = (key.as_object_mut(), extra.as_object()) {
            key.extend(extra.clone());
        }
        key
    }

    #[test]
    fn only_signature_keys_of_a_fitting_algorithm_are_kept() {
        let document = json!({"keys": [
            rsa(json!({"kid": "plain"})),
            rsa(json!({"kid": "sig384", "use": "sig", "alg": "RS384"})),
            rsa(json!({"kid": "enc", "use": "enc", "alg": "RSA-OAEP"})),
            rsa(json!({"kid": "enc-no-alg", "use": "enc"})),
            rsa(json!({"kid": "wrong-alg", "alg": "ES256"})),
            rsa(json!({"kid": "encrypt-only", "key_ops": ["encrypt"]})),
            {"kid": "hmac", "kty": "oct", "k": "c2VjcmV0", "alg": "HS256"},
            {"kid": "strange", "kty": "XYZ"},
        ]});
        let keys = parse(document.to_string().as_bytes()).expect("two usable keys");
        let kept: Vec<(Option<&str>, Algorithm)> = keys
            .iter()
            .map(|p| (p.kid.as_deref(), p.key.algorithm))
            .collect();
        assert_eq!(
            kept,
            [
                (Some("plain"), Algorithm::RS256),
                (Some("sig384"), Algorithm::RS384)
            ]
        );
    }

    #[test]
    fn a_document_that_is_not_a_usable_key_set_is_refused() {
        for (body, want) in [
            ("<html>", "not a JWKS"),
            ("{\"keys\": {}}", "not a JWKS"),
            ("{\"keys\": []}", "none of its 0 keys"),
        ] {
            let err = parse(body.as_bytes()).err().expect(body);
            assert!(err.to_string().starts_with(want), "{body}: {err}");
        }
        let many = json!({"keys": vec![rsa(json!({})); MAX_KEYS + 1]});
        let err = parse(many.to_string().as_bytes()).err().expect("too many");
        assert_eq!(err.to_string(), "101 keys, more than the 100 accepted");
    }

    #[test]
    fn a_token_finds_its_named_key_or_learns_why_not() {
        let keys = parse(
            json!({"keys": [rsa(json!({"kid": "a"})), rsa(json!({"kid": "b", "alg": "RS512"}))]})
                .to_string()
                .as_bytes(),
        )
        .expect("keys");
        assert_eq!(
            KeySet::default()
                .candidates(Some("a"), Algorithm::RS256)
                .err(),
            Some(Missing::NotFetched)
        );
        let set = KeySet {
            fetched: true,
            keys,
        };
        assert_eq!(
            set.candidates(Some("a"), Algorithm::RS256).map(|k| k.len()),
            Ok(1)
        );
        assert_eq!(
            set.candidates(Some("c"), Algorithm::RS256).err(),
            Some(Missing::UnknownKid("c".into()))
        );
        assert_eq!(
            set.candidates(Some("b"), Algorithm::RS256).err(),
            Some(Missing::WrongAlgorithm {
                kid: "b".into(),
                key: Algorithm::RS512
            })
        );
        assert_eq!(
            set.candidates(None, Algorithm::RS512).map(|k| k.len()),
            Ok(1)
        );
        assert_eq!(
            set.candidates(None, Algorithm::ES256).err(),
            Some(Missing::NoKeyFor)
        );
        assert!(set.resolves(Some("b")) && !set.resolves(Some("c")) && set.resolves(None));
    }
}
