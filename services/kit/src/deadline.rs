//! Per-RPC deadlines for the gRPC server: a call that has not answered within the client's
//! `grpc-timeout` or the server's `requestTimeoutSeconds` (whichever is shorter) is answered
//! `DeadlineExceeded` and its handler dropped, so no call holds a connection, a permit of the
//! concurrency limit or a database transaction for longer than anyone waits for it.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

/// Bounds every call by `max` and by the client's own deadline.
#[derive(Debug, Clone, Copy)]
pub struct DeadlineLayer {
    max: Duration,
}

impl DeadlineLayer {
    pub fn new(max: Duration) -> Self {
        Self { max }
    }
}

impl<S> Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Deadline {
            inner,
            max: self.max,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Deadline<S> {
    inner: S,
    max: Duration,
}

/// The `grpc-timeout` header: up to 8 digits and a unit (H, M, S, m, u, n).
fn client_timeout<B>(request: &Request<B>) -> Option<Duration> {
    let value = request.headers().get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.checked_mul(3600)?),
        "M" => Duration::from_secs(n.checked_mul(60)?),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

impl<S, B, ResBody> Service<Request<B>> for Deadline<S>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Send,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let limit = client_timeout(&request).map_or(self.max, |c| c.min(self.max));
        let future = self.inner.call(request);
        Box::pin(async move {
            match tokio::time::timeout(limit, future).await {
                Ok(response) => response,
                Err(_) => Ok(tonic::Status::deadline_exceeded(format!(
                    "no answer within {} ms",
                    limit.as_millis()
                ))
                .into_http()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use tower::ServiceExt;

    use super::*;

    fn status(response: &Response<String>) -> Option<&str> {
        response
            .headers()
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
    }

    /// A handler that never answers, and one that answers at once.
    fn hanging()
    -> impl Service<
        Request<()>,
        Response = Response<String>,
        Error = Infallible,
        Future: Send + 'static,
    > + Send {
        tower::service_fn(|_: Request<()>| {
            std::future::pending::<Result<Response<String>, Infallible>>()
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_past_its_deadline_is_answered_deadline_exceeded() {
        let server = DeadlineLayer::new(Duration::from_secs(30));
        let answer = server
            .layer(hanging())
            .oneshot(Request::new(()))
            .await
            .expect("answered");
        assert_eq!(status(&answer), Some("4"), "DEADLINE_EXCEEDED");

        // The client's shorter deadline wins: 250 ms of (paused, auto-advanced) time, not 30 s.
        let started = tokio::time::Instant::now();
        let mut request = Request::new(());
        request
            .headers_mut()
            .insert("grpc-timeout", http::HeaderValue::from_static("250m"));
        let answer = server
            .layer(hanging())
            .oneshot(request)
            .await
            .expect("answered");
        assert_eq!(status(&answer), Some("4"));
        assert_eq!(started.elapsed(), Duration::from_millis(250));

        let quick = server
            .layer(tower::service_fn(|_: Request<()>| async {
                Ok::<_, Infallible>(Response::new("served".to_owned()))
            }))
            .oneshot(Request::new(()))
            .await
            .expect("answered");
        assert_eq!((status(&quick), quick.body().as_str()), (None, "served"));
    }

    #[test]
    fn grpc_timeout_headers_are_parsed() {
        let with = |v: &'static str| {
            let mut r = Request::new(());
            r.headers_mut()
                .insert("grpc-timeout", http::HeaderValue::from_static(v));
            client_timeout(&r)
        };
        assert_eq!(with("2S"), Some(Duration::from_secs(2)));
        assert_eq!(with("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(with("1500m"), Some(Duration::from_millis(1500)));
        assert_eq!(with("10u"), Some(Duration::from_micros(10)));
        assert_eq!(with("123456789S"), None, "more than 8 digits");
        assert_eq!(with("5x"), None);
        assert_eq!(with("S"), None);
    }
}
