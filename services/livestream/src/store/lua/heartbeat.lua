-- A viewer's heartbeat: KEYS viewers (sorted set, score = ms of the last heartbeat), unique
-- (HyperLogLog), peak, likes, shares. ARGV now_ms, window_start_ms, viewer, keep_seconds.
-- Drops viewers older than the window, counts the rest, raises the peak, returns
-- {concurrent, peak, unique, likes, shares}.
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[2])
redis.call('PFADD', KEYS[2], ARGV[3])
local concurrent = redis.call('ZCARD', KEYS[1])
local peak = tonumber(redis.call('GET', KEYS[3]) or '0')
if concurrent > peak then
  peak = concurrent
  redis.call('SET', KEYS[3], peak)
end
for i = 1, 3 do
  redis.call('EXPIRE', KEYS[i], ARGV[4])
end
return {concurrent, peak, redis.call('PFCOUNT', KEYS[2]),
  tonumber(redis.call('GET', KEYS[4]) or '0'), tonumber(redis.call('GET', KEYS[5]) or '0')}
