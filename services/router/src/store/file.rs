//! The table from a file, read at start and again every poll period; the text is decoded only
//! when it differs from the last read, so an unchanged file costs one read per period.

use std::{path::PathBuf, sync::Arc, time::Duration};

use titan_kit::KitError;
use tokio_util::sync::CancellationToken;

use crate::app::Router;

/// Follows `path` until `shutdown`.
#[derive(Debug)]
pub struct FileSource {
    path: PathBuf,
    router: Arc<Router>,
    /// The last text read and the last read error, so each is acted on once.
    last: Option<Result<String, String>>,
}

impl FileSource {
    pub fn new(path: PathBuf, router: Arc<Router>) -> Self {
        Self {
            path,
            router,
            last: None,
        }
    }

    /// Reads the file once; a new text goes to the router, a new read error to the log and
    /// the failure counter.
    pub async fn poll(&mut self) {
        let read = tokio::fs::read_to_string(&self.path)
            .await
            .map_err(|e| e.to_string());
        if self.last.as_ref() == Some(&read) {
            return;
        }
        let origin = self.path.display().to_string();
        match &read {
            // The router logs and counts refusals itself.
            Ok(text) => drop(self.router.reload(text, &origin)),
            Err(e) => self.router.refused(
                "source",
                &KitError::Other(format!("reading the table file {origin}: {e}")),
            ),
        }
        self.last = Some(read);
    }

    /// Polls every `period` until `shutdown`.
    pub async fn run(
        mut self,
        period: Duration,
        shutdown: CancellationToken,
    ) -> Result<(), KitError> {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                _ = tick.tick() => self.poll().await,
            }
        }
    }
}
