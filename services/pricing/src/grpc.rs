//! Pricing's gRPC edge: roles, proto ↔ domain with every input validated before any I/O, and
//! errors → status.

use std::sync::Arc;

use titan_kit::{
    auth::{self, Caller},
    error::to_status,
    idempotency,
    money::Money,
    wire::{required_time, timestamp},
};
use titan_proto::pricing::v1::{self as pb, pricing_service_server::PricingService};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::{
    app::{
        Change, DemandSource, Estimate, Price, Pricing, PricingError, PricingStore, Product, Scope,
    },
    domain::{
        CompetitorPrice, Ending, Fit, InputError, Observation, ProductId, Rule, RuleDraft, SERVICE,
        Segment, Strategy, Target,
        input::name,
        rule::{Position, SegmentMultiplier, Slot},
    },
};

pub const DOMAIN: &str = "pricing.titan.dev";
/// Most products per `GetPrices`.
pub const MAX_PRICES: usize = 100;
/// Most products per `Reoptimize`.
pub const MAX_REOPTIMIZE: usize = 1_000;
/// Most explicit observations per `EstimateElasticity`.
pub const MAX_OBSERVATIONS: usize = 10_000;
const ADMIN: &str = "admin";
const ANALYST: &str = "analyst";

fn status(e: PricingError) -> Status {
    to_status(DOMAIN, &e)
}

fn invalid(e: InputError) -> Status {
    status(PricingError::Invalid(e))
}

pub struct Grpc<S, D> {
    app: Arc<Pricing<S, D>>,
}

impl<S, D> std::fmt::Debug for Grpc<S, D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grpc").finish_non_exhaustive()
    }
}

impl<S, D> Grpc<S, D> {
    pub fn new(app: Arc<Pricing<S, D>>) -> Self {
        Self { app }
    }
}

fn key<M: prost::Message>(
    method: &'static str,
    caller: &Caller,
    request_id: &str,
    body: &M,
) -> Result<idempotency::Key, Status> {
    idempotency::Key::of_message(SERVICE, method, caller, request_id, body)
        .map_err(|e| to_status(DOMAIN, &e))
}

fn money_out(m: Money) -> pb::Money {
    pb::Money {
        minor_units: m.minor_units,
        currency: m.currency.to_string(),
    }
}

fn money_in(field: &str, m: Option<pb::Money>) -> Result<Money, InputError> {
    let m = m.ok_or_else(|| InputError::new(field, "is required"))?;
    let money = Money::parse(m.minor_units, &m.currency)
        .map_err(|e| InputError::new(field, e.to_string()))?;
    if money.minor_units == 0 {
        return Err(InputError::new(field, "must be above 0"));
    }
    Ok(money)
}

fn price_out(p: Price) -> pb::Price {
    pb::Price {
        product_id: p.product_id.to_string(),
        segment: p.segment.as_str().to_owned(),
        price: Some(money_out(p.price)),
        rule_id: p.rule_id.to_string(),
        strategy: p.strategy,
        updated_at: Some(timestamp(p.updated_at)),
    }
}

fn json_to_value(v: serde_json::Value) -> prost_types::Value {
    use prost_types::value::Kind;
    let kind = match v {
        serde_json::Value::Null => Kind::NullValue(0),
        serde_json::Value::Bool(b) => Kind::BoolValue(b),
        serde_json::Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        serde_json::Value::String(s) => Kind::StringValue(s),
        serde_json::Value::Array(a) => Kind::ListValue(prost_types::ListValue {
            values: a.into_iter().map(json_to_value).collect(),
        }),
        serde_json::Value::Object(o) => Kind::StructValue(json_to_struct(o)),
    };
    prost_types::Value { kind: Some(kind) }
}

fn json_to_struct(o: serde_json::Map<String, serde_json::Value>) -> prost_types::Struct {
    prost_types::Struct {
        fields: o.into_iter().map(|(k, v)| (k, json_to_value(v))).collect(),
    }
}

