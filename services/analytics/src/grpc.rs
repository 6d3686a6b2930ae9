//! The analytics gRPC edge: proto ↔ domain, who may track and who may query, errors → status.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use titan_kit::{auth, error::to_status, wire};
use titan_proto::analytics::v1::{self as pb, analytics_service_server::AnalyticsService};
use tonic::{Request, Response, Status};

use crate::{
    app::{Analytics, AnalyticsError, KpiBucket, Warehouse},
    domain::{
        Aggregation, BehaviorQuery, FunnelQuery, Granularity, MetricQuery, Period, ProductQuery,
        QueryError, RawEvent, RawMetricPoint, RetentionQuery,
    },
};

const DOMAIN: &str = "analytics.titan.dev";
/// Roles that may read reports.
const READERS: [&str; 2] = ["analyst", "admin"];

fn status(e: AnalyticsError) -> Status {
    to_status(DOMAIN, &e)
}

fn invalid(message: impl Into<String>) -> Status {
    status(AnalyticsError::Query(QueryError::Invalid(message.into())))
}

/// The request body, if the caller may read reports.
fn reader<T>(request: Request<T>) -> Result<T, Status> {
    auth::caller(&request)?.require_any_role(&READERS)?;
    Ok(request.into_inner())
}

fn optional_time(
    field: &str,
    t: Option<&prost_types::Timestamp>,
) -> Result<Option<DateTime<Utc>>, Status> {
    t.map(|t| wire::required_time(field, Some(t)).map_err(invalid))
        .transpose()
}

fn period(p: Option<pb::Period>) -> Result<Period, Status> {
    let p = p.ok_or_else(|| invalid("period is required"))?;
    let from = wire::required_time("period.from", p.from.as_ref()).map_err(invalid)?;
    let to = wire::required_time("period.to", p.to.as_ref()).map_err(invalid)?;
    Period::new(from, to).map_err(|e| status(e.into()))
}

fn granularity(value: i32) -> Result<Granularity, Status> {
    match pb::Granularity::try_from(value) {
        Ok(pb::Granularity::Hour) => Ok(Granularity::Hour),
        Ok(pb::Granularity::Day) => Ok(Granularity::Day),
        Ok(pb::Granularity::Week) => Ok(Granularity::Week),
        _ => Err(invalid("granularity must be HOUR, DAY or WEEK")),
    }
}

fn aggregation(value: i32) -> Result<Aggregation, Status> {
    use pb::Aggregation as A;
    Ok(match A::try_from(value) {
        Ok(A::Sum) => Aggregation::Sum,
        Ok(A::Avg) => Aggregation::Avg,
        Ok(A::Min) => Aggregation::Min,
        Ok(A::Max) => Aggregation::Max,
        Ok(A::Count) => Aggregation::Count,
        Ok(A::P50) => Aggregation::P50,
        Ok(A::P95) => Aggregation::P95,
        Ok(A::P99) => Aggregation::P99,
        _ => {
            return Err(invalid(
                "aggregation must be SUM, AVG, MIN, MAX, COUNT, P50, P95 or P99",
            ));
        }
    })
}

fn raw_event(e: pb::Event) -> Result<RawEvent, Status> {
    Ok(RawEvent {
        timestamp: optional_time("timestamp", e.timestamp.as_ref())?,
        properties: e.properties.map(wire::json_object).unwrap_or_default(),
        event_id: e.event_id,
        name: e.name,
        user_id: e.user_id,
        session_id: e.session_id,
        device: e.device,
        platform: e.platform,
        country: e.country,
        city: e.city,
    })
}

fn kpi_bucket(b: KpiBucket) -> pb::KpiBucket {
    pb::KpiBucket {
        bucket: Some(wire::timestamp(b.bucket)),
        cell: b.cell,
        kpis: Some(pb::Kpis {
            events: b.kpis.events,
            unique_users: b.kpis.unique_users,
            purchasers: b.kpis.purchasers,
            conversion_rate: b.kpis.conversion_rate,
            revenue: b
                .kpis
                .revenue
                .into_iter()
                .map(|r| pb::Revenue {
                    currency: r.currency,
                    revenue_minor: r.revenue,
                    orders: r.orders,
                    average_order_value_minor: r.average_order_value,
                })
                .collect(),
        }),
    }
}

