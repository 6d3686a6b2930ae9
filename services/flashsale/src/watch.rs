//! `WatchSale`'s polling, shared: one poller per watched sale and replica reads the stock
//! (Redis every tick, the record every 20) and publishes the latest view to every stream of
//! that sale, so ten thousand buyers watching one sale cost one read per tick, not ten
//! thousand. A poller stops when its last watcher leaves, on an error, or on shutdown (which
//! ends the streams cleanly).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::{
    app::{FlashSaleError, FlashSales, SaleStore, SaleView, StockStore},
    domain::SaleId,
};

/// What a poller publishes: nothing yet, the latest view, or why it stopped.
pub type Polled = Option<Result<SaleView, Arc<FlashSaleError>>>;

type Live = Arc<Mutex<HashMap<SaleId, watch::Sender<Polled>>>>;

/// The pollers of one replica.
pub struct Pollers<P, S> {
    app: Arc<FlashSales<P, S>>,
    every: Duration,
    shutdown: CancellationToken,
    live: Live,
}

/// A handle on the same pollers (the gRPC edge and the WebSocket mirror share them).
impl<P, S> Clone for Pollers<P, S> {
    fn clone(&self) -> Self {
        Self {
            app: self.app.clone(),
            every: self.every,
            shutdown: self.shutdown.clone(),
            live: self.live.clone(),
        }
    }
}

impl<P, S> std::fmt::Debug for Pollers<P, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pollers")
            .field("every", &self.every)
            .field("running", &self.running())
            .finish_non_exhaustive()
    }
}

impl<P, S> Pollers<P, S> {
    /// Pollers that tick every `watchIntervalMs` and stop on `shutdown`.
    pub fn new(app: Arc<FlashSales<P, S>>, every: Duration, shutdown: CancellationToken) -> Self {
        Self {
            app,
            every,
            shutdown,
            live: Live::default(),
        }
    }

    /// Pollers running now (one per sale with at least one watcher).
    pub fn running(&self) -> usize {
        lock(&self.live)
            .values()
            .filter(|tx| !tx.is_closed())
            .count()
    }
}

fn lock(live: &Live) -> std::sync::MutexGuard<'_, HashMap<SaleId, watch::Sender<Polled>>> {
    // A panic while holding the map cannot leave it inconsistent: every change is one call.
    live.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl<P: SaleStore, S: StockStore> Pollers<P, S> {
    /// Follows `first.sale`: joins its poller, or starts one.
    pub fn subscribe(&self, first: &SaleView) -> watch::Receiver<Polled> {
        let id = first.sale.id;
        let mut live = lock(&self.live);
        if let Some(tx) = live.get(&id).filter(|tx| !tx.is_closed()) {
            return tx.subscribe();
        }
        let (tx, rx) = watch::channel(None);
        live.insert(id, tx.clone());
        tokio::spawn(poll(
            self.app.clone(),
            tx,
            first.sale.clone(),
            self.every,
            self.shutdown.clone(),
            self.live.clone(),
        ));
        rx
    }
}

async fn poll<P: SaleStore, S: StockStore>(
    app: Arc<FlashSales<P, S>>,
    tx: watch::Sender<Polled>,
    mut sale: crate::domain::FlashSale,
    every: Duration,
    shutdown: CancellationToken,
    live: Live,
) {
    let id = sale.id;
    let mut tick = tokio::time::interval(every);
    tick.tick().await; // the first tick is immediate; the watchers have the first view
    for n in 1u64.. {
        tokio::select! {
            () = tx.closed() => break,
            () = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        let view = if n % 20 == 0 {
            app.view_of(id).await
        } else {
            app.refresh(sale.clone()).await
        };
        match view {
            Ok(view) => {
                sale = view.sale.clone();
                tx.send_replace(Some(Ok(view)));
            }
            Err(e) => {
                tx.send_replace(Some(Err(Arc::new(e))));
                break;
            }
        }
    }
    let mut live = lock(&live);
    if live
        .get(&id)
        .is_some_and(|current| current.same_channel(&tx))
    {
        live.remove(&id);
    }
}
