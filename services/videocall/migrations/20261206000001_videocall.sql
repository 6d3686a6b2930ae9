-- Calls. Every status change is one UPDATE guarded by the status it leaves from, so two
-- replicas (or a replica and a client) racing on the same call produce one outcome.
-- ring_deadline is when a queued or ringing call becomes MISSED: the periodic job on any
-- replica reads it, so a restart during ringing still ends the call.
CREATE TABLE IF NOT EXISTS videocall_calls (
    id                UUID        PRIMARY KEY,
    caller_id         TEXT        NOT NULL,
    callee_id         TEXT,
    kind              TEXT        NOT NULL CHECK (kind IN ('SUPPORT', 'SALES', 'CONSULTATION')),
    media             TEXT        NOT NULL CHECK (media IN ('VIDEO', 'AUDIO')),
    status            TEXT        NOT NULL
        CHECK (status IN ('INITIATED', 'RINGING', 'ACTIVE', 'ENDED', 'REJECTED', 'MISSED', 'FAILED')),
    created_at        TIMESTAMPTZ NOT NULL,
    ring_deadline     TIMESTAMPTZ NOT NULL,
    ringing_at        TIMESTAMPTZ,
    answered_at       TIMESTAMPTZ,
    ended_at          TIMESTAMPTZ,
    end_reason        TEXT,
    caller_consent_at TIMESTAMPTZ,
    callee_consent_at TIMESTAMPTZ,
    quality_samples   INTEGER     NOT NULL DEFAULT 0,
    -- Only a queued SUPPORT call lacks a callee.
    CHECK (callee_id IS NOT NULL OR status IN ('INITIATED', 'ENDED', 'MISSED', 'FAILED'))
);
-- The support queue, first come first served.
CREATE INDEX IF NOT EXISTS videocall_calls_queue ON videocall_calls (created_at, id)
    WHERE status = 'INITIATED';
-- Calls the periodic job must miss (queued or ringing past their deadline)...
CREATE INDEX IF NOT EXISTS videocall_calls_ringing ON videocall_calls (ring_deadline)
    WHERE status IN ('INITIATED', 'RINGING');
-- ...or end (active past videocall.maxCallSeconds).
CREATE INDEX IF NOT EXISTS videocall_calls_active ON videocall_calls (answered_at)
    WHERE status = 'ACTIVE';
-- History pages, newest first, per caller and per callee (agents are callees).
CREATE INDEX IF NOT EXISTS videocall_calls_by_caller ON videocall_calls (caller_id, id);
CREATE INDEX IF NOT EXISTS videocall_calls_by_callee ON videocall_calls (callee_id, id);

-- One call that is not over per user: a row per party while its call is INITIATED, RINGING
-- or ACTIVE, deleted in the transaction that makes the call final. The primary key refuses a
-- second one (BUSY), also when two calls to the same user are placed at once.
CREATE TABLE IF NOT EXISTS videocall_busy (
    user_id TEXT PRIMARY KEY,
    call_id UUID NOT NULL REFERENCES videocall_calls (id)
);
CREATE INDEX IF NOT EXISTS videocall_busy_by_call ON videocall_busy (call_id);

-- Quality samples clients report during an active call (at most 3,600 per call, counted in
-- videocall_calls.quality_samples under the call's row lock).
CREATE TABLE IF NOT EXISTS videocall_quality (
    call_id        UUID        NOT NULL REFERENCES videocall_calls (id),
    seq            INTEGER     NOT NULL,
    reporter_id    TEXT        NOT NULL,
    rtt_ms         INTEGER     NOT NULL,
    packet_loss_bp INTEGER     NOT NULL,
    jitter_ms      INTEGER     NOT NULL,
    bitrate_kbps   INTEGER     NOT NULL,
    width          INTEGER     NOT NULL,
    height         INTEGER     NOT NULL,
    reported_at    TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (call_id, seq)
);
