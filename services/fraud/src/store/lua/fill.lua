-- Caches a user's history read from PostgreSQL, unless the user was invalidated since the
-- check read its epoch (the snapshot may then predate the change).
-- KEYS: 1 history hash, 2 seen set, 3 recent sorted set, 4 epoch counter.
-- ARGV: 1 epoch read, 2 hash ttl ms, 3 sets ttl ms, 4 recent entries kept,
--       then counted groups: fields set, fields set only when absent (a check may have
--       stored a newer account creation time), seen members, recent (score, member) pairs.
if (redis.call('GET', KEYS[4]) or '0') ~= ARGV[1] then
  return 0
end
local i = 5
local n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]); i = i + 2
end
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 1]); i = i + 2
end
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  redis.call('SADD', KEYS[2], ARGV[i]); i = i + 1
end
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  redis.call('ZADD', KEYS[3], 'NX', ARGV[i], ARGV[i + 1]); i = i + 2
end
redis.call('ZREMRANGEBYRANK', KEYS[3], 0, -1 - tonumber(ARGV[4]))
-- The marker makes the hash a whole history: checks write fields into a hash without one.
redis.call('HSET', KEYS[1], 'epoch', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
redis.call('PEXPIRE', KEYS[3], ARGV[3])
return 1
