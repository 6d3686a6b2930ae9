-- Appends a decision to the decision log unless its transaction id was decided before, so two
-- checks of one transaction racing on two replicas log (and answer) one decision.
-- KEYS: 1 the transaction's decision key, 2 the log stream (one Redis Cluster slot: the
--       decision key is named beside the stream's).
-- ARGV: 1 the decision as answered (JSON), 2 how long it answers replays (ms), 3 the most
--       entries the log may hold, 4 the log entry (a kit envelope, JSON).
-- Returns {0} when logged, {1, earlier decision} when one was logged before, {2} when the log
-- is full (the sink is behind: the caller stores the decision in PostgreSQL itself).
local earlier = redis.call('GET', KEYS[1])
if earlier then
  return {1, earlier}
end
if redis.call('XLEN', KEYS[2]) >= tonumber(ARGV[3]) then
  return {2}
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('XADD', KEYS[2], '*', 'envelope', ARGV[4])
return {0}
