-- Viewer figures without a heartbeat (read only): KEYS as heartbeat.lua, ARGV window_start_ms.
return {redis.call('ZCOUNT', KEYS[1], ARGV[1], '+inf'),
  tonumber(redis.call('GET', KEYS[3]) or '0'), redis.call('PFCOUNT', KEYS[2]),
  tonumber(redis.call('GET', KEYS[4]) or '0'), tonumber(redis.call('GET', KEYS[5]) or '0')}
