//! Driver's gRPC edge: proto ↔ domain and errors → status; a `WatchDriver` stream is pumped
//! from its [`Watch`] by a task that ends with the client, the watch or the process.

use std::{pin::Pin, sync::Arc};

use chrono::{DateTime, Utc};
use futures::Stream;
use titan_kit::{
    auth,
    error::to_status,
    wire::{required_time, timestamp},
};
use titan_proto::driver::v1::{self as pb, driver_service_server::DriverService};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::{
    app::{AssignedRoute, DriverError, DriverStore, Drivers, NewDelivery, NewDriver, Watch},
    config::DistanceModel,
    domain::{
        Attachment, AttachmentKind, Delivery, Driver, InputError, Performance, Position, Proof,
        optimize::{JobInput, MetricKind, OptimizeInput, Planned, VehicleInput, reason_name},
    },
};

/// Positions a `WatchDriver` response holds for a slow client; past it the watch's own
/// buffer (the cell's watchBuffer) fills and the watcher is dropped.
const STREAM_BUFFER: usize = 4;

pub const DOMAIN: &str = "driver.titan.dev";

fn status(e: &DriverError) -> Status {
    to_status(DOMAIN, e)
}

fn time(field: &'static str, t: Option<&prost_types::Timestamp>) -> Result<DateTime<Utc>, Status> {
    required_time(field, t).map_err(|m| status(&InputError::new(field, m).into()))
}

pub struct Grpc<S> {
    app: Arc<Drivers<S>>,
    shutdown: CancellationToken,
}

impl<S> std::fmt::Debug for Grpc<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grpc").finish_non_exhaustive()
    }
}

impl<S> Grpc<S> {
    pub fn new(app: Arc<Drivers<S>>, shutdown: CancellationToken) -> Self {
        Self { app, shutdown }
    }
}

fn performance(p: &Performance) -> pb::Performance {
    pb::Performance {
        completed: p.completed,
        failed: p.failed,
        on_time: p.on_time,
        on_time_rate: p.on_time_rate().unwrap_or_default(),
        rating: p.rating().unwrap_or_default(),
        ratings: p.ratings,
    }
}

fn driver(d: &Driver) -> pb::Driver {
    pb::Driver {
        id: d.id.to_string(),
        user_id: d.user_id.clone(),
        name: d.name.clone(),
        phone: d.phone.as_str().to_owned(),
        email: d.email.as_str().to_owned(),
        vehicle_type: d.vehicle_type.as_str().to_owned(),
        capacity: d.capacity.get(),
        status: d.status.as_str().to_owned(),
        location: d.location.as_ref().map(position),
        performance: Some(performance(&d.performance)),
        created_at: Some(timestamp(d.created_at)),
    }
}

fn delivery(d: &Delivery) -> pb::Delivery {
    let id = |u: Option<uuid::Uuid>| u.map(|u| u.to_string()).unwrap_or_default();
    pb::Delivery {
        id: d.id.to_string(),
        shipment_id: d.shipment_id.clone(),
        address: d.address.clone(),
        lat: d.lat,
        lng: d.lng,
        window_start: Some(timestamp(d.window.start)),
        window_end: Some(timestamp(d.window.end)),
        size: d.size.get(),
        service_seconds: d.service_seconds,
        status: d.status.as_str().to_owned(),
        route_id: id(d.route_id),
        driver_id: id(d.driver_id),
        finished_at: d.finished_at.map(timestamp),
    }
}

fn route(r: &AssignedRoute) -> pb::Route {
    pb::Route {
        id: r.id.to_string(),
        driver_id: r.driver_id.to_string(),
        stops: r
            .stops
            .iter()
            .map(|s| pb::Stop {
                delivery_id: s.delivery_id.to_string(),
                eta: Some(timestamp(s.eta)),
            })
            .collect(),
    }
}

fn position(p: &Position) -> pb::Position {
    pb::Position {
        lat: p.lat,
        lng: p.lng,
        at: Some(timestamp(p.at)),
    }
}

fn optimize_input(
    r: &pb::OptimizeRoutesRequest,
    default: DistanceModel,
) -> Result<OptimizeInput, Status> {
    let metric = match r.metric.as_str() {
        "" => match default {
            DistanceModel::Haversine => MetricKind::Haversine,
        },
        name => MetricKind::parse("metric", name).map_err(|e| status(&e.into()))?,
    };
    let jobs = r
        .jobs
        .iter()
        .map(|j| {
            Ok(JobInput {
                id: j.id.clone(),
                lat: j.lat,
                lng: j.lng,
                location: j.location,
                window_start: time("jobs.window_start", j.window_start.as_ref())?,
                window_end: time("jobs.window_end", j.window_end.as_ref())?,
                size: j.size,
                service_seconds: j.service_seconds,
            })
        })
        .collect::<Result<_, Status>>()?;
    let vehicles = r
        .vehicles
        .iter()
        .map(|v| {
            Ok(VehicleInput {
                id: v.id.clone(),
                lat: v.lat,
                lng: v.lng,
                location: v.location,
                capacity: v.capacity,
                shift_start: time("vehicles.shift_start", v.shift_start.as_ref())?,
                shift_end: time("vehicles.shift_end", v.shift_end.as_ref())?,
            })
        })
        .collect::<Result<_, Status>>()?;
    let (distances, durations) = r
        .matrix
        .as_ref()
        .map(|m| (m.distances.clone(), m.durations.clone()))
        .unwrap_or_default();
    Ok(OptimizeInput {
        metric,
        jobs,
        vehicles,
        distances,
        durations,
        budget_ms: r.time_budget_ms,
        seed: r.seed,
    })
}

