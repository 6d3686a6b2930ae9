//! The background runtime: a second Tokio runtime whose threads run at a lower priority, for the
//! work no caller waits on — the outbox relays, housekeeping, event consumers and the
//! tasks services declare with [`crate::Mounted::background`].
//!
//! Why: on a busy node a thread woken by a reply waits in its core's run queue behind whatever
//! runs there. When that is a batch of background work (a sink storing decisions, a relay
//! publishing events), a request's Redis reply sat for milliseconds (`docs/fraud.md`, "Where the
//! tail is now"). At a lower priority the scheduler lets request threads go first.
//!
//! The runtime has datastore clients of its own, connected on it ([`crate::runtime`] does
//! that): Tokio drives a socket from the runtime that opened it, so a pooled connection or a
//! Redis reconnection made from a background task would otherwise have its replies read by a
//! low-priority thread on the request path.

use tokio::runtime::{Handle, Runtime};

use crate::KitError;

/// How much lower than the process's own the background threads' priority is (nice steps).
pub const NICENESS: i32 = 10;
/// The highest nice value Linux has: the least priority.
const NICE_MAX: i32 = 19;
/// The background threads' name, as `top -H` and `/proc/<pid>/task/*/comm` show it.
pub const THREAD_NAME: &str = "titan-bg";

/// The background runtime of a process; dropping it ends the runtime without waiting for what
/// still runs on it (the process's runtime waits for its background tasks first), which is
/// also what may happen inside the main runtime, where a blocking shutdown is not allowed.
#[derive(Debug)]
pub struct BackgroundRuntime {
    handle: Handle,
    /// Always `Some` until dropped.
    runtime: Option<Runtime>,
}

impl BackgroundRuntime {
    /// As many workers as the process may use cores, so one long job does not hold every
    /// other background task.
    pub fn start() -> Result<Self, KitError> {
        let workers = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name(THREAD_NAME)
            .on_thread_start(lower_priority)
            .enable_all()
            .build()
            .map_err(|e| KitError::Io {
                what: "background runtime".into(),
                source: e,
            })?;
        Ok(Self {
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
        })
    }

    pub fn handle(&self) -> &Handle {
        &self.handle
    }
}

impl Drop for BackgroundRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Lowers the calling thread's priority by [`NICENESS`] (Linux keeps a nice value per thread).
/// A thread that cannot runs at the process's priority, which is only slower for requests.
fn lower_priority() {
    let lowered = rustix::process::getpriority_process(None).and_then(|nice| {
        rustix::process::setpriority_process(None, (nice + NICENESS).min(NICE_MAX))
    });
    if let Err(e) = lowered {
        tracing::warn!(error = %e, "cannot lower a background thread's priority; it runs at the process's");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn its_threads_are_named_and_lower_their_priority_by_ten_steps() {
        let own = rustix::process::getpriority_process(None).expect("own priority");
        let background = BackgroundRuntime::start().expect("start");
        let (name, nice) = background.handle().block_on(async {
            tokio::spawn(async {
                (
                    std::thread::current().name().map(str::to_owned),
                    rustix::process::getpriority_process(None).expect("priority"),
                )
            })
            .await
            .expect("join")
        });
        drop(background);
        assert_eq!(name.as_deref(), Some(THREAD_NAME));
        assert_eq!(nice, (own + NICENESS).min(NICE_MAX));
        // The caller's own thread keeps its priority.
        assert_eq!(
            rustix::process::getpriority_process(None).expect("priority"),
            own
        );
    }
}
