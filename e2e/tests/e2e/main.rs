//! End to end: the real `titan` binary as a process, on the real PostgreSQL and Redis servers
//! that `cargo xtask test` starts, driven by real gRPC and HTTP clients.

mod events;
mod flashsale;
mod serving;

use std::time::Duration;

/// Polls `check` until it yields a value, failing after a generous deadline.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