fn change_out(c: Change) -> pb::PriceChange {
    pb::PriceChange {
        id: c.id,
        product_id: c.product_id.to_string(),
        segment: c.segment.as_str().to_owned(),
        old_price: c.old.map(money_out),
        new_price: Some(money_out(c.new)),
        rule_id: c.rule_id.to_string(),
        strategy: c.strategy,
        inputs: match c.inputs {
            serde_json::Value::Object(o) => Some(json_to_struct(o)),
            _ => None,
        },
        reason: c.reason,
        changed_at: Some(timestamp(c.changed_at)),
    }
}

fn rule_out(r: &Rule) -> pb::Rule {
    let (product_id, category) = match &r.target {
        Target::Product(p) => (p.to_string(), String::new()),
        Target::Category(c) => (String::new(), c.clone()),
    };
    let mut out = pb::Rule {
        id: r.id.to_string(),
        product_id,
        category,
        currency: r.base.currency.to_string(),
        base_price: r.base.minor_units,
        min_price: r.min.minor_units,
        max_price: r.max.minor_units,
        priority: r.priority,
        price_ending: r.ending.map(Ending::as_string).unwrap_or_default(),
        min_step: r.min_step,
        created_at: Some(timestamp(r.created_at)),
        ..Default::default()
    };
    out.strategy = match &r.strategy {
        Strategy::Dynamic => pb::StrategyKind::Dynamic,
        Strategy::Fixed => pb::StrategyKind::Fixed,
        Strategy::Competitive {
            position,
            margin_bps,
            max_age_seconds,
        } => {
            out.competitive = Some(pb::CompetitiveParams {
                position: match position {
                    Position::Lowest => pb::CompetitorPosition::Lowest,
                    Position::Average => pb::CompetitorPosition::Average,
                    Position::Highest => pb::CompetitorPosition::Highest,
                } as i32,
                margin_bps: *margin_bps,
                max_age_seconds: *max_age_seconds,
            });
            pb::StrategyKind::Competitive
        }
        Strategy::TimeBased {
            utc_offset_minutes,
            slots,
        } => {
            out.time_based = Some(pb::TimeBasedParams {
                utc_offset_minutes: *utc_offset_minutes,
                slots: slots
                    .iter()
                    .map(|s| pb::TimeSlot {
                        weekdays: s.weekdays.iter().map(|d| u32::from(*d)).collect(),
                        start_hour: u32::from(s.start_hour),
                        end_hour: u32::from(s.end_hour),
                        multiplier_bps: s.multiplier_bps,
                    })
                    .collect(),
            });
            pb::StrategyKind::TimeBased
        }
        Strategy::Segmented { segments } => {
            out.segmented = Some(pb::SegmentedParams {
                segments: segments
                    .iter()
                    .map(|s| pb::SegmentPrice {
                        segment: s.segment.as_str().to_owned(),
                        multiplier_bps: s.multiplier_bps,
                    })
                    .collect(),
            });
            pb::StrategyKind::Segmented
        }
        Strategy::Penetration {
            start_bps,
            steps,
            step_seconds,
            starts_at,
        } => {
            out.penetration = Some(pb::PenetrationParams {
                start_bps: *start_bps,
                steps: *steps,
                step_seconds: *step_seconds,
                starts_at: Some(timestamp(*starts_at)),
            });
            pb::StrategyKind::Penetration
        }
    } as i32;
    out
}

fn small(field: &str, n: u32, max: u32) -> Result<u8, InputError> {
    u8::try_from(n)
        .ok()
        .filter(|v| u32::from(*v) <= max)
        .ok_or_else(|| InputError::new(field, format!("{n} is above {max}")))
}

fn required<T>(field: &str, v: Option<T>) -> Result<T, InputError> {
    v.ok_or_else(|| InputError::new(field, "is required for this strategy"))
}

