//! Authentication: JWT bearer tokens (HS256 shared secret, RS256 public keys and/or the keys
//! an identity provider publishes as a JWKS, see [`jwks`]) verified with `exp`, `nbf`, `iss`
//! and `aud` (both required when configured) and a maximum lifetime, as a tower layer for gRPC
//! ([`Authenticated`]) and an axum extractor. A handler takes the caller from here, never from
//! the request body.

use std::{future::Future, sync::Arc, time::Duration};

use axum::{
    extract::{FromRef, FromRequestParts},
    http::{StatusCode, request::Parts},
    response::{IntoResponse, Response},
};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use prometheus::Registry;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Status};

use crate::{ErrorCode, KitError, ServiceError, config::AuthConfig};

mod cache;
mod grpc;
mod jwks;

pub use grpc::Authenticated;

/// Verified tokens kept per process (about twice this at most, a few MiB): far more than the
/// distinct tokens of the clients of one replica within their lifetimes.
const TOKEN_CACHE_CAPACITY: usize = 10_000;

/// The role of service identities: callers trusted with money-bearing mutations.
pub const SERVICE_ROLE: &str = "service";

/// The authenticated user behind a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub user_id: String,
    pub roles: Vec<String>,
}

impl Caller {
    /// Whether the caller is a service identity (the checkout or payment system, a worker) and
    /// not a buyer: only those may decide money (confirm a purchase, redeem or reverse a coupon,
    /// report revenue). See "Trust" in `docs/runtime.md`.
    pub fn is_service(&self) -> bool {
        self.has_role(SERVICE_ROLE)
    }

    /// [`NotAService`] unless the caller is a service identity; `call` names the refused call
    /// and `instead` what a buyer may do.
    pub fn require_service(
        &self,
        call: &'static str,
        instead: &'static str,
    ) -> Result<(), NotAService> {
        if self.is_service() {
            Ok(())
        } else {
            Err(NotAService { call, instead })
        }
    }

    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    /// `PermissionDenied` unless the caller has `role`.
    pub fn require_role(&self, role: &str) -> Result<(), Status> {
        if self.has_role(role) {
            Ok(())
        } else {
            Err(Status::permission_denied(format!(
                "this call needs the {role:?} role; the token of user {} has {:?}",
                self.user_id, self.roles
            )))
        }
    }

    pub fn has_any_role(&self, roles: &[&str]) -> bool {
        roles.iter().any(|r| self.has_role(r))
    }

    /// `PermissionDenied` unless the caller has one of `roles`.
    pub fn require_any_role(&self, roles: &[&str]) -> Result<(), Status> {
        if self.has_any_role(roles) {
            Ok(())
        } else {
            Err(Status::permission_denied(format!(
                "this call needs one of the roles {roles:?}; the token of user {} has {:?}",
                self.user_id, self.roles
            )))
        }
    }
}

/// A buyer attempted a money-bearing call that only a service identity may make.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{call} decides money and needs a service identity (role \"service\"); buyers may only {instead}"
)]
pub struct NotAService {
    pub call: &'static str,
    pub instead: &'static str,
}

impl ServiceError for NotAService {
    fn code(&self) -> ErrorCode {
        ErrorCode::PermissionDenied
    }

    fn reason(&self) -> Option<&'static str> {
        Some("SERVICE_ONLY")
    }
}

/// The claims Titan reads from a token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<Audience>,
    #[serde(default)]
    pub roles: Vec<String>,
}

/// The `aud` claim: RFC 7519 allows one string or an array of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

/// Why a token was refused; the message goes to the client as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token: send the header 'authorization: Bearer <jwt>'")]
    Missing,
    #[error("the authorization header must be 'Bearer <jwt>'")]
    Malformed,
    #[error(
        "access_token is accepted only on websocket upgrades: send the header 'authorization: Bearer <jwt>'"
    )]
    TokenInQuery,
    #[error("token refused: {0}")]
    Invalid(String),
    /// The token names a signing key the identity provider's key set lacks, even after
    /// fetching it again (or a fetch was made too recently to make another).
    #[error("token refused: no key with kid {kid:?} in the key set of {url}")]
    UnknownKid { kid: String, url: String },
    /// No fetch of the identity provider's key set has succeeded yet (the cause is in the
    /// server's log, not for clients).
    #[error("token refused: the key set of {url} could not be fetched yet; try again shortly")]
    KeysNotFetched { url: String },
}

