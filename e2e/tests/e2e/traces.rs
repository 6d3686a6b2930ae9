//! Distributed tracing through the real binary: one flash-sale purchase is one trace, from the
//! `ConfirmPurchase` call through the outbox relay into the gamification and analytics
//! consumers, exported over OTLP to a minimal receiver.

use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use titan_e2e::{Cell, CellOptions};
use titan_kit::testing::otlp::{Received, Receiver};

const CONFIRM: &str = "titan.flashsale.v1.FlashSaleService/ConfirmPurchase";

#[tokio::test(flavor = "multi_thread")]
async fn a_purchase_is_one_trace_through_the_bus_into_each_consumer() {
    let receiver = Receiver::start().await;
    let cell = Cell::start_with(CellOptions {
        services: vec![
            "flashsale".into(),
            "gamification".into(),
            "analytics".into(),
        ],
        config: Some(format!(
            "tracing: {{ otlpEndpoint: \"{}\" }}\n\
             services:\n  analytics:\n    sources: [flashsale]\n    flushIntervalMillis: 20\n",
            receiver.endpoint()
        )),
        ..CellOptions::default()
    })
    .await;
    let alice = cell.token("alice", &[]);
    crate::analytics::buy(&cell, &alice, "alice").await;

    let confirm = receiver
        .span("the ConfirmPurchase span", |s| s.name == CONFIRM)
        .await;
    assert_eq!(
        (confirm.service.as_str(), confirm.kind),
        ("titan", SpanKind::Server as i32)
    );
    let relay = receiver
        .named("relay flashsale.purchased", &confirm.trace_id)
        .await;
    assert_eq!(relay.kind, SpanKind::Producer as i32);
    let gamification = handled_by(&receiver, &confirm.trace_id, "gamification").await;
    let analytics = handled_by(&receiver, &confirm.trace_id, "analytics").await;
    // Each hangs under the purchase call (the span that wrote the event may be one of the
    // service's own inside it), once the spans between them have arrived too.
    for span in [&relay, &gamification, &analytics] {
        descends_eventually(&receiver, span, &confirm.span_id).await;
        assert_eq!(span.parent_span_id, relay.parent_span_id, "{span:?}");
    }
}

/// The consumer span of `group` handling the purchase in `trace`.
async fn handled_by(receiver: &Receiver, trace: &str, group: &str) -> Received {
    receiver
        .span(&format!("{group}'s handling of the purchase"), |s| {
            s.name == "handle flashsale.purchased"
                && s.trace_id == trace
                && s.attributes
                    .get("messaging.consumer.group.name")
                    .map(String::as_str)
                    == Some(group)
        })
        .await
}

/// Waits until the spans between `span` and `ancestor` have arrived and link them.
async fn descends_eventually(receiver: &Receiver, span: &Received, ancestor: &str) {
    titan_kit::testing::eventually(&format!("{} under {ancestor}", span.name), || async {
        receiver.descends(span, ancestor).then_some(())
    })
    .await;
}
