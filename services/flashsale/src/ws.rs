//! `WatchSale` over a WebSocket, for browsers: `GET /v1/flashsale/sales/{sale_id}/watch`
//! streams the same updates as the gRPC stream, as frames `{type: "sale", payload}`. Opening
//! spends the buyer's `WatchSale` budget (4429 `RATE_LIMITED` when spent) and reads the sale
//! once (4404 when unknown); later updates come from the sale's shared poller of this replica,
//! exactly as gRPC watchers get them, so a socket costs no reads of its own. The socket ends
//! when the poller fails (with the error's code) and on drain (1001).

use std::sync::Arc;

use serde::Serialize;
use titan_kit::realtime::{Close, Endpoint, Realtime, Session};

use crate::{
    app::{FlashSales, SaleStore, SaleView, StockStore},
    domain::{SaleId, SaleStatus},
    watch::Pollers,
};

/// The route of the mirror.
pub const WATCH_PATH: &str = "/v1/flashsale/sales/{sale_id}/watch";

/// One update, as `WatchSale`'s `SaleUpdate` carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Update {
    pub sale_id: String,
    pub status: &'static str,
    pub remaining: u32,
    pub starts_in_seconds: i64,
    pub ends_in_seconds: i64,
}

impl Update {
    pub fn of(v: &SaleView) -> Self {
        let spec = &v.sale.spec;
        Self {
            sale_id: v.sale.id.to_string(),
            status: match v.status {
                SaleStatus::Scheduled => "SCHEDULED",
                SaleStatus::Active => "ACTIVE",
                SaleStatus::Ended => "ENDED",
                SaleStatus::SoldOut => "SOLD_OUT",
                SaleStatus::Cancelled => "CANCELLED",
            },
            remaining: v.level.map_or(spec.total_quantity, |l| l.available),
            starts_in_seconds: (spec.starts_at - v.now).num_seconds().max(0),
            ends_in_seconds: (spec.ends_at - v.now).num_seconds().max(0),
        }
    }
}

/// The mirror's router, sharing `pollers` with the gRPC edge.
pub fn router<P: SaleStore, S: StockStore>(
    realtime: &Realtime,
    app: Arc<FlashSales<P, S>>,
    pollers: Pollers<P, S>,
) -> axum::Router {
    let endpoint = Endpoint::new().on_open(move |session: Session| {
        let (app, pollers) = (app.clone(), pollers.clone());
        async move { open(session, app, pollers).await }
    });
    realtime.route(WATCH_PATH, endpoint)
}

async fn open<P: SaleStore, S: StockStore>(
    session: Session,
    app: Arc<FlashSales<P, S>>,
    pollers: Pollers<P, S>,
) -> Result<(), Close> {
    let id = SaleId::parse(session.param("sale_id").unwrap_or_default())
        .map_err(|e| Close::from_service(&crate::app::FlashSaleError::from(e)))?;
    let first = app
        .watch(session.caller(), id)
        .await
        .map_err(|e| Close::from_service(&e))?;
    let mut polled = pollers.subscribe(&first);
    let mut last = Update::of(&first);
    session.send("sale", &last).map_err(|_| closed())?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = session.closed() => return,
                // The poller stopped (shutdown): drain closes the socket with 1001.
                changed = polled.changed() => if changed.is_err() { return },
            }
            let latest = polled.borrow_and_update().clone();
            let next = match latest {
                None => continue,
                Some(Ok(view)) => Update::of(&view),
                Some(Err(e)) => {
                    session.close(Close::from_service(e.as_ref()));
                    return;
                }
            };
            // Countdowns change every second; only send when something a buyer sees moved.
            if next != last {
                if session.send("sale", &next).is_err() {
                    return;
                }
                last = next;
            }
        }
    });
    Ok(())
}

/// The socket closed while opening; nothing is left to tell it.
fn closed() -> Close {
    Close::new(Close::GOING_AWAY, "closed while opening")
}
