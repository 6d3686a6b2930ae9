//! `WatchSale` streams over the gRPC edge: they end cleanly when the process drains, instead of
//! holding the shutdown until its grace period is over.

use futures::StreamExt;
use titan_flashsale::grpc::Grpc;
use titan_proto::flashsale::v1::{WatchSaleRequest, flash_sale_service_server::FlashSaleService};
use tokio_util::sync::CancellationToken;

use crate::{World, buyer, settings};

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
