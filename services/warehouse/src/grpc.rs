//! Warehouse's gRPC edge: proto ↔ app types and errors → status; nothing else.

use std::sync::Arc;

use titan_kit::{auth, error::to_status, wire::timestamp};
use titan_proto::warehouse::v1::{self as pb, warehouse_service_server::WarehouseService};
use tonic::{Request, Response, Status};

use crate::{
    app::{
        Bin, Level, Moved, Movement, OrderForm, PickLine, PlaceRef, Reservation, Warehouse,
        WarehouseError, WarehouseForm, WarehouseStore, Warehouses,
    },
    domain::InputError,
};

pub const DOMAIN: &str = "warehouse.titan.dev";

fn status(e: &WarehouseError) -> Status {
    to_status(DOMAIN, e)
}

pub struct Grpc<S> {
    app: Arc<Warehouses<S>>,
}

impl<S> std::fmt::Debug for Grpc<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grpc").finish_non_exhaustive()
    }
}

impl<S> Grpc<S> {
    pub fn new(app: Arc<Warehouses<S>>) -> Self {
        Self { app }
    }
}

/// The place in `field`, required.
fn place<'a>(field: &str, p: Option<&'a pb::Place>) -> Result<PlaceRef<'a>, Status> {
    let p = p.ok_or_else(|| status(&InputError::new(field, "is required").into()))?;
    Ok(PlaceRef {
        warehouse: &p.warehouse,
        bin: &p.bin,
        product_id: &p.product_id,
    })
}

fn warehouse(w: Warehouse) -> pb::Warehouse {
    pb::Warehouse {
        id: w.id.to_string(),
        code: w.code,
        name: w.name,
        address: w.address,
        lat: w.lat,
        lng: w.lng,
        status: w.status,
        capacity: w.capacity,
        priority: w.priority,
    }
}

fn level(l: Level) -> pb::StockLevel {
    pb::StockLevel {
        warehouse: l.warehouse,
        bin: l.bin,
        product_id: l.product_id,
        available: l.available,
        reserved: l.reserved,
    }
}

fn moved(m: Moved) -> pb::StockMoved {
    pb::StockMoved {
        movement_ids: m.movements,
        levels: m.levels.into_iter().map(level).collect(),
    }
}

fn movement(m: Movement) -> pb::Movement {
    pb::Movement {
        id: m.id,
        warehouse: m.warehouse,
        bin: m.bin,
        product_id: m.product_id,
        r#type: m.kind,
        available_delta: m.available_delta,
        reserved_delta: m.reserved_delta,
        reference: m.reference,
        by: m.by,
        at: Some(timestamp(m.at)),
    }
}

fn bin(b: Bin) -> pb::Bin {
    pb::Bin {
        id: b.id.to_string(),
        warehouse: b.warehouse,
        zone: b.zone,
        code: b.code,
        capacity: b.capacity,
    }
}

fn reservation(r: Reservation) -> pb::Reservation {
    pb::Reservation {
        id: r.id.to_string(),
        order_id: r.order_id,
        status: r.status,
        expires_at: Some(timestamp(r.expires_at)),
        lines: r
            .lines
            .into_iter()
            .map(|l| pb::ReservedLine {
                warehouse: l.warehouse,
                bin: l.bin,
                product_id: l.product_id,
                quantity: l.quantity,
            })
            .collect(),
        short: r
            .short
            .into_iter()
            .map(|s| pb::Shortage {
                product_id: s.product_id,
                requested: s.requested,
                short: s.short,
            })
            .collect(),
    }
}

fn pick_line(l: PickLine) -> pb::PickLine {
    pb::PickLine {
        bin: l.bin,
        product_id: l.product_id,
        quantity: l.quantity,
        reservation_id: l.reservation_id.to_string(),
        order_id: l.order_id,
    }
}

