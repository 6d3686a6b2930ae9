-- The global send rate: deliveries claimed per second (epoch seconds) across every replica,
-- taken under the row's lock before a batch is claimed. Rows older than the claim timeout
-- are deleted by the sender.

CREATE TABLE campaign_send_window (
    second bigint PRIMARY KEY,
    used   integer NOT NULL CHECK (used >= 0)
);
