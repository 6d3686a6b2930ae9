-- Coupons and their redemptions: the record. Redis holds the fast lookup and the live counters;
-- the guards here (CHECKs and guarded increments) hold the limits even if Redis drifted.
CREATE TABLE IF NOT EXISTS coupon_coupons (
    code            TEXT        PRIMARY KEY,
    kind            TEXT        NOT NULL,
    campaign        TEXT        NOT NULL DEFAULT '',
    spec            JSONB       NOT NULL,
    total_limit     INTEGER     NOT NULL CHECK (total_limit >= 0),
    per_user_limit  INTEGER     NOT NULL CHECK (per_user_limit >= 0),
    valid_until     TIMESTAMPTZ NOT NULL,
    paused          BOOLEAN     NOT NULL DEFAULT false,
    uses            INTEGER     NOT NULL DEFAULT 0 CHECK (uses >= 0),
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT coupon_within_limit CHECK (total_limit = 0 OR uses <= total_limit)
);
CREATE INDEX IF NOT EXISTS coupon_coupons_campaign ON coupon_coupons (campaign, code);

-- Uses per shopper, incremented with a guard so the per-user limit holds in the record too.
CREATE TABLE IF NOT EXISTS coupon_user_uses (
    code     TEXT    NOT NULL REFERENCES coupon_coupons (code),
    user_id  TEXT    NOT NULL,
    uses     INTEGER NOT NULL CHECK (uses >= 0),
    PRIMARY KEY (code, user_id)
);

CREATE TABLE IF NOT EXISTS coupon_redemptions (
    id              UUID        PRIMARY KEY,
    code            TEXT        NOT NULL REFERENCES coupon_coupons (code),
    campaign        TEXT        NOT NULL,
    order_id        TEXT        NOT NULL,
    user_id         TEXT        NOT NULL,
    currency        TEXT        NOT NULL,
    discount_minor  BIGINT      NOT NULL CHECK (discount_minor >= 0),
    status          TEXT        NOT NULL CHECK (status IN ('applied', 'reversed')),
    created_at      TIMESTAMPTZ NOT NULL,
    reversed_at     TIMESTAMPTZ,
    CONSTRAINT coupon_once_per_order UNIQUE (code, order_id)
);
CREATE INDEX IF NOT EXISTS coupon_redemptions_order ON coupon_redemptions (order_id);
CREATE INDEX IF NOT EXISTS coupon_redemptions_campaign ON coupon_redemptions (campaign);
