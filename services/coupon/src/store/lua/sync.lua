-- Loads a coupon from the record (first use, after an edit, after Redis lost it, at reconcile):
-- rules, and the ledger of redemptions; counters are recounted from the ledger. An applied
-- entry the record does not know yet and younger than the grace period is a redemption in
-- flight and is kept. ARGV: now_ms, grace_ms, ttl_s, coupon JSON, total, per_user, from_ms,
-- until_ms, paused, then (order, user, 'A'|'R') triples of the record.
local now, grace, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('DEL', KEYS[1], KEYS[5])
redis.call('HSET', KEYS[1], 'coupon', ARGV[4], 'total', ARGV[5], 'per_user', ARGV[6],
  'from', ARGV[7], 'until', ARGV[8], 'paused', ARGV[9])
local record = {}
for i = 10, #ARGV, 3 do record[ARGV[i]] = ARGV[i + 1] .. '|' .. now .. '|' .. ARGV[i + 2] end
local current = redis.call('HGETALL', KEYS[4])
for i = 1, #current, 2 do
  local order = current[i]
  if not record[order] then
    local u, t, s = parse(current[i + 1])
    if s == 'A' and now - t < grace then record[order] = current[i + 1] end
  end
end
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
local uses = 0
for order, v in pairs(record) do
  redis.call('HSET', KEYS[4], order, v)
  local u, t, s = parse(v)
  if s == 'A' then
    uses = uses + 1
    redis.call('HINCRBY', KEYS[3], u, 1)
  end
end
redis.call('SET', KEYS[2], uses)
touch(ttl)
return uses
