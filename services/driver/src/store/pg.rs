//! The [`DriverStore`] on PostgreSQL: each status change is one UPDATE guarded by the
//! statuses its action leaves from, in a transaction with its idempotency key and the
//! `driver.delivery_*` outbox events. Database errors become [`DriverError`] here.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool, Row, postgres::PgRow};
use titan_kit::{
    KitError,
    events::{Envelope, outbox},
    idempotency::{self, Begin},
};
use uuid::Uuid;

use crate::{
    app::{AssignedRoute, DriverError, DriverStore, Step, Sweep},
    domain::{
        Capacity, Delivery, DeliveryAction, DeliveryChanged, DeliveryStatus, Driver, DriverAction,
        DriverStatus, Email, IllegalTransition, Outcome, Performance, Phone, Plan, Position,
        Rating, RouteAction, SERVICE, Size, TimeWindow, Transition, Update, VehicleType,
        check_assignment, route,
    },
};

const DRIVER_COLUMNS: &str = "id, user_id, name, phone, email, vehicle_type, capacity, status, \
     lat, lng, located_at, completed, failed, on_time, rating_sum, ratings, created_at";
const DELIVERY_COLUMNS: &str = "id, shipment_id, address, lat, lng, window_start, window_end, \
     size, service_seconds, status, route_id, driver_id, finished_at";
/// The unique index that makes one driver per user.
const ONE_PER_USER: &str = "driver_drivers_user_id_key";

#[derive(Debug, Clone)]
pub struct PgDrivers {
    pool: PgPool,
    cell: String,
}

fn corrupt(what: impl Into<String>) -> DriverError {
    DriverError::Kit(KitError::Other(what.into()))
}

fn named<T>(row: &PgRow, col: &str, from: fn(&str) -> Option<T>) -> Result<T, DriverError> {
    let s: String = row.try_get(col)?;
    from(&s).ok_or_else(|| corrupt(format!("unknown {col} {s:?}")))
}

fn count(row: &PgRow, col: &str) -> Result<u64, DriverError> {
    let n: i64 = row.try_get(col)?;
    u64::try_from(n).map_err(|_| corrupt(format!("negative {col}")))
}

fn driver_of(row: &PgRow) -> Result<Driver, DriverError> {
    let field = |e: titan_kit::input::InputError| corrupt(format!("stored driver: {e}"));
    let lat: Option<f64> = row.try_get("lat")?;
    let lng: Option<f64> = row.try_get("lng")?;
    let at: Option<DateTime<Utc>> = row.try_get("located_at")?;
    let location = match (lat, lng, at) {
        (Some(lat), Some(lng), Some(at)) => Some(Position { lat, lng, at }),
        _ => None,
    };
    Ok(Driver {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        name: row.try_get("name")?,
        phone: Phone::parse("phone", row.try_get("phone")?).map_err(field)?,
        email: Email::parse("email", row.try_get("email")?).map_err(field)?,
        vehicle_type: named(row, "vehicle_type", VehicleType::from_name)?,
        capacity: Capacity::parse("capacity", row.try_get::<i32, _>("capacity")?.into())
            .map_err(field)?,
        status: named(row, "status", DriverStatus::from_name)?,
        location,
        performance: Performance {
            completed: count(row, "completed")?,
            failed: count(row, "failed")?,
            on_time: count(row, "on_time")?,
            rating_sum: count(row, "rating_sum")?,
            ratings: count(row, "ratings")?,
        },
        created_at: row.try_get("created_at")?,
    })
}

fn delivery_of(row: &PgRow) -> Result<Delivery, DriverError> {
    let field = |e: titan_kit::input::InputError| corrupt(format!("stored delivery: {e}"));
    let service: i32 = row.try_get("service_seconds")?;
    Ok(Delivery {
        id: row.try_get("id")?,
        shipment_id: row.try_get("shipment_id")?,
        address: row.try_get("address")?,
        lat: row.try_get("lat")?,
        lng: row.try_get("lng")?,
        window: TimeWindow::new(
            "window",
            row.try_get("window_start")?,
            row.try_get("window_end")?,
        )
        .map_err(field)?,
        size: Size::parse("size", row.try_get::<i32, _>("size")?.into()).map_err(field)?,
        service_seconds: u32::try_from(service).map_err(|_| corrupt("negative service_seconds"))?,
        status: named(row, "status", DeliveryStatus::from_name)?,
        route_id: row.try_get("route_id")?,
        driver_id: row.try_get("driver_id")?,
        finished_at: row.try_get("finished_at")?,
    })
}

