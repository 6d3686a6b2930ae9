//! Driver against two real `titan serve driver` processes sharing PostgreSQL, Redis and the
//! test bucket: ann registers and goes AVAILABLE on replica A, a dispatcher watching her on
//! replica B sees her latest position first and then the one she reports on A, finds her
//! nearby, plans her two deliveries with OptimizeRoutes and assigns them with AssignRoutes;
//! she delivers both with a photo, the route completes, she is AVAILABLE and nearby again,
//! and `driver.delivery_completed` reaches the bus.

use std::time::Duration;

use titan_e2e::{Cell, CellOptions, authed, seconds_from_now};
use titan_kit::testing::eventually;
use titan_proto::driver::v1::{self as pb, driver_service_client::DriverServiceClient};
use tonic::transport::Channel;

type Grpc = DriverServiceClient<Channel>;

/// A short solver budget keeps the planning step quick.
const CONFIG: &str = "services:\n  driver: { solverTimeBudgetMillis: 300 }\n";

fn rid() -> String {
    uuid::Uuid::new_v4().to_string()
}

async fn report(grpc: &mut Grpc, token: &str, lat: f64, lng: f64) -> prost_types::Timestamp {
    // PostgreSQL and Redis keep microseconds: send a time they give back unchanged.
    let mut at = seconds_from_now(0);
    at.nanos -= at.nanos % 1000;
    grpc.report_position(authed(
        pb::ReportPositionRequest {
            lat,
            lng,
            at: Some(at),
        },
        token,
    ))
    .await
    .expect("report");
    at
}

async fn nearby(grpc: &mut Grpc, token: &str) -> Vec<String> {
    grpc.nearby_drivers(authed(
        pb::NearbyDriversRequest {
            lat: 1.30,
            lng: 103.80,
            radius_m: 2_000,
            limit: 0,
        },
        token,
    ))
    .await
    .expect("nearby")
    .into_inner()
    .drivers
    .into_iter()
    .map(|d| d.driver_id)
    .collect()
}

async fn delivery(grpc: &mut Grpc, token: &str, lng: f64) -> pb::Delivery {
    grpc.create_delivery(authed(
        pb::CreateDeliveryRequest {
            request_id: rid(),
            shipment_id: "sh-1".into(),
            customer_id: "cus".into(),
            address: "1 Main St".into(),
            lat: 1.30,
            lng,
            window_start: Some(seconds_from_now(0)),
            window_end: Some(seconds_from_now(4 * 3600)),
            size: 2,
            service_seconds: 60,
        },
        token,
    ))
    .await
    .expect("create delivery")
    .into_inner()
}