fn strategy_in(r: &pb::Rule) -> Result<Strategy, InputError> {
    let kind = pb::StrategyKind::try_from(r.strategy).map_err(|_| {
        InputError::new("rule.strategy", format!("{} is not a strategy", r.strategy))
    })?;
    Ok(match kind {
        pb::StrategyKind::Unspecified => {
            return Err(InputError::new("rule.strategy", "is required"));
        }
        pb::StrategyKind::Dynamic => Strategy::Dynamic,
        pb::StrategyKind::Fixed => Strategy::Fixed,
        pb::StrategyKind::Competitive => {
            let c = required("rule.competitive", r.competitive.as_ref())?;
            let position = match pb::CompetitorPosition::try_from(c.position) {
                Ok(pb::CompetitorPosition::Lowest) => Position::Lowest,
                Ok(pb::CompetitorPosition::Average) => Position::Average,
                Ok(pb::CompetitorPosition::Highest) => Position::Highest,
                _ => {
                    return Err(InputError::new(
                        "rule.competitive.position",
                        "must be LOWEST, AVERAGE or HIGHEST",
                    ));
                }
            };
            Strategy::Competitive {
                position,
                margin_bps: c.margin_bps,
                max_age_seconds: c.max_age_seconds,
            }
        }
        pb::StrategyKind::TimeBased => {
            let t = required("rule.time_based", r.time_based.as_ref())?;
            let slots = t
                .slots
                .iter()
                .take(crate::domain::rule::MAX_SLOTS + 1)
                .enumerate()
                .map(|(i, s)| {
                    let field = format!("rule.time_based.slots[{i}]");
                    Ok(Slot {
                        weekdays: s
                            .weekdays
                            .iter()
                            .take(8)
                            .map(|d| small(&format!("{field}.weekdays"), *d, 6))
                            .collect::<Result<_, _>>()?,
                        start_hour: small(&format!("{field}.start_hour"), s.start_hour, 23)?,
                        end_hour: small(&format!("{field}.end_hour"), s.end_hour, 24)?,
                        multiplier_bps: s.multiplier_bps,
                    })
                })
                .collect::<Result<Vec<_>, InputError>>()?;
            Strategy::TimeBased {
                utc_offset_minutes: t.utc_offset_minutes,
                slots,
            }
        }
        pb::StrategyKind::Segmented => {
            let s = required("rule.segmented", r.segmented.as_ref())?;
            let segments = s
                .segments
                .iter()
                .take(crate::domain::rule::MAX_SEGMENTS + 1)
                .enumerate()
                .map(|(i, s)| {
                    Ok(SegmentMultiplier {
                        segment: Segment::parse(
                            &format!("rule.segmented.segments[{i}].segment"),
                            &s.segment,
                        )?,
                        multiplier_bps: s.multiplier_bps,
                    })
                })
                .collect::<Result<Vec<_>, InputError>>()?;
            Strategy::Segmented { segments }
        }
        pb::StrategyKind::Penetration => {
            let p = required("rule.penetration", r.penetration.as_ref())?;
            Strategy::Penetration {
                start_bps: p.start_bps,
                steps: p.steps,
                step_seconds: p.step_seconds,
                starts_at: required_time("rule.penetration.starts_at", p.starts_at.as_ref())
                    .map_err(|m| InputError::new("rule.penetration.starts_at", m))?,
            }
        }
    })
}

fn rule_in(r: &pb::Rule, now: chrono::DateTime<chrono::Utc>) -> Result<Rule, InputError> {
    let target = match (r.product_id.is_empty(), r.category.is_empty()) {
        (false, true) => Target::Product(ProductId::parse("rule.product_id", &r.product_id)?),
        (true, false) => Target::Category(r.category.clone()),
        _ => {
            return Err(InputError::new(
                "rule.product_id",
                "exactly one of product_id and category must be set",
            ));
        }
    };
    RuleDraft {
        target,
        strategy: strategy_in(r)?,
        currency: r.currency.clone(),
        base: r.base_price,
        min: r.min_price,
        max: r.max_price,
        priority: r.priority,
        ending: Ending::parse("rule.price_ending", &r.price_ending)?,
        min_step: r.min_step,
    }
    .validate(Uuid::now_v7(), now)
}

fn fit_out(f: &Fit) -> pb::Elasticity {
    pb::Elasticity {
        elasticity: f.elasticity,
        intercept: f.intercept,
        std_error: f.std_error,
        ci_low: f.ci_low,
        ci_high: f.ci_high,
        r_squared: f.r_squared,
        n: f.n as u64,
        df: f.df as u64,
        periods: f.periods as u64,
    }
}

