//! Videocall's gRPC edge: proto ↔ domain and errors → status; nothing else.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use titan_kit::{auth, error::to_status, wire::timestamp};
use titan_proto::videocall::v1::{
    self as pb, upload_recording_request::Part, videocall_service_server::VideocallService,
};
use tonic::{Request, Response, Status as GrpcStatus, Streaming};

use crate::{
    app::{AgentDay, CallStore, RecordingView, UploadHeader, Videocall, VideocallError},
    domain::{
        Call, CallKind, InputError, Media, Status, Summary, quality::Aggregate,
        recording::Recording,
    },
};

pub const DOMAIN: &str = "videocall.titan.dev";

fn status(e: &VideocallError) -> GrpcStatus {
    to_status(DOMAIN, e)
}

pub struct Grpc<S> {
    app: Arc<Videocall<S>>,
}

impl<S> std::fmt::Debug for Grpc<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grpc").finish_non_exhaustive()
    }
}

impl<S> Grpc<S> {
    pub fn new(app: Arc<Videocall<S>>) -> Self {
        Self { app }
    }
}

fn kind_of(v: i32) -> Result<CallKind, InputError> {
    match pb::CallType::try_from(v) {
        Ok(pb::CallType::Support) => Ok(CallKind::Support),
        Ok(pb::CallType::Sales) => Ok(CallKind::Sales),
        Ok(pb::CallType::Consultation) => Ok(CallKind::Consultation),
        _ => Err(InputError::new(
            "type",
            "must be SUPPORT, SALES or CONSULTATION",
        )),
    }
}

fn media_of(v: i32) -> Result<Media, InputError> {
    match pb::Media::try_from(v) {
        Ok(pb::Media::Video) => Ok(Media::Video),
        Ok(pb::Media::Audio) => Ok(Media::Audio),
        _ => Err(InputError::new("media", "must be VIDEO or AUDIO")),
    }
}

fn status_of(s: Status) -> pb::CallStatus {
    match s {
        Status::Initiated => pb::CallStatus::Initiated,
        Status::Ringing => pb::CallStatus::Ringing,
        Status::Active => pb::CallStatus::Active,
        Status::Ended => pb::CallStatus::Ended,
        Status::Rejected => pb::CallStatus::Rejected,
        Status::Missed => pb::CallStatus::Missed,
        Status::Failed => pb::CallStatus::Failed,
    }
}

fn aggregate(a: Aggregate) -> Option<pb::Aggregate> {
    Some(pb::Aggregate {
        mean: a.mean,
        p95: a.p95,
        worst: a.worst,
    })
}

fn summary(s: &Summary) -> pb::QualitySummary {
    pb::QualitySummary {
        samples: s.samples,
        rtt_ms: aggregate(s.rtt_ms),
        packet_loss_bp: aggregate(s.packet_loss_bp),
        jitter_ms: aggregate(s.jitter_ms),
        bitrate_kbps: aggregate(s.bitrate_kbps),
        width: aggregate(s.width),
        height: aggregate(s.height),
    }
}

impl<S: CallStore> Grpc<S> {
    fn call(&self, c: &Call, quality: Option<&Summary>) -> pb::Call {
        pb::Call {
            id: c.id.to_string(),
            caller_id: c.caller_id.clone(),
            callee_id: c.callee_id.clone().unwrap_or_default(),
            r#type: match c.kind {
                CallKind::Support => pb::CallType::Support,
                CallKind::Sales => pb::CallType::Sales,
                CallKind::Consultation => pb::CallType::Consultation,
            } as i32,
            media: match c.media {
                Media::Video => pb::Media::Video,
                Media::Audio => pb::Media::Audio,
            } as i32,
            status: status_of(c.status) as i32,
            room_id: c.room_id(),
            created_at: Some(timestamp(c.created_at)),
            ringing_at: c.ringing_at.map(timestamp),
            answered_at: c.answered_at.map(timestamp),
            ended_at: c.ended_at.map(timestamp),
            end_reason: c.end_reason.clone().unwrap_or_default(),
            duration_seconds: c.duration_seconds().unwrap_or_default(),
            recording: self.app.recording(c),
            caller_consent_at: c.caller_consent_at.map(timestamp),
            callee_consent_at: c.callee_consent_at.map(timestamp),
            quality: quality.map(summary),
            recordings: vec![],
        }
    }
}