/// The gRPC service over the use cases.
pub struct Grpc<W> {
    app: Arc<Analytics<W>>,
}

impl<W> std::fmt::Debug for Grpc<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grpc").finish_non_exhaustive()
    }
}

impl<W> Grpc<W> {
    pub fn new(app: Arc<Analytics<W>>) -> Self {
        Self { app }
    }
}

impl<W: Warehouse> Grpc<W> {
    async fn track(&self, caller: auth::Caller, events: Vec<pb::Event>) -> Result<usize, Status> {
        let events = events
            .into_iter()
            .enumerate()
            .map(|(i, e)| {
                raw_event(e)
                    .map_err(|s| Status::new(s.code(), format!("events[{i}]: {}", s.message())))
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.app.track(&caller, events).await.map_err(status)
    }
}

#[tonic::async_trait]
impl<W: Warehouse> AnalyticsService for Grpc<W> {
    async fn track_event(
        &self,
        request: Request<pb::TrackEventRequest>,
    ) -> Result<Response<pb::TrackEventResponse>, Status> {
        let caller = auth::caller(&request)?;
        let event = request
            .into_inner()
            .event
            .ok_or_else(|| invalid("event is required"))?;
        self.track(caller, vec![event]).await?;
        Ok(Response::new(pb::TrackEventResponse {}))
    }

    async fn track_events(
        &self,
        request: Request<pb::TrackEventsRequest>,
    ) -> Result<Response<pb::TrackEventsResponse>, Status> {
        let caller = auth::caller(&request)?;
        let accepted = self.track(caller, request.into_inner().events).await?;
        Ok(Response::new(pb::TrackEventsResponse {
            accepted: u32::try_from(accepted).unwrap_or(u32::MAX),
        }))
    }

    async fn record_metric(
        &self,
        request: Request<pb::RecordMetricRequest>,
    ) -> Result<Response<pb::RecordMetricResponse>, Status> {
        let caller = auth::caller(&request)?;
        let r = request.into_inner();
        let point = RawMetricPoint {
            at: optional_time("timestamp", r.timestamp.as_ref())?,
            request_id: r.request_id,
            name: r.name,
            value: r.value,
            labels: r.labels.into_iter().collect(),
        };
        self.app
            .record_metric(&caller, point)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::RecordMetricResponse {}))
    }

    async fn query_metric(
        &self,
        request: Request<pb::QueryMetricRequest>,
    ) -> Result<Response<pb::QueryMetricResponse>, Status> {
        let r = reader(request)?;
        let query = MetricQuery {
            period: period(r.period)?,
            granularity: granularity(r.granularity)?,
            aggregation: aggregation(r.aggregation)?,
            name: r.name,
            filter: r.filter.into_iter().collect(),
            group_by: Some(r.group_by).filter(|g| !g.is_empty()),
        };
        let series = self.app.metric(query).await.map_err(status)?;
        Ok(Response::new(pb::QueryMetricResponse {
            series: series
                .into_iter()
                .map(|(group, rows)| pb::MetricSeries {
                    group,
                    points: rows
                        .into_iter()
                        .map(|row| pb::MetricPoint {
                            bucket: DateTime::from_timestamp(i64::from(row.bucket), 0)
                                .map(wire::timestamp),
                            value: row.value,
                            samples: row.samples,
                        })
                        .collect(),
                })
                .collect(),
        }))
    }

