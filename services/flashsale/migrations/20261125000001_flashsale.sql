-- Flash sales and their confirmed orders: the record. Live stock is in Redis.
CREATE TABLE IF NOT EXISTS flashsale_sales (
    id                UUID        PRIMARY KEY,
    product_id        TEXT        NOT NULL,
    currency          TEXT        NOT NULL,
    original_minor    BIGINT      NOT NULL CHECK (original_minor > 0),
    sale_minor        BIGINT      NOT NULL CHECK (sale_minor > 0 AND sale_minor < original_minor),
    total_quantity    INTEGER     NOT NULL CHECK (total_quantity > 0),
    max_per_user      INTEGER     NOT NULL CHECK (max_per_user > 0),
    starts_at         TIMESTAMPTZ NOT NULL,
    ends_at           TIMESTAMPTZ NOT NULL CHECK (ends_at > starts_at),
    pow_difficulty    INTEGER     NOT NULL DEFAULT 0,
    state             TEXT        NOT NULL CHECK (state IN ('scheduled', 'cancelled', 'ended')),
    warmed_up         BOOLEAN     NOT NULL DEFAULT false,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at        TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS flashsale_sales_open ON flashsale_sales (ends_at, starts_at) WHERE state = 'scheduled';

CREATE TABLE IF NOT EXISTS flashsale_orders (
    id                 UUID        PRIMARY KEY,
    sale_id            UUID        NOT NULL REFERENCES flashsale_sales (id),
    reservation_id     TEXT        NOT NULL UNIQUE,
    user_id            TEXT        NOT NULL,
    quantity           INTEGER     NOT NULL CHECK (quantity > 0),
    currency           TEXT        NOT NULL,
    unit_minor         BIGINT      NOT NULL,
    total_minor        BIGINT      NOT NULL,
    payment_reference  TEXT        NOT NULL,
    created_at         TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS flashsale_orders_sale ON flashsale_orders (sale_id);
