-- Takes a shopper off every board (an erasure): their member of each board and its entry in
-- the board's members hash, then their last applied ledger id. Atomic with apply.lua, so a
-- board never keeps half of a shopper.
-- KEYS: 1 applied (hash user -> last ledger id), then (board zset, board members hash) pairs.
-- ARGV: 1 the user.
-- Returns {board entries removed, applied ids removed}.
local removed = 0
for i = 2, #KEYS, 2 do
  local member = redis.call('HGET', KEYS[i + 1], ARGV[1])
  if member then
    removed = removed + redis.call('ZREM', KEYS[i], member)
    redis.call('HDEL', KEYS[i + 1], ARGV[1])
  end
end
return {removed, redis.call('HDEL', KEYS[1], ARGV[1])}