    async fn get_kpis(
        &self,
        request: Request<pb::GetKpisRequest>,
    ) -> Result<Response<pb::GetKpisResponse>, Status> {
        let r = reader(request)?;
        if r.cell.len() > 63 {
            return Err(invalid("cell is longer than 63 characters"));
        }
        let report = self
            .app
            .kpis(period(r.period)?, granularity(r.granularity)?, &r.cell)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::GetKpisResponse {
            buckets: report.buckets.into_iter().map(kpi_bucket).collect(),
            totals: report.totals.into_iter().map(kpi_bucket).collect(),
        }))
    }

    async fn get_realtime(
        &self,
        request: Request<pb::GetRealtimeRequest>,
    ) -> Result<Response<pb::GetRealtimeResponse>, Status> {
        let r = reader(request)?;
        let rt = self.app.realtime(r.top).await.map_err(status)?;
        Ok(Response::new(pb::GetRealtimeResponse {
            window_seconds: rt.window_seconds,
            active_users: rt.active_users,
            events: rt.events,
            events_per_minute: rt.events_last_minute,
            top_products: rt
                .top_products
                .into_iter()
                .map(|p| pb::ProductCount {
                    product_id: p.product_id,
                    views: p.views,
                    purchases: p.purchases,
                })
                .collect(),
        }))
    }

    async fn get_product_performance(
        &self,
        request: Request<pb::GetProductPerformanceRequest>,
    ) -> Result<Response<pb::GetProductPerformanceResponse>, Status> {
        let r = reader(request)?;
        let products = self
            .app
            .products(ProductQuery {
                period: period(r.period)?,
                currency: r.currency,
                product_ids: r.product_ids,
                limit: r.limit,
            })
            .await
            .map_err(status)?;
        Ok(Response::new(pb::GetProductPerformanceResponse {
            products: products
                .into_iter()
                .map(|p| pb::ProductPerformance {
                    product_id: p.row.product_id,
                    views: p.row.views,
                    add_to_carts: p.row.carts,
                    purchases: p.row.purchases,
                    revenue_minor: p.row.revenue,
                    view_to_cart_rate: p.view_to_cart,
                    cart_to_purchase_rate: p.cart_to_purchase,
                    view_to_purchase_rate: p.view_to_purchase,
                })
                .collect(),
        }))
    }

    async fn get_funnel(
        &self,
        request: Request<pb::GetFunnelRequest>,
    ) -> Result<Response<pb::GetFunnelResponse>, Status> {
        let r = reader(request)?;
        let steps = self
            .app
            .funnel(FunnelQuery {
                period: period(r.period)?,
                steps: r.steps,
                window_seconds: r.window_seconds,
            })
            .await
            .map_err(status)?;
        Ok(Response::new(pb::GetFunnelResponse {
            steps: steps
                .into_iter()
                .map(|s| pb::FunnelStep {
                    name: s.name,
                    users: s.users,
                    conversion_from_start: s.conversion_from_start,
                    conversion_from_previous: s.conversion_from_previous,
                    drop_off: s.drop_off,
                })
                .collect(),
        }))
    }

    async fn get_retention(
        &self,
        request: Request<pb::GetRetentionRequest>,
    ) -> Result<Response<pb::GetRetentionResponse>, Status> {
        let r = reader(request)?;
        let cohorts = self
            .app
            .retention(RetentionQuery {
                period: period(r.period)?,
                weeks: r.weeks,
            })
            .await
            .map_err(status)?;
        Ok(Response::new(pb::GetRetentionResponse {
            cohorts: cohorts
                .into_iter()
                .map(|c| pb::Cohort {
                    week: c
                        .week
                        .and_hms_opt(0, 0, 0)
                        .map(|t| wire::timestamp(t.and_utc())),
                    users: c.users,
                    retained: c.retained,
                    retained_users: c.retained_users,
                })
                .collect(),
        }))
    }

    async fn get_user_behavior(
        &self,
        request: Request<pb::GetUserBehaviorRequest>,
    ) -> Result<Response<pb::GetUserBehaviorResponse>, Status> {
        let r = reader(request)?;
        let b = self
            .app
            .behavior(BehaviorQuery {
                period: period(r.period)?,
                user_id: r.user_id,
                path_length: r.path_length,
                top_paths: r.top_paths,
            })
            .await
            .map_err(status)?;
        Ok(Response::new(pb::GetUserBehaviorResponse {
            sessions: b.stats.sessions,
            users: b.stats.users,
            average_session_seconds: b.stats.average_seconds,
            median_session_seconds: b.stats.median_seconds,
            average_events_per_session: b.stats.average_events,
            top_paths: b
                .paths
                .into_iter()
                .map(|p| pb::PathCount {
                    steps: p.path,
                    sessions: p.sessions,
                })
                .collect(),
        }))
    }
}
