//! `titan recorder`: the sidecar next to nginx in the cell's media pod. nginx records each
//! publish into the shared recording directory as `<stream id>-<unix time>.flv` (the publish
//! callback renamed the stream to its id); the recorder uploads a file once nginx finished it,
//! tells livestream where it is (`POST /rtmp/recorded`, `name` = stream id, `key` = object
//! key), and only then deletes the local file.
//!
//! - **Finished, never half-written.** nginx's RTMP module calls no hook a sidecar can hear
//!   when a recording closes, so a file counts as finished when its size and modification
//!   time stayed the same across scans for `settle` and it was last written at least `settle`
//!   ago (an encoder sends frames several times a second: a live recording grows at every
//!   scan).
//! - **Exactly once.** The object key is a function of the file (`recordings/<stream
//!   id>/<file name>`), a multipart upload only appears once complete, and before uploading
//!   the recorder asks for the object: one of the file's size is already stored (a recorder
//!   killed after its upload and before the delete), so it is not uploaded again. A recorder
//!   killed mid-upload leaves no object, and the next run uploads the file whole.
//! - **Retries.** A failed upload or report is retried with backoff (1 s doubling to 60 s);
//!   a report livestream refuses (4xx: an unknown stream) is logged and the file kept for an
//!   operator.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    time::{Duration, Instant, SystemTime},
};

use titan_kit::{
    KitError,
    objects::{ObjectError, ObjectKey, ObjectStorage},
};
use tokio_util::sync::CancellationToken;

use crate::domain::StreamId;

/// Where recordings go in the bucket.
pub const PREFIX: &str = "recordings";
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// A report to livestream gives up after this long (and is retried later).
const REPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// What the recorder is told.
#[derive(Debug, Clone)]
pub struct Options {
    /// The recording directory nginx writes into.
    pub dir: PathBuf,
    /// livestream's `/rtmp/recorded` URL.
    pub callback: String,
    /// How long a file must stay unchanged to count as finished.
    pub settle: Duration,
}

/// What became of a finished file in one scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Uploaded, reported and deleted.
    Uploaded { file: String, key: String },
    /// Already in the bucket with its size (an earlier run uploaded it): reported and deleted.
    AlreadyStored { file: String, key: String },
    /// Failed this time; tried again after a backoff.
    Retry { file: String, error: String },
    /// Kept for an operator: not a recording of a stream, or livestream refused the report.
    Kept { file: String, reason: String },
}

#[derive(Debug, Clone)]
struct Tracked {
    size: u64,
    modified: SystemTime,
    /// When the size and time were first seen as they are.
    since: Instant,
    failures: u32,
    retry_at: Option<Instant>,
    kept: bool,
}

/// The recorder's state: the files it saw and their retries.
#[derive(Debug)]
pub struct Recorder {
    options: Options,
    storage: ObjectStorage,
    http: reqwest::Client,
    files: HashMap<PathBuf, Tracked>,
}

/// The stream a recording belongs to: nginx names it `<stream name>-<unix time>.flv`, and a
/// stream id itself contains `-`, so the time is what follows the last one.
pub fn stream_of(file_name: &str) -> Option<StreamId> {
    let stem = file_name.strip_suffix(".flv")?;
    let (name, time) = stem.rsplit_once('-')?;
    if time.is_empty() || !time.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    StreamId::parse("name", name).ok()
}

fn backoff(failures: u32) -> Duration {
    FIRST_BACKOFF
        .saturating_mul(1 << failures.min(6))
        .min(MAX_BACKOFF)
}

/// Why a step failed: worth retrying, or not.
enum Failure {
    Retry(String),
    Keep(String),
}

impl From<ObjectError> for Failure {
    fn from(e: ObjectError) -> Self {
        Self::Retry(e.to_string())
    }
}

impl Recorder {
    pub fn new(options: Options, storage: ObjectStorage) -> Result<Self, KitError> {
        let http = reqwest::Client::builder()
            .timeout(REPORT_TIMEOUT)
            .build()
            .map_err(|e| KitError::Other(format!("recorder http client: {e}")))?;
        Ok(Self {
            options,
            storage,
            http,
            files: HashMap::new(),
        })
    }

