-- KEYS: in-flight, in-flight since, leases, dead letters. ARGV: worker token, id, dead-letter record.
-- Parks a record that keeps failing and ends its lease, atomically. Returns 1 if the lease was ours.
if redis.call('HGET', KEYS[3], ARGV[2]) ~= ARGV[1] then
  return 0
end
redis.call('ZREM', KEYS[1], ARGV[2])
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('HDEL', KEYS[3], ARGV[2])
redis.call('LPUSH', KEYS[4], ARGV[3])
return 1
