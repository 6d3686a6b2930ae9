-- WarmUp (and re-warm after an edit or an admin state change): writes the rules and sets the
-- available stock to what is neither reserved nor sold, so it never creates or loses a unit.
-- ARGV: starts_ms, ends_ms, max, ttl_ms, state, pow, total, expire_at_s.
redis.call('HSET', KEYS[1], 'starts', ARGV[1], 'ends', ARGV[2], 'max', ARGV[3], 'ttl', ARGV[4],
  'state', ARGV[5], 'pow', ARGV[6], 'total', ARGV[7], 'expire_at', ARGV[8])
local reserved = tonumber(redis.call('HGET', KEYS[7], 'units_reserved') or '0')
local sold = tonumber(redis.call('HGET', KEYS[7], 'units_sold') or '0')
local available = tonumber(ARGV[7]) - reserved - sold
if available < 0 then available = 0 end
redis.call('SET', KEYS[2], available)
redis.call('EXPIREAT', KEYS[1], tonumber(ARGV[8]))
keep_until_expiry()
return available
