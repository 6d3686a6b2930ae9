-- Kit's tables, shared by every service of a cell database; each row says which service owns it.

-- Transactional outbox: written in the same transaction as the change it announces.
CREATE TABLE IF NOT EXISTS titan_outbox (
    seq         BIGSERIAL PRIMARY KEY,
    service     TEXT        NOT NULL,
    event_id    UUID        NOT NULL UNIQUE,
    event_type  TEXT        NOT NULL,
    envelope    JSONB       NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS titan_outbox_service_seq ON titan_outbox (service, seq);

-- First answer of each mutating call, by (service, method, user, request_id).
CREATE TABLE IF NOT EXISTS titan_idempotency (
    service       TEXT        NOT NULL,
    method        TEXT        NOT NULL,
    user_id       TEXT        NOT NULL,
    request_id    TEXT        NOT NULL,
    request_hash  BYTEA       NOT NULL,
    response      BYTEA,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (service, method, user_id, request_id)
);
CREATE INDEX IF NOT EXISTS titan_idempotency_created ON titan_idempotency (created_at);

-- Events a consumer group has handled, written in the handler's transaction.
CREATE TABLE IF NOT EXISTS titan_processed_events (
    consumer      TEXT        NOT NULL,
    event_id      UUID        NOT NULL,
    processed_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);
CREATE INDEX IF NOT EXISTS titan_processed_events_at ON titan_processed_events (processed_at);
