//! The flash-sale gRPC edge: proto ↔ domain, the admin role check, errors → status.

use std::{pin::Pin, sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use futures::Stream;
use titan_kit::{
    auth,
    error::to_status,
    wire::{self, timestamp},
};
use titan_proto::flashsale::v1::{self as pb, flash_sale_service_server::FlashSaleService};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::{
    app::{FlashSaleError, FlashSales, Order, SaleStore, SaleView, StockStore},
    domain::{AdminState, SaleId, SaleStatus, sale::RawSaleSpec},
    watch::Pollers,
};

const DOMAIN: &str = "flashsale.titan.dev";
const ADMIN: &str = "admin";

fn status(e: FlashSaleError) -> Status {
    to_status(DOMAIN, &e)
}

fn invalid(msg: impl Into<String>) -> Status {
    status(FlashSaleError::Invalid(msg.into()))
}

fn time(field: &str, t: Option<prost_types::Timestamp>) -> Result<DateTime<Utc>, Status> {
    wire::required_time(field, t.as_ref()).map_err(invalid)
}

fn sale_id(s: &str) -> Result<SaleId, Status> {
    SaleId::parse(s).map_err(|e| status(e.into()))
}

fn money(m: titan_kit::money::Money) -> pb::Money {
    pb::Money {
        currency: m.currency.to_string(),
        minor_units: m.minor_units,
    }
}

fn raw_spec(spec: Option<pb::SaleSpec>) -> Result<RawSaleSpec, Status> {
    let spec = spec.ok_or_else(|| invalid("spec is required"))?;
    let original = spec
        .original_price
        .ok_or_else(|| invalid("spec.original_price is required"))?;
    let sale = spec
        .sale_price
        .ok_or_else(|| invalid("spec.sale_price is required"))?;
    Ok(RawSaleSpec {
        product_id: spec.product_id,
        currency: original.currency,
        original_minor: original.minor_units,
        sale_currency: sale.currency,
        sale_minor: sale.minor_units,
        total_quantity: spec.total_quantity,
        max_per_user: spec.max_per_user,
        starts_at: time("spec.starts_at", spec.starts_at)?,
        ends_at: time("spec.ends_at", spec.ends_at)?,
        pow_difficulty: spec.pow_difficulty,
    })
}

fn status_code(s: SaleStatus) -> pb::SaleStatus {
    match s {
        SaleStatus::Scheduled => pb::SaleStatus::Scheduled,
        SaleStatus::Active => pb::SaleStatus::Active,
        SaleStatus::Ended => pb::SaleStatus::Ended,
        SaleStatus::SoldOut => pb::SaleStatus::SoldOut,
        SaleStatus::Cancelled => pb::SaleStatus::Cancelled,
    }
}

fn seconds_until(at: DateTime<Utc>, now: DateTime<Utc>) -> i64 {
    (at - now).num_seconds().max(0)
}

fn sale(view: &SaleView) -> pb::Sale {
    let s = &view.sale.spec;
    pb::Sale {
        id: view.sale.id.to_string(),
        spec: Some(pb::SaleSpec {
            product_id: s.product_id.clone(),
            original_price: Some(money(s.original_price)),
            sale_price: Some(money(s.sale_price)),
            total_quantity: s.total_quantity,
            max_per_user: s.max_per_user,
            starts_at: Some(timestamp(s.starts_at)),
            ends_at: Some(timestamp(s.ends_at)),
            pow_difficulty: s.pow_difficulty,
        }),
        status: status_code(view.status) as i32,
        discount_percent: s.discount_percent(),
        remaining: view.level.map_or(s.total_quantity, |l| l.available),
        warmed_up: view.sale.warmed_up,
        starts_in_seconds: seconds_until(s.starts_at, view.now),
        ends_in_seconds: seconds_until(s.ends_at, view.now),
    }
}

fn order(o: Order) -> pb::Order {
    pb::Order {
        id: o.id.to_string(),
        sale_id: o.sale_id.to_string(),
        reservation_id: o.reservation_id,
        user_id: o.user_id,
        quantity: o.quantity,
        unit_price: Some(money(o.unit_price)),
        total: Some(money(o.total)),
        payment_reference: o.payment_reference,
        created_at: Some(timestamp(o.created_at)),
    }
}

pub struct Grpc<P, S> {
    app: Arc<FlashSales<P, S>>,
    /// One poller per watched sale; they stop on shutdown, which ends the streams cleanly.
    pollers: Pollers<P, S>,
}

impl<P, S> std::fmt::Debug for Grpc<P, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grpc").finish_non_exhaustive()
    }
}

