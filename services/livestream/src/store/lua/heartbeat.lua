-- A viewer's heartbeat: KEYS viewers (sorted set, score = ms of the last heartbeat), unique
-- (HyperLogLog), peak, likes, shares, minutes (hash: viewer -> the last minute since the
-- start reported to analytics). ARGV now_ms, window_start_ms, viewer, keep_seconds, minute
-- (-1 when the stream has no start). Drops viewers older than the window, counts the rest,
-- raises the peak, returns {concurrent, peak, unique, likes, shares, new_minute} where
-- new_minute is 1 for the viewer's first heartbeat in this minute (one event per minute).
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[2])
redis.call('PFADD', KEYS[2], ARGV[3])
local concurrent = redis.call('ZCARD', KEYS[1])
local peak = tonumber(redis.call('GET', KEYS[3]) or '0')
if concurrent > peak then
  peak = concurrent
  redis.call('SET', KEYS[3], peak)
end
local minute = tonumber(ARGV[5])
local new_minute = 0
if minute >= 0 then
  local last = tonumber(redis.call('HGET', KEYS[6], ARGV[3]) or '-1')
  if minute > last then
    redis.call('HSET', KEYS[6], ARGV[3], minute)
    new_minute = 1
  end
end
for _, i in ipairs({1, 2, 3, 6}) do
  redis.call('EXPIRE', KEYS[i], ARGV[4])
end
return {concurrent, peak, redis.call('PFCOUNT', KEYS[2]),
  tonumber(redis.call('GET', KEYS[4]) or '0'), tonumber(redis.call('GET', KEYS[5]) or '0'),
  new_minute}
