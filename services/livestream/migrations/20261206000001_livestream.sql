-- Livestream: streams (the key only as its SHA-256, NULL once revoked), their comments and the
-- purchases made in them.
CREATE TABLE livestream_streams (
    id            uuid PRIMARY KEY,
    seller_id     text NOT NULL,
    title         text NOT NULL,
    status        text NOT NULL CHECK (status IN ('SCHEDULED', 'LIVE', 'ENDED', 'CANCELLED')),
    key_hash      bytea UNIQUE,
    scheduled_at  timestamptz NOT NULL,
    started_at    timestamptz,
    ended_at      timestamptz,
    recording_url text,
    featured      text[] NOT NULL DEFAULT '{}',
    created_at    timestamptz NOT NULL DEFAULT now(),
    -- A revoked key admits nobody: only SCHEDULED and LIVE streams hold one.
    CHECK (key_hash IS NULL OR status IN ('SCHEDULED', 'LIVE'))
);
CREATE INDEX livestream_streams_seller ON livestream_streams (seller_id, id DESC);
CREATE INDEX livestream_streams_status ON livestream_streams (status, id DESC);

CREATE TABLE livestream_comments (
    stream_id  uuid NOT NULL REFERENCES livestream_streams (id),
    id         uuid NOT NULL,
    user_id    text NOT NULL,
    text       text NOT NULL,
    created_at timestamptz NOT NULL,
    pinned_at  timestamptz,
    PRIMARY KEY (stream_id, id)
);
CREATE INDEX livestream_comments_pinned ON livestream_comments (stream_id, id DESC)
    WHERE pinned_at IS NOT NULL;

CREATE TABLE livestream_purchases (
    order_id     text PRIMARY KEY,
    stream_id    uuid NOT NULL REFERENCES livestream_streams (id),
    buyer_id     text NOT NULL,
    product_id   text NOT NULL,
    quantity     integer NOT NULL CHECK (quantity > 0),
    amount_minor bigint NOT NULL CHECK (amount_minor > 0),
    currency     text NOT NULL,
    created_at   timestamptz NOT NULL
);
CREATE INDEX livestream_purchases_stream ON livestream_purchases (stream_id);