fn planned(p: &Planned) -> pb::OptimizeRoutesResponse {
    pb::OptimizeRoutesResponse {
        routes: p
            .routes
            .iter()
            .map(|r| pb::PlannedRoute {
                vehicle_id: r.vehicle_id.clone(),
                departure: Some(timestamp(r.departure)),
                stops: r
                    .stops
                    .iter()
                    .map(|s| pb::PlannedStop {
                        job_id: s.job_id.clone(),
                        eta: Some(timestamp(s.eta)),
                        start: Some(timestamp(s.start)),
                    })
                    .collect(),
                arrival: Some(timestamp(r.arrival)),
                distance: r.distance,
                load: r.load,
            })
            .collect(),
        unassigned: p
            .unassigned
            .iter()
            .map(|(id, why)| pb::UnassignedJob {
                job_id: id.clone(),
                reason: reason_name(*why).to_owned(),
            })
            .collect(),
        distance: p.distance,
        iterations: p.iterations,
    }
}

fn stops(
    field: &'static str,
    s: &[pb::StopRequest],
) -> Result<Vec<(String, DateTime<Utc>)>, Status> {
    s.iter()
        .map(|s| Ok((s.delivery_id.clone(), time(field, s.eta.as_ref())?)))
        .collect()
}

type Positions = Pin<Box<dyn Stream<Item = Result<pb::Position, Status>> + Send>>;

fn attachment(
    kind: AttachmentKind,
    a: Option<pb::Attachment>,
) -> Result<Option<Attachment>, InputError> {
    a.map(|a| Attachment::check(kind, &a.content_type, a.data))
        .transpose()
}

#[tonic::async_trait]
impl<S: DriverStore> DriverService for Grpc<S> {
    type WatchDriverStream = Positions;