fn observations_in(obs: &[pb::Observation]) -> Result<Vec<Observation>, InputError> {
    if obs.len() > MAX_OBSERVATIONS {
        return Err(InputError::new(
            "observations",
            format!(
                "has {} entries; at most {MAX_OBSERVATIONS} are allowed",
                obs.len()
            ),
        ));
    }
    let with_period = obs.first().is_some_and(|o| !o.period.is_empty());
    obs.iter()
        .enumerate()
        .map(|(i, o)| {
            let positive = |what: &str, v: f64| {
                if v.is_finite() && v > 0.0 {
                    Ok(())
                } else {
                    Err(InputError::new(
                        format!("observations[{i}].{what}"),
                        format!("{v} is not a positive number (ln of it is needed)"),
                    ))
                }
            };
            positive("price", o.price)?;
            positive("quantity", o.quantity)?;
            let weight = if o.weight == 0.0 { 1.0 } else { o.weight };
            positive("weight", weight)?;
            if o.period.is_empty() == with_period {
                return Err(InputError::new(
                    format!("observations[{i}].period"),
                    "either every observation has a period or none has",
                ));
            }
            Ok(Observation {
                price: o.price,
                quantity: o.quantity,
                weight,
                period: with_period
                    .then(|| name(&format!("observations[{i}].period"), &o.period))
                    .transpose()?,
            })
        })
        .collect()
}

fn page_size(n: u32) -> Result<usize, InputError> {
    match n {
        0 => Ok(50),
        1..=100 => Ok(n as usize),
        _ => Err(InputError::new("page_size", format!("{n} is above 100"))),
    }
}

#[tonic::async_trait]
impl<S: PricingStore, D: DemandSource> PricingService for Grpc<S, D> {
    async fn get_price(
        &self,
        request: Request<pb::GetPriceRequest>,
    ) -> Result<Response<pb::GetPriceResponse>, Status> {
        let r = request.into_inner();
        let product = ProductId::parse("product_id", &r.product_id).map_err(invalid)?;
        let segment = Segment::parse("segment", &r.segment).map_err(invalid)?;
        let price = self.app.price(&product, &segment).ok_or_else(|| {
            status(PricingError::NotFound(format!(
                "product {product} has no price"
            )))
        })?;
        Ok(Response::new(pb::GetPriceResponse {
            price: Some(price_out(price)),
        }))
    }

    async fn get_prices(
        &self,
        request: Request<pb::GetPricesRequest>,
    ) -> Result<Response<pb::GetPricesResponse>, Status> {
        let r = request.into_inner();
        if r.product_ids.is_empty() || r.product_ids.len() > MAX_PRICES {
            return Err(invalid(InputError::new(
                "product_ids",
                format!(
                    "has {} ids; 1..={MAX_PRICES} are allowed",
                    r.product_ids.len()
                ),
            )));
        }
        let segment = Segment::parse("segment", &r.segment).map_err(invalid)?;
        let ids = r
            .product_ids
            .iter()
            .map(|id| ProductId::parse("product_ids", id))
            .collect::<Result<Vec<_>, _>>()
            .map_err(invalid)?;
        let mut out = pb::GetPricesResponse::default();
        for id in ids {
            match self.app.price(&id, &segment) {
                Some(p) => out.prices.push(price_out(p)),
                None => out.missing_product_ids.push(id.to_string()),
            }
        }
        Ok(Response::new(out))
    }

    async fn put_product(
        &self,
        request: Request<pb::PutProductRequest>,
    ) -> Result<Response<pb::PutProductResponse>, Status> {
        let caller = auth::caller(&request)?;
        caller.require_any_role(&[auth::SERVICE_ROLE, ADMIN])?;
        let r = request.into_inner();
        let product = Product {
            id: ProductId::parse("product_id", &r.product_id).map_err(invalid)?,
            category: name("category", &r.category).map_err(invalid)?,
            inventory_bps: if r.inventory_bps <= 10_000 {
                r.inventory_bps
            } else {
                return Err(invalid(InputError::new(
                    "inventory_bps",
                    format!("{} is above 10000", r.inventory_bps),
                )));
            },
        };
        let key = key("PutProduct", &caller, &r.request_id, &r)?;
        self.app.put_product(&key, product).await.map_err(status)?;
        Ok(Response::new(pb::PutProductResponse {}))
    }