impl<P: SaleStore, S: StockStore> Grpc<P, S> {
    /// The edge; `shutdown` ends open `WatchSale` streams when the process drains.
    pub fn new(app: Arc<FlashSales<P, S>>, shutdown: CancellationToken) -> Self {
        let every = Duration::from_millis(app.settings().watch_interval_ms);
        Self {
            pollers: Pollers::new(app.clone(), every, shutdown),
            app,
        }
    }

    pub fn pollers(&self) -> &Pollers<P, S> {
        &self.pollers
    }
}

/// What a watcher sees of a sale.
fn update(v: &SaleView) -> pb::SaleUpdate {
    pb::SaleUpdate {
        sale_id: v.sale.id.to_string(),
        status: status_code(v.status) as i32,
        remaining: v.level.map_or(v.sale.spec.total_quantity, |l| l.available),
        starts_in_seconds: seconds_until(v.sale.spec.starts_at, v.now),
        ends_in_seconds: seconds_until(v.sale.spec.ends_at, v.now),
    }
}

/// The caller, who must be an admin, and the request body.
fn admin<T>(request: Request<T>) -> Result<(auth::Caller, T), Status> {
    auth::caller_with_role(request, ADMIN)
}

impl<P: SaleStore, S: StockStore> Grpc<P, S> {
    /// Cancels or ends a sale: the two admin calls differ only in the state they set.
    async fn close(
        &self,
        caller: &auth::Caller,
        request_id: &str,
        id: &str,
        state: AdminState,
    ) -> Result<Option<pb::Sale>, Status> {
        let view = self
            .app
            .set_state(caller, request_id, sale_id(id)?, state)
            .await
            .map_err(status)?;
        Ok(Some(sale(&view)))
    }
}

type Watch = Pin<Box<dyn Stream<Item = Result<pb::SaleUpdate, Status>> + Send>>;

