-- Shared by every stock script (prepended to each). KEYS of one sale, all in one hash slot:
-- 1 meta (hash: starts, ends, max, ttl, state, pow, total), 2 stock (available units),
-- 3 buyers (hash user -> units held), 4 res (hash id -> "user|qty|expires|status"),
-- 5 expiry (zset id by expiry), 6 req (hash replay key of user and request_id -> first answer), 7 stats (hash).

local function parse(r)
  local u, q, e, s = string.match(r, '^(.*)|(%d+)|(%d+)|(%a)$')
  return u, tonumber(q), tonumber(e), s
end

-- Moves a RESERVED reservation to `to` (E expired, X cancelled) and returns its stock, once.
local function release(id, to)
  local r = redis.call('HGET', KEYS[4], id)
  if not r then return 0 end
  local u, q, e, s = parse(r)
  if s ~= 'R' then return 0 end
  redis.call('HSET', KEYS[4], id, u .. '|' .. q .. '|' .. e .. '|' .. to)
  redis.call('ZREM', KEYS[5], id)
  redis.call('INCRBY', KEYS[2], q)
  redis.call('HINCRBY', KEYS[3], u, -q)
  redis.call('HINCRBY', KEYS[7], 'units_reserved', -q)
  redis.call('HINCRBY', KEYS[7], to == 'E' and 'expiries' or 'cancellations', 1)
  return q
end

-- Makes a reservation PostgreSQL has an order for CONFIRMED, once, whatever Redis lost (a
-- crash inside `appendfsync everysec` can forget the confirm, or the whole reservation): a
-- paid reservation must never expire back into stock. Units that had gone back on sale are
-- taken out again. Returns 1 when something was repaired.
local function restore(id, user, qty)
  local r = redis.call('HGET', KEYS[4], id)
  local q = qty
  if r then
    local u, rq, e, s = parse(r)
    if s == 'C' then return 0 end
    q = rq
    redis.call('HSET', KEYS[4], id, u .. '|' .. q .. '|' .. e .. '|C')
    redis.call('ZREM', KEYS[5], id)
    if s == 'R' then
      redis.call('HINCRBY', KEYS[7], 'units_reserved', -q)
    else
      redis.call('DECRBY', KEYS[2], q)
      redis.call('HINCRBY', KEYS[3], u, q)
    end
  else
    redis.call('HSET', KEYS[4], id, user .. '|' .. q .. '|0|C')
    redis.call('DECRBY', KEYS[2], q)
    redis.call('HINCRBY', KEYS[3], user, q)
  end
  redis.call('HINCRBY', KEYS[7], 'units_sold', q)
  redis.call('HINCRBY', KEYS[7], 'confirmations', 1)
  return 1
end

-- Gives every key of the sale that has none the sale's expiry (a week after its end, kept in
-- meta): hashes created after the warm-up would otherwise outlive the sale forever.
local function keep_until_expiry()
  local at = redis.call('HGET', KEYS[1], 'expire_at')
  if not at then return end
  for i = 2, 7 do
    if redis.call('TTL', KEYS[i]) == -1 then redis.call('EXPIREAT', KEYS[i], tonumber(at)) end
  end
end
