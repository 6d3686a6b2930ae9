//! The flash sale on a real Redis Cluster (three masters, a replica each): a sale sells
//! exactly its stock, and still does when the master serving the sale's slot fails over to its
//! replica in the middle of the sale (a switch that loses no acknowledged write:
//! `kit::testing::cluster::fail_over`).

use std::sync::{
    Arc,
    atomic::{AtomicU32, Ordering},
};

use titan_flashsale::{app::FlashSaleError, domain::SaleId, store::redis::key_name};
use titan_kit::testing::{TestRedis, cluster};
use tokio::sync::watch;

use crate::{App, World, buyer, checkout, settings, uuid};

const STOCK: u32 = 500;
const BUYERS: u32 = 2_000;
const TASKS: u32 = 8;

/// What the buyers saw.
#[derive(Debug, Default)]
struct Outcome {
    bought: u32,
    refused: u32,
    /// Calls that failed with an error other than a refusal and were sent again.
    retried: u32,
}

/// Buyer `n` tries to buy one unit and pays for it. A call that fails otherwise than by a
/// refusal (a node switching role) is sent again with the same request id, which the service
/// answers idempotently, so a retry never buys twice.
async fn buy(app: &App, sale: SaleId, n: u32, outcome: &mut Outcome) {
    let me = buyer(n);
    let request = uuid();
    let reservation = loop {
        match app.attempt(&me, &request, sale, 1, None).await {
            Ok(r) => break r,
            Err(FlashSaleError::Refused(_)) => {
                outcome.refused += 1;
                return;
            }
            Err(e) => {
                outcome.retried += 1;
                assert!(outcome.retried < 1_000, "attempt keeps failing: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    };
    let payment = uuid();
    loop {
        match app
            .confirm(
                &checkout(),
                &payment,
                &me.user_id,
                &reservation.id.to_string(),
                "pay",
            )
            .await
        {
            Ok(_) => break,
            Err(FlashSaleError::Refused(r)) => panic!("confirm refused: {r:?}"),
            Err(e) => {
                outcome.retried += 1;
                assert!(outcome.retried < 1_000, "confirm keeps failing: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    }
    outcome.bought += 1;
}

/// Runs the sale: `TASKS` tasks of buyers, one unit each. Once `pause_at` units are sold the
/// buyers wait until `resume` says true, so some of the sale happens after whatever the test
/// does meanwhile.
async fn run_sale(
    w: &World,
    sale: SaleId,
    sold: Arc<AtomicU32>,
    pause_at: u32,
    resume: watch::Receiver<bool>,
) -> Outcome {
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..TASKS {
        let (app, sold, mut resume) = (w.app.clone(), sold.clone(), resume.clone());
        tasks.spawn(async move {
            let mut outcome = Outcome::default();
            for n in (t..BUYERS).step_by(TASKS as usize) {
                if sold.load(Ordering::SeqCst) >= pause_at {
                    resume.wait_for(|r| *r).await.expect("the test resumes");
                }
                let before = outcome.bought;
                buy(&app, sale, n, &mut outcome).await;
                sold.fetch_add(outcome.bought - before, Ordering::SeqCst);
            }
            outcome
        });
    }
    let mut total = Outcome::default();
    for o in tasks.join_all().await {
        total.bought += o.bought;
        total.refused += o.refused;
        total.retried += o.retried;
    }
    total
}

async fn assert_sold_out(w: &World, sale: SaleId, outcome: &Outcome) {
    assert_eq!(outcome.bought, STOCK, "{outcome:?}");
    assert_eq!(outcome.bought + outcome.refused, BUYERS, "{outcome:?}");
    let level = w.app.stats(sale).await.expect("stats").level;
    assert_eq!(
        (level.sold, level.reserved, level.available),
        (STOCK, 0, 0),
        "exactly the stock sold, nothing oversold"
    );
    w.assert_conserved(sale, STOCK).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_a_redis_cluster_a_sale_sells_exactly_its_stock() {
    let w = World::with_redis(settings(), TestRedis::cluster().await.handle).await;
    let sale = w.live_sale(STOCK, 1).await;
    let (_keep, resume) = watch::channel(true);
    let outcome = run_sale(&w, sale, Arc::default(), STOCK, resume).await;
    assert_sold_out(&w, sale, &outcome).await;
}

/// The master serving the sale fails over to its replica after 100 units are sold; buyers
/// keep buying during the switch and wait at 400 until it is complete, so the last 100 are
/// sold through the new master. The old master takes the slot back at the end, and the
/// cluster is healthy again (`fail_over` waits for that) for the tests that share it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_master_failover_during_a_sale_on_a_redis_cluster_oversells_nothing() {
    let w = World::with_redis(settings(), TestRedis::cluster().await.handle).await;
    let sale = w.live_sale(STOCK, 1).await;
    let slot = cluster::slot(&w.redis.key(&key_name(sale, "stock"))).await;
    let sold = Arc::new(AtomicU32::new(0));
    let (switched, resume) = watch::channel(false);
    let failover = {
        let sold = sold.clone();
        tokio::spawn(async move {
            titan_kit::testing::eventually("100 units sold", || async {
                (sold.load(Ordering::SeqCst) >= 100).then_some(())
            })
            .await;
            let switch = cluster::fail_over(slot).await;
            switched.send(true).expect("the buyers wait");
            switch
        })
    };
    let outcome = run_sale(&w, sale, sold, 400, resume).await;
    let (old_master, new_master) = failover.await.expect("failover");
    eprintln!(
        "slot {slot}: {old_master} -> {new_master}; {} calls retried during the switch",
        outcome.retried
    );
    assert_sold_out(&w, sale, &outcome).await;

    let (_, restored) = cluster::fail_over(slot).await;
    assert_eq!(restored, old_master);
}