fn answer<T, U>(
    r: Result<T, WarehouseError>,
    to: impl FnOnce(T) -> U,
) -> Result<Response<U>, Status> {
    r.map(|v| Response::new(to(v))).map_err(|e| status(&e))
}

#[tonic::async_trait]
impl<S: WarehouseStore> WarehouseService for Grpc<S> {
    async fn create_warehouse(
        &self,
        request: Request<pb::CreateWarehouseRequest>,
    ) -> Result<Response<pb::Warehouse>, Status> {
        let caller = auth::caller(&request)?;
        let r = request.get_ref();
        let form = WarehouseForm {
            code: &r.code,
            name: &r.name,
            address: &r.address,
            lat: r.lat,
            lng: r.lng,
            capacity: r.capacity,
            priority: r.priority,
        };
        answer(
            self.app
                .create_warehouse(&caller, &r.request_id, &form)
                .await,
            warehouse,
        )
    }

    async fn set_warehouse_status(
        &self,
        request: Request<pb::SetWarehouseStatusRequest>,
    ) -> Result<Response<pb::Warehouse>, Status> {
        let caller = auth::caller(&request)?;
        let r = request.get_ref();
        answer(
            self.app
                .set_status(&caller, &r.request_id, &r.code, &r.status)
                .await,
            warehouse,
        )
    }

    async fn list_warehouses(
        &self,
        request: Request<pb::ListWarehousesRequest>,
    ) -> Result<Response<pb::ListWarehousesResponse>, Status> {
        let caller = auth::caller(&request)?;
        let r = request.get_ref();
        answer(
            self.app
                .list_warehouses(&caller, &r.after_code, r.page_size)
                .await,
            |ws| pb::ListWarehousesResponse {
                warehouses: ws.into_iter().map(warehouse).collect(),
            },
        )
    }

    async fn create_bin(
        &self,
        request: Request<pb::CreateBinRequest>,
    ) -> Result<Response<pb::Bin>, Status> {
        let caller = auth::caller(&request)?;
        let r = request.get_ref();
        answer(
            self.app
                .create_bin(
                    &caller,
                    &r.request_id,
                    &r.warehouse,
                    &r.zone,
                    &r.bin,
                    r.capacity,
                )
                .await,
            bin,
        )
    }

    async fn receive_stock(
        &self,
        request: Request<pb::ReceiveStockRequest>,
    ) -> Result<Response<pb::StockMoved>, Status> {
        let caller = auth::caller(&request)?;
        let r = request.get_ref();
        let at = place("place", r.place.as_ref())?;
        answer(
            self.app
                .receive(
                    &caller,
                    &r.request_id,
                    at,
                    &r.r#type,
                    r.quantity,
                    &r.reference,
                )
                .await,
            moved,
        )
    }

    async fn adjust_stock(
        &self,
        request: Request<pb::AdjustStockRequest>,
    ) -> Result<Response<pb::StockMoved>, Status> {
        let caller = auth::caller(&request)?;
        let r = request.get_ref();
        let at = place("place", r.place.as_ref())?;
        answer(
            self.app
                .adjust(&caller, &r.request_id, at, r.delta, &r.reason)
                .await,
            moved,
        )
    }

    async fn transfer_stock(
        &self,
        request: Request<pb::TransferStockRequest>,
    ) -> Result<Response<pb::StockMoved>, Status> {
        let caller = auth::caller(&request)?;
        let r = request.get_ref();
        let from = place("from", r.from.as_ref())?;
        let to = place("to", r.to.as_ref())?;
        answer(
            self.app
                .transfer(&caller, &r.request_id, from, to, r.quantity, &r.reference)
                .await,
            moved,
        )
    }

    async fn get_stock(
        &self,
        request: Request<pb::GetStockRequest>,
    ) -> Result<Response<pb::GetStockResponse>, Status> {
        let caller = auth::caller(&request)?;
        let r = request.get_ref();
        answer(
            self.app.stock(&caller, &r.product_id, r.page_size).await,
            |ls| pb::GetStockResponse {
                levels: ls.into_iter().map(level).collect(),
            },
        )
    }

