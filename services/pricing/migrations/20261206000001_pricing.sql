-- Pricing: products and their categories, rules, current prices, price history, competitor
-- observations, and the schedule row that lets one replica claim a re-optimisation round.

CREATE TABLE pricing_products (
    product_id    TEXT PRIMARY KEY,
    category      TEXT NOT NULL,
    -- Stock level 0..10000 basis points (10000 = full), an input of the demand score.
    inventory_bps INTEGER NOT NULL CHECK (inventory_bps BETWEEN 0 AND 10000),
    updated_at    TIMESTAMPTZ NOT NULL
);
CREATE INDEX pricing_products_category ON pricing_products (category, product_id);

CREATE TABLE pricing_rules (
    id          UUID PRIMARY KEY,
    product_id  TEXT,
    category    TEXT,
    -- The strategy with its parameters, as domain::rule::Strategy serialises it.
    strategy    JSONB NOT NULL,
    currency    TEXT NOT NULL,
    base_price  BIGINT NOT NULL,
    min_price   BIGINT NOT NULL,
    max_price   BIGINT NOT NULL,
    priority    INTEGER NOT NULL,
    price_ending TEXT NOT NULL,
    min_step    BIGINT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    CHECK ((product_id IS NULL) <> (category IS NULL)),
    CHECK (0 < min_price AND min_price <= base_price AND base_price <= max_price)
);
CREATE INDEX pricing_rules_product ON pricing_rules (product_id) WHERE product_id IS NOT NULL;
CREATE INDEX pricing_rules_category ON pricing_rules (category) WHERE category IS NOT NULL;

CREATE TABLE pricing_prices (
    product_id  TEXT NOT NULL,
    segment     TEXT NOT NULL,
    currency    TEXT NOT NULL,
    amount      BIGINT NOT NULL CHECK (amount > 0),
    rule_id     UUID NOT NULL,
    strategy    TEXT NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    -- The writing transaction's id: replicas refresh their caches with the rows written by
    -- transactions at or after the oldest one still running at their previous refresh.
    tx          BIGINT NOT NULL DEFAULT (pg_current_xact_id()::text::bigint),
    PRIMARY KEY (product_id, segment)
);
CREATE INDEX pricing_prices_tx ON pricing_prices (tx);

CREATE TABLE pricing_history (
    id          BIGSERIAL PRIMARY KEY,
    product_id  TEXT NOT NULL,
    segment     TEXT NOT NULL,
    currency    TEXT NOT NULL,
    old_amount  BIGINT,
    new_amount  BIGINT NOT NULL,
    rule_id     UUID NOT NULL,
    strategy    TEXT NOT NULL,
    inputs      JSONB NOT NULL,
    reason      TEXT NOT NULL,
    changed_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX pricing_history_product ON pricing_history (product_id, id);

CREATE TABLE pricing_competitor_prices (
    id          BIGSERIAL PRIMARY KEY,
    product_id  TEXT NOT NULL,
    competitor  TEXT NOT NULL,
    source      TEXT NOT NULL,
    currency    TEXT NOT NULL,
    amount      BIGINT NOT NULL CHECK (amount > 0),
    observed_at TIMESTAMPTZ NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX pricing_competitor_prices_product
    ON pricing_competitor_prices (product_id, competitor, observed_at DESC);

-- The scheduled round: due at next_run_at; while one replica runs it, running_until is its
-- lease (a replica that dies mid-round frees the schedule when the lease ends).
CREATE TABLE pricing_schedule (
    name          TEXT PRIMARY KEY,
    next_run_at   TIMESTAMPTZ NOT NULL,
    running_until TIMESTAMPTZ NOT NULL,
    run_by        TEXT NOT NULL
);
INSERT INTO pricing_schedule (name, next_run_at, running_until, run_by)
VALUES ('reoptimize', '-infinity', '-infinity', '');
