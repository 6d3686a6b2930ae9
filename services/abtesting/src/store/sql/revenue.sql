SELECT variant, count() AS users, sum(revenue) AS total, sum(revenue * revenue) AS total_sq
FROM (
    SELECT user_id, any(variant) AS variant,
           toFloat64(sum(if(order_ms >= first_ms, order_revenue, 0))) AS revenue
    FROM (
        SELECT user_id, variant, first_ms, order_ms, order_revenue
        FROM (
            SELECT user_id,
                   argMin(variation_index, toUInt64(time) * 1000 + time_ms) AS variant,
                   min(toUInt64(time) * 1000 + time_ms) AS first_ms
            FROM abtesting_exposures
            WHERE experiment_key = ?
            GROUP BY user_id
        )
        ALL LEFT JOIN (
            SELECT user_id,
                   min(toUInt64(time) * 1000 + time_ms) AS order_ms,
                   any(revenue) AS order_revenue
            FROM analytics_events
            WHERE order_id != '' AND revenue > 0 AND user_id != ''
            GROUP BY user_id, order_id
        ) USING user_id
    )
    GROUP BY user_id
)
GROUP BY variant
ORDER BY variant
