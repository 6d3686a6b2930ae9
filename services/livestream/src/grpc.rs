//! Livestream's gRPC edge: proto ↔ domain and errors → status; nothing else.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use titan_kit::{auth, error::to_status, wire};
use titan_proto::livestream::v1::{self as pb, livestream_service_server::LivestreamService};
use tonic::{Request, Response, Status};

use crate::{
    app::{Livestream, LivestreamError, PurchaseInput, StreamStore},
    domain::{
        self, Comment, InputError, Stream, ViewerStats, analytics::StreamAnalytics,
        viewers::Reaction,
    },
};

pub const DOMAIN: &str = "livestream.titan.dev";

fn status(e: &LivestreamError) -> Status {
    to_status(DOMAIN, e)
}

fn invalid(e: InputError) -> Status {
    status(&e.into())
}

pub struct Grpc<S> {
    app: Arc<Livestream<S>>,
    hls_base: Option<String>,
}

impl<S> std::fmt::Debug for Grpc<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grpc").finish_non_exhaustive()
    }
}

impl<S: StreamStore> Grpc<S> {
    pub fn new(app: Arc<Livestream<S>>) -> Self {
        let hls_base = app.settings().hls_base_url.clone();
        Self { app, hls_base }
    }

    fn stream(&self, s: &Stream) -> pb::Stream {
        stream(s, self.hls_base.as_deref())
    }
}

fn status_of(s: domain::Status) -> pb::StreamStatus {
    match s {
        domain::Status::Scheduled => pb::StreamStatus::Scheduled,
        domain::Status::Live => pb::StreamStatus::Live,
        domain::Status::Ended => pb::StreamStatus::Ended,
        domain::Status::Cancelled => pb::StreamStatus::Cancelled,
    }
}

/// A stream as the API shows it, with its playback URL under `hls_base`.
pub fn stream(s: &Stream, hls_base: Option<&str>) -> pb::Stream {
    pb::Stream {
        id: s.id.to_string(),
        seller_id: s.seller_id.clone(),
        title: s.title.clone(),
        status: status_of(s.status) as i32,
        scheduled_at: Some(wire::timestamp(s.scheduled_at)),
        started_at: s.started_at.map(wire::timestamp),
        ended_at: s.ended_at.map(wire::timestamp),
        hls_url: s.hls_url(hls_base).unwrap_or_default(),
        recording_url: s.recording_url.clone().unwrap_or_default(),
        featured_product_ids: s.featured.as_slice().to_vec(),
    }
}

fn comment(c: &Comment) -> pb::Comment {
    pb::Comment {
        id: c.id.to_string(),
        stream_id: c.stream_id.to_string(),
        user_id: c.user_id.clone(),
        text: c.text.clone(),
        created_at: Some(wire::timestamp(c.created_at)),
        pinned_at: c.pinned_at.map(wire::timestamp),
    }
}

fn stats(s: ViewerStats) -> pb::ViewerStats {
    pb::ViewerStats {
        concurrent: s.concurrent,
        peak: s.peak,
        unique: s.unique,
        likes: s.likes,
        shares: s.shares,
    }
}

fn analytics(a: StreamAnalytics) -> pb::StreamAnalytics {
    pb::StreamAnalytics {
        views: a.views,
        unique_viewers: a.unique_viewers,
        watch_minutes: a.watch_minutes,
        peak_viewers: a.peak_viewers,
        retention: a
            .retention
            .into_iter()
            .map(|p| pb::RetentionPoint {
                minute: p.minute,
                viewers: p.viewers,
                share: p.share,
            })
            .collect(),
        orders: a.orders,
        purchasers: a.purchasers,
        converted_viewers: a.converted_viewers,
        conversion: a.conversion,
        revenue: a
            .revenue
            .into_iter()
            .map(|(currency, amount_minor)| pb::Revenue {
                currency,
                amount_minor,
            })
            .collect(),
    }
}

/// An optional timestamp field: absent is `None`, out of range is refused.
fn time(field: &str, t: Option<&prost_types::Timestamp>) -> Result<Option<DateTime<Utc>>, Status> {
    t.map(|t| {
        wire::instant(t).ok_or_else(|| invalid(InputError::new(field, "is not a valid timestamp")))
    })
    .transpose()
}

