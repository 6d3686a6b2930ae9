-- The minutes each viewer watched one stream: its livestream.watched events (one per viewer
-- and minute since the start; a redelivered one repeats a minute, which groupUniqArray
-- merges). Parameters: first day, last day (days since the epoch), stream id.
SELECT user_id, groupUniqArray(toUInt32(visitParamExtractUInt(properties, 'minute'))) AS minutes
FROM analytics_events
WHERE name = 'livestream.watched'
  AND date >= toDate(?) AND date <= toDate(?)
  AND visitParamExtractString(properties, 'stream_id') = ?
  AND user_id != ''
GROUP BY user_id
