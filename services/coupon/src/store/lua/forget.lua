-- Erasure of one shopper from one coupon (titan_kit::privacy): the ledger entries of the
-- shopper's orders and their use count stay, under the pseudonym, so the coupon's counters
-- still add up and match the record. ARGV: user, pseudonym, then the order ids to look at
-- (the shopper's recorded redemptions of the coupon); each entry is checked against its owner
-- here. Returns {ledger entries pseudonymised, use counts pseudonymised}.
local user, pseudonym = ARGV[1], ARGV[2]
local entries = 0
for i = 3, #ARGV do
  local v = redis.call('HGET', KEYS[4], ARGV[i])
  if v then
    local u, t, s = parse(v)
    if u == user then
      redis.call('HSET', KEYS[4], ARGV[i], pseudonym .. '|' .. t .. '|' .. s)
      entries = entries + 1
    end
  end
end
local counts = 0
local n = redis.call('HGET', KEYS[3], user)
if n then
  -- Added before the user's field goes: a hash left empty would vanish, and the count
  -- written after it would make a key without the coupon's expiry.
  redis.call('HINCRBY', KEYS[3], pseudonym, tonumber(n))
  redis.call('HDEL', KEYS[3], user)
  counts = 1
end
return {entries, counts}