    async fn create_rule(
        &self,
        request: Request<pb::CreateRuleRequest>,
    ) -> Result<Response<pb::CreateRuleResponse>, Status> {
        let (caller, r) = auth::caller_with_role(request, ADMIN)?;
        let body = r
            .rule
            .as_ref()
            .ok_or_else(|| invalid(InputError::new("rule", "is required")))?;
        let rule = rule_in(body, self.app.now()).map_err(invalid)?;
        let key = key("CreateRule", &caller, &r.request_id, &r)?;
        let rule = self.app.create_rule(&key, rule).await.map_err(status)?;
        Ok(Response::new(pb::CreateRuleResponse {
            rule: Some(rule_out(&rule)),
        }))
    }

    async fn delete_rule(
        &self,
        request: Request<pb::DeleteRuleRequest>,
    ) -> Result<Response<pb::DeleteRuleResponse>, Status> {
        let (caller, r) = auth::caller_with_role(request, ADMIN)?;
        let id = Uuid::parse_str(&r.rule_id)
            .map_err(|_| invalid(InputError::new("rule_id", "is not a UUID")))?;
        let key = key("DeleteRule", &caller, &r.request_id, &r)?;
        let rule = self.app.delete_rule(&key, id).await.map_err(status)?;
        Ok(Response::new(pb::DeleteRuleResponse {
            rule: Some(rule_out(&rule)),
        }))
    }

    async fn list_rules(
        &self,
        request: Request<pb::ListRulesRequest>,
    ) -> Result<Response<pb::ListRulesResponse>, Status> {
        auth::caller_with_role(request, ADMIN)?;
        let rules = self.app.rules().await.map_err(status)?;
        Ok(Response::new(pb::ListRulesResponse {
            rules: rules.iter().map(rule_out).collect(),
        }))
    }

    async fn reoptimize(
        &self,
        request: Request<pb::ReoptimizeRequest>,
    ) -> Result<Response<pb::ReoptimizeResponse>, Status> {
        let (_, r) = auth::caller_with_role(request, ADMIN)?;
        if r.product_ids.len() > MAX_REOPTIMIZE {
            return Err(invalid(InputError::new(
                "product_ids",
                format!(
                    "has {} ids; at most {MAX_REOPTIMIZE} are allowed (none = every product)",
                    r.product_ids.len()
                ),
            )));
        }
        let scope = if r.product_ids.is_empty() {
            Scope::All
        } else {
            Scope::Products(
                r.product_ids
                    .iter()
                    .map(|id| ProductId::parse("product_ids", id))
                    .collect::<Result<_, _>>()
                    .map_err(invalid)?,
            )
        };
        let report = self.app.reoptimize(scope).await.map_err(status)?;
        Ok(Response::new(pb::ReoptimizeResponse {
            products: report.products,
            without_rule: report.without_rule,
            computed: report.computed,
            changed: report.changed,
        }))
    }

