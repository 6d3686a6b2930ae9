//! RS256 verification with a real key pair (the HS256 paths are unit-tested in the crate).

use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use titan_kit::{
    auth::{Authenticator, Claims},
    config::AuthConfig,
};

const PRIVATE: &str = include_str!("../fixtures/rs256-private.pem");
const PUBLIC: &str = include_str!("../fixtures/rs256-public.pem");

fn rs256_only() -> Authenticator {
    Authenticator::new(&AuthConfig {
        issuer: Some("idp".into()),
        audience: None,
        hs256_secret: None,
        rs256_public_keys: vec![PUBLIC.into()],
        leeway: Duration::ZERO,
        max_token_lifetime: titan_kit::config::DEFAULT_MAX_TOKEN_LIFETIME,
        jwks: None,
    })
    .expect("authenticator")
}

fn sign(claims: &Claims) -> String {
    let key = EncodingKey::from_rsa_pem(PRIVATE.as_bytes()).expect("private key");
    jsonwebtoken::encode(&Header::new(Algorithm::RS256), claims, &key).expect("sign")
}

#[test]
fn rs256_tokens_verify_against_the_public_key() {
    let auth = rs256_only();
    let now = jsonwebtoken::get_current_timestamp();
    let claims = Claims {
        sub: "u7".into(),
        exp: now + 60,
        nbf: None,
        iat: None,
        iss: Some("idp".into()),
        aud: None,
        roles: vec!["admin".into()],
    };
    let caller = auth.verify(&sign(&claims)).expect("valid");
    assert_eq!(caller.user_id, "u7");
    assert!(caller.has_role("admin"));

    let err = auth
        .verify(&sign(&Claims {
            iss: Some("other".into()),
            ..claims
        }))
        .expect_err("issuer");
    assert!(err.to_string().contains("issuer"), "{err}");
}

#[test]
fn an_hs256_token_is_refused_when_only_rs256_is_configured() {
    let hs = Authenticator::new(&AuthConfig {
        issuer: Some("idp".into()),
        audience: None,
        hs256_secret: Some("0123456789abcdef0123456789abcdef".to_owned().into()),
        rs256_public_keys: vec![],
        leeway: Duration::ZERO,
        max_token_lifetime: titan_kit::config::DEFAULT_MAX_TOKEN_LIFETIME,
        jwks: None,
    })
    .expect("hs");
    let token = hs.mint("u1", &[], Duration::from_secs(60)).expect("mint");
    let err = rs256_only().verify(&token).expect_err("wrong algorithm");
    assert!(err.to_string().contains("HS256"), "{err}");
}

#[test]
fn a_bad_public_key_names_the_setting() {
    let err = Authenticator::new(&AuthConfig {
        issuer: None,
        audience: None,
        hs256_secret: None,
        rs256_public_keys: vec!["not a key".into()],
        leeway: Duration::ZERO,
        max_token_lifetime: titan_kit::config::DEFAULT_MAX_TOKEN_LIFETIME,
        jwks: None,
    })
    .expect_err("bad key");
    assert!(err.to_string().contains("auth.rs256PublicKeys[0]"), "{err}");
}

/// The algorithm swap: an HS256 token whose HMAC secret is the RSA public key (which anyone
/// has). It must never verify, whether or not the cell also has an HS256 secret.
#[test]
fn an_hs256_token_signed_with_the_rsa_public_key_is_refused() {
    let now = jsonwebtoken::get_current_timestamp();
    let claims = Claims {
        sub: "mallory".into(),
        exp: now + 60,
        nbf: None,
        iat: None,
        iss: Some("idp".into()),
        aud: None,
        roles: vec!["admin".into()],
    };
    let forged = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(PUBLIC.as_bytes()),
    )
    .expect("sign");
    let err = rs256_only().verify(&forged).expect_err("rs256 only");
    assert_eq!(
        err.to_string(),
        "token refused: no configured key accepts HS256 tokens"
    );

    let both = Authenticator::new(&AuthConfig {
        issuer: Some("idp".into()),
        audience: None,
        hs256_secret: Some("0123456789abcdef0123456789abcdef".to_owned().into()),
        rs256_public_keys: vec![PUBLIC.into()],
        leeway: Duration::ZERO,
        max_token_lifetime: titan_kit::config::DEFAULT_MAX_TOKEN_LIFETIME,
        jwks: None,
    })
    .expect("both");
    let err = both.verify(&forged).expect_err("both keys");
    assert_eq!(err.to_string(), "token refused: bad signature");
    // And the other way: an RS256 header on an HMAC signature.
    let mut parts: Vec<String> = forged.split('.').map(str::to_owned).collect();
    parts[0] = base64_url(r#"{"typ":"JWT","alg":"RS256"}"#);
    let relabelled = parts.join(".");
    assert!(
        both.verify(&relabelled).is_err(),
        "an hmac signature is no rsa signature"
    );
    assert!(
        both.verify(&sign(&claims)).is_ok(),
        "the genuine rs256 token verifies"
    );
}

/// A token signed by another RSA key than the configured one.
#[test]
fn an_rs256_token_signed_by_another_key_is_refused() {
    const OTHER: &str = include_str!("../fixtures/rs256-other-private.pem");
    let now = jsonwebtoken::get_current_timestamp();
    let claims = Claims {
        sub: "u7".into(),
        exp: now + 60,
        nbf: None,
        iat: None,
        iss: Some("idp".into()),
        aud: None,
        roles: vec![],
    };
    let key = EncodingKey::from_rsa_pem(OTHER.as_bytes()).expect("other private key");
    let token = jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &key).expect("sign");
    let err = rs256_only().verify(&token).expect_err("another key");
    assert_eq!(err.to_string(), "token refused: bad signature");
}

fn base64_url(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}
