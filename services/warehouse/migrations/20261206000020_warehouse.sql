-- Warehouses, zones and bins; the stock ledger (one row per warehouse, product and bin, and
-- a movement row for every change, written in the same transaction); reservations for
-- orders and the bins their units are reserved in.

CREATE TABLE warehouse_warehouses (
    id          UUID PRIMARY KEY,
    code        TEXT NOT NULL CONSTRAINT warehouse_warehouses_code_key UNIQUE,
    name        TEXT NOT NULL,
    address     TEXT NOT NULL,
    lat         DOUBLE PRECISION NOT NULL,
    lng         DOUBLE PRECISION NOT NULL,
    status      TEXT NOT NULL,
    -- Units the warehouse holds: its bins' capacities together never exceed it.
    capacity    BIGINT NOT NULL CHECK (capacity > 0),
    priority    INTEGER NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE warehouse_zones (
    warehouse_id UUID NOT NULL REFERENCES warehouse_warehouses (id),
    code         TEXT NOT NULL,
    PRIMARY KEY (warehouse_id, code)
);

CREATE TABLE warehouse_bins (
    id           UUID PRIMARY KEY,
    warehouse_id UUID NOT NULL,
    zone         TEXT NOT NULL,
    code         TEXT NOT NULL,
    capacity     BIGINT NOT NULL CHECK (capacity > 0),
    CONSTRAINT warehouse_bins_code_key UNIQUE (warehouse_id, code),
    -- Lets a stock row name its bin and warehouse together.
    UNIQUE (warehouse_id, id),
    FOREIGN KEY (warehouse_id, zone) REFERENCES warehouse_zones (warehouse_id, code)
);

-- Never negative: the guarded UPDATEs refuse first, these make it hold whatever runs.
CREATE TABLE warehouse_stock (
    warehouse_id UUID NOT NULL,
    product_id   TEXT NOT NULL,
    bin_id       UUID NOT NULL,
    available    BIGINT NOT NULL CHECK (available >= 0),
    reserved     BIGINT NOT NULL CHECK (reserved >= 0),
    PRIMARY KEY (warehouse_id, product_id, bin_id),
    FOREIGN KEY (warehouse_id, bin_id) REFERENCES warehouse_bins (warehouse_id, id)
);
CREATE INDEX warehouse_stock_product ON warehouse_stock (product_id);
CREATE INDEX warehouse_stock_bin ON warehouse_stock (bin_id);

CREATE TABLE warehouse_reservations (
    id          UUID PRIMARY KEY,
    order_id    TEXT NOT NULL,
    status      TEXT NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL,
    -- What the order asked for and could not be reserved: [{product_id, requested, short}].
    short       JSONB NOT NULL DEFAULT '[]',
    created_by  TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);
-- One open reservation per order, so a retried order with a new request id cannot reserve
-- twice; a released or expired order may be reserved again.
CREATE UNIQUE INDEX warehouse_reservations_open_order ON warehouse_reservations (order_id)
    WHERE status IN ('RESERVED', 'PICKED');
-- The expiry job's scan and the pick lists' oldest-first order.
CREATE INDEX warehouse_reservations_reserved ON warehouse_reservations (expires_at)
    WHERE status = 'RESERVED';
CREATE INDEX warehouse_reservations_created ON warehouse_reservations (created_at, id)
    WHERE status = 'RESERVED';

CREATE TABLE warehouse_reservation_lines (
    reservation_id UUID NOT NULL REFERENCES warehouse_reservations (id),
    line           INTEGER NOT NULL,
    warehouse_id   UUID NOT NULL,
    product_id     TEXT NOT NULL,
    bin_id         UUID NOT NULL,
    quantity       BIGINT NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (reservation_id, line),
    FOREIGN KEY (warehouse_id, product_id, bin_id)
        REFERENCES warehouse_stock (warehouse_id, product_id, bin_id)
);
CREATE INDEX warehouse_reservation_lines_warehouse ON warehouse_reservation_lines (warehouse_id);

-- The ledger: per stock row, the sum of the deltas is the row.
CREATE TABLE warehouse_movements (
    id              BIGSERIAL PRIMARY KEY,
    warehouse_id    UUID NOT NULL,
    product_id      TEXT NOT NULL,
    bin_id          UUID NOT NULL,
    type            TEXT NOT NULL,
    available_delta BIGINT NOT NULL,
    reserved_delta  BIGINT NOT NULL,
    CHECK (available_delta <> 0 OR reserved_delta <> 0),
    -- A purchase order, an order id, a reason: what the people on the floor look for.
    reference       TEXT NOT NULL,
    reservation_id  UUID REFERENCES warehouse_reservations (id),
    -- Both legs of a transfer carry the same id.
    transfer_id     UUID,
    by_user         TEXT NOT NULL,
    at              TIMESTAMPTZ NOT NULL,
    FOREIGN KEY (warehouse_id, product_id, bin_id)
        REFERENCES warehouse_stock (warehouse_id, product_id, bin_id)
);
CREATE INDEX warehouse_movements_row ON warehouse_movements (warehouse_id, product_id, id);
