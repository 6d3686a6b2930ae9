-- ValidateCoupon's and RedeemCoupon's read: the coupon, its uses, the shopper's uses and the
-- order's hold, in one atomic read. ARGV: user, order ('' for none).
local coupon = redis.call('HGET', KEYS[1], 'coupon')
if not coupon then
  if redis.call('EXISTS', KEYS[5]) == 1 then return {'MISSING'} end
  return {}
end
local hold = ''
if ARGV[2] ~= '' then
  local v = redis.call('HGET', KEYS[4], ARGV[2])
  if v then
    local u, t, s = parse(v)
    if u ~= ARGV[1] then hold = 'O' else hold = s end
  end
end
return {coupon, redis.call('GET', KEYS[2]) or '0', redis.call('HGET', KEYS[3], ARGV[1]) or '0', hold}
