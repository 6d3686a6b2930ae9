-- Repairs the reservations of orders PostgreSQL recorded (see `restore`), before the sweeper
-- releases them or when a confirm finds its order already recorded. ARGV: triples of
-- reservation_id, user, quantity. Returns {repaired, units missing from stock (oversold)}.
local repaired = 0
for i = 1, #ARGV, 3 do
  repaired = repaired + restore(ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]))
end
local stock = tonumber(redis.call('GET', KEYS[2]) or '0')
return {repaired, stock < 0 and -stock or 0}
