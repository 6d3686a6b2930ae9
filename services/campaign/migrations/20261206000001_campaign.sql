-- Campaigns, their deliveries (one row per campaign, occurrence, user and channel: the
-- primary key is what makes a delivery happen at most once), contacts, suppressions,
-- engagements (opens and clicks, once per user) and purchases from the bus.

CREATE TABLE campaign_contacts (
    user_id     text PRIMARY KEY,
    email       text NOT NULL,
    phone       text NOT NULL,
    push_token  text NOT NULL,
    time_zone   text NOT NULL,
    level       integer NOT NULL,
    first_name  text NOT NULL,
    country     text NOT NULL,
    updated_at  timestamptz NOT NULL
);

CREATE TABLE campaigns (
    id                 uuid PRIMARY KEY,
    name               text NOT NULL,
    channel            text NOT NULL,
    status             text NOT NULL,
    subject            text NOT NULL,
    body               text NOT NULL,
    click_url          text NOT NULL,
    segment            jsonb NOT NULL,
    cap_max            integer NOT NULL,
    cap_window_hours   integer NOT NULL,
    quiet_start        integer NOT NULL,
    quiet_end          integer NOT NULL,
    budget             bigint NOT NULL CHECK (budget > 0),
    cost_per_message   bigint NOT NULL CHECK (cost_per_message >= 0),
    currency           text NOT NULL,
    spent              bigint NOT NULL DEFAULT 0,
    start_at           timestamptz,
    repeat_every_hours integer NOT NULL DEFAULT 0,
    end_at             timestamptz,
    -- The occurrence the next snapshot takes, and when it is due (NULL: none left).
    next_occurrence    integer NOT NULL DEFAULT 0,
    next_due_at        timestamptz,
    created_at         timestamptz NOT NULL
);

CREATE INDEX campaigns_due ON campaigns (next_due_at) WHERE status IN ('SCHEDULED', 'RUNNING');
CREATE INDEX campaigns_running ON campaigns (channel) WHERE status = 'RUNNING';

CREATE TABLE campaign_deliveries (
    campaign_id uuid NOT NULL REFERENCES campaigns (id),
    occurrence  integer NOT NULL,
    user_id     text NOT NULL,
    channel     text NOT NULL,
    -- PENDING, SENDING (claimed by a replica), SENT, FAILED, BOUNCED, SUPPRESSED, CAPPED,
    -- NO_ADDRESS, UNKNOWN (its replica stopped mid-send; never sent again)
    status      text NOT NULL,
    not_before  timestamptz NOT NULL,
    claimed_at  timestamptz,
    sent_at     timestamptz,
    attempts    integer NOT NULL DEFAULT 0,
    error       text NOT NULL DEFAULT '',
    PRIMARY KEY (campaign_id, occurrence, user_id, channel)
);

CREATE INDEX campaign_deliveries_pending ON campaign_deliveries (campaign_id, not_before) WHERE status = 'PENDING';
CREATE INDEX campaign_deliveries_sending ON campaign_deliveries (claimed_at) WHERE status = 'SENDING';
CREATE INDEX campaign_deliveries_sent ON campaign_deliveries (user_id, sent_at) WHERE status = 'SENT';

CREATE TABLE campaign_suppressions (
    user_id text NOT NULL,
    channel text NOT NULL,
    reason  text NOT NULL,
    at      timestamptz NOT NULL,
    PRIMARY KEY (user_id, channel)
);

CREATE TABLE campaign_engagements (
    campaign_id uuid NOT NULL REFERENCES campaigns (id),
    user_id     text NOT NULL,
    kind        text NOT NULL,
    at          timestamptz NOT NULL,
    PRIMARY KEY (campaign_id, user_id, kind)
);

CREATE TABLE campaign_purchases (
    order_id text PRIMARY KEY,
    user_id  text NOT NULL,
    amount   bigint NOT NULL,
    currency text NOT NULL,
    at       timestamptz NOT NULL
);

CREATE INDEX campaign_purchases_user ON campaign_purchases (user_id, at);
