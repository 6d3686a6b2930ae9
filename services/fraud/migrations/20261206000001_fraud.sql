-- Fraud: users as the service knows them, first-seen devices and IPs, every decision with its
-- features, rules by version, model versions, review cases with their audit trail,
-- chargebacks and failed payments.

CREATE TABLE fraud_users (
    user_id           text PRIMARY KEY,
    first_seen_at     timestamptz NOT NULL,
    -- As the last check that gave it said.
    account_created_at timestamptz,
    -- From purchase events on the bus.
    successful_orders bigint NOT NULL DEFAULT 0,
    chargebacks       bigint NOT NULL DEFAULT 0
);

-- First-seen history per user: a device or IP absent here is new for the user.
CREATE TABLE fraud_seen (
    user_id       text NOT NULL,
    kind          text NOT NULL CHECK (kind IN ('device', 'ip')),
    value         text NOT NULL,
    first_seen_at timestamptz NOT NULL,
    PRIMARY KEY (user_id, kind, value)
);

CREATE TABLE fraud_decisions (
    transaction_id text PRIMARY KEY,
    user_id        text NOT NULL,
    amount         bigint NOT NULL CHECK (amount > 0),
    currency       text NOT NULL,
    -- The validated request, the facts, the model features and the rule hits.
    request        jsonb NOT NULL,
    facts          jsonb NOT NULL,
    features       double precision[] NOT NULL,
    reasons        jsonb NOT NULL,
    rule_hits      jsonb NOT NULL,
    score          double precision NOT NULL CHECK (score >= 0 AND score <= 1),
    level          text NOT NULL,
    decision       text NOT NULL,
    degraded       boolean NOT NULL,
    model_version  bigint,
    decided_at     timestamptz NOT NULL
);
-- The user's recent amounts (amount anomaly).
CREATE INDEX fraud_decisions_user ON fraud_decisions (user_id, decided_at DESC);

CREATE TABLE fraud_rules (
    name       text NOT NULL,
    version    integer NOT NULL,
    priority   integer NOT NULL,
    condition  text NOT NULL,
    action     jsonb NOT NULL,
    mode       text NOT NULL CHECK (mode IN ('ENFORCE', 'SHADOW', 'DISABLED')),
    created_by text NOT NULL,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (name, version)
);

CREATE TABLE fraud_models (
    version        bigserial PRIMARY KEY,
    intercept      double precision NOT NULL,
    weights        double precision[] NOT NULL,
    auc            double precision NOT NULL,
    brier          double precision NOT NULL,
    calibration    jsonb NOT NULL,
    train_examples bigint NOT NULL,
    test_examples  bigint NOT NULL,
    active         boolean NOT NULL DEFAULT false,
    created_at     timestamptz NOT NULL
);
-- At most one active model.
CREATE UNIQUE INDEX fraud_models_active ON fraud_models (active) WHERE active;

CREATE TABLE fraud_cases (
    id             uuid PRIMARY KEY,
    transaction_id text NOT NULL UNIQUE REFERENCES fraud_decisions (transaction_id),
    user_id        text NOT NULL,
    score          double precision NOT NULL,
    level          text NOT NULL,
    status         text NOT NULL CHECK (status IN ('OPEN', 'ASSIGNED', 'DECIDED')),
    assignee       text,
    verdict        text CHECK (verdict IN ('FRAUD', 'LEGITIMATE')),
    reason         text,
    opened_at      timestamptz NOT NULL,
    decided_at     timestamptz
);
CREATE INDEX fraud_cases_status ON fraud_cases (status, id);

CREATE TABLE fraud_case_audit (
    case_id uuid NOT NULL REFERENCES fraud_cases (id),
    at      timestamptz NOT NULL,
    actor   text NOT NULL,
    action  text NOT NULL,
    detail  text NOT NULL
);
CREATE INDEX fraud_case_audit_case ON fraud_case_audit (case_id, at);

CREATE TABLE fraud_chargebacks (
    transaction_id text PRIMARY KEY REFERENCES fraud_decisions (transaction_id),
    user_id        text NOT NULL,
    amount         bigint NOT NULL CHECK (amount > 0),
    reason         text NOT NULL,
    recorded_at    timestamptz NOT NULL
);

CREATE TABLE fraud_payment_failures (
    payment_id text PRIMARY KEY,
    user_id    text NOT NULL,
    failed_at  timestamptz NOT NULL
);
CREATE INDEX fraud_payment_failures_user ON fraud_payment_failures (user_id, failed_at);
