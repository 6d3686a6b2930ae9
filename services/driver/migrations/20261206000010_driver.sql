-- Drivers, deliveries, routes, GPS history and ratings. Every status change is one UPDATE
-- guarded by the statuses its action leaves from (domain::Transition::leaves_from).

CREATE TABLE driver_drivers (
    id            UUID PRIMARY KEY,
    -- The token subject: one driver per user, who alone changes its status and position.
    user_id       TEXT NOT NULL UNIQUE,
    name          TEXT NOT NULL,
    phone         TEXT NOT NULL,
    email         TEXT NOT NULL,
    vehicle_type  TEXT NOT NULL,
    capacity      INTEGER NOT NULL CHECK (capacity > 0),
    status        TEXT NOT NULL,
    lat           DOUBLE PRECISION,
    lng           DOUBLE PRECISION,
    located_at    TIMESTAMPTZ,
    -- Performance as integer counts, so one UPDATE adds to them and the mean is exact.
    completed     BIGINT NOT NULL DEFAULT 0,
    failed        BIGINT NOT NULL DEFAULT 0,
    on_time       BIGINT NOT NULL DEFAULT 0,
    rating_sum    BIGINT NOT NULL DEFAULT 0,
    ratings       BIGINT NOT NULL DEFAULT 0,
    created_at    TIMESTAMPTZ NOT NULL
);

CREATE TABLE driver_routes (
    id          UUID PRIMARY KEY,
    driver_id   UUID NOT NULL REFERENCES driver_drivers (id),
    status      TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    finished_at TIMESTAMPTZ
);
CREATE INDEX driver_routes_driver ON driver_routes (driver_id, created_at);

CREATE TABLE driver_deliveries (
    id              UUID PRIMARY KEY,
    shipment_id     TEXT NOT NULL,
    -- The customer who may rate the delivery once it is completed.
    customer_id     TEXT NOT NULL,
    address         TEXT NOT NULL,
    lat             DOUBLE PRECISION NOT NULL,
    lng             DOUBLE PRECISION NOT NULL,
    window_start    TIMESTAMPTZ NOT NULL,
    window_end      TIMESTAMPTZ NOT NULL,
    size            INTEGER NOT NULL CHECK (size > 0),
    service_seconds INTEGER NOT NULL CHECK (service_seconds >= 0),
    status          TEXT NOT NULL,
    route_id        UUID REFERENCES driver_routes (id),
    driver_id       UUID REFERENCES driver_drivers (id),
    stop_sequence   INTEGER,
    eta             TIMESTAMPTZ,
    finished_at     TIMESTAMPTZ,
    recipient_name  TEXT,
    proof_keys      TEXT[] NOT NULL DEFAULT '{}',
    -- One rating per delivery.
    rating          SMALLINT CHECK (rating BETWEEN 1 AND 5),
    created_at      TIMESTAMPTZ NOT NULL
);
CREATE INDEX driver_deliveries_route ON driver_deliveries (route_id, stop_sequence);

-- GPS history; the latest position is on the driver's row. Retention is by age: the index
-- on `at` serves that delete, which comes with the service's background tasks.
CREATE TABLE driver_positions (
    driver_id   UUID NOT NULL REFERENCES driver_drivers (id),
    at          TIMESTAMPTZ NOT NULL,
    lat         DOUBLE PRECISION NOT NULL,
    lng         DOUBLE PRECISION NOT NULL,
    implausible BOOLEAN NOT NULL,
    PRIMARY KEY (driver_id, at)
);
CREATE INDEX driver_positions_at ON driver_positions (at);
