-- A person's data across the cell's services (kit::privacy, titan.privacy.v1): a job per
-- export or erasure request, a task per service that holds personal data.

-- The services that hold personal data, as their processes announce themselves at start and
-- every ten minutes after; a job waits for those seen within the last day.
CREATE TABLE IF NOT EXISTS titan_privacy_participants (
    service     TEXT        PRIMARY KEY,
    first_seen  TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_seen   TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- The key of the pseudonyms erasures leave behind: made once per cell, never sent anywhere.
CREATE TABLE IF NOT EXISTS titan_privacy_key (
    id          BOOLEAN     PRIMARY KEY DEFAULT true CHECK (id),
    key         BYTEA       NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- A request. `subject` is the user id while the job runs; an erasure replaces it with the
-- pseudonym when it completes, so the record of the erasure no longer names the person.
CREATE TABLE IF NOT EXISTS titan_privacy_jobs (
    id                 UUID        PRIMARY KEY,
    kind               TEXT        NOT NULL CHECK (kind IN ('export', 'erasure')),
    subject            TEXT        NOT NULL,
    pseudonym          TEXT        NOT NULL,
    requested_by       TEXT        NOT NULL,
    state              TEXT        NOT NULL DEFAULT 'running'
                                   CHECK (state IN ('running', 'completed', 'expired')),
    export_key         TEXT,
    export_expires_at  TIMESTAMPTZ,
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    completed_at       TIMESTAMPTZ
);
CREATE INDEX IF NOT EXISTS titan_privacy_jobs_running ON titan_privacy_jobs (created_at)
    WHERE state = 'running';
CREATE INDEX IF NOT EXISTS titan_privacy_jobs_subject ON titan_privacy_jobs (subject);

-- One service's part of a job. A replica claims it with a lease (`events.claimIdleSeconds`),
-- so a replica that dies mid-task leaves it to another once the lease runs out.
CREATE TABLE IF NOT EXISTS titan_privacy_tasks (
    job_id       UUID        NOT NULL REFERENCES titan_privacy_jobs (id) ON DELETE CASCADE,
    service      TEXT        NOT NULL,
    state        TEXT        NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done')),
    attempts     INTEGER     NOT NULL DEFAULT 0,
    lease_until  TIMESTAMPTZ,
    last_error   TEXT,
    report       JSONB,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at  TIMESTAMPTZ,
    PRIMARY KEY (job_id, service)
);
CREATE INDEX IF NOT EXISTS titan_privacy_tasks_pending ON titan_privacy_tasks (service, created_at)
    WHERE state = 'pending';

-- What one service exported, until the privacy service joins the parts into one object.
CREATE TABLE IF NOT EXISTS titan_privacy_exports (
    job_id    UUID  NOT NULL REFERENCES titan_privacy_jobs (id) ON DELETE CASCADE,
    service   TEXT  NOT NULL,
    document  JSONB NOT NULL,
    PRIMARY KEY (job_id, service)
);
