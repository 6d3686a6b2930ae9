//! The privacy service's gRPC edge: the caller's role, proto ↔ domain, errors → status.

use titan_kit::{auth, error::to_status, wire::timestamp};
use titan_proto::privacy::v1::{
    GetJobRequest, Job as JobMessage, JobKind as KindMessage, JobState as StateMessage,
    RequestErasureRequest, RequestExportRequest, ServiceTask, TaskState,
    privacy_service_server::{PrivacyService, PrivacyServiceServer},
};
use tonic::{Request, Response, Status};

use crate::{
    app::{JobView, Privacy, PrivacyStore},
    domain::{JobKind, JobState},
};

const DOMAIN: &str = "privacy.titan.dev";

/// Who may start and read privacy jobs: a data-protection officer's tooling (`privacy`) or an
/// administrator. A person asks through them, who check who is asking; a token of the person
/// alone cannot erase or export, so a stolen session cannot take the whole account's data.
const ROLES: &[&str] = &["privacy", "admin"];

pub fn server<S: PrivacyStore>(app: Privacy<S>) -> PrivacyServiceServer<Grpc<S>> {
    PrivacyServiceServer::new(Grpc::new(app))
}

#[derive(Debug)]
pub struct Grpc<S> {
    app: Privacy<S>,
}

impl<S: PrivacyStore> Grpc<S> {
    pub fn new(app: Privacy<S>) -> Self {
        Self { app }
    }

    async fn request(
        &self,
        caller: &auth::Caller,
        kind: JobKind,
        request_id: &str,
        user_id: &str,
    ) -> Result<Response<JobMessage>, Status> {
        let view = self
            .app
            .request(caller, kind, request_id, user_id)
            .await
            .map_err(|e| to_status(DOMAIN, &e))?;
        Ok(Response::new(message(view)))
    }
}

#[tonic::async_trait]
impl<S: PrivacyStore> PrivacyService for Grpc<S> {
    async fn request_export(
        &self,
        request: Request<RequestExportRequest>,
    ) -> Result<Response<JobMessage>, Status> {
        let caller = auth::caller(&request)?;
        caller.require_any_role(ROLES)?;
        let body = request.get_ref();
        self.request(&caller, JobKind::Export, &body.request_id, &body.user_id)
            .await
    }

    async fn request_erasure(
        &self,
        request: Request<RequestErasureRequest>,
    ) -> Result<Response<JobMessage>, Status> {
        let caller = auth::caller(&request)?;
        caller.require_any_role(ROLES)?;
        let body = request.get_ref();
        self.request(&caller, JobKind::Erasure, &body.request_id, &body.user_id)
            .await
    }

    async fn get_job(
        &self,
        request: Request<GetJobRequest>,
    ) -> Result<Response<JobMessage>, Status> {
        let caller = auth::caller(&request)?;
        caller.require_any_role(ROLES)?;
        let view = self
            .app
            .get(&request.get_ref().job_id)
            .await
            .map_err(|e| to_status(DOMAIN, &e))?;
        Ok(Response::new(message(view)))
    }
}

fn message(view: JobView) -> JobMessage {
    let JobView { job, export_url } = view;
    let (export_url, export_url_expires_at) = match export_url {
        Some((url, until)) => (url, Some(timestamp(until))),
        None => (String::new(), None),
    };
    JobMessage {
        job_id: job.id.to_string(),
        kind: match job.kind {
            JobKind::Export => KindMessage::Export,
            JobKind::Erasure => KindMessage::Erasure,
        } as i32,
        state: match job.state {
            JobState::Running => StateMessage::Running,
            JobState::Completed => StateMessage::Completed,
            JobState::Expired => StateMessage::Expired,
        } as i32,
        subject: job.subject,
        requested_by: job.requested_by,
        created_at: Some(timestamp(job.created_at)),
        completed_at: job.completed_at.map(timestamp),
        services: job
            .tasks
            .into_iter()
            .map(|task| {
                let report = task.report.unwrap_or_default();
                ServiceTask {
                    service: task.service,
                    state: if task.done {
                        TaskState::Done
                    } else {
                        TaskState::Pending
                    } as i32,
                    attempts: task.attempts,
                    last_error: task.last_error.unwrap_or_default(),
                    finished_at: task.finished_at.map(timestamp),
                    removed: report.removed.into_iter().collect(),
                    pseudonymised: report.pseudonymised.into_iter().collect(),
                }
            })
            .collect(),
        export_url,
        export_url_expires_at,
    }
}
