//! Keys from a JWKS URL, against a real HTTP server in the test that publishes, rotates and
//! withdraws keys, answers garbage or goes away; it counts the fetches it serves. Signing keys
//! are the PEM fixtures (RSA ones of the RS256 tests; `es256-private.pem` made once with
//! `openssl ecparam -name prime256v1 -genkey -noout | openssl pkcs8 -topk8 -nocrypt`), their
//! JWKs derived here with `Jwk::from_encoding_key`.

use std::{
    convert::Infallible,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{
    Router,
    extract::State,
    response::{IntoResponse, Response},
    routing::get,
};
use jsonwebtoken::{Algorithm, EncodingKey, Header, jwk::Jwk};
use prometheus::Registry;
use serde_json::{Value, json};
use titan_kit::{
    auth::{AuthError, Authenticated, Authenticator, Caller, Claims},
    config::{AuthConfig, JwksConfig},
    testing::eventually,
};
use tokio_util::sync::{CancellationToken, DropGuard};
use tonic::body::Body;
use tower::ServiceExt;

const RSA_A: &str = include_str!("../fixtures/rs256-private.pem");
const RSA_B: &str = include_str!("../fixtures/rs256-other-private.pem");
const EC: &str = include_str!("../fixtures/es256-private.pem");
const SECRET: &str = "0123456789abcdef0123456789abcdef";

/// A private key, the algorithm it signs with and the kid it is published under.
struct Signer {
    key: EncodingKey,
    alg: Algorithm,
    kid: &'static str,
}

impl Signer {
    fn rsa(pem: &str, kid: &'static str) -> Self {
        Self {
            key: EncodingKey::from_rsa_pem(pem.as_bytes()).expect("rsa private key"),
            alg: Algorithm::RS256,
            kid,
        }
    }

    fn a() -> Self {
        Self::rsa(RSA_A, "a")
    }

    fn b() -> Self {
        Self::rsa(RSA_B, "b")
    }

    /// Its public key as a JWK, with `extra` members (`use`, `alg`) added.
    fn jwk(&self, extra: Value) -> Value {
        let jwk = Jwk::from_encoding_key(&self.key, self.alg).expect("jwk");
        let mut value = serde_json::to_value(jwk).expect("json");
        let object = value.as_object_mut().expect("an object");
        object.insert("kid".into(), self.kid.into());
        object.insert("use".into(), "sig".into());
        object.extend(extra.as_object().cloned().unwrap_or_default());
        value
    }

    /// A token for `sub` naming `kid` in its header.
    fn token_as(&self, kid: Option<&str>, sub: &str) -> String {
        let mut header = Header::new(self.alg);
        header.kid = kid.map(str::to_owned);
        let now = jsonwebtoken::get_current_timestamp();
        let claims = Claims {
            sub: sub.into(),
            exp: now + 600,
            nbf: None,
            iat: Some(now),
            iss: Some("idp".into()),
            aud: None,
            roles: vec!["buyer".into()],
        };
        jsonwebtoken::encode(&header, &claims, &self.key).expect("sign")
    }

    fn token(&self, sub: &str) -> String {
        self.token_as(Some(self.kid), sub)
    }
}

/// What the identity provider serves, and how often it was asked.
#[derive(Default)]
struct Published {
    body: Mutex<String>,
    cache_control: Mutex<Option<&'static str>>,
    fetches: AtomicUsize,
}

/// A JWKS endpoint on 127.0.0.1.
struct Idp {
    url: String,
    published: Arc<Published>,
    stop: CancellationToken,
    server: tokio::task::JoinHandle<()>,
}

impl Idp {
    async fn start(keys: Vec<Value>) -> Self {
        let published = Arc::new(Published::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!(
            "http://{}/.well-known/jwks.json",
            listener.local_addr().expect("addr")
        );
        let app = Router::new()
            .route("/.well-known/jwks.json", get(serve))
            .with_state(published.clone());
        let stop = CancellationToken::new();
        let server = tokio::spawn({
            let stop = stop.clone();
            async move {
                axum::serve(listener, app)
                    .with_graceful_shutdown(stop.cancelled_owned())
                    .await
                    .expect("jwks server");
            }
        });
        let idp = Self {
            url,
            published,
            stop,
            server,
        };
        idp.publish(keys);
        idp
    }

    fn publish(&self, keys: Vec<Value>) {
        self.serve_raw(&json!({ "keys": keys }).to_string());
    }

    fn serve_raw(&self, body: &str) {
        *self.published.body.lock().expect("lock") = body.to_owned();
    }

    fn cache_control(&self, value: &'static str) {
        *self.published.cache_control.lock().expect("lock") = Some(value);
    }

    fn fetches(&self) -> usize {
        self.published.fetches.load(Ordering::SeqCst)
    }

    /// Stops listening: fetches then fail with a refused connection.
    async fn shut_down(self) {
        self.stop.cancel();
        self.server.await.expect("server task");
    }
}

async fn serve(State(published): State<Arc<Published>>) -> Response {
    published.fetches.fetch_add(1, Ordering::SeqCst);
    let body = published.body.lock().expect("lock").clone();
    let mut response = ([("content-type", "application/json")], body).into_response();
    if let Some(value) = *published.cache_control.lock().expect("lock") {
        response
            .headers_mut()
            .insert("cache-control", http::HeaderValue::from_static(value));
    }
    response
}

/// An authenticator of the HS256 secret and the JWKS at `url`; on-demand fetches at most once
/// an hour unless `tune` says otherwise, so a test sees exactly the fetches it caused.
fn authenticator(url: &str, tune: impl FnOnce(&mut JwksConfig)) -> Authenticator {
    let mut jwks = JwksConfig::new(url);
    jwks.unknown_kid_interval = Duration::from_secs(3600);
    tune(&mut jwks);
    Authenticator::new(&AuthConfig {
        issuer: Some("idp".into()),
        audience: None,
        hs256_secret: Some(SECRET.to_owned().into()),
        rs256_public_keys: vec![],
        leeway: Duration::ZERO,
        max_token_lifetime: titan_kit::config::DEFAULT_MAX_TOKEN_LIFETIME,
        jwks: Some(jwks),
    })
    .expect("authenticator")
}

/// Runs the scheduled refresh until the guard drops, and waits until its first fetch is in
/// use (`probe`, a token of a published key, verifies without fetching), as a replica has
/// done by the time it serves.
async fn refreshing(auth: &Authenticator, probe: &str) -> DropGuard {
    let stop = CancellationToken::new();
    tokio::spawn(
        auth.jwks_refresher(stop.clone())
            .expect("a jwks is configured"),
    );
    eventually("the first scheduled fetch", || async {
        auth.verify(probe).ok()
    })
    .await;
    stop.drop_guard()
}

fn user(verified: Result<(Caller, u64), AuthError>) -> Result<String, AuthError> {
    verified.map(|(caller, _)| caller.user_id)
}

/// The value of the `titan_auth_jwks_refresh_total` sample with these labels, 0 when absent.
fn refreshes(registry: &Registry, trigger: &str, outcome: &str) -> u64 {
    titan_kit::metrics::render(registry)
        .lines()
        .filter(|l| l.starts_with("titan_auth_jwks_refresh_total{"))
        .filter(|l| {
            l.contains(&format!("trigger=\"{trigger}\""))
                && l.contains(&format!("outcome=\"{outcome}\""))
        })
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_rotated_key_verifies_on_its_first_request() {
    let (a, b) = (Signer::a(), Signer::b());
    let idp = Idp::start(vec![a.jwk(json!({}))]).await;
    let auth = authenticator(&idp.url, |_| {});
    let _refresh = refreshing(&auth, &a.token("probe")).await;
    assert_eq!(
        user(auth.verify_fetching(&a.token("u1")).await),
        Ok("u1".into())
    );
    assert_eq!(idp.fetches(), 1, "a known kid needs no fetch");

    // The provider publishes B before signing with it; the first B token fetches it.
    idp.publish(vec![a.jwk(json!({})), b.jwk(json!({}))]);
    assert_eq!(
        user(auth.verify_fetching(&b.token("u2")).await),
        Ok("u2".into())
    );
    assert_eq!(idp.fetches(), 2, "one on-demand fetch");
    // HS256 tokens keep working beside the provider's keys, and never ask it for anything.
    let minted = auth
        .mint("svc", &["service".into()], Duration::from_secs(60))
        .expect("mint");
    assert_eq!(user(auth.verify_fetching(&minted).await), Ok("svc".into()));
    assert_eq!(idp.fetches(), 2);
}

/// Through the gRPC layer: a burst of calls carrying one unknown kid shares one fetch, and
/// another unknown kid inside the rate-limit interval makes none and is refused by name.
#[tokio::test]
async fn a_burst_with_an_unknown_kid_makes_one_fetch() {
    let (a, b) = (Signer::a(), Signer::b());
    let idp = Idp::start(vec![a.jwk(json!({}))]).await;
    let auth = authenticator(&idp.url, |_| {});
    let _refresh = refreshing(&auth, &a.token("probe")).await;
    idp.publish(vec![a.jwk(json!({})), b.jwk(json!({}))]);
    let echo = tower::service_fn(|request: http::Request<Body>| async move {
        let user = request
            .extensions()
            .get::<Caller>()
            .map_or_else(|| "anonymous".to_owned(), |c| c.user_id.clone());
        let mut response = http::Response::new(Body::empty());
        response
            .headers_mut()
            .insert("x-user", user.parse().expect("header value"));
        Ok::<_, Infallible>(response)
    });
    let grpc = Authenticated::new(echo, auth.clone());
    let call = |token: String| {
        let grpc = grpc.clone();
        async move {
            let request = http::Request::post("/titan.test.v1.TestService/Call")
                .header("authorization", format!("Bearer {token}"))
                .body(Body::empty())
                .expect("request");
            let response = grpc.oneshot(request).await.expect("infallible");
            let header = |name: &str| {
                response
                    .headers()
                    .get(name)
                    .map(|v| v.to_str().expect("ascii").to_owned())
            };
            (
                header("x-user"),
                header("grpc-status"),
                header("grpc-message"),
            )
        }
    };
    const BURST: usize = 32;
    let answers =
        futures::future::join_all((0..BURST).map(|i| call(b.token(&format!("u{i}"))))).await;
    for (i, answer) in answers.into_iter().enumerate() {
        assert_eq!(answer, (Some(format!("u{i}")), None, None), "call {i}");
    }
    assert_eq!(idp.fetches(), 2, "the start's fetch and one for the burst");

    let (user, status, message) = call(a.token_as(Some("ghost"), "u1")).await;
    assert_eq!(
        (user, status.as_deref()),
        (None, Some("16")),
        "unauthenticated"
    );
    let want = format!(
        "token refused: no key with kid \"ghost\" in the key set of {}",
        idp.url
    );
    let message = percent_decode(&message.expect("a message"));
    assert_eq!(message, want);
    assert_eq!(
        idp.fetches(),
        2,
        "rate-limited: no fetch for the second unknown kid"
    );
}

/// With `max-age=0` the period is the lower bound (50 ms here, the refresh period itself being
/// an hour): keys appear and disappear without any request asking for them, and a withdrawn
/// key's tokens are refused even though they verified (and were cached) before.
#[tokio::test]
async fn the_scheduled_refresh_follows_max_age_and_withdraws_keys() {
    let (a, b) = (Signer::a(), Signer::b());
    let idp = Idp::start(vec![a.jwk(json!({}))]).await;
    idp.cache_control("public, max-age=0");
    let auth = authenticator(&idp.url, |c| {
        c.refresh = Duration::from_secs(3600);
        c.min_refresh = Duration::from_millis(50);
    });
    let _refresh = refreshing(&auth, &a.token("probe")).await;
    let old = a.token("u1");
    assert_eq!(auth.verify(&old).map(|c| c.user_id), Ok("u1".into()));

    idp.publish(vec![b.jwk(json!({}))]);
    // `verify` never fetches: only the schedule can bring B.
    let token_b = b.token("u2");
    eventually("B from the scheduled refresh", || async {
        auth.verify(&token_b).ok()
    })
    .await;
    assert_eq!(
        auth.verify(&old),
        Err(AuthError::UnknownKid {
            kid: "a".into(),
            url: idp.url.clone()
        }),
        "A was withdrawn"
    );
}

#[tokio::test]
async fn a_failed_refresh_keeps_the_last_good_keys() {
    let (a, b) = (Signer::a(), Signer::b());
    let idp = Idp::start(vec![a.jwk(json!({}))]).await;
    idp.cache_control("max-age=0");
    let auth = authenticator(&idp.url, |c| {
        c.min_refresh = Duration::from_millis(50);
        // Failures are retried after this (doubling): short, so the test sees several.
        c.unknown_kid_interval = Duration::from_millis(50);
    });
    let registry = Registry::new();
    auth.register(&registry).expect("metrics");
    let _refresh = refreshing(&auth, &a.token("probe")).await;

    // A malformed key set (B alone but not as JSON): refused, A stays.
    idp.serve_raw(&format!("<html>{}</html>", b.jwk(json!({}))));
    eventually("a refused malformed key set", || async {
        (refreshes(&registry, "schedule", "error") >= 1).then_some(())
    })
    .await;
    assert_eq!(
        user(auth.verify_fetching(&a.token("u1")).await),
        Ok("u1".into())
    );
    assert_eq!(
        user(auth.verify_fetching(&b.token("u2")).await),
        Err(AuthError::UnknownKid {
            kid: "b".into(),
            url: idp.url.clone()
        })
    );

    // The provider goes away: still A, from a token this replica has never seen.
    let errors = refreshes(&registry, "schedule", "error");
    idp.shut_down().await;
    eventually("a failed fetch of a server that is down", || async {
        (refreshes(&registry, "schedule", "error") > errors).then_some(())
    })
    .await;
    assert_eq!(
        user(auth.verify_fetching(&a.token("u3")).await),
        Ok("u3".into())
    );
    assert!(refreshes(&registry, "schedule", "ok") >= 1);
    let text = titan_kit::metrics::render(&registry);
    assert!(text.contains("titan_auth_jwks_keys 1"), "{text}");
}

#[tokio::test]
async fn a_key_for_encryption_or_of_another_algorithm_is_ignored() {
    let a = Signer::a();
    let b = Signer::b();
    let idp = Idp::start(vec![
        a.jwk(json!({"alg": "RS256"})),
        b.jwk(json!({"use": "enc"})),
        Signer::rsa(RSA_B, "b384").jwk(json!({"alg": "ES256"})),
    ])
    .await;
    let auth = authenticator(&idp.url, |_| {});
    let _refresh = refreshing(&auth, &a.token("probe")).await;
    assert_eq!(
        user(auth.verify_fetching(&a.token("u1")).await),
        Ok("u1".into())
    );
    assert_eq!(
        user(auth.verify_fetching(&b.token("u2")).await),
        Err(AuthError::UnknownKid {
            kid: "b".into(),
            url: idp.url.clone()
        }),
        "an encryption key never verifies a signature"
    );
    assert_eq!(
        user(
            auth.verify_fetching(&Signer::rsa(RSA_B, "b384").token("u3"))
                .await
        ),
        Err(AuthError::UnknownKid {
            kid: "b384".into(),
            url: idp.url.clone()
        }),
        "an RSA key claiming ES256 is no key"
    );
}

#[tokio::test]
async fn es256_keys_verify_too_and_only_as_es256() {
    let ec = Signer {
        key: EncodingKey::from_ec_pem(EC.as_bytes()).expect("ec private key"),
        alg: Algorithm::ES256,
        kid: "ec",
    };
    let idp = Idp::start(vec![ec.jwk(json!({"alg": "ES256"}))]).await;
    let auth = authenticator(&idp.url, |_| {});
    let _refresh = refreshing(&auth, &ec.token("probe")).await;
    assert_eq!(
        user(auth.verify_fetching(&ec.token("u1")).await),
        Ok("u1".into())
    );
    // A token claiming the EC key with an RSA signature.
    let forged = Signer::a().token_as(Some("ec"), "mallory");
    assert_eq!(
        user(auth.verify_fetching(&forged).await),
        Err(AuthError::Invalid(
            "the key \"ec\" verifies ES256 tokens, not RS256".into()
        ))
    );
}

/// The provider unreachable at start: the process runs, HS256 tokens verify, and a token that
/// needs the provider's keys is refused with a message saying so (see "Authentication" in
/// `docs/runtime.md` for why readiness does not wait for the provider).
#[tokio::test]
async fn until_the_first_fetch_provider_tokens_are_refused_clearly() {
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/jwks", closed.local_addr().expect("addr"));
    drop(closed);
    let auth = authenticator(&url, |_| {});
    let minted = auth
        .mint("svc", &[], Duration::from_secs(60))
        .expect("mint");
    assert_eq!(user(auth.verify_fetching(&minted).await), Ok("svc".into()));
    let refused = auth.verify_fetching(&Signer::a().token("u1")).await;
    assert_eq!(refused, Err(AuthError::KeysNotFetched { url: url.clone() }));
    assert_eq!(
        refused.err().map(|e| e.to_string()),
        Some(format!(
            "token refused: the key set of {url} could not be fetched yet; try again shortly"
        ))
    );
}

/// `grpc-message` is percent-encoded (gRPC over HTTP/2).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = (bytes[i] == b'%')
            .then(|| s.get(i + 1..i + 3))
            .flatten()
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match hex {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8(out).expect("utf-8")
}