    async fn list_movements(
        &self,
        request: Request<pb::ListMovementsRequest>,
    ) -> Result<Response<pb::ListMovementsResponse>, Status> {
        let caller = auth::caller(&request)?;
        let r = request.get_ref();
        answer(
            self.app
                .movements(
                    &caller,
                    &r.warehouse,
                    &r.product_id,
                    r.before_id,
                    r.page_size,
                )
                .await,
            |ms| pb::ListMovementsResponse {
                movements: ms.into_iter().map(movement).collect(),
            },
        )
    }

    async fn reserve(
        &self,
        request: Request<pb::ReserveRequest>,
    ) -> Result<Response<pb::Reservation>, Status> {
        let caller = auth::caller(&request)?;
        let r = request.get_ref();
        let lines: Vec<(String, i64)> = r
            .lines
            .iter()
            .map(|l| (l.product_id.clone(), l.quantity))
            .collect();
        let form = OrderForm {
            order_id: &r.order_id,
            lat: r.destination_lat,
            lng: r.destination_lng,
            lines: &lines,
            ttl_seconds: r.ttl_seconds,
        };
        answer(
            self.app.reserve(&caller, &r.request_id, &form).await,
            reservation,
        )
    }

    async fn pick_reservation(
        &self,
        request: Request<pb::PickReservationRequest>,
    ) -> Result<Response<pb::Reservation>, Status> {
        let caller = auth::caller(&request)?;
        let r = request.get_ref();
        answer(
            self.app
                .pick(&caller, &r.request_id, &r.reservation_id)
                .await,
            reservation,
        )
    }

    async fn ship_reservation(
        &self,
        request: Request<pb::ShipReservationRequest>,
    ) -> Result<Response<pb::Reservation>, Status> {
        let caller = auth::caller(&request)?;
        let r = request.get_ref();
        answer(
            self.app
                .ship(&caller, &r.request_id, &r.reservation_id)
                .await,
            reservation,
        )
    }

    async fn release_reservation(
        &self,
        request: Request<pb::ReleaseReservationRequest>,
    ) -> Result<Response<pb::Reservation>, Status> {
        let caller = auth::caller(&request)?;
        let r = request.get_ref();
        answer(
            self.app
                .release(&caller, &r.request_id, &r.reservation_id)
                .await,
            reservation,
        )
    }

    async fn get_reservation(
        &self,
        request: Request<pb::GetReservationRequest>,
    ) -> Result<Response<pb::Reservation>, Status> {
        let caller = auth::caller(&request)?;
        answer(
            self.app
                .reservation(&caller, &request.get_ref().reservation_id)
                .await,
            reservation,
        )
    }

    async fn suggest_putaway(
        &self,
        request: Request<pb::SuggestPutawayRequest>,
    ) -> Result<Response<pb::SuggestPutawayResponse>, Status> {
        let caller = auth::caller(&request)?;
        let r = request.get_ref();
        answer(
            self.app
                .putaway(&caller, &r.warehouse, &r.product_id, r.quantity)
                .await,
            |p| pb::SuggestPutawayResponse {
                lines: p
                    .lines
                    .into_iter()
                    .map(|(_, bin, quantity)| pb::PutawayLine {
                        bin: bin.as_str().to_owned(),
                        quantity,
                    })
                    .collect(),
                unplaced: p.unplaced,
            },
        )
    }

    async fn get_pick_list(
        &self,
        request: Request<pb::GetPickListRequest>,
    ) -> Result<Response<pb::GetPickListResponse>, Status> {
        let caller = auth::caller(&request)?;
        answer(
            self.app
                .pick_list(&caller, &request.get_ref().warehouse)
                .await,
            |ls| pb::GetPickListResponse {
                lines: ls.into_iter().map(pick_line).collect(),
            },
        )
    }
}
