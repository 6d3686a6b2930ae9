//! The abtesting service's `Assign` over gRPC, called with a service token this service mints
//! from the cell's token secret (role `service`, so abtesting logs the exposure): each
//! recipient of a campaign with variants gets the variant the experiment assigns, and the
//! experiment's exposures — and so its results — hold the campaign's recipients.

use std::time::Duration;

use prost_types::{Struct, Value, value::Kind};
use titan_kit::{
    auth::Authenticator,
    telemetry::{TracedChannel, traced},
};
use titan_proto::abtesting::v1::{self as pb, ab_testing_service_client::AbTestingServiceClient};
use tonic::{Request, transport::Endpoint};

use crate::domain::SERVICE;

/// A service token lives this long; one is minted per call (an HMAC, cheap).
const TOKEN_TTL: Duration = Duration::from_secs(300);
/// An Assign not answered by then failed (and is retried).
const ASSIGN_TIMEOUT: Duration = Duration::from_secs(5);

/// A client of the cell's abtesting service.
#[derive(Clone)]
pub struct Experiments {
    /// Traced: an assignment continues the trace of the send that asked for it.
    client: AbTestingServiceClient<TracedChannel>,
    auth: Authenticator,
}

impl std::fmt::Debug for Experiments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Experiments").finish_non_exhaustive()
    }
}

/// Why no variant was assigned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssignError {
    /// Unreachable, timed out or unavailable: worth retrying.
    #[error("abtesting assign: {0}")]
    Retry(String),
    /// Refused (no such experiment, say): retrying would not help.
    #[error("abtesting assign refused: {0}")]
    Refused(String),
}

impl Experiments {
    /// A client of `endpoint` (connected on first use; `kit::tls::endpoint` gives it, TLS
    /// when the URL is https); tokens are minted with `auth`.
    pub fn new(endpoint: Endpoint, auth: Authenticator) -> Self {
        let channel = endpoint.timeout(ASSIGN_TIMEOUT).connect_lazy();
        Self {
            client: AbTestingServiceClient::new(traced(channel)),
            auth,
        }
    }

    /// The variant key `experiment` assigns `user` (hashed on its `id` attribute; the control
    /// when the user is outside the experiment).
    pub async fn assign(&self, experiment: &str, user: &str) -> Result<String, AssignError> {
        let token = self
            .auth
            .mint(SERVICE, &["service".to_owned()], TOKEN_TTL)
            .map_err(|e| AssignError::Refused(format!("cannot mint a service token: {e}")))?;
        let mut request = Request::new(pb::AssignRequest {
            experiment_key: experiment.to_owned(),
            attributes: Some(Struct {
                fields: [(
                    "id".to_owned(),
                    Value {
                        kind: Some(Kind::StringValue(user.to_owned())),
                    },
                )]
                .into(),
            }),
        });
        let header = format!("Bearer {token}")
            .parse()
            .map_err(|_| AssignError::Refused("the service token is not a header value".into()))?;
        request.metadata_mut().insert("authorization", header);
        let answer = self.client.clone().assign(request).await.map_err(|s| {
            use tonic::Code;
            let what = format!("{:?}: {}", s.code(), s.message());
            match s.code() {
                Code::Unavailable
                | Code::DeadlineExceeded
                | Code::ResourceExhausted
                | Code::Aborted
                | Code::Internal
                | Code::Unknown => AssignError::Retry(what),
                _ => AssignError::Refused(what),
            }
        })?;
        answer
            .into_inner()
            .assignment
            .map(|a| a.variation_key)
            .ok_or_else(|| AssignError::Refused("the answer holds no assignment".into()))
    }
}