#[tonic::async_trait]
impl<P: SaleStore, S: StockStore> FlashSaleService for Grpc<P, S> {
    async fn create_sale(
        &self,
        request: Request<pb::CreateSaleRequest>,
    ) -> Result<Response<pb::CreateSaleResponse>, Status> {
        let (caller, r) = admin(request)?;
        let view = self
            .app
            .create_sale(&caller, &r.request_id, raw_spec(r.spec)?)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::CreateSaleResponse {
            sale: Some(sale(&view)),
        }))
    }

    async fn update_sale(
        &self,
        request: Request<pb::UpdateSaleRequest>,
    ) -> Result<Response<pb::UpdateSaleResponse>, Status> {
        let (caller, r) = admin(request)?;
        let view = self
            .app
            .update_sale(
                &caller,
                &r.request_id,
                sale_id(&r.sale_id)?,
                raw_spec(r.spec)?,
            )
            .await
            .map_err(status)?;
        Ok(Response::new(pb::UpdateSaleResponse {
            sale: Some(sale(&view)),
        }))
    }

    async fn cancel_sale(
        &self,
        request: Request<pb::CancelSaleRequest>,
    ) -> Result<Response<pb::CancelSaleResponse>, Status> {
        let (caller, r) = admin(request)?;
        let sale = self
            .close(&caller, &r.request_id, &r.sale_id, AdminState::Cancelled)
            .await?;
        Ok(Response::new(pb::CancelSaleResponse { sale }))
    }

    async fn warm_up_sale(
        &self,
        request: Request<pb::WarmUpSaleRequest>,
    ) -> Result<Response<pb::WarmUpSaleResponse>, Status> {
        auth::caller(&request)?.require_role(ADMIN)?;
        let view = self
            .app
            .warm_up(sale_id(&request.get_ref().sale_id)?)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::WarmUpSaleResponse {
            sale: Some(sale(&view)),
        }))
    }

    async fn end_sale(
        &self,
        request: Request<pb::EndSaleRequest>,
    ) -> Result<Response<pb::EndSaleResponse>, Status> {
        let (caller, r) = admin(request)?;
        let sale = self
            .close(&caller, &r.request_id, &r.sale_id, AdminState::Ended)
            .await?;
        Ok(Response::new(pb::EndSaleResponse { sale }))
    }

    async fn get_sale_stats(
        &self,
        request: Request<pb::GetSaleStatsRequest>,
    ) -> Result<Response<pb::GetSaleStatsResponse>, Status> {
        auth::caller(&request)?.require_role(ADMIN)?;
        let id = sale_id(&request.get_ref().sale_id)?;
        let s = self.app.stats(id).await.map_err(status)?;
        let conversion_rate = if s.attempts == 0 {
            0.0
        } else {
            s.confirmations as f64 / s.attempts as f64
        };
        Ok(Response::new(pb::GetSaleStatsResponse {
            sale_id: id.to_string(),
            views: s.views,
            attempts: s.attempts,
            reservations: s.reservations,
            confirmations: s.confirmations,
            expiries: s.expiries,
            cancellations: s.cancellations,
            refusals: s.refusals.into_iter().collect(),
            units_reserved: s.level.reserved,
            units_sold: s.level.sold,
            units_remaining: s.level.available,
            conversion_rate,
        }))
    }

    async fn list_sales(
        &self,
        request: Request<pb::ListSalesRequest>,
    ) -> Result<Response<pb::ListSalesResponse>, Status> {
        auth::caller(&request)?;
        let views = self.app.list().await.map_err(status)?;
        Ok(Response::new(pb::ListSalesResponse {
            sales: views.iter().map(sale).collect(),
        }))
    }

    async fn get_sale(
        &self,
        request: Request<pb::GetSaleRequest>,
    ) -> Result<Response<pb::GetSaleResponse>, Status> {
        auth::caller(&request)?;
        let view = self
            .app
            .get(sale_id(&request.get_ref().sale_id)?)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::GetSaleResponse {
            sale: Some(sale(&view)),
        }))
    }

    async fn get_challenge(
        &self,
        request: Request<pb::GetChallengeRequest>,
    ) -> Result<Response<pb::GetChallengeResponse>, Status> {
        let caller = auth::caller(&request)?;
        let c = self
            .app
            .challenge(&caller, sale_id(&request.get_ref().sale_id)?)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::GetChallengeResponse {
            challenge: c.challenge,
            difficulty: c.difficulty,
            expires_at: Some(timestamp(c.expires_at)),
        }))
    }

    async fn attempt_purchase(
        &self,
        request: Request<pb::AttemptPurchaseRequest>,
    ) -> Result<Response<pb::AttemptPurchaseResponse>, Status> {
        let caller = auth::caller(&request)?;
        let r = request.into_inner();
        let proof = (!r.challenge.is_empty()).then_some((r.challenge.as_str(), r.nonce.as_str()));
        let res = self
            .app
            .attempt(
                &caller,
                &r.request_id,
                sale_id(&r.sale_id)?,
                r.quantity,
                proof,
            )
            .await
            .map_err(status)?;
        Ok(Response::new(pb::AttemptPurchaseResponse {
            reservation_id: res.id.to_string(),
            quantity: res.quantity,
            expires_at: Some(timestamp(res.expires_at)),
            remaining: res.remaining,
        }))
    }

    async fn confirm_purchase(
        &self,
        request: Request<pb::ConfirmPurchaseRequest>,
    ) -> Result<Response<pb::ConfirmPurchaseResponse>, Status> {
        let caller = auth::caller(&request)?;
        let r = request.into_inner();
        let o = self
            .app
            .confirm(
                &caller,
                &r.request_id,
                &r.buyer_id,
                &r.reservation_id,
                &r.payment_reference,
            )
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ConfirmPurchaseResponse {
            order: Some(order(o)),
        }))
    }

    async fn cancel_reservation(
        &self,
        request: Request<pb::CancelReservationRequest>,
    ) -> Result<Response<pb::CancelReservationResponse>, Status> {
        let caller = auth::caller(&request)?;
        let r = request.into_inner();
        self.app
            .cancel(&caller, &r.request_id, &r.reservation_id)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::CancelReservationResponse {}))
    }

    type WatchSaleStream = Watch;

    async fn watch_sale(
        &self,
        request: Request<pb::WatchSaleRequest>,
    ) -> Result<Response<Self::WatchSaleStream>, Status> {
        let caller = auth::caller(&request)?;
        let id = sale_id(&request.get_ref().sale_id)?;
        let first = self.app.watch(&caller, id).await.map_err(status)?;
        let mut polled = self.pollers.subscribe(&first);
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            let mut last = update(&first);
            if tx.send(Ok(last.clone())).await.is_err() {
                return;
            }
            loop {
                tokio::select! {
                    () = tx.closed() => return,
                    // The poller stopped (shutdown): the stream ends with OK.
                    changed = polled.changed() => if changed.is_err() { return },
                }
                let latest = polled.borrow_and_update().clone();
                let next = match latest {
                    None => continue,
                    Some(Ok(view)) => update(&view),
                    Some(Err(e)) => {
                        let _ = tx.send(Err(to_status(DOMAIN, e.as_ref()))).await;
                        return;
                    }
                };
                // Countdowns change every second; only send when something a buyer sees moved.
                if next != last {
                    if tx.send(Ok(next.clone())).await.is_err() {
                        return;
                    }
                    last = next;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
