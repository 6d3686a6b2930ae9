-- Recordings participants uploaded (docs/videocall.md, "Recordings"). The object is written
-- first, then this row, in one guarded INSERT that re-checks the call (ACTIVE or ENDED, both
-- consents set) in the transaction of the upload's idempotency key; when the row is not
-- written the object is deleted, so no object outlives a missing row.
CREATE TABLE IF NOT EXISTS videocall_recordings (
    id           UUID        PRIMARY KEY,
    call_id      UUID        NOT NULL REFERENCES videocall_calls (id),
    uploader_id  TEXT        NOT NULL,
    object_key   TEXT        NOT NULL UNIQUE,
    content_type TEXT        NOT NULL
        CHECK (content_type IN ('video/webm', 'audio/webm', 'video/mp4', 'audio/ogg')),
    bytes        BIGINT      NOT NULL CHECK (bytes > 0),
    sha256       BYTEA       NOT NULL CHECK (length(sha256) = 32),
    created_at   TIMESTAMPTZ NOT NULL
);
-- A call's recordings, oldest first, for GetCall.
CREATE INDEX IF NOT EXISTS videocall_recordings_by_call ON videocall_recordings (call_id, created_at);
