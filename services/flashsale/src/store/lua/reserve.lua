-- AttemptPurchase, atomically: replay a seen request, rate limit (GCRA), sale window, proof of
-- work, per-user limit and stock; then hold the units. KEYS 8 = the buyer's rate-limit key,
-- 9 = the presented challenge's key. ARGV: user, quantity, replay key (user and request id,
-- length-prefixed by the caller so that no '|' in either can make two buyers' keys meet),
-- now_ms, reservation_id, burst, interval_ms, proof strength (leading zero hex digits the
-- nonce achieved).
local user, qty, reqkey, now, resid = ARGV[1], tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4]), ARGV[5]
local burst, interval = tonumber(ARGV[6]), tonumber(ARGV[7])

local prior = redis.call('HGET', KEYS[6], reqkey)
if prior then
  -- The same request id with another quantity is another request, not a retry.
  local _, pq = string.match(prior, '^(.*)|(%d+)|(%d+)$')
  if tonumber(pq) ~= qty then return {'REUSED', prior, ''} end
  return {'REPLAY', prior, redis.call('GET', KEYS[2]) or '0'}
end

local meta = redis.call('HMGET', KEYS[1], 'starts', 'ends', 'max', 'ttl', 'state', 'pow')
if not meta[1] then return {'REFUSED', 'NOT_WARM', ''} end

redis.call('HINCRBY', KEYS[7], 'attempts', 1)
local function refuse(reason, detail)
  redis.call('HINCRBY', KEYS[7], 'refused:' .. reason, 1)
  return {'REFUSED', reason, tostring(detail or '')}
end

-- GCRA: a burst of `burst`, then one attempt per `interval`.
local tat = tonumber(redis.call('GET', KEYS[8]) or '0')
if tat < now then tat = now end
local allow_at = tat + interval - burst * interval
if allow_at > now then return refuse('RATE_LIMITED', allow_at - now) end
redis.call('SET', KEYS[8], tat + interval, 'PX', tat + interval - now + 1000)

if meta[5] ~= 'scheduled' then return refuse('ENDED') end
if now < tonumber(meta[1]) then return refuse('NOT_STARTED', meta[1]) end
if now >= tonumber(meta[2]) then return refuse('ENDED') end
if tonumber(meta[6]) > 0 then
  -- The challenge was issued to this buyer for this sale; it is accepted once.
  if tonumber(ARGV[8]) < tonumber(meta[6]) or redis.call('GET', KEYS[9]) ~= user then
    return refuse('BAD_PROOF')
  end
  redis.call('DEL', KEYS[9])
end

local held = tonumber(redis.call('HGET', KEYS[3], user) or '0')
local max = tonumber(meta[3])
if held + qty > max then return refuse('LIMIT_REACHED', held .. ':' .. max) end
local stock = tonumber(redis.call('GET', KEYS[2]) or '0')
if stock <= 0 then
  return refuse('SOLD_OUT', redis.call('HGET', KEYS[7], 'units_reserved') or '0')
end
if stock < qty then return refuse('NOT_ENOUGH_STOCK', stock) end

redis.call('DECRBY', KEYS[2], qty)
redis.call('HINCRBY', KEYS[3], user, qty)
local expires = now + tonumber(meta[4])
redis.call('HSET', KEYS[4], resid, user .. '|' .. qty .. '|' .. expires .. '|R')
redis.call('ZADD', KEYS[5], expires, resid)
redis.call('HINCRBY', KEYS[7], 'reservations', 1)
redis.call('HINCRBY', KEYS[7], 'units_reserved', qty)
local answer = resid .. '|' .. qty .. '|' .. expires
redis.call('HSET', KEYS[6], reqkey, answer)
return {'OK', answer, tostring(stock - qty)}
