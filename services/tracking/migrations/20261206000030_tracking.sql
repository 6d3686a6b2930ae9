-- Tracking records and their events. Events are appended and never changed: a trigger refuses
-- UPDATE, DELETE and TRUNCATE on tracking_events, so not even a mistaken statement rewrites
-- history. A record's status, place and estimate are recomputed from all its events in the
-- transaction that appends one, under the record's row lock.

CREATE TABLE tracking_records (
    id                 UUID PRIMARY KEY,
    tracking_number    TEXT NOT NULL CHECK (tracking_number ~ '^[A-Z0-9]{6,40}$'),
    carrier            TEXT NOT NULL CHECK (carrier ~ '^[a-z0-9-]{1,32}$'),
    shipment_id        TEXT NOT NULL UNIQUE,
    order_id           TEXT NOT NULL,
    service_level      TEXT NOT NULL,
    owner_id           TEXT NOT NULL,
    status             TEXT NOT NULL CHECK (status IN ('CREATED', 'PICKED_UP', 'IN_TRANSIT',
                           'AT_FACILITY', 'OUT_FOR_DELIVERY', 'EXCEPTION', 'DELIVERED',
                           'RETURNED', 'CANCELLED')),
    location           TEXT NOT NULL DEFAULT '',
    lat                DOUBLE PRECISION,
    lng                DOUBLE PRECISION,
    estimated_delivery TIMESTAMPTZ,
    event_count        INTEGER NOT NULL DEFAULT 0 CHECK (event_count >= 0),
    created_at         TIMESTAMPTZ NOT NULL,
    updated_at         TIMESTAMPTZ NOT NULL,
    CHECK ((lat IS NULL) = (lng IS NULL)),
    -- A number is unique per carrier; lookups by number alone use this index's first column.
    UNIQUE (tracking_number, carrier)
);

CREATE TABLE tracking_events (
    id                 UUID PRIMARY KEY,
    record_id          UUID NOT NULL REFERENCES tracking_records (id),
    kind               TEXT NOT NULL CHECK (kind IN ('CREATED', 'PICKED_UP', 'IN_TRANSIT',
                           'AT_FACILITY', 'OUT_FOR_DELIVERY', 'EXCEPTION', 'DELIVERED',
                           'RETURNED', 'CANCELLED')),
    location           TEXT NOT NULL,
    lat                DOUBLE PRECISION,
    lng                DOUBLE PRECISION,
    at                 TIMESTAMPTZ NOT NULL,
    note               TEXT NOT NULL,
    source             TEXT NOT NULL,
    source_event_id    TEXT NOT NULL,
    estimated_delivery TIMESTAMPTZ,
    recorded_at        TIMESTAMPTZ NOT NULL,
    CHECK ((lat IS NULL) = (lng IS NULL)),
    -- A redelivered bus event or a replayed webhook is the same (source, id): appended once.
    UNIQUE (source, source_event_id)
);

CREATE INDEX tracking_events_record ON tracking_events (record_id, at);

CREATE FUNCTION tracking_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'tracking events are appended, never changed or deleted';
END
$$;

CREATE TRIGGER tracking_events_no_change BEFORE UPDATE OR DELETE ON tracking_events
    FOR EACH ROW EXECUTE FUNCTION tracking_events_append_only();
CREATE TRIGGER tracking_events_no_truncate BEFORE TRUNCATE ON tracking_events
    FOR EACH STATEMENT EXECUTE FUNCTION tracking_events_append_only();