impl AuthError {
    /// Whether fetching the key set again could make the token verify.
    fn wants_fetch(&self) -> Option<Option<&str>> {
        match self {
            Self::UnknownKid { kid, .. } => Some(Some(kid)),
            Self::KeysNotFetched { .. } => Some(None),
            _ => None,
        }
    }
}

struct Key {
    algorithm: Algorithm,
    key: DecodingKey,
}

/// Verifies tokens; cheap to clone.
#[derive(Clone)]
pub struct Authenticator {
    keys: Arc<Vec<Key>>,
    issuer: Option<String>,
    audience: Option<String>,
    leeway: Duration,
    max_lifetime: Duration,
    signing: Option<Arc<EncodingKey>>,
    cache: Arc<cache::TokenCache>,
    jwks: Option<Arc<jwks::Jwks>>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("keys", &self.keys.len())
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("jwks", &self.jwks.as_ref().map(|j| j.url()))
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// An authenticator of `config`'s keys. A JWKS is not fetched here: the first token that
    /// needs it fetches it, and [`Self::jwks_refresher`] keeps it fresh.
    pub fn new(config: &AuthConfig) -> Result<Self, KitError> {
        let mut keys = Vec::new();
        let mut signing = None;
        if let Some(secret) = &config.hs256_secret {
            let bytes = secret.expose_secret().as_bytes();
            keys.push(Key {
                algorithm: Algorithm::HS256,
                key: DecodingKey::from_secret(bytes),
            });
            signing = Some(Arc::new(EncodingKey::from_secret(bytes)));
        }
        for (i, pem) in config.rs256_public_keys.iter().enumerate() {
            let key = DecodingKey::from_rsa_pem(pem.as_bytes()).map_err(|e| {
                KitError::config(
                    format!("auth.rs256PublicKeys[{i}]"),
                    format!("not an RSA public key in PEM: {e}"),
                )
            })?;
            keys.push(Key {
                algorithm: Algorithm::RS256,
                key,
            });
        }
        Ok(Self {
            keys: Arc::new(keys),
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            leeway: config.leeway,
            max_lifetime: config.max_token_lifetime,
            signing,
            cache: Arc::new(cache::TokenCache::new(
                TOKEN_CACHE_CAPACITY,
                config.leeway.as_secs(),
            )),
            jwks: config
                .jwks
                .clone()
                .map(jwks::Jwks::new)
                .transpose()?
                .map(Arc::new),
        })
    }

    /// Registers the JWKS metrics (`titan_auth_jwks_*`), when a JWKS is configured.
    pub fn register(&self, registry: &Registry) -> Result<(), KitError> {
        self.jwks
            .as_ref()
            .map_or(Ok(()), |jwks| jwks.register(registry))
    }