fn recording(r: &Recording, url: Option<&RecordingView>) -> pb::Recording {
    pb::Recording {
        id: r.id.to_string(),
        call_id: r.call_id.to_string(),
        uploader_id: r.uploader_id.clone(),
        content_type: r.content_type.as_str().to_owned(),
        bytes: r.bytes,
        sha256: hex::encode(r.sha256),
        created_at: Some(timestamp(r.created_at)),
        url: url.and_then(|v| v.url.clone()).unwrap_or_default(),
        url_expires_at: url.and_then(|v| v.url_expires_at).map(timestamp),
    }
}

/// The rest of an upload after its header: each message must carry `data`.
fn chunk(message: Result<pb::UploadRecordingRequest, GrpcStatus>) -> Result<Bytes, VideocallError> {
    match message {
        Ok(pb::UploadRecordingRequest {
            part: Some(Part::Data(data)),
        }) => Ok(Bytes::from(data)),
        Ok(_) => Err(InputError::new("header", "only the first message carries the header").into()),
        Err(e) => {
            Err(InputError::new("data", format!("the upload stream broke: {}", e.message())).into())
        }
    }
}

fn agent_day(d: &AgentDay) -> pb::AgentDay {
    pb::AgentDay {
        day: d.day.format("%Y-%m-%d").to_string(),
        calls: d.calls,
        answered: d.answered,
        missed: d.missed,
        rejected: d.rejected,
        answer_rate: d.answer_rate(),
        missed_rate: d.missed_rate(),
        average_wait_seconds: d.average_wait_seconds(),
        average_duration_seconds: d.average_duration_seconds(),
    }
}

#[tonic::async_trait]
impl<S: CallStore> VideocallService for Grpc<S> {
    async fn initiate_call(
        &self,
        request: Request<pb::InitiateCallRequest>,
    ) -> Result<Response<pb::InitiateCallResponse>, GrpcStatus> {
        let caller = auth::caller(&request)?;
        let r = request.into_inner();
        let kind = kind_of(r.r#type).map_err(|e| status(&e.into()))?;
        let media = media_of(r.media).map_err(|e| status(&e.into()))?;
        let (call, position) = self
            .app
            .initiate(&caller, &r.request_id, &r.callee_id, kind, media)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(pb::InitiateCallResponse {
            call: Some(self.call(&call, None)),
            queue_position: position,
        }))
    }

