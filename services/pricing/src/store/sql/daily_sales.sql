-- Verified orders of one product per day (docs/analytics.md: an order is an event with an
-- order_id and revenue > 0, counted once per order_id). Parameters: product id, first day,
-- day after the last (days since the epoch).
SELECT toUInt16(date) AS day, uniqExact(order_id) AS orders
FROM analytics_events
WHERE product_id = ?
  AND date >= toDate(?) AND date < toDate(?)
  AND revenue > 0 AND order_id != ''
GROUP BY day
ORDER BY day