    /// The task that fetches the JWKS at once and then on schedule until `shutdown`, when one
    /// is configured; the runtime runs it beside the services. It never fails: a fetch that
    /// fails is logged, counted and retried, and the last good key set stays in use.
    pub fn jwks_refresher(
        &self,
        shutdown: CancellationToken,
    ) -> Option<impl Future<Output = Result<(), KitError>> + Send + 'static> {
        let jwks = self.jwks.clone()?;
        Some(async move {
            jwks.run(shutdown).await;
            Ok(())
        })
    }

    /// Verifies a raw token (without the `Bearer ` prefix), with the keys at hand: a token
    /// naming a key the JWKS lacks is refused without fetching it ([`Self::verify_fetching`]
    /// does).
    pub fn verify(&self, token: &str) -> Result<Caller, AuthError> {
        self.verify_until(token).map(|(caller, _)| caller)
    }

    /// Verifies a raw token and returns its `exp` (seconds since the epoch) with the caller,
    /// for connections that outlive one request and must end when the token does; with the
    /// keys at hand, like [`Self::verify`].
    pub fn verify_until(&self, token: &str) -> Result<(Caller, u64), AuthError> {
        let generation = self.jwks.as_ref().map_or(0, |j| j.generation());
        if let Some(hit) = self.cache.get(token, jsonwebtoken::get_current_timestamp())
            && hit.generation == generation
        {
            return Ok((hit.caller, hit.exp));
        }
        let verified = self.verify_signed(token)?;
        // Under the generation read before the check: if a key was withdrawn meanwhile, this
        // answer is never served from the cache.
        self.cache.put(
            token,
            cache::Verified {
                caller: verified.0.clone(),
                exp: verified.1,
                generation,
            },
        );
        Ok(verified)
    }

    /// [`Self::verify_until`], fetching the identity provider's key set again first when the
    /// token names a key it lacks (single-flight and rate-limited, see [`jwks`]): the first
    /// token signed by a freshly rotated key verifies.
    pub async fn verify_fetching(&self, token: &str) -> Result<(Caller, u64), AuthError> {
        let refused = match self.verify_until(token) {
            Err(refused) => refused,
            verified => return verified,
        };
        match (&self.jwks, refused.wants_fetch()) {
            (Some(jwks), Some(kid)) => {
                jwks.refresh_for(kid).await;
                self.verify_until(token)
            }
            _ => Err(refused),
        }
    }

    /// The full check of a token not in the cache: header, signature and every claim.
    fn verify_signed(&self, token: &str) -> Result<(Caller, u64), AuthError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| AuthError::Invalid(e.to_string()))?;
        let mut last =
            AuthError::Invalid(format!("no configured key accepts {:?} tokens", header.alg));
        // Each key is tried only with its own algorithm, so an HS256 token "signed" with an
        // RSA public key (the classic algorithm swap) never meets that key as an HMAC secret.
        // A provider's key set is consulted only for algorithms it may hold (never HMAC), so
        // an HS256 token with a made-up kid sends no request to the provider.
        let published = self
            .jwks
            .as_ref()
            .filter(|_| {
                !matches!(
                    header.alg,
                    Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
                )
            })
            .map(|jwks| (jwks, jwks.current()));
        let from_jwks = match &published {
            Some((jwks, set)) => match set.candidates(header.kid.as_deref(), header.alg) {
                Ok(keys) => keys,
                Err(missing) => {
                    last = match missing {
                        jwks::Missing::NotFetched => AuthError::KeysNotFetched {
                            url: jwks.url().to_owned(),
                        },
                        jwks::Missing::UnknownKid(kid) => AuthError::UnknownKid {
                            kid,
                            url: jwks.url().to_owned(),
                        },
                        jwks::Missing::WrongAlgorithm { kid, key } => AuthError::Invalid(format!(
                            "the key {kid:?} verifies {key:?} tokens, not {:?}",
                            header.alg
                        )),
                        jwks::Missing::NoKeyFor => last,
                    };
                    Vec::new()
                }
            },
            None => Vec::new(),
        };
        let statics = self.keys.iter().filter(|k| k.algorithm == header.alg);
        // The provider's key first: a token naming one is signed by it.
        for key in from_jwks.into_iter().chain(statics) {
            match jsonwebtoken::decode::<Claims>(token, &key.key, &self.validation(key.algorithm)) {
                Ok(data) => {
                    let exp = data.claims.exp;
                    return self.caller(data.claims).map(|caller| (caller, exp));
                }
                // A static key's "bad signature" must not hide that the named key is missing:
                // that is what makes the caller fetch the set again.
                Err(e) if last.wants_fetch().is_none() => last = AuthError::Invalid(describe(&e)),
                Err(_) => {}
            }
        }
        Err(last)
    }

    /// What a token must carry: `exp` and `sub` always, `iss` and `aud` whenever this cell
    /// is configured with them (a token that omits them is refused, not waved through).
    fn validation(&self, algorithm: Algorithm) -> Validation {
        let mut validation = Validation::new(algorithm);
        validation.leeway = self.leeway.as_secs();
        validation.validate_nbf = true;
        let mut required = vec!["exp", "sub"];
        match &self.issuer {
            Some(iss) => {
                validation.set_issuer(&[iss]);
                required.push("iss");
            }
            None => validation.iss = None,
        }
        match &self.audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);
        validation
    }

    /// The caller of verified claims, once the lifetime cap holds.
    fn caller(&self, claims: Claims) -> Result<Caller, AuthError> {
        if claims.sub.is_empty() {
            return Err(AuthError::Invalid("the sub claim is empty".into()));
        }
        let max = self.max_lifetime.as_secs();
        let now = jsonwebtoken::get_current_timestamp();
        let issued = claims.iat.map_or(now, |iat| iat.min(now));
        if claims.exp.saturating_sub(issued) > max + self.leeway.as_secs() {
            return Err(AuthError::Invalid(format!(
                "the token lives longer than the {max} s this cell accepts (exp − iat, or exp − now)"
            )));
        }
        Ok(Caller {
            user_id: claims.sub,
            roles: claims.roles,
        })
    }

    /// Verifies an `authorization` header value, with the keys at hand.
    pub fn verify_header(&self, value: &str) -> Result<Caller, AuthError> {
        self.verify(bearer(value)?)
    }

    /// Verifies an `authorization` header value, fetching the key set again when the token
    /// names a key it lacks ([`Self::verify_fetching`]).
    pub async fn verify_header_fetching(&self, value: &str) -> Result<Caller, AuthError> {
        self.verify_fetching(bearer(value)?)
            .await
            .map(|(caller, _)| caller)
    }

    /// Mints an HS256 token; for local cells, tests and operators' smoke checks.
    pub fn mint(&self, subject: &str, roles: &[String], ttl: Duration) -> Result<String, KitError> {
        let key = self.signing.as_ref().ok_or_else(|| {
            KitError::config("auth.hs256Secret", "minting a token needs the HS256 secret")
        })?;
        if ttl > self.max_lifetime {
            return Err(KitError::config(
                "auth.maxTokenLifetimeSeconds",
                format!(
                    "a token of {} s would be refused: this cell accepts at most {} s",
                    ttl.as_secs(),
                    self.max_lifetime.as_secs()
                ),
            ));
        }
        let now = jsonwebtoken::get_current_timestamp();
        let claims = Claims {
            sub: subject.to_owned(),
            exp: now + ttl.as_secs(),
            nbf: Some(now),
            iat: Some(now),
            iss: self.issuer.clone(),
            aud: self.audience.clone().map(Audience::One),
            roles: roles.to_vec(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, key)
            .map_err(|e| KitError::Other(format!("cannot sign token: {e}")))
    }
}

