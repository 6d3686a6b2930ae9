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
    })
    .expect_err("bad key");
    assert!(err.to_string().contains("auth.rs256PublicKeys[0]"), "{err}");
}
