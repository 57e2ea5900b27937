-- KEYS: dirty, in-flight, in-flight since, leases.
-- ARGV: worker token, clean ttl ms, product key prefix, then id, version, stale (0/1) triples.
-- Ends the leases this worker still holds. A value not written again becomes clean and gets a
-- TTL; one that PostgreSQL refused as older than its row is dropped, so reads go to PostgreSQL.
-- Returns the number of keys acknowledged.
local acked = 0
for i = 4, #ARGV, 3 do
  local id, version, stale = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if redis.call('HGET', KEYS[4], id) == ARGV[1] then
    redis.call('ZREM', KEYS[2], id)
    redis.call('ZREM', KEYS[3], id)
    redis.call('HDEL', KEYS[4], id)
    acked = acked + 1
    local key = ARGV[3] .. id
    if not redis.call('ZSCORE', KEYS[1], id) and redis.call('HGET', key, 'version') == version then
      if stale == '1' then
        redis.call('DEL', key)
      else
        redis.call('PEXPIRE', key, ARGV[2])
      end
    end
  end
end
return acked