/// The token of an `authorization` header value.
fn bearer(value: &str) -> Result<&str, AuthError> {
    value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
        .ok_or(AuthError::Malformed)
}

fn describe(e: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind;
    match e.kind() {
        ErrorKind::ExpiredSignature => "the token has expired".into(),
        ErrorKind::ImmatureSignature => "the token is not valid yet (nbf)".into(),
        ErrorKind::InvalidIssuer => "wrong issuer (iss)".into(),
        ErrorKind::InvalidAudience => "wrong audience (aud)".into(),
        ErrorKind::InvalidSignature => "bad signature".into(),
        ErrorKind::MissingRequiredClaim(c) => format!("the {c} claim is missing"),
        // `sub` and `exp` are plain fields of [`Claims`]: serde notices their absence first.
        ErrorKind::Json(json) => match json.to_string().strip_prefix("missing field `") {
            Some(rest) => format!(
                "the {} claim is missing",
                rest.split('`').next().unwrap_or_default()
            ),
            None => format!("the claims are not valid json: {json}"),
        },
        other => format!("{other:?}").to_lowercase(),
    }
}

/// The caller of a gRPC request, or `Unauthenticated`.
pub fn caller<T>(request: &Request<T>) -> Result<Caller, Status> {
    request
        .extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated(AuthError::Missing.to_string()))
}

/// The caller, who must have `role` (else `PermissionDenied`), and the request's body: how an
/// admin-only RPC starts.
pub fn caller_with_role<T>(request: Request<T>, role: &str) -> Result<(Caller, T), Status> {
    let caller = caller(&request)?;
    caller.require_role(role)?;
    Ok((caller, request.into_inner()))
}

/// A refused HTTP request: 401 with the reason.
#[derive(Debug)]
pub struct Rejection(AuthError);

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        (
            StatusCode::UNAUTHORIZED,
            [("www-authenticate", "Bearer")],
            self.0.to_string(),
        )
            .into_response()
    }
}

