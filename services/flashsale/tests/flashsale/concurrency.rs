//! Thousands of concurrent buyers against one sale: never oversold, never above the limit,
//! every returned unit returned once, and Redis agreeing with PostgreSQL afterwards.

use std::collections::HashMap;

use chrono::Duration;
use rand::{Rng, SeedableRng, rngs::StdRng};
use titan_flashsale::app::FlashSaleError;

use crate::{World, buyer, checkout, settings, uuid};

#[derive(Debug, Default)]
struct Tally {
    reserved: HashMap<String, u32>,
    confirmed: HashMap<String, u32>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thousands_of_buyers_never_oversell() {
    const STOCK: u32 = 500;
    const MAX: u32 = 4;
    const BUYERS: u32 = 2_000;
    let w = World::new(settings()).await;
    let sale = w.live_sale(STOCK, MAX).await;

    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..BUYERS {
        let app = w.app.clone();
        tasks.spawn(async move {
            let mut rng = StdRng::seed_from_u64(u64::from(n));
            let me = buyer(n % 1_500); // some buyers come twice, to meet their limit
            let mut tally = Tally::default();
            for _ in 0..rng.random_range(1..=3) {
                let quantity = rng.random_range(1..=3);
                match app.attempt(&me, &uuid(), sale, quantity, None).await {
                    Ok(r) => {
                        *tally.reserved.entry(me.user_id.clone()).or_default() += r.quantity;
                        match rng.random_range(0..3) {
                            0 => {
                                app.confirm(
                                    &checkout(),
                                    &uuid(),
                                    &me.user_id,
                                    &r.id.to_string(),
                                    "pay",
                                )
                                .await
                                .expect("confirm");
                                *tally.confirmed.entry(me.user_id.clone()).or_default() +=
                                    r.quantity;
                            }
                            1 => {
                                app.cancel(&me, &uuid(), &r.id.to_string())
                                    .await
                                    .expect("cancel");
                                *tally.reserved.entry(me.user_id.clone()).or_default() -=
                                    r.quantity;
                            }
                            _ => {} // left to expire
                        }
                    }
                    Err(FlashSaleError::Refused(_)) => {}
                    Err(e) => panic!("unexpected error: {e}"),
                }
            }
            tally
        });
    }
    let tallies = tasks.join_all().await;

    let stats = w.app.stats(sale).await.expect("stats");
    let l = stats.level;
    let confirmed: u32 = tallies.iter().flat_map(|t| t.confirmed.values()).sum();
    assert_eq!(l.sold, confirmed, "every confirmation counted once");
    assert!(
        l.sold + l.reserved <= STOCK,
        "sold {} + reserved {} > {STOCK}",
        l.sold,
        l.reserved
    );
    assert_eq!(l.available + l.reserved + l.sold, STOCK);
    let mut held: HashMap<String, u32> = HashMap::new();
    for t in &tallies {
        for (u, q) in &t.reserved {
            *held.entry(u.clone()).or_default() += q;
        }
    }
    assert!(held.values().all(|q| *q <= MAX), "no buyer above the limit");
    assert!(
        stats.refusals.contains_key("SOLD_OUT") || stats.refusals.contains_key("NOT_ENOUGH_STOCK"),
        "{stats:?}"
    );

    // Everything not bought comes back exactly once when the reservations expire.
    w.clock.advance(Duration::seconds(301));
    let (a, b) = tokio::join!(w.app.sweep(), w.app.sweep());
    a.expect("sweep");
    b.expect("sweep");
    let after = w.app.stats(sale).await.expect("stats").level;
    assert_eq!(
        (after.available, after.reserved, after.sold),
        (STOCK - confirmed, 0, confirmed)
    );
    w.assert_conserved(sale, STOCK).await;
}
