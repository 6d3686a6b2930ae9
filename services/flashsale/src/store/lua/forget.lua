-- Erasure of one buyer from one sale (titan_kit::privacy). KEYS 8 = the buyer's reserve
-- rate-limit key. ARGV: user, pseudonym, n, then the n replay fields of the user's attempts
-- (req), then the reservation ids to look at (those the replays answered and those of the
-- user's recorded orders). Each reservation is checked against its owner here, so an id that
-- is not the user's is left alone. A held reservation goes back on sale as CancelReservation
-- gives it back; held, cancelled and expired ones are deleted; a paid one stays, CONFIRMED,
-- with the pseudonym in place of the user, and its units move to the pseudonym's count so
-- that a warm-up recounts the same holdings. Returns {reservations deleted, paid reservations
-- pseudonymised, replays deleted, unit counts deleted, budgets deleted}.
local user, pseudonym, n = ARGV[1], ARGV[2], tonumber(ARGV[3])
local removed, kept, seen = 0, 0, {}
for i = 4 + n, #ARGV do
  local id = ARGV[i]
  local r = not seen[id] and redis.call('HGET', KEYS[4], id)
  seen[id] = true
  if r then
    local u, q, e, s = parse(r)
    if u == user then
      if s == 'C' then
        redis.call('HSET', KEYS[4], id, pseudonym .. '|' .. q .. '|' .. e .. '|C')
        redis.call('HINCRBY', KEYS[3], pseudonym, q)
        kept = kept + 1
      else
        if s == 'R' then release(id, 'X') end
        redis.call('HDEL', KEYS[4], id)
        redis.call('ZREM', KEYS[5], id)
        removed = removed + 1
      end
    end
  end
end
local replays = 0
for i = 4, 3 + n do replays = replays + redis.call('HDEL', KEYS[6], ARGV[i]) end
local counts = redis.call('HDEL', KEYS[3], user)
local budgets = redis.call('DEL', KEYS[8])
keep_until_expiry()
return {removed, kept, replays, counts, budgets}
