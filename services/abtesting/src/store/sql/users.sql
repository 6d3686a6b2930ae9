SELECT variant, count() AS users
FROM (
    SELECT user_id, argMin(variation_index, toUInt64(time) * 1000 + time_ms) AS variant
    FROM abtesting_exposures
    WHERE experiment_key = ?
    GROUP BY user_id
)
GROUP BY variant
ORDER BY variant
