-- A viewer's entries of one stream handed to their pseudonym: KEYS viewers (sorted set) and
-- minutes (hash), as heartbeat.lua writes them; ARGV user, pseudonym. The pseudonym keeps the
-- later heartbeat and the later minute when it holds one already. The pseudonym is written
-- before the user is removed, so a key never empties and keeps its expiry. Returns
-- {viewer entries moved, minute entries moved}.
local moved = {0, 0}
local seen = redis.call('ZSCORE', KEYS[1], ARGV[1])
if seen then
  redis.call('ZADD', KEYS[1], 'GT', seen, ARGV[2])
  redis.call('ZREM', KEYS[1], ARGV[1])
  moved[1] = 1
end
local minute = redis.call('HGET', KEYS[2], ARGV[1])
if minute then
  local kept = tonumber(redis.call('HGET', KEYS[2], ARGV[2]) or '-1')
  if tonumber(minute) > kept then
    redis.call('HSET', KEYS[2], ARGV[2], minute)
  end
  redis.call('HDEL', KEYS[2], ARGV[1])
  moved[2] = 1
end
return moved