fn db_count(n: u64) -> Result<i64, DriverError> {
    i64::try_from(n).map_err(|_| corrupt(format!("count {n} overflows a BIGINT")))
}

fn encode<T: serde::Serialize>(answer: &T) -> Result<Vec<u8>, DriverError> {
    serde_json::to_vec(answer).map_err(|e| corrupt(format!("cannot encode an answer: {e}")))
}

fn decode<T: serde::de::DeserializeOwned>(answer: &[u8]) -> Result<T, DriverError> {
    serde_json::from_slice(answer)
        .map_err(|e| corrupt(format!("stored answer does not parse: {e}")))
}

fn names<S: Copy + std::fmt::Display>(statuses: &[S]) -> Vec<String> {
    statuses.iter().map(ToString::to_string).collect()
}

impl PgDrivers {
    pub fn new(pool: PgPool, cell: String) -> Self {
        Self { pool, cell }
    }

    async fn load_driver(
        conn: &mut PgConnection,
        id: Uuid,
        lock: bool,
    ) -> Result<Option<Driver>, DriverError> {
        let lock = if lock { " FOR UPDATE" } else { "" };
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {DRIVER_COLUMNS} FROM driver_drivers WHERE id = $1{lock}"
        )))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
        row.as_ref().map(driver_of).transpose()
    }

    async fn load_delivery(
        conn: &mut PgConnection,
        id: Uuid,
    ) -> Result<Option<Delivery>, DriverError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {DELIVERY_COLUMNS} FROM driver_deliveries WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
        row.as_ref().map(delivery_of).transpose()
    }

    /// Moves the driver by `action`, guarded; the refusal names the status it is in.
    async fn move_driver(
        conn: &mut PgConnection,
        id: Uuid,
        action: DriverAction,
    ) -> Result<Driver, DriverError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE driver_drivers SET status = $2 WHERE id = $1 AND status = ANY($3) \
             RETURNING {DRIVER_COLUMNS}"
        )))
        .bind(id)
        .bind(action.target().as_str())
        .bind(names(action.leaves_from()))
        .fetch_optional(&mut *conn)
        .await?;
        match row {
            Some(row) => driver_of(&row),
            None => {
                let current = Self::load_driver(conn, id, false)
                    .await?
                    .ok_or(DriverError::NotFound { what: "driver", id })?;
                Err(IllegalTransition {
                    action,
                    current: current.status,
                }
                .into())
            }
        }
    }

    async fn publish(
        &self,
        conn: &mut PgConnection,
        action: DeliveryAction,
        d: &Delivery,
        at: DateTime<Utc>,
    ) -> Result<(), DriverError> {
        let location: Option<(Option<f64>, Option<f64>)> = match d.driver_id {
            Some(driver) => {
                sqlx::query_as("SELECT lat, lng FROM driver_drivers WHERE id = $1")
                    .bind(driver)
                    .fetch_optional(&mut *conn)
                    .await?
            }
            None => None,
        };
        let payload = DeliveryChanged {
            delivery_id: d.id,
            shipment_id: d.shipment_id.clone(),
            driver_id: d.driver_id,
            route_id: d.route_id,
            status: d.status,
            at,
            location: match location {
                Some((Some(lat), Some(lng))) => Some([lat, lng]),
                _ => None,
            },
        };
        let envelope = Envelope::new(&self.cell, action.event(), 1, &payload)?;
        outbox::write(conn, SERVICE, &envelope).await?;
        Ok(())
    }

    /// What a delivery's step does to its route and driver: the first departure starts the
    /// route; a final status counts in the driver's performance; the last settled stop
    /// completes the route and frees the driver.
    async fn follow_route(
        &self,
        tx: &mut PgConnection,
        route: Uuid,
        driver: Uuid,
        s: &Step,
        d: &Delivery,
    ) -> Result<(), DriverError> {
        if s.action == DeliveryAction::Depart {
            let start = RouteAction::Start;
            sqlx::query("UPDATE driver_routes SET status = $2 WHERE id = $1 AND status = ANY($3)")
                .bind(route)
                .bind(start.target().as_str())
                .bind(names(start.leaves_from()))
                .execute(&mut *tx)
                .await?;
        }
        if d.status.is_final() {
            let mut p = Performance::default();
            p.record(match d.status {
                DeliveryStatus::Completed => Outcome::Completed {
                    at: s.at,
                    window: d.window,
                },
                _ => Outcome::Failed,
            });
            sqlx::query(
                "UPDATE driver_drivers SET completed = completed + $2, failed = failed + $3, \
                 on_time = on_time + $4 WHERE id = $1",
            )
            .bind(driver)
            .bind(db_count(p.completed)?)
            .bind(db_count(p.failed)?)
            .bind(db_count(p.on_time)?)
            .execute(&mut *tx)
            .await?;
        }
        let statuses: Vec<String> =
            sqlx::query_scalar("SELECT status FROM driver_deliveries WHERE route_id = $1")
                .bind(route)
                .fetch_all(&mut *tx)
                .await?;
        let statuses = statuses
            .iter()
            .map(|n| {
                DeliveryStatus::from_name(n).ok_or_else(|| corrupt(format!("unknown status {n}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if route::is_done(&statuses) {
            let complete = RouteAction::Complete;
            let done = sqlx::query(
                "UPDATE driver_routes SET status = $2, finished_at = $3 \
                 WHERE id = $1 AND status = ANY($4)",
            )
            .bind(route)
            .bind(complete.target().as_str())
            .bind(s.at)
            .bind(names(complete.leaves_from()))
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if done == 1 {
                Self::move_driver(tx, driver, DriverAction::FinishRoute).await?;
            }
        }
        Ok(())
    }
    /// Assigns `plan` to `driver` as `route` inside `tx`: the driver row locked, its status
    /// and capacity checked, START_ROUTE, then each delivery's ASSIGN, guarded.
    async fn assign_one(
        &self,
        tx: &mut PgConnection,
        route: Uuid,
        driver: Uuid,
        plan: &Plan,
        at: DateTime<Utc>,
    ) -> Result<AssignedRoute, DriverError> {
        // The driver's row is locked first, so two assignments to one driver run one after
        // the other and the second sees ON_DELIVERY.
        let d = Self::load_driver(tx, driver, true)
            .await?
            .ok_or(DriverError::NotFound {
                what: "driver",
                id: driver,
            })?;
        let ids: Vec<Uuid> = plan.stops().iter().map(|s| s.delivery_id).collect();
        let sizes: Vec<(Uuid, i32)> = sqlx::query_as(
            "SELECT id, size FROM driver_deliveries WHERE id = ANY($1) ORDER BY id FOR UPDATE",
        )
        .bind(&ids)
        .fetch_all(&mut *tx)
        .await?;
        if let Some(missing) = ids.iter().find(|id| !sizes.iter().any(|(s, _)| s == *id)) {
            return Err(DriverError::NotFound {
                what: "delivery",
                id: *missing,
            });
        }
        let load = route::load(
            sizes
                .iter()
                .map(|&(_, s)| Size::parse("size", s.into()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| corrupt(format!("stored delivery: {e}")))?,
        );
        check_assignment(driver, d.status, d.capacity, load)?;
        Self::move_driver(tx, driver, DriverAction::StartRoute).await?;
        sqlx::query(
            "INSERT INTO driver_routes (id, driver_id, status, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(route)
        .bind(driver)
        .bind(RouteAction::Assign.target().as_str())
        .bind(at)
        .execute(&mut *tx)
        .await?;
        let assign = DeliveryAction::Assign;
        for (i, stop) in plan.stops().iter().enumerate() {
            let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE driver_deliveries SET status = $2, route_id = $3, driver_id = $4, \
                 stop_sequence = $5, eta = $6 WHERE id = $1 AND status = ANY($7) \
                 RETURNING {DELIVERY_COLUMNS}"
            )))
            .bind(stop.delivery_id)
            .bind(assign.target().as_str())
            .bind(route)
            .bind(driver)
            .bind(i64::try_from(i).map_err(|_| corrupt("stop index overflows"))?)
            .bind(stop.eta)
            .bind(names(assign.leaves_from()))
            .fetch_optional(&mut *tx)
            .await?;
            let Some(row) = row else {
                let current = Self::load_delivery(tx, stop.delivery_id).await?.ok_or(
                    DriverError::NotFound {
                        what: "delivery",
                        id: stop.delivery_id,
                    },
                )?;
                return Err(IllegalTransition {
                    action: assign,
                    current: current.status,
                }
                .into());
            };
            self.publish(tx, assign, &delivery_of(&row)?, at).await?;
        }
        Ok(AssignedRoute {
            id: route,
            driver_id: driver,
            stops: plan.stops().to_vec(),
        })
    }
}

impl DriverStore for PgDrivers {
    async fn register(&self, key: &idempotency::Key, d: &Driver) -> Result<Driver, DriverError> {
        let mut tx = self.pool.begin().await?;
        let id = match idempotency::begin(&mut tx, key).await? {
            Begin::Replay(answer) => decode::<Uuid>(&answer)?,
            Begin::Fresh => {
                let inserted = sqlx::query(
                    "INSERT INTO driver_drivers (id, user_id, name, phone, email, vehicle_type, \
                     capacity, status, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .bind(d.id)
                .bind(&d.user_id)
                .bind(&d.name)
                .bind(d.phone.as_str())
                .bind(d.email.as_str())
                .bind(d.vehicle_type.as_str())
                .bind(i64::from(d.capacity.get()))
                .bind(d.status.as_str())
                .bind(d.created_at)
                .execute(&mut *tx)
                .await;
                match inserted {
                    Ok(_) => {}
                    Err(sqlx::Error::Database(e)) if e.constraint() == Some(ONE_PER_USER) => {
                        return Err(DriverError::AlreadyRegistered(d.user_id.clone()));
                    }
                    Err(e) => return Err(e.into()),
                }
                idempotency::finish(&mut tx, key, &encode(&d.id)?).await?;
                d.id
            }
        };
        let stored = Self::load_driver(&mut tx, id, false)
            .await?
            .ok_or_else(|| corrupt("a registered driver vanished while read"))?;
        tx.commit().await?;
        Ok(stored)
    }

    async fn driver(&self, id: Uuid) -> Result<Option<Driver>, DriverError> {
        let mut conn = self.pool.acquire().await?;
        Self::load_driver(&mut conn, id, false).await
    }

    async fn driver_of_user(&self, user: &str) -> Result<Option<Driver>, DriverError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {DRIVER_COLUMNS} FROM driver_drivers WHERE user_id = $1"
        )))
        .bind(user)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(driver_of).transpose()
    }

    async fn change_status(
        &self,
        key: &idempotency::Key,
        driver: Uuid,
        action: DriverAction,
    ) -> Result<Driver, DriverError> {
        let mut tx = self.pool.begin().await?;
        if let Begin::Replay(answer) = idempotency::begin(&mut tx, key).await? {
            let id: Uuid = decode(&answer)?;
            let d = Self::load_driver(&mut tx, id, false)
                .await?
                .ok_or(DriverError::NotFound { what: "driver", id })?;
            tx.commit().await?;
            return Ok(d);
        }
        let d = Self::move_driver(&mut tx, driver, action).await?;
        idempotency::finish(&mut tx, key, &encode(&d.id)?).await?;
        tx.commit().await?;
        Ok(d)
    }

    async fn record_position(
        &self,
        driver: Uuid,
        u: &Update,
    ) -> Result<Option<DriverStatus>, DriverError> {
        let mut tx = self.pool.begin().await?;
        let p = &u.position;
        let status: Option<String> = sqlx::query_scalar(
            "UPDATE driver_drivers SET lat = $2, lng = $3, located_at = $4 \
             WHERE id = $1 AND (located_at IS NULL OR located_at < $4) RETURNING status",
        )
        .bind(driver)
        .bind(p.lat)
        .bind(p.lng)
        .bind(p.at)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(status) = status else {
            return Ok(None);
        };
        let status = DriverStatus::from_name(&status)
            .ok_or_else(|| corrupt(format!("unknown status {status}")))?;
        sqlx::query(
            "INSERT INTO driver_positions (driver_id, at, lat, lng, implausible) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(driver)
        .bind(p.at)
        .bind(p.lat)
        .bind(p.lng)
        .bind(u.implausible)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(status))
    }

    async fn create_delivery(
        &self,
        key: &idempotency::Key,
        d: &Delivery,
        customer: &str,
    ) -> Result<Delivery, DriverError> {
        let mut tx = self.pool.begin().await?;
        let id = match idempotency::begin(&mut tx, key).await? {
            Begin::Replay(answer) => decode::<Uuid>(&answer)?,
            Begin::Fresh => {
                sqlx::query(
                    "INSERT INTO driver_deliveries (id, shipment_id, customer_id, address, lat, \
                     lng, window_start, window_end, size, service_seconds, status, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, now())",
                )
                .bind(d.id)
                .bind(&d.shipment_id)
                .bind(customer)
                .bind(&d.address)
                .bind(d.lat)
                .bind(d.lng)
                .bind(d.window.start)
                .bind(d.window.end)
                .bind(i64::from(d.size.get()))
                .bind(i64::from(d.service_seconds))
                .bind(d.status.as_str())
                .execute(&mut *tx)
                .await?;
                idempotency::finish(&mut tx, key, &encode(&d.id)?).await?;
                d.id
            }
        };
        let stored = Self::load_delivery(&mut tx, id)
            .await?
            .ok_or_else(|| corrupt("a created delivery vanished while read"))?;
        tx.commit().await?;
        Ok(stored)
    }

    async fn delivery(&self, id: Uuid) -> Result<Option<Delivery>, DriverError> {
        let mut conn = self.pool.acquire().await?;
        Self::load_delivery(&mut conn, id).await
    }

    async fn assign_route(
        &self,
        key: &idempotency::Key,
        route: Uuid,
        driver: Uuid,
        plan: &Plan,
        at: DateTime<Utc>,
    ) -> Result<AssignedRoute, DriverError> {
        let mut assigned = self
            .assign_routes(key, &[(route, driver, plan.clone())], at)
            .await?;
        assigned
            .pop()
            .ok_or_else(|| corrupt("an assignment returned no route"))
    }

    async fn assign_routes(
        &self,
        key: &idempotency::Key,
        routes: &[(Uuid, Uuid, Plan)],
        at: DateTime<Utc>,
    ) -> Result<Vec<AssignedRoute>, DriverError> {
        let mut tx = self.pool.begin().await?;
        if let Begin::Replay(answer) = idempotency::begin(&mut tx, key).await? {
            tx.commit().await?;
            return decode(&answer);
        }
        // Drivers are locked in id order, so two multi-route assignments sharing drivers
        // cannot deadlock; each route then runs as a single assignment would.
        let mut order: Vec<&(Uuid, Uuid, Plan)> = routes.iter().collect();
        order.sort_by_key(|(_, driver, _)| *driver);
        for (_, driver, _) in &order {
            sqlx::query("SELECT id FROM driver_drivers WHERE id = $1 FOR UPDATE")
                .bind(driver)
                .execute(&mut *tx)
                .await?;
        }
        let mut assigned = Vec::with_capacity(routes.len());
        for (route, driver, plan) in routes {
            assigned.push(self.assign_one(&mut tx, *route, *driver, plan, at).await?);
        }
        idempotency::finish(&mut tx, key, &encode(&assigned)?).await?;
        tx.commit().await?;
        Ok(assigned)
    }

    async fn step(&self, key: &idempotency::Key, s: &Step) -> Result<Delivery, DriverError> {
        let mut tx = self.pool.begin().await?;
        if let Begin::Replay(answer) = idempotency::begin(&mut tx, key).await? {
            let id: Uuid = decode(&answer)?;
            let d = Self::load_delivery(&mut tx, id)
                .await?
                .ok_or(DriverError::NotFound {
                    what: "delivery",
                    id,
                })?;
            tx.commit().await?;
            return Ok(d);
        }
        // The route's row is locked first: two stops of one route settling at once see each
        // other, so exactly one of them completes the route.
        sqlx::query(
            "SELECT id FROM driver_routes WHERE id = \
             (SELECT route_id FROM driver_deliveries WHERE id = $1) FOR UPDATE",
        )
        .bind(s.delivery)
        .fetch_optional(&mut *tx)
        .await?;
        let to = s.action.target();
        let (recipient, keys) = s.proof.clone().unzip();
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE driver_deliveries SET status = $3, \
               finished_at = CASE WHEN $4 THEN $5 ELSE finished_at END, \
               recipient_name = COALESCE($6, recipient_name), \
               proof_keys = COALESCE($7, proof_keys), \
               window_start = COALESCE($9, window_start), \
               window_end = COALESCE($10, window_end) \
             WHERE id = $1 AND ($2::uuid IS NULL OR driver_id = $2) AND status = ANY($8) \
             RETURNING {DELIVERY_COLUMNS}"
        )))
        .bind(s.delivery)
        .bind(s.driver)
        .bind(to.as_str())
        .bind(to.is_final())
        .bind(s.at)
        .bind(recipient)
        .bind(keys)
        .bind(names(s.action.leaves_from()))
        .bind(s.window.map(|w| w.start))
        .bind(s.window.map(|w| w.end))
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            let current =
                Self::load_delivery(&mut tx, s.delivery)
                    .await?
                    .ok_or(DriverError::NotFound {
                        what: "delivery",
                        id: s.delivery,
                    })?;
            if let Some(driver) = s.driver
                && current.driver_id != Some(driver)
            {
                return Err(DriverError::NotTheDriver(s.delivery));
            }
            return Err(IllegalTransition {
                action: s.action,
                current: current.status,
            }
            .into());
        };
        let d = delivery_of(&row)?;
        self.publish(&mut tx, s.action, &d, s.at).await?;
        if let (Some(route), Some(driver)) = (d.route_id, d.driver_id) {
            self.follow_route(&mut tx, route, driver, s, &d).await?;
        }
        idempotency::finish(&mut tx, key, &encode(&d.id)?).await?;
        tx.commit().await?;
        Ok(d)
    }

    async fn sweep(&self, before: DateTime<Utc>, batch: i64) -> Result<Option<Sweep>, DriverError> {
        let mut tx = self.pool.begin().await?;
        // One replica sweeps at a time; the others find the lock taken and skip this turn.
        let leader: bool =
            sqlx::query_scalar("SELECT pg_try_advisory_xact_lock(hashtext('titan.driver.sweep'))")
                .fetch_one(&mut *tx)
                .await?;
        if !leader {
            return Ok(None);
        }
        let pruned = sqlx::query(
            "DELETE FROM driver_positions WHERE (driver_id, at) IN \
             (SELECT driver_id, at FROM driver_positions WHERE at < $1 ORDER BY at LIMIT $2)",
        )
        .bind(before)
        .bind(batch)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let available: Vec<(Uuid, f64, f64)> = sqlx::query_as(
            "SELECT id, lat, lng FROM driver_drivers \
             WHERE status = $1 AND lat IS NOT NULL AND lng IS NOT NULL",
        )
        .bind(DriverStatus::Available.as_str())
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(Sweep { pruned, available }))
    }

    async fn rate(
        &self,
        key: &idempotency::Key,
        delivery: Uuid,
        customer: &str,
        rating: Rating,
    ) -> Result<Performance, DriverError> {
        let mut tx = self.pool.begin().await?;
        if let Begin::Replay(answer) = idempotency::begin(&mut tx, key).await? {
            tx.commit().await?;
            return decode(&answer);
        }
        let driver: Option<Option<Uuid>> = sqlx::query_scalar(
            "UPDATE driver_deliveries SET rating = $3 \
             WHERE id = $1 AND customer_id = $2 AND status = $4 AND rating IS NULL \
               AND driver_id IS NOT NULL \
             RETURNING driver_id",
        )
        .bind(delivery)
        .bind(customer)
        .bind(i16::from(rating.get()))
        .bind(DeliveryStatus::Completed.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(Some(driver)) = driver else {
            let row: Option<(String, String, Option<i16>, Option<String>)> = sqlx::query_as(
                "SELECT customer_id, status, rating, driver_pseudonym FROM driver_deliveries \
                 WHERE id = $1",
            )
            .bind(delivery)
            .fetch_optional(&mut *tx)
            .await?;
            let (owner, status, rated, erased) = row.ok_or(DriverError::NotFound {
                what: "delivery",
                id: delivery,
            })?;
            if owner != customer {
                return Err(DriverError::NotTheCustomer(delivery));
            }
            let status = DeliveryStatus::from_name(&status)
                .ok_or_else(|| corrupt(format!("unknown status {status}")))?;
            Rating::check_rateable(delivery, status)?;
            // Completed, this customer's, not rated and with a driver would have been
            // updated; an erasure takes the driver off (their pseudonym stays).
            return Err(match (rated, erased) {
                (Some(_), _) => DriverError::AlreadyRated(delivery),
                (None, Some(_)) => DriverError::DriverErased(delivery),
                (None, None) => corrupt(format!("completed delivery {delivery} has no driver")),
            });
        };
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE driver_drivers SET rating_sum = rating_sum + $2, ratings = ratings + 1 \
             WHERE id = $1 RETURNING {DRIVER_COLUMNS}"
        )))
        .bind(driver)
        .bind(i64::from(rating.get()))
        .fetch_one(&mut *tx)
        .await?;
        let performance = driver_of(&row)?.performance;
        idempotency::finish(&mut tx, key, &encode(&performance)?).await?;
        tx.commit().await?;
        Ok(performance)
    }
}