    /// Scans every `interval` until `shutdown`; a scan that cannot read the directory is
    /// logged and tried again.
    pub async fn run(mut self, interval: Duration, shutdown: CancellationToken) {
        loop {
            match self.scan(Instant::now()).await {
                Ok(outcomes) => {
                    for o in outcomes {
                        match o {
                            Outcome::Uploaded { file, key } => {
                                tracing::info!(%file, %key, "recording uploaded")
                            }
                            Outcome::AlreadyStored { file, key } => {
                                tracing::info!(%file, %key, "recording was already stored")
                            }
                            Outcome::Retry { file, error } => {
                                tracing::warn!(%file, %error, "recording upload will be retried")
                            }
                            Outcome::Kept { file, reason } => {
                                tracing::error!(%file, %reason, "recording kept on disk")
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(dir = %self.options.dir.display(), error = %e, "cannot scan the recording directory")
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
            }
        }
    }

    /// One pass over the directory at `now`: notes what changed and handles each finished
    /// file whose retry is due, one after the other.
    pub async fn scan(&mut self, now: Instant) -> std::io::Result<Vec<Outcome>> {
        let mut present = Vec::new();
        let mut entries = tokio::fs::read_dir(&self.options.dir).await?;
        while let Some(entry) = entries.next_entry().await? {
            let path = entry.path();
            let meta = entry.metadata().await?;
            if !meta.is_file() || path.extension().is_none_or(|e| e != "flv") {
                continue;
            }
            let (size, modified) = (meta.len(), meta.modified()?);
            let tracked = self.files.entry(path.clone()).or_insert(Tracked {
                size,
                modified,
                since: now,
                failures: 0,
                retry_at: None,
                kept: false,
            });
            if tracked.size != size || tracked.modified != modified {
                *tracked = Tracked {
                    size,
                    modified,
                    since: now,
                    failures: 0,
                    retry_at: None,
                    kept: false,
                };
            }
            present.push(path);
        }
        // Forget files that are gone (uploaded, or removed by hand).
        self.files.retain(|path, _| present.contains(path));

        let settle = self.options.settle;
        let wall = SystemTime::now();
        let mut due: Vec<PathBuf> = self
            .files
            .iter()
            .filter(|(_, t)| {
                !t.kept
                    && now.duration_since(t.since) >= settle
                    && wall.duration_since(t.modified).unwrap_or_default() >= settle
                    && t.retry_at.is_none_or(|at| now >= at)
            })
            .map(|(path, _)| path.clone())
            .collect();
        due.sort();
        let mut outcomes = Vec::with_capacity(due.len());
        for path in due {
            outcomes.push(self.finish(&path, now).await);
        }
        Ok(outcomes)
    }

    async fn finish(&mut self, path: &Path, now: Instant) -> Outcome {
        let file = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let size = self.files.get(path).map_or(0, |t| t.size);
        let result = self.store(path, &file, size).await;
        let Some(tracked) = self.files.get_mut(path) else {
            return Outcome::Kept {
                file,
                reason: "the file vanished while it was handled".into(),
            };
        };
        match result {
            Ok(outcome) => {
                self.files.remove(path);
                outcome
            }
            Err(Failure::Retry(error)) => {
                tracked.retry_at = Some(now + backoff(tracked.failures));
                tracked.failures += 1;
                Outcome::Retry { file, error }
            }
            Err(Failure::Keep(reason)) => {
                tracked.kept = true;
                Outcome::Kept { file, reason }
            }
        }
    }

    /// Uploads `path` unless the bucket already holds it, reports it, deletes it.
    async fn store(&self, path: &Path, file: &str, size: u64) -> Result<Outcome, Failure> {
        let stream = stream_of(file).ok_or_else(|| {
            Failure::Keep(
                "not named <stream id>-<unix time>.flv, so no stream to attach it to".into(),
            )
        })?;
        let key = ObjectKey::new([PREFIX, &stream.to_string(), file])
            .map_err(|e| Failure::Keep(e.to_string()))?;
        let stored = match self.storage.head(&key).await {
            Ok(info) => info.size == size,
            Err(ObjectError::NotFound { .. }) => false,
            Err(e) => return Err(e.into()),
        };
        if !stored {
            self.storage.put_file(&key, "video/x-flv", path).await?;
        }
        self.report(stream, &key).await?;
        tokio::fs::remove_file(path)
            .await
            .map_err(|e| Failure::Retry(format!("cannot delete the uploaded file: {e}")))?;
        let (file, key) = (file.to_owned(), key.to_string());
        Ok(if stored {
            Outcome::AlreadyStored { file, key }
        } else {
            Outcome::Uploaded { file, key }
        })
    }

    async fn report(&self, stream: StreamId, key: &ObjectKey) -> Result<(), Failure> {
        let response = self
            .http
            .post(&self.options.callback)
            .form(&[("name", stream.to_string()), ("key", key.to_string())])
            .send()
            .await
            .map_err(|e| {
                Failure::Retry(format!("cannot report to {}: {e}", self.options.callback))
            })?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else if status.is_client_error() {
            let body = response.text().await.unwrap_or_default();
            Err(Failure::Keep(format!(
                "livestream refused the report ({status}): {}",
                body.trim()
            )))
        } else {
            Err(Failure::Retry(format!("livestream answered {status}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recordings_name_their_stream() {
        let id = StreamId::generate();
        assert_eq!(stream_of(&format!("{id}-1765000000.flv")), Some(id));
        for name in [
            format!("{id}.flv"),
            format!("{id}-17x.flv"),
            format!("{id}-1765000000.mp4"),
            "lsk_ab12-1765000000.flv".to_owned(),
            "-1.flv".to_owned(),
        ] {
            assert_eq!(stream_of(&name), None, "{name}");
        }
    }

    #[test]
    fn backoff_doubles_to_a_minute() {
        assert_eq!(backoff(0), Duration::from_secs(1));
        assert_eq!(backoff(3), Duration::from_secs(8));
        assert_eq!(backoff(6), Duration::from_secs(60));
        assert_eq!(backoff(40), Duration::from_secs(60));
    }
}
