//! `WatchSale` streams over the gRPC edge: watchers of one sale share one poller, and streams
//! end cleanly when the process drains, instead of holding the shutdown until its grace period
//! is over.

use futures::StreamExt;
use titan_flashsale::grpc::Grpc;
use titan_proto::flashsale::v1::{WatchSaleRequest, flash_sale_service_server::FlashSaleService};
use tokio_util::sync::CancellationToken;

use crate::{World, buyer, settings, uuid};

#[tokio::test]
async fn a_watch_stream_ends_when_the_process_drains() {
    let w = World::new(settings()).await;
    let sale = w.live_sale(10, 5).await;
    let shutdown = CancellationToken::new();
    let grpc = Grpc::new(w.app.clone(), shutdown.clone());
    let mut request = tonic::Request::new(WatchSaleRequest {
        sale_id: sale.to_string(),
    });
    request.extensions_mut().insert(buyer(1));
    let mut stream = grpc.watch_sale(request).await.expect("watch").into_inner();
    let first = stream.next().await.expect("an update").expect("ok");
    assert_eq!(first.remaining, 10);

    shutdown.cancel();
    let end = tokio::time::timeout(std::time::Duration::from_secs(10), stream.next())
        .await
        .expect("the stream ends instead of running on");
    assert!(end.is_none(), "ended cleanly, not with an error: {end:?}");
}

/// Watchers of one sale share one poller: two streams, one poller, both see a purchase; when
/// both leave, the poller stops.
#[tokio::test]
async fn watchers_of_a_sale_share_one_poller() {
    let w = World::new(titan_flashsale::config::Settings {
        watch_interval_ms: 20,
        ..settings()
    })
    .await;
    let sale = w.live_sale(10, 5).await;
    let grpc = Grpc::new(w.app.clone(), CancellationToken::new());
    let watch = |n: u32| {
        let mut request = tonic::Request::new(WatchSaleRequest {
            sale_id: sale.to_string(),
        });
        request.extensions_mut().insert(buyer(n));
        grpc.watch_sale(request)
    };
    let mut a = watch(1).await.expect("a").into_inner();
    let mut b = watch(2).await.expect("b").into_inner();
    assert_eq!(grpc.pollers().running(), 1, "one poller for the sale");
    for stream in [&mut a, &mut b] {
        assert_eq!(
            stream.next().await.expect("first").expect("ok").remaining,
            10
        );
    }

    w.app
        .attempt(&buyer(3), &uuid(), sale, 1, None)
        .await
        .expect("buy");
    for stream in [&mut a, &mut b] {
        let seen = loop {
            let u = stream.next().await.expect("an update").expect("ok");
            if u.remaining != 10 {
                break u.remaining;
            }
        };
        assert_eq!(seen, 9);
    }

    drop((a, b));
    titan_kit::testing::eventually("the poller to stop", || async {
        (grpc.pollers().running() == 0).then_some(())
    })
    .await;
}

/// Opening a stream reads both stores, so openings take from the buyer's budget: a burst, then
/// `RATE_LIMITED` before any read; another buyer still opens theirs.
#[tokio::test]
async fn opening_watch_streams_is_rate_limited_per_buyer() {
    let w = World::new(titan_flashsale::config::Settings {
        rate_limit_burst: 2,
        rate_limit_interval_ms: 3_600_000,
        ..settings()
    })
    .await;
    let sale = w.live_sale(10, 5).await;
    let grpc = Grpc::new(w.app.clone(), CancellationToken::new());
    let watch = |n: u32| {
        let mut request = tonic::Request::new(WatchSaleRequest {
            sale_id: sale.to_string(),
        });
        request.extensions_mut().insert(buyer(n));
        grpc.watch_sale(request)
    };
    let _open = [
        watch(1).await.expect("within the burst"),
        watch(1).await.expect("within the burst"),
    ];
    let refused = watch(1).await.err().expect("over the budget");
    assert_eq!(
        (
            refused.code(),
            titan_kit::error::reason_of(&refused).as_deref()
        ),
        (tonic::Code::ResourceExhausted, Some("RATE_LIMITED"))
    );
    watch(2)
        .await
        .expect("another buyer has a budget of their own");
}
