-- Shipments: one row per booked shipment, written with its shipping.shipment_created outbox
-- event and the idempotency record (kit's titan_idempotency and titan_outbox) in one
-- transaction. The carrier and the label object come first; the row is the commit point.

CREATE TABLE shipping_shipments (
    -- Derived from (caller, request_id, request): the carrier's booking reference, so a
    -- retry after a crash books the same shipment and writes the same label object.
    id              UUID PRIMARY KEY,
    -- Who created it and with which request id: one shipment per caller's request.
    created_by      TEXT NOT NULL,
    request_id      TEXT NOT NULL,
    order_id        TEXT NOT NULL,
    owner_id        TEXT NOT NULL,
    carrier         TEXT NOT NULL,
    service_level   TEXT NOT NULL,
    tracking_number TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('LABEL_CREATED', 'CANCELLED')),
    -- Addresses {name, line1, line2, city, postcode, country} and parcels
    -- [{weight_g, length_mm, width_mm, height_mm}] as printed on the label.
    from_address    JSONB NOT NULL,
    to_address      JSONB NOT NULL,
    parcels         JSONB NOT NULL,
    amount_minor    BIGINT NOT NULL CHECK (amount_minor >= 0),
    currency        TEXT NOT NULL,
    days            INTEGER NOT NULL CHECK (days >= 0),
    label_key       TEXT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL,
    CONSTRAINT shipping_shipments_request_key UNIQUE (created_by, request_id),
    CONSTRAINT shipping_shipments_tracking_key UNIQUE (carrier, tracking_number)
);

-- ListShipments: an order's shipments, oldest first.
CREATE INDEX shipping_shipments_order ON shipping_shipments (order_id, created_at, id);