async fn next(s: &mut tonic::Streaming<pb::Position>) -> pb::Position {
    tokio::time::timeout(Duration::from_secs(10), s.message())
        .await
        .expect("a position in time")
        .expect("stream")
        .expect("open")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_driver_watched_across_replicas_planned_assigned_and_delivering() {
    let cell = Cell::start_with(CellOptions {
        services: vec!["driver".into()],
        config: Some(CONFIG.into()),
        ..CellOptions::default()
    })
    .await;
    let b = cell.replica();
    let (ann, disp) = (cell.token("ann", &[]), cell.token("disp", &["dispatcher"]));
    let mut on_a = DriverServiceClient::new(cell.channel().await);
    let mut on_b = DriverServiceClient::new(b.channel().await);

    let me = on_a
        .register_driver(authed(
            pb::RegisterDriverRequest {
                request_id: rid(),
                name: "Ann".into(),
                phone: "+6561234567".into(),
                email: "ann@example.com".into(),
                vehicle_type: "VAN".into(),
                capacity: 10,
            },
            &ann,
        ))
        .await
        .expect("register")
        .into_inner();
    on_a.set_status(authed(
        pb::SetStatusRequest {
            request_id: rid(),
            status: "AVAILABLE".into(),
        },
        &ann,
    ))
    .await
    .expect("available");
    let first = report(&mut on_a, &ann, 1.300, 103.800).await;

    // Watching on B: the latest position first, then the next one reported on A.
    let mut stream = on_b
        .watch_driver(authed(
            pb::WatchDriverRequest {
                driver_id: me.id.clone(),
            },
            &disp,
        ))
        .await
        .expect("watch")
        .into_inner();
    let latest = next(&mut stream).await;
    assert_eq!(
        (latest.lat, latest.lng, latest.at),
        (1.300, 103.800, Some(first))
    );
    // Reports are strictly later than the last accepted one: wait past its millisecond.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let second = report(&mut on_a, &ann, 1.301, 103.800).await;
    let moved = next(&mut stream).await;
    assert_eq!((moved.lat, moved.at), (1.301, Some(second)));
    let refused = on_b
        .watch_driver(authed(
            pb::WatchDriverRequest {
                driver_id: me.id.clone(),
            },
            &cell.token("eve", &[]),
        ))
        .await
        .expect_err("eve may not watch");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    assert_eq!(nearby(&mut on_b, &disp).await, [me.id.as_str()]);

    // Two deliveries, planned for ann and assigned in one call.
    let d1 = delivery(&mut on_a, &disp, 103.805).await;
    let d2 = delivery(&mut on_a, &disp, 103.810).await;
    let job = |d: &pb::Delivery| pb::OptimizeJob {
        id: d.id.clone(),
        lat: d.lat,
        lng: d.lng,
        location: 0,
        window_start: d.window_start,
        window_end: d.window_end,
        size: d.size.into(),
        service_seconds: d.service_seconds.into(),
    };
    let planned = on_b
        .optimize_routes(authed(
            pb::OptimizeRoutesRequest {
                metric: String::new(),
                jobs: vec![job(&d2), job(&d1)],
                vehicles: vec![pb::OptimizeVehicle {
                    id: me.id.clone(),
                    lat: 1.301,
                    lng: 103.800,
                    location: 0,
                    capacity: 10,
                    shift_start: Some(seconds_from_now(0)),
                    shift_end: Some(seconds_from_now(8 * 3600)),
                }],
                matrix: None,
                time_budget_ms: 0,
                seed: 1,
            },
            &disp,
        ))
        .await
        .expect("optimize")
        .into_inner();
    assert!(planned.unassigned.is_empty(), "{:?}", planned.unassigned);
    assert_eq!(planned.routes.len(), 1);
    let plan = &planned.routes[0];
    // A triangle is as long either way round: the stops as a set.
    let mut stops: Vec<&str> = plan.stops.iter().map(|s| s.job_id.as_str()).collect();
    stops.sort_unstable();
    let mut both = [d1.id.as_str(), d2.id.as_str()];
    both.sort_unstable();
    assert_eq!(stops, both);
    assert!(
        plan.distance > 2_000.0 && plan.distance < 2_500.0,
        "{plan:?}"
    );
    let assigned = on_b
        .assign_routes(authed(
            pb::AssignRoutesRequest {
                request_id: rid(),
                routes: vec![pb::RoutePlan {
                    driver_id: me.id.clone(),
                    stops: plan
                        .stops
                        .iter()
                        .map(|s| pb::StopRequest {
                            delivery_id: s.job_id.clone(),
                            eta: s.eta,
                        })
                        .collect(),
                }],
            },
            &disp,
        ))
        .await
        .expect("assign")
        .into_inner();
    assert_eq!(assigned.routes.len(), 1);
    assert_eq!(nearby(&mut on_b, &disp).await, Vec::<String>::new());

    // Ann delivers both with a photo; the route completes and frees her.
    for d in [&d1, &d2] {
        for action in ["DEPART", "ARRIVE"] {
            on_a.advance_delivery(authed(
                pb::AdvanceDeliveryRequest {
                    request_id: rid(),
                    delivery_id: d.id.clone(),
                    action: action.into(),
                },
                &ann,
            ))
            .await
            .expect(action);
        }
        let done = on_a
            .complete_delivery(authed(
                pb::CompleteDeliveryRequest {
                    request_id: rid(),
                    delivery_id: d.id.clone(),
                    recipient_name: "Cy".into(),
                    photo: Some(pb::Attachment {
                        content_type: "image/png".into(),
                        data: b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec(),
                    }),
                    signature: None,
                },
                &ann,
            ))
            .await
            .expect("complete")
            .into_inner();
        assert_eq!(done.status, "COMPLETED");
    }
    let again = on_b
        .get_driver(authed(
            pb::GetDriverRequest {
                driver_id: me.id.clone(),
            },
            &disp,
        ))
        .await
        .expect("driver")
        .into_inner();
    assert_eq!(again.status, "AVAILABLE");
    assert_eq!(again.performance.map(|p| p.completed), Some(2));
    assert_eq!(nearby(&mut on_b, &disp).await, [me.id.as_str()]);

    // The relay publishes the completions on the bus.
    let stream_key = titan_kit::events::stream_key(&cell.redis.handle, "driver");
    let completed = eventually("driver.delivery_completed on the bus", || {
        let mut conn = cell.redis.handle.conn.clone();
        let key = stream_key.clone();
        async move {
            let entries: redis::streams::StreamRangeReply =
                redis::AsyncCommands::xrange_all(&mut conn, &key)
                    .await
                    .ok()?;
            let n = entries
                .ids
                .iter()
                .filter(|e| e.get::<String>("type").as_deref() == Some("driver.delivery_completed"))
                .count();
            (n == 2).then_some(n)
        }
    })
    .await;
    assert_eq!(completed, 2);
}
