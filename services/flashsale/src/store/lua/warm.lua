-- WarmUp, and every re-warm (an admin change, a repair by reconcile): writes the rules, makes
-- every order PostgreSQL recorded CONFIRMED (`restore`), then recounts the stock from the
-- reservations themselves rather than from counters Redis may have lost: available = total −
-- sold − live reservations, per-user holdings rebuilt the same way. It never creates or loses
-- a unit. ARGV: starts_ms, ends_ms, max, ttl_ms, state, pow, total, expire_at_s, then triples
-- of the recorded orders (reservation_id, user, quantity). Returns {available, oversold}.
redis.call('HSET', KEYS[1], 'starts', ARGV[1], 'ends', ARGV[2], 'max', ARGV[3], 'ttl', ARGV[4],
  'state', ARGV[5], 'pow', ARGV[6], 'total', ARGV[7], 'expire_at', ARGV[8])
for i = 9, #ARGV, 3 do restore(ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])) end

local reserved, sold, held = 0, 0, {}
local all = redis.call('HGETALL', KEYS[4])
for i = 1, #all, 2 do
  local u, q, e, s = parse(all[i + 1])
  if s == 'R' then reserved = reserved + q end
  if s == 'C' then sold = sold + q end
  if s == 'R' or s == 'C' then held[u] = (held[u] or 0) + q end
end
redis.call('DEL', KEYS[3])
for u, q in pairs(held) do redis.call('HSET', KEYS[3], u, q) end
redis.call('HSET', KEYS[7], 'units_reserved', reserved, 'units_sold', sold)

local available = tonumber(ARGV[7]) - reserved - sold
local oversold = 0
if available < 0 then
  oversold = -available
  available = 0
end
redis.call('SET', KEYS[2], available)
redis.call('EXPIREAT', KEYS[1], tonumber(ARGV[8]))
keep_until_expiry()
return {available, oversold}