fn status_filter(v: i32) -> Result<Option<domain::Status>, Status> {
    match pb::StreamStatus::try_from(v) {
        Ok(pb::StreamStatus::Unspecified) => Ok(None),
        Ok(pb::StreamStatus::Scheduled) => Ok(Some(domain::Status::Scheduled)),
        Ok(pb::StreamStatus::Live) => Ok(Some(domain::Status::Live)),
        Ok(pb::StreamStatus::Ended) => Ok(Some(domain::Status::Ended)),
        Ok(pb::StreamStatus::Cancelled) => Ok(Some(domain::Status::Cancelled)),
        Err(_) => Err(invalid(InputError::new(
            "status",
            format!("{v} is not a stream status"),
        ))),
    }
}

#[tonic::async_trait]
impl<S: StreamStore> LivestreamService for Grpc<S> {
    async fn schedule_stream(
        &self,
        request: Request<pb::ScheduleStreamRequest>,
    ) -> Result<Response<pb::ScheduleStreamResponse>, Status> {
        let caller = auth::caller(&request)?;
        let r = request.into_inner();
        let at = time("scheduled_at", r.scheduled_at.as_ref())?;
        let (s, key) = self
            .app
            .schedule(&caller, &r.request_id, &r.title, at)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(pb::ScheduleStreamResponse {
            stream: Some(self.stream(&s)),
            stream_key: key.map(|k| k.reveal().to_owned()).unwrap_or_default(),
        }))
    }

    async fn update_stream(
        &self,
        request: Request<pb::UpdateStreamRequest>,
    ) -> Result<Response<pb::UpdateStreamResponse>, Status> {
        let caller = auth::caller(&request)?;
        let r = request.into_inner();
        let at = time("scheduled_at", r.scheduled_at.as_ref())?;
        let s = self
            .app
            .update(&caller, &r.stream_id, &r.title, at)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(pb::UpdateStreamResponse {
            stream: Some(self.stream(&s)),
        }))
    }

    async fn cancel_stream(
        &self,
        request: Request<pb::CancelStreamRequest>,
    ) -> Result<Response<pb::CancelStreamResponse>, Status> {
        let caller = auth::caller(&request)?;
        let s = self
            .app
            .cancel(&caller, &request.get_ref().stream_id)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(pb::CancelStreamResponse {
            stream: Some(self.stream(&s)),
        }))
    }

    async fn rotate_stream_key(
        &self,
        request: Request<pb::RotateStreamKeyRequest>,
    ) -> Result<Response<pb::RotateStreamKeyResponse>, Status> {
        let caller = auth::caller(&request)?;
        let r = request.get_ref();
        let key = self
            .app
            .rotate(&caller, &r.request_id, &r.stream_id)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(pb::RotateStreamKeyResponse {
            stream_key: key.map(|k| k.reveal().to_owned()).unwrap_or_default(),
        }))
    }

    async fn get_stream(
        &self,
        request: Request<pb::GetStreamRequest>,
    ) -> Result<Response<pb::GetStreamResponse>, Status> {
        let s = self
            .app
            .get(&request.get_ref().stream_id)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(pb::GetStreamResponse {
            stream: Some(self.stream(&s)),
        }))
    }

    async fn list_streams(
        &self,
        request: Request<pb::ListStreamsRequest>,
    ) -> Result<Response<pb::ListStreamsResponse>, Status> {
        let r = request.get_ref();
        let (streams, next) = self
            .app
            .list(
                &r.seller_id,
                status_filter(r.status)?,
                r.page_size,
                &r.page_token,
            )
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(pb::ListStreamsResponse {
            streams: streams.iter().map(|s| self.stream(s)).collect(),
            next_page_token: next,
        }))
    }

    async fn heartbeat(
        &self,
        request: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let caller = auth::caller(&request)?;
        let s = self
            .app
            .heartbeat(&caller, &request.get_ref().stream_id)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(pb::HeartbeatResponse {
            stats: Some(stats(s)),
        }))
    }

    async fn get_viewer_stats(
        &self,
        request: Request<pb::GetViewerStatsRequest>,
    ) -> Result<Response<pb::GetViewerStatsResponse>, Status> {
        let s = self
            .app
            .stats(&request.get_ref().stream_id)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(pb::GetViewerStatsResponse {
            stats: Some(stats(s)),
        }))
    }

    async fn react(
        &self,
        request: Request<pb::ReactRequest>,
    ) -> Result<Response<pb::ReactResponse>, Status> {
        let caller = auth::caller(&request)?;
        let r = request.get_ref();
        let reaction = match pb::Reaction::try_from(r.reaction) {
            Ok(pb::Reaction::Like) => Reaction::Like,
            Ok(pb::Reaction::Share) => Reaction::Share,
            _ => {
                return Err(invalid(InputError::new(
                    "reaction",
                    "must be REACTION_LIKE or REACTION_SHARE",
                )));
            }
        };
        let s = self
            .app
            .react(&caller, &r.stream_id, reaction)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(pb::ReactResponse {
            stats: Some(stats(s)),
        }))
    }

    async fn post_comment(
        &self,
        request: Request<pb::PostCommentRequest>,
    ) -> Result<Response<pb::PostCommentResponse>, Status> {
        let caller = auth::caller(&request)?;
        let r = request.get_ref();
        let c = self
            .app
            .post_comment(&caller, &r.request_id, &r.stream_id, &r.text)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(pb::PostCommentResponse {
            comment: Some(comment(&c)),
        }))
    }

    async fn list_comments(
        &self,
        request: Request<pb::ListCommentsRequest>,
    ) -> Result<Response<pb::ListCommentsResponse>, Status> {
        let r = request.get_ref();
        let (comments, next) = self
            .app
            .comments(&r.stream_id, r.pinned_only, r.page_size, &r.page_token)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(pb::ListCommentsResponse {
            comments: comments.iter().map(comment).collect(),
            next_page_token: next,
        }))
    }

    async fn pin_comment(
        &self,
        request: Request<pb::PinCommentRequest>,
    ) -> Result<Response<pb::PinCommentResponse>, Status> {
        let caller = auth::caller(&request)?;
        let r = request.get_ref();
        let c = self
            .app
            .pin(&caller, &r.stream_id, &r.comment_id, r.pinned)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(pb::PinCommentResponse {
            comment: Some(comment(&c)),
        }))
    }

    async fn set_featured_products(
        &self,
        request: Request<pb::SetFeaturedProductsRequest>,
    ) -> Result<Response<pb::SetFeaturedProductsResponse>, Status> {
        let caller = auth::caller(&request)?;
        let r = request.get_ref();
        let s = self
            .app
            .feature(&caller, &r.stream_id, &r.product_ids)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(pb::SetFeaturedProductsResponse {
            stream: Some(self.stream(&s)),
        }))
    }

    async fn record_purchase(
        &self,
        request: Request<pb::RecordPurchaseRequest>,
    ) -> Result<Response<pb::RecordPurchaseResponse>, Status> {
        let caller = auth::caller(&request)?;
        let r = request.get_ref();
        let recorded = self
            .app
            .record_purchase(
                &caller,
                PurchaseInput {
                    stream_id: &r.stream_id,
                    order_id: &r.order_id,
                    buyer_id: &r.buyer_id,
                    product_id: &r.product_id,
                    quantity: r.quantity,
                    amount_minor: r.amount_minor,
                    currency: &r.currency,
                },
            )
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(pb::RecordPurchaseResponse { recorded }))
    }

    async fn get_stream_analytics(
        &self,
        request: Request<pb::GetStreamAnalyticsRequest>,
    ) -> Result<Response<pb::GetStreamAnalyticsResponse>, Status> {
        let caller = auth::caller(&request)?;
        let (s, a) = self
            .app
            .analytics(&caller, &request.get_ref().stream_id)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(pb::GetStreamAnalyticsResponse {
            stream: Some(self.stream(&s)),
            analytics: Some(analytics(a)),
        }))
    }
}
