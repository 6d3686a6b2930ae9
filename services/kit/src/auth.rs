//! Authentication: JWT bearer tokens (HS256 shared secret and/or RS256 public keys) verified
//! with `exp`, `nbf`, `iss` and `aud`, as a tonic interceptor and an axum extractor. A handler
//! takes the caller from here, never from the request body.

use std::{sync::Arc, time::Duration};

use axum::{
    extract::{FromRef, FromRequestParts},
    http::{StatusCode, request::Parts},
    response::{IntoResponse, Response},
};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use tonic::{Request, Status};

use crate::{KitError, config::AuthConfig};

/// The authenticated user behind a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub user_id: String,
    pub roles: Vec<String>,
}

impl Caller {
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

/// The claims Titan reads from a token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    #[serde(default)]
    pub roles: Vec<String>,
}

/// Why a token was refused; the message goes to the client as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token: send the header 'authorization: Bearer <jwt>'")]
    Missing,
    #[error("the authorization header must be 'Bearer <jwt>'")]
    Malformed,
    #[error("token refused: {0}")]
    Invalid(String),
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
    signing: Option<Arc<EncodingKey>>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("keys", &self.keys.len())
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
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
            signing,
        })
    }

    /// Verifies a raw token (without the `Bearer ` prefix).
    pub fn verify(&self, token: &str) -> Result<Caller, AuthError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| AuthError::Invalid(e.to_string()))?;
        let mut last =
            AuthError::Invalid(format!("no configured key accepts {:?} tokens", header.alg));
        for key in self.keys.iter().filter(|k| k.algorithm == header.alg) {
            let mut validation = Validation::new(key.algorithm);
            validation.leeway = self.leeway.as_secs();
            validation.validate_nbf = true;
            validation.set_required_spec_claims(&["exp", "sub"]);
            match &self.issuer {
                Some(iss) => validation.set_issuer(&[iss]),
                None => validation.iss = None,
            }
            match &self.audience {
                Some(aud) => validation.set_audience(&[aud]),
                None => validation.validate_aud = false,
            }
            match jsonwebtoken::decode::<Claims>(token, &key.key, &validation) {
                Ok(data) => {
                    if data.claims.sub.is_empty() {
                        return Err(AuthError::Invalid("the sub claim is empty".into()));
                    }
                    return Ok(Caller {
                        user_id: data.claims.sub,
                        roles: data.claims.roles,
                    });
                }
                Err(e) => last = AuthError::Invalid(describe(&e)),
            }
        }
        Err(last)
    }

    /// Verifies an `authorization` header value.
    pub fn verify_header(&self, value: &str) -> Result<Caller, AuthError> {
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or(AuthError::Malformed)?;
        self.verify(token.trim())
    }

    /// Mints an HS256 token; for local cells, tests and operators' smoke checks.
    pub fn mint(&self, subject: &str, roles: &[String], ttl: Duration) -> Result<String, KitError> {
        let key = self.signing.as_ref().ok_or_else(|| {
            KitError::config("auth.hs256Secret", "minting a token needs the HS256 secret")
        })?;
        let now = jsonwebtoken::get_current_timestamp();
        let claims = Claims {
            sub: subject.to_owned(),
            exp: now + ttl.as_secs(),
            nbf: Some(now),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            roles: roles.to_vec(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, key)
            .map_err(|e| KitError::Other(format!("cannot sign token: {e}")))
    }
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
        other => format!("{other:?}").to_lowercase(),
    }
}

/// The tonic interceptor: a present token must verify (else `Unauthenticated`), and the caller
/// is put in the request extensions. A request without a token passes, so that public methods
/// stay public; [`caller`] refuses it where a user is needed.
impl tonic::service::Interceptor for Authenticator {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let Some(value) = request.metadata().get("authorization") else {
            return Ok(request);
        };
        let value = value
            .to_str()
            .map_err(|_| Status::unauthenticated(AuthError::Malformed.to_string()))?;
        let caller = self
            .verify_header(value)
            .map_err(|e| Status::unauthenticated(e.to_string()))?;
        request.extensions_mut().insert(caller);
        Ok(request)
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
/// `access_token` query parameter is accepted as well.
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
            return auth.verify_header(value).map_err(Rejection);
        }
        let token = parts
            .uri
            .query()
            .into_iter()
            .flat_map(|q| q.split('&'))
            .find_map(|pair| pair.strip_prefix("access_token="));
        match token {
            Some(token) => auth.verify(token).map_err(Rejection),
            None => Err(Rejection(AuthError::Missing)),
        }
    }
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;

    use super::*;

    fn config() -> AuthConfig {
        AuthConfig {
            issuer: Some("titan-test".into()),
            audience: Some("titan".into()),
            hs256_secret: Some(SecretString::from("0123456789abcdef0123456789abcdef")),
            rs256_public_keys: vec![],
            leeway: Duration::from_secs(0),
        }
    }

    fn token(claims: &Claims, secret: &str) -> String {
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
            iss: Some("titan-test".into()),
            aud: Some("titan".into()),
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
    }

    #[test]
    fn every_claim_is_checked() {
        let auth = Authenticator::new(&config()).expect("auth");
        let secret = "0123456789abcdef0123456789abcdef";
        let now = jsonwebtoken::get_current_timestamp();
        let cases = [
            (
                Claims {
                    exp: now - 10,
                    ..claims()
                },
                "expired",
            ),
            (
                Claims {
                    nbf: Some(now + 600),
                    ..claims()
                },
                "not valid yet",
            ),
            (
                Claims {
                    iss: Some("evil".into()),
                    ..claims()
                },
                "issuer",
            ),
            (
                Claims {
                    aud: Some("other".into()),
                    ..claims()
                },
                "audience",
            ),
        ];
        for (c, want) in cases {
            let err = auth.verify(&token(&c, secret)).expect_err(want);
            assert!(err.to_string().contains(want), "{err} should say {want}");
        }
        let err = auth
            .verify(&token(&claims(), "another-secret-another-secret-xx"))
            .expect_err("sig");
        assert!(err.to_string().contains("signature"), "{err}");
        assert_eq!(auth.verify_header("Token abc"), Err(AuthError::Malformed));
    }
}