/// The axum extractor. Browsers cannot set headers on a WebSocket handshake, so an
/// `access_token` query parameter is accepted there, and only there: on any other route a token
/// in the URL would end up in access logs and browser history.
impl<S> FromRequestParts<S> for Caller
where
    S: Send + Sync,
    Authenticator: FromRef<S>,
{
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let auth = Authenticator::from_ref(state);
        if let Some(value) = parts.headers.get(http::header::AUTHORIZATION) {
            let value = value
                .to_str()
                .map_err(|_| Rejection(AuthError::Malformed))?;
            return auth.verify_header_fetching(value).await.map_err(Rejection);
        }
        let token = parts
            .uri
            .query()
            .into_iter()
            .flat_map(|q| q.split('&'))
            .find_map(|pair| pair.strip_prefix("access_token="));
        match token {
            Some(token) if is_websocket_upgrade(parts) => auth
                .verify_fetching(token)
                .await
                .map(|(caller, _)| caller)
                .map_err(Rejection),
            Some(_) => Err(Rejection(AuthError::TokenInQuery)),
            None => Err(Rejection(AuthError::Missing)),
        }
    }
}

/// A WebSocket handshake (`Upgrade: websocket`), the one request a browser cannot add an
/// `authorization` header to.
fn is_websocket_upgrade(parts: &Parts) -> bool {
    parts
        .headers
        .get(http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;
    use serde_json::json;

    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn config() -> AuthConfig {
        AuthConfig {
            issuer: Some("titan-test".into()),
            audience: Some("titan".into()),
            hs256_secret: Some(SecretString::from(SECRET)),
            rs256_public_keys: vec![],
            leeway: Duration::from_secs(0),
            max_token_lifetime: Duration::from_secs(3600),
            jwks: None,
        }
    }

    fn token(claims: &impl Serialize, secret: &str) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .expect("sign")
    }

    fn claims() -> Claims {
        let now = jsonwebtoken::get_current_timestamp();
        Claims {
            sub: "u1".into(),
            exp: now + 60,
            nbf: Some(now - 1),
            iat: Some(now - 1),
            iss: Some("titan-test".into()),
            aud: Some(Audience::One("titan".into())),
            roles: vec!["admin".into()],
        }
    }

    #[test]
    fn minted_tokens_verify() {
        let auth = Authenticator::new(&config()).expect("auth");
        let t = auth
            .mint("u9", &["buyer".into()], Duration::from_secs(60))
            .expect("mint");
        let caller = auth.verify_header(&format!("Bearer {t}")).expect("valid");
        assert_eq!(
            caller,
            Caller {
                user_id: "u9".into(),
                roles: vec!["buyer".into()]
            }
        );
        assert!(caller.require_role("admin").is_err());
        assert!(!caller.is_service());
    }

    #[test]
    fn every_claim_is_checked() {
        let auth = Authenticator::new(&config()).expect("auth");
        let now = jsonwebtoken::get_current_timestamp();
        let cases = [
            (
                Claims {
                    exp: now - 10,
                    ..claims()
                },
                "the token has expired",
            ),
            (
                Claims {
                    nbf: Some(now + 600),
                    ..claims()
                },
                "the token is not valid yet (nbf)",
            ),
            (
                Claims {
                    iss: Some("evil".into()),
                    ..claims()
                },
                "wrong issuer (iss)",
            ),
            (
                Claims {
                    aud: Some(Audience::One("other".into())),
                    ..claims()
                },
                "wrong audience (aud)",
            ),
            (
                Claims {
                    aud: Some(Audience::Many(vec!["a".into(), "b".into()])),
                    ..claims()
                },
                "wrong audience (aud)",
            ),
        ];
        for (c, want) in cases {
            let err = auth.verify(&token(&c, SECRET)).expect_err(want);
            assert_eq!(err, AuthError::Invalid(want.into()));
        }
        let err = auth
            .verify(&token(&claims(), "another-secret-another-secret-xx"))
            .expect_err("wrong key");
        assert_eq!(err, AuthError::Invalid("bad signature".into()));
        assert_eq!(auth.verify_header("Token abc"), Err(AuthError::Malformed));
    }

    /// A configured issuer or audience is required, not only checked when present.
    #[test]
    fn a_token_that_omits_a_claim_is_refused() {
        let auth = Authenticator::new(&config()).expect("auth");
        let exp = jsonwebtoken::get_current_timestamp() + 60;
        let full = json!({"sub": "u1", "exp": exp, "iss": "titan-test", "aud": "titan"});
        for claim in ["iss", "aud", "exp", "sub"] {
            let mut partial = full.clone();
            partial.as_object_mut().expect("object").remove(claim);
            let err = auth.verify(&token(&partial, SECRET)).expect_err(claim);
            assert_eq!(
                err,
                AuthError::Invalid(format!("the {claim} claim is missing")),
                "without {claim}"
            );
        }
        auth.verify(&token(&full, SECRET))
            .expect("every claim present");
    }

    #[test]
    fn an_audience_array_is_accepted_when_it_names_this_cell() {
        let auth = Authenticator::new(&config()).expect("auth");
        let c = Claims {
            aud: Some(Audience::Many(vec!["billing".into(), "titan".into()])),
            ..claims()
        };
        assert_eq!(
            auth.verify(&token(&c, SECRET)).expect("valid").user_id,
            "u1"
        );
    }

    #[test]
    fn a_cached_token_answers_alike_and_a_tampered_copy_is_still_refused() {
        let auth = Authenticator::new(&config()).expect("auth");
        let good = token(&claims(), SECRET);
        let first = auth.verify_until(&good).expect("first verification");
        assert_eq!(
            auth.verify_until(&good),
            Ok(first.clone()),
            "from the cache"
        );
        assert_eq!(first.0.user_id, "u1");
        // The same claims signed with another key differ only in the signature.
        let forged = token(&claims(), "another-secret-another-secret-xx");
        assert_eq!(
            auth.verify(&forged),
            Err(AuthError::Invalid("bad signature".into()))
        );
        // Clones share the cache: the interceptor is cloned per service.
        assert!(auth.clone().cache.get(&good, 0).is_some());
    }

    #[test]
    fn a_token_living_longer_than_the_cap_is_refused() {
        let auth = Authenticator::new(&config()).expect("auth");
        let now = jsonwebtoken::get_current_timestamp();
        let refused = AuthError::Invalid(
            "the token lives longer than the 3600 s this cell accepts (exp − iat, or exp − now)"
                .into(),
        );
        let without_iat = Claims {
            exp: now + 7200,
            iat: None,
            ..claims()
        };
        assert_eq!(
            auth.verify(&token(&without_iat, SECRET)),
            Err(refused.clone())
        );
        // Issued long ago, still valid a little: its whole life is what counts.
        let old = Claims {
            exp: now + 60,
            iat: Some(now - 7200),
            ..claims()
        };
        assert_eq!(auth.verify(&token(&old, SECRET)), Err(refused));
        let err = auth
            .mint("u1", &[], Duration::from_secs(7200))
            .expect_err("mint beyond the cap");
        assert!(
            err.to_string().contains("auth.maxTokenLifetimeSeconds"),
            "{err}"
        );
    }

    #[derive(Clone)]
    struct State(Authenticator);

    impl FromRef<State> for Authenticator {
        fn from_ref(s: &State) -> Self {
            s.0.clone()
        }
    }

    async fn extract(request: http::Request<()>) -> Result<Caller, AuthError> {
        let state = State(Authenticator::new(&config()).expect("auth"));
        let (mut parts, ()) = request.into_parts();
        Caller::from_request_parts(&mut parts, &state)
            .await
            .map_err(|r| r.0)
    }

    #[tokio::test]
    async fn a_query_token_is_accepted_only_on_a_websocket_upgrade() {
        let t = token(&claims(), SECRET);
        let uri = format!("/ws?room=1&access_token={t}");
        let plain = http::Request::get(&uri).body(()).expect("request");
        assert_eq!(extract(plain).await, Err(AuthError::TokenInQuery));
        let upgrade = http::Request::get(&uri)
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .body(())
            .expect("request");
        assert_eq!(extract(upgrade).await.expect("valid").user_id, "u1");
        let header = http::Request::get("/x")
            .header("authorization", format!("Bearer {t}"))
            .body(())
            .expect("request");
        assert_eq!(extract(header).await.expect("valid").user_id, "u1");
    }
}
