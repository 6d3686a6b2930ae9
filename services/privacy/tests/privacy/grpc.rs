//! The gRPC edge: only the privacy and admin roles, bad input named, unknown jobs NotFound.

use titan_kit::{auth::Caller, error::reason_of, testing::caller};
use titan_privacy::grpc;
use titan_proto::privacy::v1::{
    self as pb, JobKind, JobState, TaskState, privacy_service_server::PrivacyService,
};
use tonic::{Code, Request};

use crate::{Fake, LONG, World, officer, user};

fn as_caller<T>(caller: Caller, body: T) -> Request<T> {
    let mut r = Request::new(body);
    r.extensions_mut().insert(caller);
    r
}

#[tokio::test]
async fn only_the_privacy_and_admin_roles_start_and_read_jobs() {
    let w = World::new().await;
    let _replica = w.participant("orders", &Fake::with(&[]), LONG).await;
    let server = grpc::Grpc::new(w.app.clone());
    let alice = user();
    let body = || pb::RequestErasureRequest {
        request_id: "r-1".into(),
        user_id: alice.clone(),
    };

    // The person alone (a buyer's token) cannot erase anyone, not even themselves.
    let denied = server
        .request_erasure(as_caller(caller(&alice, &[]), body()))
        .await
        .expect_err("a buyer");
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert_eq!(
        denied.message(),
        format!(
            "this call needs one of the roles [\"privacy\", \"admin\"]; the token of user {alice} has []"
        )
    );

    let job = server
        .request_erasure(as_caller(officer(), body()))
        .await
        .expect("an officer")
        .into_inner();
    assert_eq!(
        (
            job.kind,
            job.state,
            job.subject.as_str(),
            job.requested_by.as_str()
        ),
        (
            JobKind::Erasure as i32,
            JobState::Running as i32,
            alice.as_str(),
            "dpo-1"
        )
    );
    assert_eq!(
        job.services
            .iter()
            .map(|s| (s.service.as_str(), s.state))
            .collect::<Vec<_>>(),
        vec![("orders", TaskState::Pending as i32)]
    );
    let read = server
        .get_job(as_caller(
            caller("root", &["admin"]),
            pb::GetJobRequest {
                job_id: job.job_id.clone(),
            },
        ))
        .await
        .expect("an admin reads it")
        .into_inner();
    assert_eq!(read.job_id, job.job_id);
    let denied = server
        .get_job(as_caller(
            caller("svc", &["service"]),
            pb::GetJobRequest { job_id: job.job_id },
        ))
        .await
        .expect_err("a service identity");
    assert_eq!(denied.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn bad_input_is_invalid_argument_naming_the_field_and_an_unknown_job_not_found() {
    let w = World::new().await;
    let _replica = w.participant("orders", &Fake::with(&[]), LONG).await;
    let server = grpc::Grpc::new(w.app.clone());

    let err = server
        .request_export(as_caller(
            officer(),
            pb::RequestExportRequest {
                request_id: "r-1".into(),
                user_id: String::new(),
            },
        ))
        .await
        .expect_err("no user");
    assert_eq!(
        (err.code(), err.message()),
        (Code::InvalidArgument, "user_id: is required")
    );
    let err = server
        .request_export(as_caller(
            officer(),
            pb::RequestExportRequest {
                request_id: String::new(),
                user_id: user(),
            },
        ))
        .await
        .expect_err("no request id");
    assert_eq!(err.code(), Code::InvalidArgument);

    let err = server
        .get_job(as_caller(
            officer(),
            pb::GetJobRequest {
                job_id: "job-1".into(),
            },
        ))
        .await
        .expect_err("not a uuid");
    assert_eq!(
        (err.code(), err.message()),
        (Code::InvalidArgument, "job_id: \"job-1\" is not a UUID")
    );
    let missing = uuid::Uuid::now_v7();
    let err = server
        .get_job(as_caller(
            officer(),
            pb::GetJobRequest {
                job_id: missing.to_string(),
            },
        ))
        .await
        .expect_err("unknown");
    assert_eq!(
        (err.code(), err.message().to_owned(), reason_of(&err)),
        (
            Code::NotFound,
            format!("privacy job {missing} not found"),
            Some("JOB_NOT_FOUND".to_owned())
        )
    );
}
