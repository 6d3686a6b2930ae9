//! Pricing against the real binary: two `titan serve pricing` replicas; a product and a
//! DYNAMIC rule created on one are priced at once and read anonymously on the other (its cache
//! refreshes); a FIXED rule of higher priority wins; history says why; elasticity from explicit
//! observations, and "not enough data" instead of a number; roles and field-named refusals.

use titan_e2e::{Cell, CellOptions, authed};
use titan_kit::{error::reason_of, testing::eventually};
use titan_proto::pricing::v1::{self as pb, pricing_service_client::PricingServiceClient};
use tonic::{Code, Request};

fn rule(product: &str, strategy: pb::StrategyKind, base: i64, priority: i32) -> pb::Rule {
    pb::Rule {
        product_id: product.into(),
        strategy: strategy as i32,
        currency: "USD".into(),
        base_price: base,
        min_price: 5_000,
        max_price: 20_000,
        priority,
        price_ending: "99".into(),
        ..pb::Rule::default()
    }
}

async fn price(
    client: &mut PricingServiceClient<tonic::transport::Channel>,
    product: &str,
) -> Option<i64> {
    client
        .get_price(Request::new(pb::GetPriceRequest {
            product_id: product.into(),
            segment: String::new(),
        }))
        .await
        .ok()
        .and_then(|r| r.into_inner().price)
        .and_then(|p| p.price)
        .map(|m| m.minor_units)
}

