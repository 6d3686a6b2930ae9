-- Gives an order's use of the coupon back, once: forgotten (ARGV[2] = '1', a redemption that
-- was never recorded) or marked reversed (an order cancelled). ARGV: order, forget, ttl_s.
local v = redis.call('HGET', KEYS[4], ARGV[1])
if not v then return 0 end
local u, t, s = parse(v)
if ARGV[2] == '1' then redis.call('HDEL', KEYS[4], ARGV[1]) end
if s ~= 'A' then return 0 end
if ARGV[2] ~= '1' then redis.call('HSET', KEYS[4], ARGV[1], u .. '|' .. t .. '|R') end
redis.call('DECR', KEYS[2])
redis.call('HINCRBY', KEYS[3], u, -1)
touch(tonumber(ARGV[3]))
return 1
