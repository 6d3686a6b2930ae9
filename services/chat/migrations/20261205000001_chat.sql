-- Conversations. A DIRECT one carries the key of its pair (both user ids, sorted), unique, so
-- two concurrent creations of the same pair give one row. last_seq / last_message_id are
-- moved under this row's lock by every insert of a message, which orders the messages of a
-- conversation: ids and seqs grow in commit order.
CREATE TABLE IF NOT EXISTS chat_conversations (
    id              UUID        PRIMARY KEY,
    kind            TEXT        NOT NULL CHECK (kind IN ('DIRECT', 'GROUP', 'SUPPORT')),
    name            TEXT,
    created_by      TEXT        NOT NULL,
    direct_key      TEXT        CONSTRAINT chat_conversations_direct_key UNIQUE,
    last_seq        BIGINT      NOT NULL DEFAULT 0,
    last_message_id UUID,
    created_at      TIMESTAMPTZ NOT NULL,
    CHECK ((kind = 'DIRECT') = (direct_key IS NOT NULL))
);

CREATE TABLE IF NOT EXISTS chat_members (
    conversation_id UUID        NOT NULL REFERENCES chat_conversations (id),
    user_id         TEXT        NOT NULL,
    role            TEXT        NOT NULL CHECK (role IN ('MEMBER', 'ADMIN')),
    joined_at       TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (conversation_id, user_id)
);
-- A user's conversations (ListConversations, unread counts).
CREATE INDEX IF NOT EXISTS chat_members_by_user ON chat_members (user_id, conversation_id);

-- Messages keyed (conversation_id, id): history pages are range scans of the primary key.
-- seq numbers a conversation's messages 1, 2, 3, ... so a subscriber sees a hole at once.
CREATE TABLE IF NOT EXISTS chat_messages (
    conversation_id UUID        NOT NULL REFERENCES chat_conversations (id),
    id              UUID        NOT NULL,
    seq             BIGINT      NOT NULL,
    sender_id       TEXT        NOT NULL,
    kind            TEXT        NOT NULL
        CHECK (kind IN ('TEXT', 'IMAGE', 'FILE', 'PRODUCT', 'ORDER', 'SYSTEM')),
    content         TEXT        NOT NULL,
    metadata        JSONB       NOT NULL DEFAULT '{}',
    sent_at         TIMESTAMPTZ NOT NULL,
    edited_at       TIMESTAMPTZ,
    deleted_at      TIMESTAMPTZ,
    CONSTRAINT chat_messages_pkey PRIMARY KEY (conversation_id, id),
    CONSTRAINT chat_messages_seq UNIQUE (conversation_id, seq)
);

-- Each user's receipt markers per conversation (message ids; UUIDv7 compare in time order).
CREATE TABLE IF NOT EXISTS chat_receipts (
    conversation_id UUID        NOT NULL REFERENCES chat_conversations (id),
    user_id         TEXT        NOT NULL,
    delivered_up_to UUID,
    read_up_to      UUID,
    updated_at      TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (conversation_id, user_id)
);
