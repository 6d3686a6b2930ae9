-- The sweeper: returns the stock of reservations expired by now, and gives keys created since
-- the last pass their expiry. ARGV: now_ms, limit.
keep_until_expiry()
return sweep(tonumber(ARGV[1]), tonumber(ARGV[2]))
