//! Load shedding for the gRPC server: at most `max` calls are served at once, and a call
//! beyond that is answered `ResourceExhausted` at once instead of queueing. A queue only adds
//! latency until every caller's deadline has passed; an immediate refusal lets clients back
//! off or go to another replica while the calls in flight finish in time.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use http::{Request, Response};
use tokio::sync::Semaphore;
use tower_layer::Layer;
use tower_service::Service;

/// Caps the calls in flight across every service of the server.
#[derive(Debug, Clone)]
pub struct ConcurrencyLimitLayer {
    permits: Arc<Semaphore>,
    max: usize,
}

impl ConcurrencyLimitLayer {
    pub fn new(max: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max)),
            max,
        }
    }
}

impl<S> Layer<S> for ConcurrencyLimitLayer {
    type Service = ConcurrencyLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ConcurrencyLimit {
            inner,
            permits: self.permits.clone(),
            max: self.max,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ConcurrencyLimit<S> {
    inner: S,
    permits: Arc<Semaphore>,
    max: usize,
}

impl<S, B, ResBody> Service<Request<B>> for ConcurrencyLimit<S>
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
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            let status = tonic::Status::resource_exhausted(format!(
                "server busy: {} calls in flight; retry with backoff",
                self.max
            ));
            return Box::pin(async move { Ok(status.into_http()) });
        };
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = future.await;
            // Held until the handler answered (for a stream: until it started).
            drop(permit);
            response
        })
    }
}

#[cfg(test)]
mod tests {
    use std::{convert::Infallible, sync::Mutex};

    use tokio::sync::oneshot;
    use tower::ServiceExt;

    use super::*;

    type Gates = Arc<Mutex<Vec<oneshot::Sender<()>>>>;

    fn grpc_status(response: &Response<String>) -> Option<&str> {
        response
            .headers()
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
    }

    /// Polls `done` until it holds, for at most 5 s.
    async fn wait_until(done: impl Fn() -> bool) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        while !done() {
            assert!(tokio::time::Instant::now() < deadline, "timed out");
            tokio::task::yield_now().await;
        }
    }

    fn open_all(gates: &Gates) {
        for gate in gates.lock().expect("gates").drain(..) {
            let _ = gate.send(());
        }
    }

    #[tokio::test]
    async fn calls_beyond_the_limit_are_shed_at_once() {
        // A handler that answers each call when the test opens its gate.
        let gates: Gates = Arc::default();
        let inner = tower::service_fn({
            let gates = gates.clone();
            move |_: Request<()>| {
                let (open, wait) = oneshot::channel();
                gates.lock().expect("gates").push(open);
                async move {
                    let _ = wait.await;
                    Ok::<_, Infallible>(Response::new("served".to_owned()))
                }
            }
        });
        let limited = ConcurrencyLimitLayer::new(2).layer(inner);
        let first = tokio::spawn(limited.clone().oneshot(Request::new(())));
        let second = tokio::spawn(limited.clone().oneshot(Request::new(())));
        wait_until(|| gates.lock().expect("gates").len() == 2).await;

        let shed = limited
            .clone()
            .oneshot(Request::new(()))
            .await
            .expect("answered");
        assert_eq!(grpc_status(&shed), Some("8"), "RESOURCE_EXHAUSTED");
        assert_eq!(
            gates.lock().expect("gates").len(),
            2,
            "never reached the handler"
        );

        open_all(&gates);
        for call in [first, second] {
            let served = call.await.expect("join").expect("served");
            assert_eq!(served.body(), "served");
        }
        // The permits are back: the next call is served.
        let next = tokio::spawn(limited.oneshot(Request::new(())));
        wait_until(|| gates.lock().expect("gates").len() == 1).await;
        open_all(&gates);
        assert_eq!(next.await.expect("join").expect("served").body(), "served");
    }
}
