-- Shared by every coupon script (prepended to each). KEYS of one coupon, one hash slot:
-- 1 meta (hash: coupon (JSON), total, per_user, from, until (ms), paused), 2 uses (count of
-- applied redemptions), 3 users (hash user -> applied uses), 4 orders (hash order ->
-- "user|at_ms|A" applied or "...|R" reversed), 5 missing (set while no coupon has the code).

local function parse(v)
  local u, t, s = string.match(v, '^(.*)|(%d+)|(%a)$')
  return u, tonumber(t), s
end

-- Every key of the coupon lives as long as the lookup cache, counted from the last change.
local function touch(ttl)
  for i = 1, 4 do redis.call('EXPIRE', KEYS[i], ttl) end
end
