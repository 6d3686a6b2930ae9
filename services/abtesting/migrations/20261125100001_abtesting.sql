-- Experiments and feature flags: the record every replica caches in memory for assignment.
-- Specs and flag definitions are the domain types as JSON; status is a column so it can be
-- checked and queried.
CREATE TABLE IF NOT EXISTS abtesting_experiments (
    key         TEXT        PRIMARY KEY,
    status      TEXT        NOT NULL CHECK (status IN ('draft', 'running', 'paused', 'stopped')),
    spec        JSONB       NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS abtesting_flags (
    key          TEXT        PRIMARY KEY,
    environment  TEXT        NOT NULL,
    definition   JSONB       NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
