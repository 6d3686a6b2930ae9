-- Points accounts and their ledger: the record. Every change of a balance is a ledger row
-- written under the account's row lock, so a shopper's changes are serialised, ledger ids of one
-- shopper increase in commit order, and the CHECKs keep balances from going negative.
CREATE TABLE IF NOT EXISTS gamification_accounts (
    user_id        TEXT        PRIMARY KEY,
    balance        BIGINT      NOT NULL DEFAULT 0 CHECK (balance >= 0),
    lifetime       BIGINT      NOT NULL DEFAULT 0 CHECK (lifetime >= 0),
    purchases      INTEGER     NOT NULL DEFAULT 0,
    reviews        INTEGER     NOT NULL DEFAULT 0,
    last_login     DATE,
    streak         INTEGER     NOT NULL DEFAULT 0,
    last_check_in  DATE,
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS gamification_ledger (
    id             BIGSERIAL   PRIMARY KEY,
    user_id        TEXT        NOT NULL REFERENCES gamification_accounts (user_id),
    delta          BIGINT      NOT NULL,
    reason         TEXT        NOT NULL,
    source_id      TEXT        NOT NULL,
    balance_after  BIGINT      NOT NULL CHECK (balance_after >= 0),
    created_at     TIMESTAMPTZ NOT NULL,
    -- Whether the leaderboards in Redis have counted it.
    ranked         BOOLEAN     NOT NULL DEFAULT false,
    CONSTRAINT gamification_award_once UNIQUE (user_id, reason, source_id)
);
CREATE INDEX IF NOT EXISTS gamification_ledger_user ON gamification_ledger (user_id, id DESC);
CREATE INDEX IF NOT EXISTS gamification_ledger_unranked ON gamification_ledger (id) WHERE NOT ranked;
CREATE INDEX IF NOT EXISTS gamification_ledger_reason ON gamification_ledger (user_id, reason, created_at);

CREATE TABLE IF NOT EXISTS gamification_badges (
    user_id     TEXT        NOT NULL REFERENCES gamification_accounts (user_id),
    badge       TEXT        NOT NULL,
    awarded_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (user_id, badge)
);

CREATE TABLE IF NOT EXISTS gamification_rewards (
    id          UUID        PRIMARY KEY,
    name        TEXT        NOT NULL,
    cost        BIGINT      NOT NULL CHECK (cost > 0),
    stock       INTEGER     NOT NULL CHECK (stock >= 0),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS gamification_reward_redemptions (
    id          UUID        PRIMARY KEY,
    reward_id   UUID        NOT NULL REFERENCES gamification_rewards (id),
    user_id     TEXT        NOT NULL,
    cost        BIGINT      NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE IF NOT EXISTS gamification_missions (
    id          UUID        PRIMARY KEY,
    name        TEXT        NOT NULL,
    reason      TEXT        NOT NULL,
    target      INTEGER     NOT NULL CHECK (target > 0),
    points      BIGINT      NOT NULL CHECK (points > 0),
    starts_at   TIMESTAMPTZ NOT NULL,
    ends_at     TIMESTAMPTZ NOT NULL CHECK (ends_at > starts_at)
);
