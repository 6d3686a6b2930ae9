SELECT variant, count() AS users, sum(converted) AS total, sum(converted * converted) AS total_sq
FROM (
    SELECT user_id, any(variant) AS variant, toFloat64(max(event_ms >= first_ms)) AS converted
    FROM (
        SELECT user_id, variant, first_ms, event_ms
        FROM (
            SELECT user_id,
                   argMin(variation_index, toUInt64(time) * 1000 + time_ms) AS variant,
                   min(toUInt64(time) * 1000 + time_ms) AS first_ms
            FROM abtesting_exposures
            WHERE experiment_key = ?
            GROUP BY user_id
        )
        ALL LEFT JOIN (
            SELECT user_id, toUInt64(time) * 1000 + time_ms AS event_ms
            FROM analytics_events
            WHERE name = ? AND user_id != ''
        ) USING user_id
    )
    GROUP BY user_id
)
GROUP BY variant
ORDER BY variant