    async fn list_price_history(
        &self,
        request: Request<pb::ListPriceHistoryRequest>,
    ) -> Result<Response<pb::ListPriceHistoryResponse>, Status> {
        let (_, r) = auth::caller_with_role(request, ADMIN)?;
        let product = ProductId::parse("product_id", &r.product_id).map_err(invalid)?;
        let limit = page_size(r.page_size).map_err(invalid)?;
        let before = if r.page_token.is_empty() {
            None
        } else {
            Some(r.page_token.parse::<i64>().map_err(|_| {
                invalid(InputError::new(
                    "page_token",
                    "is not a token from ListPriceHistory",
                ))
            })?)
        };
        let changes = self
            .app
            .history(&product, before, limit)
            .await
            .map_err(status)?;
        let next_page_token = if changes.len() == limit {
            changes.last().map(|c| c.id.to_string()).unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListPriceHistoryResponse {
            changes: changes.into_iter().map(change_out).collect(),
            next_page_token,
        }))
    }

    async fn record_competitor_price(
        &self,
        request: Request<pb::RecordCompetitorPriceRequest>,
    ) -> Result<Response<pb::RecordCompetitorPriceResponse>, Status> {
        let caller = auth::caller(&request)?;
        caller.require_any_role(&[auth::SERVICE_ROLE, ADMIN])?;
        let r = request.into_inner();
        let product = ProductId::parse("product_id", &r.product_id).map_err(invalid)?;
        let observation = CompetitorPrice {
            competitor: name("competitor", &r.competitor).map_err(invalid)?,
            source: name("source", &r.source).map_err(invalid)?,
            price: money_in("price", r.price.clone()).map_err(invalid)?,
            observed_at: required_time("observed_at", r.observed_at.as_ref())
                .map_err(|m| invalid(InputError::new("observed_at", m)))?,
        };
        let key = key("RecordCompetitorPrice", &caller, &r.request_id, &r)?;
        self.app
            .record_competitor_price(&key, product, observation)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::RecordCompetitorPriceResponse {}))
    }

    async fn list_competitor_prices(
        &self,
        request: Request<pb::ListCompetitorPricesRequest>,
    ) -> Result<Response<pb::ListCompetitorPricesResponse>, Status> {
        let (_, r) = auth::caller_with_role(request, ADMIN)?;
        let product = ProductId::parse("product_id", &r.product_id).map_err(invalid)?;
        let prices = self.app.competitor_prices(&product).await.map_err(status)?;
        Ok(Response::new(pb::ListCompetitorPricesResponse {
            prices: prices
                .into_iter()
                .map(|o| pb::CompetitorPrice {
                    competitor: o.competitor,
                    source: o.source,
                    price: Some(money_out(o.price)),
                    observed_at: Some(timestamp(o.observed_at)),
                })
                .collect(),
        }))
    }

    async fn estimate_elasticity(
        &self,
        request: Request<pb::EstimateElasticityRequest>,
    ) -> Result<Response<pb::EstimateElasticityResponse>, Status> {
        let caller = auth::caller(&request)?;
        caller.require_any_role(&[ADMIN, ANALYST])?;
        let r = request.into_inner();
        let estimate: Estimate = match (r.product_id.is_empty(), r.observations.is_empty()) {
            (false, true) => {
                let product = ProductId::parse("product_id", &r.product_id).map_err(invalid)?;
                self.app.product_elasticity(&product).await
            }
            (true, false) => {
                let observations = observations_in(&r.observations).map_err(invalid)?;
                self.app.estimate(&observations)
            }
            _ => {
                return Err(invalid(InputError::new(
                    "product_id",
                    "give either product_id or observations",
                )));
            }
        }
        .map_err(status)?;
        Ok(Response::new(pb::EstimateElasticityResponse {
            elasticity: Some(fit_out(&estimate.fit)),
        }))
    }

    async fn estimate_revenue_impact(
        &self,
        request: Request<pb::EstimateRevenueImpactRequest>,
    ) -> Result<Response<pb::EstimateRevenueImpactResponse>, Status> {
        let caller = auth::caller(&request)?;
        caller.require_any_role(&[ADMIN, ANALYST])?;
        let r = request.into_inner();
        let product = ProductId::parse("product_id", &r.product_id).map_err(invalid)?;
        let proposed = money_in("proposed_price", r.proposed_price).map_err(invalid)?;
        let (estimate, current, per_day, i) = self
            .app
            .revenue_impact(&product, proposed)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::EstimateRevenueImpactResponse {
            elasticity: Some(fit_out(&estimate.fit)),
            current_price: Some(money_out(current.price)),
            baseline_quantity_per_day: per_day,
            quantity_ratio: i.quantity_ratio,
            current_revenue_per_day: i.current_revenue,
            expected_revenue_per_day: i.expected_revenue,
            change: i.change,
            change_low: i.change_low,
            change_high: i.change_high,
            relative_change: i.relative,
            relative_change_low: i.relative_low,
            relative_change_high: i.relative_high,
        }))
    }
}
