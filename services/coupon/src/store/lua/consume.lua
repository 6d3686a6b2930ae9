-- RedeemCoupon's step per coupon, atomically: the pause, the window, the global limit and the
-- per-user limit, then one use taken for the order. An order holds a coupon at most once, so a
-- retry takes nothing. ARGV: user, order, now_ms, ttl_s.
local user, order, now, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local meta = redis.call('HMGET', KEYS[1], 'total', 'per_user', 'from', 'until', 'paused')
if not meta[1] then return 'NOT_WARM' end
local held = redis.call('HGET', KEYS[4], order)
if held then
  local u, t, s = parse(held)
  if u ~= user then return 'OTHER_USER' end
  if s == 'R' then return 'REVERSED' end
  return 'HELD'
end
if meta[5] == '1' then return 'PAUSED' end
if now < tonumber(meta[3]) then return 'NOT_STARTED' end
if now >= tonumber(meta[4]) then return 'EXPIRED' end
local total, per_user = tonumber(meta[1]), tonumber(meta[2])
if total > 0 and tonumber(redis.call('GET', KEYS[2]) or '0') >= total then return 'DEPLETED' end
if per_user > 0 and tonumber(redis.call('HGET', KEYS[3], user) or '0') >= per_user then
  return 'USER_LIMIT'
end
redis.call('INCR', KEYS[2])
redis.call('HINCRBY', KEYS[3], user, 1)
redis.call('HSET', KEYS[4], order, user .. '|' .. now .. '|A')
touch(ttl)
return 'TAKEN'
