//! The gRPC side of authentication: a tower service in front of each tonic service that
//! verifies a present bearer token and puts the [`Caller`] in the request's extensions (where
//! [`super::caller`] finds it). A tonic interceptor would be simpler but is synchronous, and a
//! token naming a freshly rotated key needs the key set fetched before it can verify.

use std::{
    convert::Infallible,
    task::{Context, Poll},
};

use futures::future::BoxFuture;
use tonic::{Status, body::Body, server::NamedService};
use tower_service::Service;

use super::{AuthError, Authenticator, Caller};

/// `inner` behind token verification: a present token must verify (else `Unauthenticated`,
/// with the reason); a request without one passes, so that public methods stay public and
/// [`super::caller`] refuses it where a user is needed.
#[derive(Debug, Clone)]
pub struct Authenticated<S> {
    inner: S,
    auth: Authenticator,
}

impl<S> Authenticated<S> {
    pub fn new(inner: S, auth: Authenticator) -> Self {
        Self { inner, auth }
    }
}

impl<S: NamedService> NamedService for Authenticated<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<http::Request<Body>> for Authenticated<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        // The service polled ready is the one that must be called; a clone takes its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        if !request.headers().contains_key(http::header::AUTHORIZATION) {
            // Public calls (the router's lookups) skip the verifier's clone: measurable at
            // tens of thousands of calls a second.
            return Box::pin(inner.call(request));
        }
        let auth = self.auth.clone();
        Box::pin(async move {
            if let Some(value) = request.headers().get(http::header::AUTHORIZATION) {
                let verified = match value.to_str() {
                    Ok(value) => auth.verify_header_fetching(value).await,
                    Err(_) => Err(AuthError::Malformed),
                };
                match verified {
                    Ok(caller) => {
                        request.extensions_mut().insert::<Caller>(caller);
                    }
                    Err(e) => return Ok(Status::unauthenticated(e.to_string()).into_http()),
                }
            }
            inner.call(request).await
        })
    }
}
