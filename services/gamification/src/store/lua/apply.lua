-- Adds ledger rows to the leaderboards, each row once: a shopper's rows come in increasing ledger
-- id (their changes are serialised in PostgreSQL), so a row at or below the shopper's last
-- applied id has been counted. A shopper is one member per board, "<15 digits: 999999999999999
-- minus the ms they reached the score>:<user>": equal scores then sort (ZREVRANGE: member
-- descending) with whoever got there first on top.
-- KEYS: 1 applied (hash user -> last ledger id), then (board zset, board members hash) pairs.
-- ARGV: per row: id, user, delta, at_ms, then three (zset KEYS index or 0 to skip, keep seconds).
local n = 0
local i = 1
while i <= #ARGV do
  local id, user, delta, at = tonumber(ARGV[i]), ARGV[i + 1], tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3])
  local last = tonumber(redis.call('HGET', KEYS[1], user) or '0')
  if id > last then
    for j = 0, 2 do
      local z, keep = tonumber(ARGV[i + 4 + 2 * j]), tonumber(ARGV[i + 5 + 2 * j])
      if z > 0 then
        local zk, mk = KEYS[z], KEYS[z + 1]
        local old = redis.call('HGET', mk, user)
        local score = 0
        if old then
          score = tonumber(redis.call('ZSCORE', zk, old) or '0')
          redis.call('ZREM', zk, old)
        end
        local member = string.format('%015d', 999999999999999 - at) .. ':' .. user
        redis.call('ZADD', zk, score + delta, member)
        redis.call('HSET', mk, user, member)
        if keep > 0 then
          redis.call('EXPIRE', zk, keep)
          redis.call('EXPIRE', mk, keep)
        end
      end
    end
    redis.call('HSET', KEYS[1], user, id)
    n = n + 1
  end
  i = i + 10
end
return n
