//! Analytics against the real binary: a flash-sale purchase travels outbox → relay → Redis
//! stream → analytics → ClickHouse and shows in the KPIs next to the buyer's own tracked
//! events; and the edge's answers to the wrong caller and to bad input.

use titan_e2e::{Cell, CellOptions, authed, seconds_from_now as ts};
use titan_kit::testing::eventually;
use titan_proto::{
    analytics::v1::{self as pb, analytics_service_client::AnalyticsServiceClient},
    flashsale::v1::{self as fs, flash_sale_service_client::FlashSaleServiceClient},
};
use tonic::{Code, Request};

pub(crate) fn event(id: &str, name: &str, product: &str) -> pb::Event {
    pb::Event {
        event_id: id.into(),
        name: name.into(),
        timestamp: Some(ts(-60)),
        session_id: "s1".into(),
        properties: Some(prost_types::Struct {
            fields: [(
                "product_id".to_owned(),
                prost_types::Value {
                    kind: Some(prost_types::value::Kind::StringValue(product.into())),
                },
            )]
            .into_iter()
            .collect(),
        }),
        ..pb::Event::default()
    }
}

/// A client `purchase` of 10 000.00 USD for an order that never happened.
fn forged_purchase(id: &str) -> pb::Event {
    use prost_types::value::Kind;
    let field = |kind| prost_types::Value { kind: Some(kind) };
    pb::Event {
        event_id: id.into(),
        name: "purchase".into(),
        timestamp: Some(ts(-20)),
        session_id: "s1".into(),
        properties: Some(prost_types::Struct {
            fields: [
                ("product_id", field(Kind::StringValue("sku-9".into()))),
                ("order_id", field(Kind::StringValue("forged-1".into()))),
                ("revenue", field(Kind::NumberValue(1_000_000.0))),
                ("currency", field(Kind::StringValue("USD".into()))),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
        }),
        ..pb::Event::default()
    }
}

/// `buyer` buys 2 units at 7.00 USD through the flash sale service (the payment system
/// confirms), in a sale of their own; returns the order id.
pub(crate) async fn buy(cell: &Cell, buyer: &str, buyer_id: &str) -> String {
    let mut client = FlashSaleServiceClient::new(cell.channel().await);
    // Request ids of this purchase's own, which do not name the buyer (an erasure of the
    // buyer must not find them).
    let tag = uuid::Uuid::now_v7();
    let admin = cell.token("admin-1", &["admin"]);
    let payments = cell.token("payments", &["service"]);
    let spec = fs::SaleSpec {
        product_id: "sku-9".into(),
        original_price: Some(fs::Money {
            currency: "USD".into(),
            minor_units: 1_000,
        }),
        sale_price: Some(fs::Money {
            currency: "USD".into(),
            minor_units: 700,
        }),
        total_quantity: 10,
        max_per_user: 5,
        starts_at: Some(ts(-1)),
        ends_at: Some(ts(3600)),
        pow_difficulty: 0,
    };
    let sale = client
        .create_sale(authed(
            fs::CreateSaleRequest {
                request_id: format!("c-{tag}"),
                spec: Some(spec),
            },
            &admin,
        ))
        .await
        .expect("create")
        .into_inner()
        .sale
        .expect("sale");
    client
        .warm_up_sale(authed(
            fs::WarmUpSaleRequest {
                sale_id: sale.id.clone(),
            },
            &admin,
        ))
        .await
        .expect("warm");
    let reserved = client
        .attempt_purchase(authed(
            fs::AttemptPurchaseRequest {
                request_id: format!("a-{tag}"),
                sale_id: sale.id,
                quantity: 2,
                challenge: String::new(),
                nonce: String::new(),
            },
            buyer,
        ))
        .await
        .expect("reserve")
        .into_inner();
    client
        .confirm_purchase(authed(
            fs::ConfirmPurchaseRequest {
                request_id: format!("p-{tag}"),
                reservation_id: reserved.reservation_id,
                payment_reference: format!("pay-{tag}"),
                buyer_id: buyer_id.into(),
            },
            &payments,
        ))
        .await
        .expect("confirm")
        .into_inner()
        .order
        .expect("order")
        .id
}

#[tokio::test(flavor = "multi_thread")]
async fn a_purchase_reaches_the_kpis_through_the_bus() {
    let cell = Cell::start_with(CellOptions {
        services: vec!["flashsale".into(), "analytics".into()],
        config: Some(
            "services:\n  analytics:\n    sources: [flashsale]\n    flushIntervalMillis: 20\n"
                .into(),
        ),
        ..CellOptions::default()
    })
    .await;
    let mut analytics = AnalyticsServiceClient::new(cell.channel().await);
    let alice = cell.token("alice", &[]);
    let analyst = cell.token("ann", &["analyst"]);

    let tracked = analytics
        .track_events(authed(
            pb::TrackEventsRequest {
                events: vec![
                    event("e1", "product_view", "sku-9"),
                    pb::Event {
                        timestamp: Some(ts(-30)),
                        ..event("e2", "add_to_cart", "sku-9")
                    },
                    // A purchase the client made up: kept, but never revenue.
                    forged_purchase("e3"),
                ],
            },
            &alice,
        ))
        .await
        .expect("track")
        .into_inner();
    assert_eq!(tracked.accepted, 3);
    let order = buy(&cell, &alice, "alice").await;
    uuid::Uuid::parse_str(&order).expect("the order id is a uuid");

    let period = pb::Period {
        from: Some(ts(-3600)),
        to: Some(ts(3600)),
    };
    let kpis = eventually("the order reaches the kpis", || {
        let mut analytics = analytics.clone();
        let analyst = analyst.clone();
        async move {
            let report = analytics
                .get_kpis(authed(
                    pb::GetKpisRequest {
                        period: Some(period),
                        granularity: pb::Granularity::Day as i32,
                        cell: String::new(),
                    },
                    &analyst,
                ))
                .await
                .expect("kpis")
                .into_inner();
            let totals = report.totals.into_iter().next()?.kpis?;
            // The counts and the revenue are separate queries: a report read while the bus
            // event lands may show its revenue and not yet its count (CI saw (3, 1, 0) with
            // the order's revenue), so wait for both. The tracked events are written by the
            // replica's buffer, which a loaded machine may flush after the bus event lands
            // (the full suite saw (3, 1, 1)): wait for the four as well.
            (totals.purchasers > 0 && !totals.revenue.is_empty() && totals.events >= 4)
                .then_some(totals)
        }
    })
    .await;
    // Alice's three tracked events and the flashsale.purchased event of her order; only the
    // order the flash sale service reported is revenue.
    assert_eq!((kpis.events, kpis.unique_users, kpis.purchasers), (4, 1, 1));
    let revenue: Vec<(&str, i64, u64)> = kpis
        .revenue
        .iter()
        .map(|r| (r.currency.as_str(), r.revenue_minor, r.orders))
        .collect();
    assert_eq!(revenue, [("USD", 1400, 1)]);
    let products = analytics
        .get_product_performance(authed(
            pb::GetProductPerformanceRequest {
                period: Some(period),
                currency: "USD".into(),
                product_ids: vec!["sku-9".into()],
                limit: 10,
            },
            &analyst,
        ))
        .await
        .expect("products")
        .into_inner()
        .products;
    let sku9: Vec<(&str, u64, u64, u64, i64)> = products
        .iter()
        .map(|p| {
            (
                p.product_id.as_str(),
                p.views,
                p.add_to_carts,
                p.purchases,
                p.revenue_minor,
            )
        })
        .collect();
    assert_eq!(sku9, [("sku-9", 1, 1, 1, 1400)]);

    let funnel = analytics
        .get_funnel(authed(
            pb::GetFunnelRequest {
                period: Some(period),
                steps: vec![
                    "product_view".into(),
                    "add_to_cart".into(),
                    "flashsale.purchased".into(),
                ],
                window_seconds: 3600,
            },
            &analyst,
        ))
        .await
        .expect("funnel")
        .into_inner();
    let users: Vec<u64> = funnel.steps.iter().map(|s| s.users).collect();
    assert_eq!(users, [1, 1, 1]);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_edge_refuses_the_wrong_caller_and_bad_input() {
    let cell = Cell::start_with(CellOptions {
        services: vec!["analytics".into()],
        ..CellOptions::default()
    })
    .await;
    let mut analytics = AnalyticsServiceClient::new(cell.channel().await);
    let alice = cell.token("alice", &[]);
    let analyst = cell.token("ann", &["analyst"]);
    let one = |e: pb::Event| pb::TrackEventRequest { event: Some(e) };

    let anonymous = analytics
        .track_event(Request::new(one(event("e1", "click", "p"))))
        .await
        .expect_err("no token");
    assert_eq!(anonymous.code(), Code::Unauthenticated);

    let mut for_bob = event("e1", "click", "p");
    for_bob.user_id = "bob".into();
    let theirs = analytics
        .track_event(authed(one(for_bob), &alice))
        .await
        .expect_err("someone else's event");
    assert_eq!(theirs.code(), Code::PermissionDenied);

    let bad = analytics
        .track_events(authed(
            pb::TrackEventsRequest {
                events: vec![event("e1", "click", "p"), event("e 2", "click", "p")],
            },
            &alice,
        ))
        .await
        .expect_err("bad event id");
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(
        bad.message().starts_with("events[1]: event_id \"e 2\""),
        "{}",
        bad.message()
    );

    let not_analyst = analytics
        .get_realtime(authed(pb::GetRealtimeRequest { top: 5 }, &alice))
        .await
        .expect_err("reports need a role");
    assert_eq!(not_analyst.code(), Code::PermissionDenied);

    let backwards = analytics
        .get_funnel(authed(
            pb::GetFunnelRequest {
                period: Some(pb::Period {
                    from: Some(ts(0)),
                    to: Some(ts(-60)),
                }),
                steps: vec!["page_view".into(), "purchase".into()],
                window_seconds: 60,
            },
            &analyst,
        ))
        .await
        .expect_err("period ends before it starts");
    assert_eq!(backwards.code(), Code::InvalidArgument);
    assert!(
        backwards.message().contains("must be before"),
        "{}",
        backwards.message()
    );

    let no_granularity = analytics
        .get_kpis(authed(
            pb::GetKpisRequest {
                period: Some(pb::Period {
                    from: Some(ts(-60)),
                    to: Some(ts(0)),
                }),
                granularity: 0,
                cell: String::new(),
            },
            &analyst,
        ))
        .await
        .expect_err("granularity is required");
    assert_eq!(no_granularity.code(), Code::InvalidArgument);

    let realtime = analytics
        .get_realtime(authed(pb::GetRealtimeRequest { top: 5 }, &analyst))
        .await
        .expect("realtime")
        .into_inner();
    assert_eq!(
        (realtime.events, realtime.window_seconds),
        (0, 300),
        "nothing was stored"
    );
}
