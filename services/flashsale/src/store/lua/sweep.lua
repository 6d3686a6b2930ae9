-- The sweeper: returns the stock of reservations expired by now. ARGV: now_ms, limit.
return sweep(tonumber(ARGV[1]), tonumber(ARGV[2]))
