-- Event triggers: a TRIGGERED campaign names the bus event that starts a message to its
-- user (after trigger_delay_hours) and the event that cancels it. Each trigger event is
-- recorded once per campaign (the primary key), with the occurrence number its delivery
-- got, so a redelivered event starts nothing and a cancelling event finds what it cancels.

ALTER TABLE campaigns
    ADD COLUMN trigger_event        text NOT NULL DEFAULT '',
    ADD COLUMN trigger_delay_hours  integer NOT NULL DEFAULT 0,
    ADD COLUMN trigger_cancel_event text NOT NULL DEFAULT '';

CREATE INDEX campaigns_triggered ON campaigns (trigger_event) WHERE trigger_event <> '';

CREATE TABLE campaign_triggers (
    campaign_id uuid NOT NULL REFERENCES campaigns (id),
    event_id    uuid NOT NULL,
    user_id     text NOT NULL,
    occurrence  integer NOT NULL,
    at          timestamptz NOT NULL,
    PRIMARY KEY (campaign_id, event_id)
);

CREATE INDEX campaign_triggers_user ON campaign_triggers (user_id, at);
