-- The orders of one stream: its livestream.purchased events, once per order_id at the
-- largest revenue (docs/analytics.md: a redelivered event counts once). Parameters: first
-- day, last day (days since the epoch), stream id.
SELECT order_id, any(user_id), max(revenue), any(currency)
FROM analytics_events
WHERE name = 'livestream.purchased'
  AND date >= toDate(?) AND date <= toDate(?)
  AND visitParamExtractString(properties, 'stream_id') = ?
  AND order_id != '' AND revenue > 0
GROUP BY order_id