    async fn register_driver(
        &self,
        request: Request<pb::RegisterDriverRequest>,
    ) -> Result<Response<pb::Driver>, Status> {
        let caller = auth::caller(&request)?;
        let r = request.into_inner();
        let form = NewDriver {
            name: &r.name,
            phone: &r.phone,
            email: &r.email,
            vehicle_type: &r.vehicle_type,
            capacity: r.capacity,
        };
        let d = self
            .app
            .register(&caller, &r.request_id, &form)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(driver(&d)))
    }

    async fn get_my_driver(
        &self,
        request: Request<pb::GetMyDriverRequest>,
    ) -> Result<Response<pb::Driver>, Status> {
        let caller = auth::caller(&request)?;
        let d = self.app.me(&caller).await.map_err(|e| status(&e))?;
        Ok(Response::new(driver(&d)))
    }

    async fn get_driver(
        &self,
        request: Request<pb::GetDriverRequest>,
    ) -> Result<Response<pb::Driver>, Status> {
        let caller = auth::caller(&request)?;
        let d = self
            .app
            .get_driver(&caller, &request.get_ref().driver_id)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(driver(&d)))
    }

    async fn set_status(
        &self,
        request: Request<pb::SetStatusRequest>,
    ) -> Result<Response<pb::Driver>, Status> {
        let caller = auth::caller(&request)?;
        let r = request.get_ref();
        let d = self
            .app
            .set_status(&caller, &r.request_id, &r.status)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(driver(&d)))
    }

    async fn report_position(
        &self,
        request: Request<pb::ReportPositionRequest>,
    ) -> Result<Response<pb::ReportPositionResponse>, Status> {
        let caller = auth::caller(&request)?;
        let r = request.get_ref();
        let at = time("at", r.at.as_ref())?;
        let u = self
            .app
            .report_position(&caller, r.lat, r.lng, at)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(pb::ReportPositionResponse {
            distance_m: u.distance_m,
            speed_mps: u.speed_mps.unwrap_or_default(),
            implausible: u.implausible,
        }))
    }

    async fn create_delivery(
        &self,
        request: Request<pb::CreateDeliveryRequest>,
    ) -> Result<Response<pb::Delivery>, Status> {
        let caller = auth::caller(&request)?;
        let r = request.get_ref();
        let form = NewDelivery {
            shipment_id: &r.shipment_id,
            customer_id: &r.customer_id,
            address: &r.address,
            lat: r.lat,
            lng: r.lng,
            window_start: time("window_start", r.window_start.as_ref())?,
            window_end: time("window_end", r.window_end.as_ref())?,
            size: r.size,
            service_seconds: r.service_seconds,
        };
        let d = self
            .app
            .create_delivery(&caller, &r.request_id, &form)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(delivery(&d)))
    }

    async fn assign_route(
        &self,
        request: Request<pb::AssignRouteRequest>,
    ) -> Result<Response<pb::Route>, Status> {
        let caller = auth::caller(&request)?;
        let r = request.get_ref();
        let stops = stops("stops.eta", &r.stops)?;
        let assigned = self
            .app
            .assign_route(&caller, &r.request_id, &r.driver_id, &stops)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(route(&assigned)))
    }

    async fn advance_delivery(
        &self,
        request: Request<pb::AdvanceDeliveryRequest>,
    ) -> Result<Response<pb::Delivery>, Status> {
        let caller = auth::caller(&request)?;
        let r = request.get_ref();
        let d = self
            .app
            .advance(&caller, &r.request_id, &r.delivery_id, &r.action)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(delivery(&d)))
    }

    async fn complete_delivery(
        &self,
        request: Request<pb::CompleteDeliveryRequest>,
    ) -> Result<Response<pb::Delivery>, Status> {
        let caller = auth::caller(&request)?;
        let r = request.into_inner();
        let proof = attachment(AttachmentKind::Photo, r.photo)
            .and_then(|photo| {
                let signature = attachment(AttachmentKind::Signature, r.signature)?;
                Proof::new(&r.recipient_name, photo, signature)
            })
            .map_err(|e| status(&e.into()))?;
        let d = self
            .app
            .complete(&caller, &r.request_id, &r.delivery_id, proof)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(delivery(&d)))
    }

    async fn rate_delivery(
        &self,
        request: Request<pb::RateDeliveryRequest>,
    ) -> Result<Response<pb::Performance>, Status> {
        let caller = auth::caller(&request)?;
        let r = request.get_ref();
        let p = self
            .app
            .rate(&caller, &r.request_id, &r.delivery_id, r.rating)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(performance(&p)))
    }

    async fn reschedule_delivery(
        &self,
        request: Request<pb::RescheduleDeliveryRequest>,
    ) -> Result<Response<pb::Delivery>, Status> {
        let caller = auth::caller(&request)?;
        let r = request.get_ref();
        let d = self
            .app
            .reschedule(
                &caller,
                &r.request_id,
                &r.delivery_id,
                time("window_start", r.window_start.as_ref())?,
                time("window_end", r.window_end.as_ref())?,
            )
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(delivery(&d)))
    }

    async fn nearby_drivers(
        &self,
        request: Request<pb::NearbyDriversRequest>,
    ) -> Result<Response<pb::NearbyDriversResponse>, Status> {
        let caller = auth::caller(&request)?;
        let r = request.get_ref();
        let found = self
            .app
            .nearby(&caller, r.lat, r.lng, r.radius_m, r.limit)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(pb::NearbyDriversResponse {
            drivers: found
                .into_iter()
                .map(|n| pb::NearbyDriver {
                    driver_id: n.driver_id.to_string(),
                    distance_m: n.distance_m,
                    lat: n.lat,
                    lng: n.lng,
                })
                .collect(),
        }))
    }

    async fn watch_driver(
        &self,
        request: Request<pb::WatchDriverRequest>,
    ) -> Result<Response<Self::WatchDriverStream>, Status> {
        let caller = auth::caller(&request)?;
        let watch: Watch = self
            .app
            .watch(&caller, &request.get_ref().driver_id)
            .await
            .map_err(|e| status(&e))?;
        let (tx, rx) = tokio::sync::mpsc::channel(STREAM_BUFFER);
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            let mut watch = watch;
            loop {
                let next = tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tx.closed() => return,
                    next = watch.next() => next,
                };
                let item = next.map(|p| position(&p)).map_err(|e| status(&e));
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

    async fn optimize_routes(
        &self,
        request: Request<pb::OptimizeRoutesRequest>,
    ) -> Result<Response<pb::OptimizeRoutesResponse>, Status> {
        let caller = auth::caller(&request)?;
        let input = optimize_input(request.get_ref(), self.app.settings().distance)?;
        let p = self
            .app
            .optimize(&caller, &input)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(planned(&p)))
    }

    async fn assign_routes(
        &self,
        request: Request<pb::AssignRoutesRequest>,
    ) -> Result<Response<pb::AssignRoutesResponse>, Status> {
        let caller = auth::caller(&request)?;
        let r = request.get_ref();
        let routes = r
            .routes
            .iter()
            .map(|p| Ok((p.driver_id.clone(), stops("routes.stops.eta", &p.stops)?)))
            .collect::<Result<Vec<_>, Status>>()?;
        let assigned = self
            .app
            .assign_routes(&caller, &r.request_id, &routes)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(pb::AssignRoutesResponse {
            routes: assigned.iter().map(route).collect(),
        }))
    }
}
