-- KEYS: leases, batch record. ARGV: batch id, lease ms.
-- Extends a batch's lease while its worker still holds it. Returns 1 when renewed, 0 when the
-- lease was lost (the reaper handed the batch back, or it was settled).
if redis.call('EXISTS', KEYS[2]) == 0 or not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[1], 'XX', string.format('%d', now_ms() + tonumber(ARGV[2])), ARGV[1])
return 1