    async fn take_next_call(
        &self,
        request: Request<pb::TakeNextCallRequest>,
    ) -> Result<Response<pb::TakeNextCallResponse>, GrpcStatus> {
        let caller = auth::caller(&request)?;
        let r = request.into_inner();
        let call = self
            .app
            .take_next(&caller, &r.request_id)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(pb::TakeNextCallResponse {
            call: call.map(|c| self.call(&c, None)),
        }))
    }

    async fn answer_call(
        &self,
        request: Request<pb::AnswerCallRequest>,
    ) -> Result<Response<pb::AnswerCallResponse>, GrpcStatus> {
        let caller = auth::caller(&request)?;
        let r = request.into_inner();
        let call = self
            .app
            .answer(&caller, &r.request_id, &r.call_id)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(pb::AnswerCallResponse {
            call: Some(self.call(&call, None)),
        }))
    }

    async fn reject_call(
        &self,
        request: Request<pb::RejectCallRequest>,
    ) -> Result<Response<pb::RejectCallResponse>, GrpcStatus> {
        let caller = auth::caller(&request)?;
        let r = request.into_inner();
        let call = self
            .app
            .reject(&caller, &r.request_id, &r.call_id)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(pb::RejectCallResponse {
            call: Some(self.call(&call, None)),
        }))
    }

    async fn end_call(
        &self,
        request: Request<pb::EndCallRequest>,
    ) -> Result<Response<pb::EndCallResponse>, GrpcStatus> {
        let caller = auth::caller(&request)?;
        let r = request.into_inner();
        let call = self
            .app
            .end(&caller, &r.request_id, &r.call_id)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(pb::EndCallResponse {
            call: Some(self.call(&call, None)),
        }))
    }

    async fn fail_call(
        &self,
        request: Request<pb::FailCallRequest>,
    ) -> Result<Response<pb::FailCallResponse>, GrpcStatus> {
        let caller = auth::caller(&request)?;
        let r = request.into_inner();
        let call = self
            .app
            .fail(&caller, &r.request_id, &r.call_id, &r.reason)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(pb::FailCallResponse {
            call: Some(self.call(&call, None)),
        }))
    }

    async fn get_call(
        &self,
        request: Request<pb::GetCallRequest>,
    ) -> Result<Response<pb::GetCallResponse>, GrpcStatus> {
        let caller = auth::caller(&request)?;
        let r = request.into_inner();
        let (call, quality) = self
            .app
            .get(&caller, &r.call_id)
            .await
            .map_err(|e| status(&e))?;
        let recordings = self
            .app
            .recordings(&caller, &call)
            .await
            .map_err(|e| status(&e))?;
        let mut shown = self.call(&call, Some(&quality));
        shown.recordings = recordings
            .iter()
            .map(|v| recording(&v.recording, Some(v)))
            .collect();
        Ok(Response::new(pb::GetCallResponse { call: Some(shown) }))
    }

    async fn get_ice_servers(
        &self,
        request: Request<pb::GetIceServersRequest>,
    ) -> Result<Response<pb::GetIceServersResponse>, GrpcStatus> {
        let caller = auth::caller(&request)?;
        let r = request.into_inner();
        let ice = self
            .app
            .ice_servers(&caller, &r.call_id)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(pb::GetIceServersResponse {
            ice_servers: ice
                .servers
                .into_iter()
                .map(|s| pb::IceServer {
                    urls: s.urls,
                    username: s.username.unwrap_or_default(),
                    credential: s.credential.unwrap_or_default(),
                })
                .collect(),
            expires_at: Some(timestamp(ice.expires_at)),
        }))
    }

    async fn report_quality(
        &self,
        request: Request<pb::ReportQualityRequest>,
    ) -> Result<Response<pb::ReportQualityResponse>, GrpcStatus> {
        let caller = auth::caller(&request)?;
        let r = request.into_inner();
        let samples = self
            .app
            .report_quality(
                &caller,
                &r.request_id,
                &r.call_id,
                [
                    r.rtt_ms,
                    r.packet_loss_bp,
                    r.jitter_ms,
                    r.bitrate_kbps,
                    r.width,
                    r.height,
                ],
            )
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(pb::ReportQualityResponse { samples }))
    }

    async fn set_recording_consent(
        &self,
        request: Request<pb::SetRecordingConsentRequest>,
    ) -> Result<Response<pb::SetRecordingConsentResponse>, GrpcStatus> {
        let caller = auth::caller(&request)?;
        let r = request.into_inner();
        let call = self
            .app
            .consent(&caller, &r.request_id, &r.call_id, r.consent)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(pb::SetRecordingConsentResponse {
            call: Some(self.call(&call, None)),
        }))
    }

    async fn upload_recording(
        &self,
        request: Request<Streaming<pb::UploadRecordingRequest>>,
    ) -> Result<Response<pb::UploadRecordingResponse>, GrpcStatus> {
        let caller = auth::caller(&request)?;
        let mut messages = request.into_inner();
        let header = match messages.next().await {
            Some(Ok(pb::UploadRecordingRequest {
                part: Some(Part::Header(h)),
            })) => h,
            Some(Err(e)) => return Err(e),
            _ => {
                let e = InputError::new("header", "the first message must carry the header");
                return Err(status(&e.into()));
            }
        };
        let stored = self
            .app
            .upload_recording(
                &caller,
                UploadHeader {
                    request_id: header.request_id,
                    call_id: header.call_id,
                    content_type: header.content_type,
                },
                messages.map(chunk),
            )
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(pb::UploadRecordingResponse {
            recording: Some(recording(&stored, None)),
        }))
    }

    async fn list_call_history(
        &self,
        request: Request<pb::ListCallHistoryRequest>,
    ) -> Result<Response<pb::ListCallHistoryResponse>, GrpcStatus> {
        let caller = auth::caller(&request)?;
        let r = request.into_inner();
        let (calls, next) = self
            .app
            .history(&caller, &r.agent_id, r.page_size, &r.page_token)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(pb::ListCallHistoryResponse {
            calls: calls.iter().map(|c| self.call(c, None)).collect(),
            next_page_token: next.map(|id| id.to_string()).unwrap_or_default(),
        }))
    }

    async fn get_agent_analytics(
        &self,
        request: Request<pb::GetAgentAnalyticsRequest>,
    ) -> Result<Response<pb::GetAgentAnalyticsResponse>, GrpcStatus> {
        let caller = auth::caller(&request)?;
        let r = request.into_inner();
        let days = self
            .app
            .agent_analytics(&caller, &r.agent_id, &r.from_day, &r.to_day)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(pb::GetAgentAnalyticsResponse {
            days: days.iter().map(agent_day).collect(),
        }))
    }
}
