//! Tracking's gRPC edge: proto ↔ domain and errors → status. A `Subscribe` stream is pumped
//! from its [`Subscription`] by a task that ends with the client, the subscription or the
//! process.

use std::{pin::Pin, sync::Arc};

use futures::Stream;
use titan_kit::{auth, error::to_status, wire::timestamp};
use titan_proto::tracking::v1::{self as pb, tracking_service_server::TrackingService};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::{
    app::{Lookup, Page, Subscription, Tracking, TrackingError, TrackingStore},
    domain::{Coordinates, Event},
    store::live::Update,
};

/// Updates a `Subscribe` response holds for a slow client; past it the subscription's own
/// buffer (the cell's subscriberBuffer) fills and the subscriber is dropped.
const STREAM_BUFFER: usize = 4;

pub const DOMAIN: &str = "tracking.titan.dev";

fn status(e: &TrackingError) -> Status {
    to_status(DOMAIN, e)
}

pub struct Grpc<S> {
    app: Arc<Tracking<S>>,
    shutdown: CancellationToken,
}

impl<S> std::fmt::Debug for Grpc<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grpc").finish_non_exhaustive()
    }
}

impl<S> Grpc<S> {
    pub fn new(app: Arc<Tracking<S>>, shutdown: CancellationToken) -> Self {
        Self { app, shutdown }
    }
}

fn coordinates(c: Option<Coordinates>) -> Option<pb::Coordinates> {
    c.map(|c| pb::Coordinates {
        lat: c.lat,
        lng: c.lng,
    })
}

fn public_event(e: &Event) -> pb::PublicEvent {
    pb::PublicEvent {
        r#type: e.kind.as_str().to_owned(),
        location: e.location.clone(),
        at: Some(timestamp(e.at)),
    }
}

fn full_event(e: &Event, applied: bool) -> pb::TrackingEvent {
    pb::TrackingEvent {
        id: e.id.to_string(),
        r#type: e.kind.as_str().to_owned(),
        location: e.location.clone(),
        coordinates: coordinates(e.coordinates),
        at: Some(timestamp(e.at)),
        note: e.note.clone(),
        source: e.source.clone(),
        source_event_id: e.source_event_id.clone(),
        applied,
        recorded_at: Some(timestamp(e.recorded_at)),
        estimated_delivery: e.estimated_delivery.map(timestamp),
    }
}

fn next_token(p: &Page) -> String {
    p.next.map(|n| n.to_string()).unwrap_or_default()
}

fn public(p: &Page) -> pb::PublicTracking {
    let r = &p.record;
    pb::PublicTracking {
        tracking_number: r.tracking_number.clone(),
        carrier: r.carrier.clone(),
        status: r.status.as_str().to_owned(),
        location: r.location.clone(),
        estimated_delivery: r.estimated_delivery.map(timestamp),
        events: p.events.iter().map(|(e, _)| public_event(e)).collect(),
        next_page_token: next_token(p),
    }
}

fn full(p: &Page) -> pb::Tracking {
    let r = &p.record;
    pb::Tracking {
        tracking_number: r.tracking_number.clone(),
        carrier: r.carrier.clone(),
        shipment_id: r.shipment_id.clone(),
        order_id: r.order_id.clone(),
        service_level: r.service_level.clone(),
        owner_id: r.owner_id.clone(),
        status: r.status.as_str().to_owned(),
        location: r.location.clone(),
        coordinates: coordinates(r.coordinates),
        estimated_delivery: r.estimated_delivery.map(timestamp),
        created_at: Some(timestamp(r.created_at)),
        updated_at: Some(timestamp(r.updated_at)),
        events: p.events.iter().map(|(e, a)| full_event(e, *a)).collect(),
        next_page_token: next_token(p),
        total_events: p.total,
    }
}

fn update(u: &Update, full: bool) -> pb::TrackingUpdate {
    pb::TrackingUpdate {
        status: u.status.as_str().to_owned(),
        event: Some(public_event(&u.event)),
        detail: full.then(|| full_event(&u.event, u.applied)),
    }
}

type Updates = Pin<Box<dyn Stream<Item = Result<pb::TrackingUpdate, Status>> + Send>>;

#[tonic::async_trait]
impl<S: TrackingStore> TrackingService for Grpc<S> {
    type SubscribeStream = Updates;

    async fn track(
        &self,
        request: Request<pb::TrackRequest>,
    ) -> Result<Response<pb::PublicTracking>, Status> {
        // Any signed-in user: the token is required, no role.
        auth::caller(&request)?;
        let r = request.get_ref();
        let page = self
            .app
            .track(&Lookup {
                tracking_number: &r.tracking_number,
                carrier: &r.carrier,
                page_size: r.page_size,
                page_token: &r.page_token,
            })
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(public(&page)))
    }

    async fn get_tracking(
        &self,
        request: Request<pb::GetTrackingRequest>,
    ) -> Result<Response<pb::Tracking>, Status> {
        let caller = auth::caller(&request)?;
        let r = request.get_ref();
        let page = self
            .app
            .get(
                &caller,
                &Lookup {
                    tracking_number: &r.tracking_number,
                    carrier: &r.carrier,
                    page_size: r.page_size,
                    page_token: &r.page_token,
                },
            )
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(full(&page)))
    }

    async fn subscribe(
        &self,
        request: Request<pb::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let caller = auth::caller(&request)?;
        let r = request.get_ref();
        let subscription: Subscription = self
            .app
            .subscribe(&caller, &r.tracking_number, &r.carrier)
            .await
            .map_err(|e| status(&e))?;
        let (tx, rx) = tokio::sync::mpsc::channel(STREAM_BUFFER);
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            let mut subscription = subscription;
            let full = subscription.full();
            loop {
                let next = tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tx.closed() => return,
                    next = subscription.next() => next,
                };
                let item = next.map(|u| update(&u, full)).map_err(|e| status(&e));
                let end = item.is_err();
                if tx.send(item).await.is_err() || end {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}
