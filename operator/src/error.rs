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
                _ => "ApiUnavailable",
            },
            Error::Serialize { .. } => "SerializeFailed",
            Error::Unnamed { .. } => "Unnamed",
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
