-- A claim takes a campaign's oldest due deliveries in (not_before, occurrence, user_id) order.
-- The index in exactly that order lets it read just the batch it claims: the index on
-- (campaign_id, not_before) alone made every claim sort all the campaign's pending deliveries
-- (about 50,000 rows on average per 1,000-row claim of a 100,000-member send), which kept
-- PostgreSQL busier than the sender and the relay together.
DROP INDEX campaign_deliveries_pending;
CREATE INDEX campaign_deliveries_pending
    ON campaign_deliveries (campaign_id, not_before, occurrence, user_id)
    WHERE status = 'PENDING';

-- What the last taker of a second got, so taking sends is one upsert that answers it.
ALTER TABLE campaign_send_window ADD COLUMN granted integer NOT NULL DEFAULT 0;
