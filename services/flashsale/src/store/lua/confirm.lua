-- ConfirmPurchase's stock step: RESERVED -> CONFIRMED for its owner while it is live.
-- Confirming twice is fine (idempotent). ARGV: reservation_id, user, now_ms.
local id, user, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
local r = redis.call('HGET', KEYS[4], id)
if not r then return {'NOT_FOUND'} end
local u, q, e, s = parse(r)
if u ~= user then return {'NOT_OWNER'} end
if s == 'C' then return {'OK', tostring(q)} end
if s == 'E' then return {'EXPIRED'} end
if s == 'X' then return {'CANCELLED'} end
if now >= e then
  release(id, 'E')
  return {'EXPIRED'}
end
redis.call('HSET', KEYS[4], id, u .. '|' .. q .. '|' .. e .. '|C')
redis.call('ZREM', KEYS[5], id)
redis.call('HINCRBY', KEYS[7], 'units_reserved', -q)
redis.call('HINCRBY', KEYS[7], 'units_sold', q)
redis.call('HINCRBY', KEYS[7], 'confirmations', 1)
return {'OK', tostring(q)}