#[tokio::test(flavor = "multi_thread")]
async fn prices_rules_history_and_elasticity_over_two_replicas() {
    let cell = Cell::start_with(CellOptions {
        // analytics owns analytics_events, which pricing reads demand from.
        services: vec!["pricing".into(), "analytics".into()],
        ..CellOptions::default()
    })
    .await;
    let b = cell.replica();
    let mut a_client = PricingServiceClient::new(cell.channel().await);
    let mut b_client = PricingServiceClient::new(b.channel().await);
    let (admin, service, buyer) = (
        cell.token("ops", &["admin"]),
        cell.token("catalogue", &["service"]),
        cell.token("buyer-1", &[]),
    );

    for (id, inventory) in [("sku-1", 0), ("sku-2", 10_000)] {
        a_client
            .put_product(authed(
                pb::PutProductRequest {
                    request_id: format!("put-{id}"),
                    product_id: id.into(),
                    category: "shoes".into(),
                    inventory_bps: inventory,
                },
                &service,
            ))
            .await
            .expect("put product");
    }
    let denied = a_client
        .create_rule(authed(
            pb::CreateRuleRequest {
                request_id: "r0".into(),
                rule: Some(rule("sku-1", pb::StrategyKind::Dynamic, 10_000, 0)),
            },
            &buyer,
        ))
        .await
        .expect_err("a buyer cannot create rules");
    assert_eq!(denied.code(), Code::PermissionDenied);
    let created = a_client
        .create_rule(authed(
            pb::CreateRuleRequest {
                request_id: "r1".into(),
                rule: Some(pb::Rule {
                    product_id: String::new(),
                    category: "shoes".into(),
                    ..rule("", pb::StrategyKind::Dynamic, 10_000, 0)
                }),
            },
            &admin,
        ))
        .await
        .expect("create rule")
        .into_inner()
        .rule
        .expect("rule");
    assert_eq!(created.category, "shoes");
    // No analytics events: demand = 10·(1 − stock). sku-1 (sold out): ×0.94 = 9400 → 9399;
    // sku-2 (full): ×0.9 = 9000 → 8999.
    assert_eq!(price(&mut a_client, "sku-1").await, Some(9_399));
    assert_eq!(price(&mut a_client, "sku-2").await, Some(8_999));
    eventually("the other replica's cache", || async {
        let mut c = b_client.clone();
        (price(&mut c, "sku-1").await == Some(9_399)).then_some(())
    })
    .await;

    // A product's own FIXED rule of higher priority wins.
    a_client
        .create_rule(authed(
            pb::CreateRuleRequest {
                request_id: "r2".into(),
                rule: Some(rule("sku-2", pb::StrategyKind::Fixed, 12_499, 10)),
            },
            &admin,
        ))
        .await
        .expect("fixed rule");
    let prices = a_client
        .get_prices(Request::new(pb::GetPricesRequest {
            product_ids: vec!["sku-1".into(), "sku-2".into(), "sku-404".into()],
            segment: String::new(),
        }))
        .await
        .expect("get prices")
        .into_inner();
    assert_eq!(
        prices
            .prices
            .iter()
            .map(|p| (
                p.product_id.as_str(),
                p.price.as_ref().map_or(0, |m| m.minor_units),
                p.strategy.as_str()
            ))
            .collect::<Vec<_>>(),
        vec![("sku-1", 9_399, "DYNAMIC"), ("sku-2", 12_499, "FIXED")]
    );
    assert_eq!(prices.missing_product_ids, vec!["sku-404".to_owned()]);

    let history = a_client
        .list_price_history(authed(
            pb::ListPriceHistoryRequest {
                product_id: "sku-2".into(),
                page_size: 10,
                page_token: String::new(),
            },
            &admin,
        ))
        .await
        .expect("history")
        .into_inner()
        .changes;
    assert_eq!(
        history
            .iter()
            .map(|c| (
                c.new_price.as_ref().map_or(0, |m| m.minor_units),
                c.strategy.as_str()
            ))
            .collect::<Vec<_>>(),
        vec![(12_499, "FIXED"), (8_999, "DYNAMIC")]
    );
    assert!(
        history[1].reason.contains("ending 99 → 8999"),
        "{}",
        history[1].reason
    );

    // Bad input names the field and stores nothing.
    let too_many = a_client
        .get_prices(Request::new(pb::GetPricesRequest {
            product_ids: (0..101).map(|i| format!("p{i}")).collect(),
            segment: String::new(),
        }))
        .await
        .expect_err("101 ids");
    assert_eq!(too_many.code(), Code::InvalidArgument);
    assert!(
        too_many.message().starts_with("product_ids:"),
        "{}",
        too_many.message()
    );
    let bad = a_client
        .create_rule(authed(
            pb::CreateRuleRequest {
                request_id: "r3".into(),
                rule: Some(pb::Rule {
                    min_price: 30_000,
                    ..rule("sku-1", pb::StrategyKind::Dynamic, 10_000, 0)
                }),
            },
            &admin,
        ))
        .await
        .expect_err("min above max");
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(
        bad.message().starts_with("rule.max_price:"),
        "{}",
        bad.message()
    );
    let rules = a_client
        .list_rules(authed(pb::ListRulesRequest {}, &admin))
        .await
        .expect("rules")
        .into_inner()
        .rules;
    assert_eq!(rules.len(), 2);

    // Elasticity from explicit observations: Q = 1000 · P^-1.5 exactly.
    let analyst = cell.token("analyst-1", &["analyst"]);
    let observations: Vec<pb::Observation> = (0..12)
        .map(|i| {
            let p = 5.0 + f64::from(i);
            pb::Observation {
                price: p,
                quantity: 1000.0 * p.powf(-1.5),
                ..pb::Observation::default()
            }
        })
        .collect();
    let fit = b_client
        .estimate_elasticity(authed(
            pb::EstimateElasticityRequest {
                product_id: String::new(),
                observations: observations.clone(),
            },
            &analyst,
        ))
        .await
        .expect("elasticity")
        .into_inner()
        .elasticity
        .expect("fit");
    assert!((fit.elasticity + 1.5).abs() < 1e-9, "{fit:?}");
    assert_eq!((fit.n, fit.df), (12, 10));
    let few = b_client
        .estimate_elasticity(authed(
            pb::EstimateElasticityRequest {
                product_id: String::new(),
                observations: observations[..5].to_vec(),
            },
            &analyst,
        ))
        .await
        .expect_err("too few points");
    assert_eq!(few.code(), Code::FailedPrecondition);
    assert_eq!(reason_of(&few).as_deref(), Some("NOT_ENOUGH_DATA"));
    assert!(
        few.message().contains("5 observations, at least 10"),
        "{}",
        few.message()
    );
    // sku-1 has no sales in analytics: no number either.
    let none = b_client
        .estimate_elasticity(authed(
            pb::EstimateElasticityRequest {
                product_id: "sku-1".into(),
                observations: Vec::new(),
            },
            &analyst,
        ))
        .await
        .expect_err("no history");
    assert_eq!(reason_of(&none).as_deref(), Some("NOT_ENOUGH_DATA"));
    let zero = b_client
        .estimate_elasticity(authed(
            pb::EstimateElasticityRequest {
                product_id: String::new(),
                observations: vec![
                    pb::Observation {
                        price: 1.0,
                        quantity: 0.0,
                        ..pb::Observation::default()
                    };
                    10
                ],
            },
            &analyst,
        ))
        .await
        .expect_err("zero quantity");
    assert_eq!(zero.code(), Code::InvalidArgument);
    assert!(
        zero.message().starts_with("observations[0].quantity:"),
        "{}",
        zero.message()
    );
}
