-- Every accepted Emit call: the record the ping.emitted event announces.
CREATE TABLE IF NOT EXISTS ping_emissions (
    id          UUID        PRIMARY KEY,
    user_id     TEXT        NOT NULL,
    message     TEXT        NOT NULL,
    emitted_at  TIMESTAMPTZ NOT NULL
);
