-- Demand signals of a batch of products (docs/analytics.md): views and cart adds by distinct
-- event_id (duplicates until merges), verified orders by distinct order_id; over the last 7
-- days, with the last 24 hours apart. Parameters: now (seconds), product ids.
SELECT
    product_id,
    uniqExactIf(event_id, name = 'product_view' AND time >= toDateTime(?) - 86400) AS views_24h,
    uniqExactIf(event_id, name = 'product_view') AS views_7d,
    uniqExactIf(event_id, name = 'add_to_cart' AND time >= toDateTime(?) - 86400) AS carts_24h,
    uniqExactIf(order_id, revenue > 0 AND order_id != '' AND time >= toDateTime(?) - 86400) AS purchases_24h,
    uniqExactIf(order_id, revenue > 0 AND order_id != '') AS purchases_7d
FROM analytics_events
WHERE date >= toDate(toDateTime(?) - 7 * 86400)
  AND time >= toDateTime(?) - 7 * 86400
  AND time < toDateTime(?)
  AND product_id IN (SELECT arrayJoin(?))
  AND (name IN ('product_view', 'add_to_cart') OR revenue > 0)
GROUP BY product_id
