//! Errors of a reconcile round, each with a stable reason used in Events and in the
//! `titan_operator_reconcile_errors_total{reason}` metric.

/// Why a reconcile round failed; the round is retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server refused or failed a request.
    #[error("{verb} {kind} {name}: {source}")]
    Api {
        /// What the operator was doing (`apply`, `list`, `delete`, `get`, `patch status`).
        verb: &'static str,
        /// Kind of the object.
        kind: String,
        /// Name of the object (or the namespace for a list).
        name: String,
        /// The client's error (boxed: it is large and errors travel in every `Result`).
        #[source]
        source: Box<kube::Error>,
    },
    /// An object could not be turned into JSON for applying.
    #[error("cannot serialize {kind} {name}: {source}")]
    Serialize {
        /// Kind of the object.
        kind: String,
        /// Name of the object.
        name: String,
        /// The serializer's error.
        #[source]
        source: serde_json::Error,
    },
    /// The object being reconciled has no name (never true of objects from the API server).
    #[error("{kind} has no name")]
    Unnamed {
        /// Kind of the object.
        kind: String,
    },
    /// kube-runtime refused the finalizer's name (it is not a valid JSON pointer segment).
    #[error("{kind} {name}: the finalizer name cannot be patched")]
    InvalidFinalizer {
        /// Kind of the object.
        kind: String,
        /// Name of the object.
        name: String,
    },
    /// A Fleet's spec holds a duration the planner cannot read (only possible for an object
    /// that bypassed the CRD's schema); retrying cannot help until it is edited.
    #[error("fleet {name}: {source}")]
    InvalidFleet {
        /// Name of the Fleet.
        name: String,
        /// The field and its value.
        #[source]
        source: titan_crds::fleet::InvalidDuration,
    },
    /// A cell's CA or its services' certificate could not be made (the key generator or the
    /// encoder failed; nothing a spec can cause).
    #[error("cell {cell}: cannot make its TLS certificate: {source}")]
    Certificate {
        /// Name of the Cell.
        cell: String,
        /// rcgen's error.
        #[source]
        source: rcgen::Error,
    },
    /// A watch cache's writer is gone (its controller stopped): the operator is shutting down.
    #[error("the watch caches stopped: the operator is shutting down")]
    CacheGone,
    /// Not a failure: the round must look again later, before which it cannot go on (a
    /// teardown waiting for the services' pods to go). Retried after a short fixed pause, with
    /// no Warning Event and no error count.
    #[error("waiting for {what}")]
    Waiting {
        /// What the round waits for, as a person would say it.
        what: String,
        /// When to look again.
        after: std::time::Duration,
    },
}

impl Error {
    /// A stable, CamelCase reason for Events and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Api { source, .. } => match source.as_ref() {
                kube::Error::Api(status) if status.code == 409 => "ApiConflict",
                kube::Error::Api(status) if status.code == 403 => "ApiForbidden",
                kube::Error::Api(status) if status.code == 422 => "ApiInvalid",
                kube::Error::Api(_) => "ApiError",
                // The server answered, but with an object of a schema this operator does not
                // know (a newer CRD): retrying the connection cannot help, a person must look.
                kube::Error::SerdeError(_) => "MalformedObject",
                _ => "ApiUnavailable",
            },
            Error::Serialize { .. } => "SerializeFailed",
            Error::Unnamed { .. } => "Unnamed",
            Error::InvalidFinalizer { .. } => "InvalidFinalizer",
            Error::InvalidFleet { .. } => "InvalidFleet",
            Error::Certificate { .. } => "CertificateFailed",
            Error::CacheGone => "CacheGone",
            Error::Waiting { .. } => "Waiting",
        }
    }

    /// Whether the round only waits (see [`Error::Waiting`]) rather than failed.
    pub fn waiting(&self) -> Option<std::time::Duration> {
        match self {
            Error::Waiting { after, .. } => Some(*after),
            _ => None,
        }
    }

    /// Unwraps the error of kube-runtime's `finalizer()` helper: the round's own error as it
    /// was, the helper's patches of `metadata.finalizers` as API errors of the object.
    pub fn from_finalizer(
        kind: &str,
        name: &str,
    ) -> impl FnOnce(kube::runtime::finalizer::Error<Error>) -> Error {
        let (kind, name) = (kind.to_string(), name.to_string());
        move |error| {
            use kube::runtime::finalizer::Error as Finalizer;
            match error {
                Finalizer::ApplyFailed(error) | Finalizer::CleanupFailed(error) => error,
                Finalizer::AddFinalizer(source) => Error::api("add finalizer", kind, name)(source),
                Finalizer::RemoveFinalizer(source) => {
                    Error::api("remove finalizer", kind, name)(source)
                }
                Finalizer::UnnamedObject => Error::Unnamed { kind },
                Finalizer::InvalidFinalizer => Error::InvalidFinalizer { kind, name },
            }
        }
    }

    /// Wraps a client error with what was being done.
    pub fn api(
        verb: &'static str,
        kind: impl Into<String>,
        name: impl Into<String>,
    ) -> impl FnOnce(kube::Error) -> Error {
        let (kind, name) = (kind.into(), name.into());
        move |source| Error::Api {
            verb,
            kind,
            name,
            source: Box::new(source),
        }
    }
}
