-- The sweeper: returns the stock of the given reservations that have expired by now (the app
-- has checked them against PostgreSQL's orders first), and gives keys created since the last
-- pass their expiry. ARGV: now_ms, then reservation ids. Returns how many were released.
keep_until_expiry()
local now, released = tonumber(ARGV[1]), 0
for i = 2, #ARGV do
  local r = redis.call('HGET', KEYS[4], ARGV[i])
  local _, _, e, s
  if r then _, _, e, s = parse(r) end
  if s == 'R' then
    if e <= now and release(ARGV[i], 'E') > 0 then released = released + 1 end
  else
    -- Confirmed, cancelled or gone: nothing to release, and no longer due.
    redis.call('ZREM', KEYS[5], ARGV[i])
  end
end
return released
