-- CancelReservation: its owner gives the units back, once. ARGV: reservation_id, user.
local id, user = ARGV[1], ARGV[2]
local r = redis.call('HGET', KEYS[4], id)
if not r then return {'NOT_FOUND'} end
local u, q, e, s = parse(r)
if u ~= user then return {'NOT_OWNER'} end
if s == 'C' then return {'CONFIRMED'} end
if s == 'R' then release(id, 'X') end
return {'OK'}
