//! Shipping's gRPC edge: proto ↔ app types and errors → status; nothing else.

use std::sync::Arc;

use titan_kit::{auth, error::to_status, wire::timestamp};
use titan_proto::shipping::v1::{self as pb, shipping_service_server::ShippingService};
use tonic::{Request, Response, Status};

use crate::{
    app::{Labelled, Shipping, ShippingError, ShippingStore},
    domain::{Address, Parcel, Quote, RawQuote, RawShipment},
};

pub const DOMAIN: &str = "shipping.titan.dev";

fn status(e: &ShippingError) -> Status {
    to_status(DOMAIN, e)
}

pub struct Grpc<S> {
    app: Arc<Shipping<S>>,
}

impl<S> std::fmt::Debug for Grpc<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grpc").finish_non_exhaustive()
    }
}

impl<S> Grpc<S> {
    pub fn new(app: Arc<Shipping<S>>) -> Self {
        Self { app }
    }
}

/// A missing address reads as an empty one, whose first line the domain names as required.
fn address_in(a: Option<&pb::Address>) -> Address {
    a.map(|a| Address {
        name: a.name.clone(),
        line1: a.line1.clone(),
        line2: a.line2.clone(),
        city: a.city.clone(),
        postcode: a.postcode.clone(),
        country: a.country.clone(),
    })
    .unwrap_or_default()
}

fn address_out(a: Address) -> pb::Address {
    pb::Address {
        name: a.name,
        line1: a.line1,
        line2: a.line2,
        city: a.city,
        postcode: a.postcode,
        country: a.country,
    }
}

fn parcels_in(ps: &[pb::Parcel]) -> Vec<Parcel> {
    ps.iter()
        .map(|p| Parcel {
            weight_g: p.weight_g,
            length_mm: p.length_mm,
            width_mm: p.width_mm,
            height_mm: p.height_mm,
        })
        .collect()
}

fn parcel_out(p: Parcel) -> pb::Parcel {
    pb::Parcel {
        weight_g: p.weight_g,
        length_mm: p.length_mm,
        width_mm: p.width_mm,
        height_mm: p.height_mm,
    }
}

fn quote_out(q: Quote) -> pb::Quote {
    pb::Quote {
        carrier: q.carrier,
        service_level: q.level.to_string(),
        amount_minor: q.amount_minor,
        currency: q.currency,
        days: q.days,
    }
}

fn shipment_out(l: Labelled) -> pb::Shipment {
    let s = l.shipment;
    pb::Shipment {
        id: s.id.to_string(),
        order_id: s.order_id,
        owner_id: s.owner_id,
        carrier: s.carrier,
        service_level: s.service_level.to_string(),
        tracking_number: s.tracking_number,
        status: s.status.to_string(),
        from: Some(address_out(s.from)),
        to: Some(address_out(s.to)),
        parcels: s.parcels.into_iter().map(parcel_out).collect(),
        amount_minor: s.amount_minor,
        currency: s.currency,
        days: s.days,
        label_key: s.label_key,
        label_url: l.label_url,
        created_at: Some(timestamp(s.created_at)),
        updated_at: Some(timestamp(s.updated_at)),
    }
}

fn answer<T, U>(
    r: Result<T, ShippingError>,
    to: impl FnOnce(T) -> U,
) -> Result<Response<U>, Status> {
    r.map(|v| Response::new(to(v))).map_err(|e| status(&e))
}

#[tonic::async_trait]
impl<S: ShippingStore> ShippingService for Grpc<S> {
    async fn quote(
        &self,
        request: Request<pb::QuoteRequest>,
    ) -> Result<Response<pb::QuoteResponse>, Status> {
        let caller = auth::caller(&request)?;
        let r = request.get_ref();
        let raw = RawQuote {
            from: address_in(r.from.as_ref()),
            to: address_in(r.to.as_ref()),
            parcels: parcels_in(&r.parcels),
            carrier: r.carrier.clone(),
            service_level: r.service_level.clone(),
            strategy: r.strategy.clone(),
        };
        answer(self.app.quote(&caller, &raw).await, |qs| {
            pb::QuoteResponse {
                quotes: qs.into_iter().map(quote_out).collect(),
            }
        })
    }

    async fn create_shipment(
        &self,
        request: Request<pb::CreateShipmentRequest>,
    ) -> Result<Response<pb::Shipment>, Status> {
        let caller = auth::caller(&request)?;
        let r = request.get_ref();
        let raw = RawShipment {
            order_id: r.order_id.clone(),
            owner_id: r.owner_id.clone(),
            from: address_in(r.from.as_ref()),
            to: address_in(r.to.as_ref()),
            parcels: parcels_in(&r.parcels),
            carrier: r.carrier.clone(),
            service_level: r.service_level.clone(),
            strategy: r.strategy.clone(),
        };
        answer(
            self.app.create_shipment(&caller, &r.request_id, &raw).await,
            shipment_out,
        )
    }

    async fn get_shipment(
        &self,
        request: Request<pb::GetShipmentRequest>,
    ) -> Result<Response<pb::Shipment>, Status> {
        let caller = auth::caller(&request)?;
        answer(
            self.app
                .get_shipment(&caller, &request.get_ref().shipment_id)
                .await,
            shipment_out,
        )
    }

    async fn cancel_shipment(
        &self,
        request: Request<pb::CancelShipmentRequest>,
    ) -> Result<Response<pb::Shipment>, Status> {
        let caller = auth::caller(&request)?;
        let r = request.get_ref();
        answer(
            self.app
                .cancel_shipment(&caller, &r.request_id, &r.shipment_id)
                .await,
            shipment_out,
        )
    }

    async fn list_shipments(
        &self,
        request: Request<pb::ListShipmentsRequest>,
    ) -> Result<Response<pb::ListShipmentsResponse>, Status> {
        let caller = auth::caller(&request)?;
        let r = request.get_ref();
        answer(
            self.app
                .list_shipments(&caller, &r.order_id, r.page_size, &r.page_token)
                .await,
            |(shipments, next)| pb::ListShipmentsResponse {
                shipments: shipments.into_iter().map(shipment_out).collect(),
                next_page_token: next.map(|id| id.to_string()).unwrap_or_default(),
            },
        )
    }
}
