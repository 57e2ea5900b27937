-- KEYS: product. ARGV: a version PostgreSQL issued for the key without Redis, clean ttl ms.
-- Makes Redis agree with a write it did not see: the key's last issued version (`vmax`) rises to
-- at least that version, so later writes are newer, and a cached value older than it stops being
-- served. A clean value is dropped (its TTL stays, so a hash holding only `vmax` expires). A
-- queued one stays for the worker, which finds it stale and drops it; until then `stale_below`
-- hides it from reads. Applying the same version again changes nothing. Returns 1.
local v = tonumber(ARGV[1])
local cur = redis.call('HMGET', KEYS[1], 'vmax', 'version', 'stale_below')
if tonumber(cur[1] or '0') < v then
  redis.call('HSET', KEYS[1], 'vmax', ARGV[1])
end
if not cur[1] and not cur[2] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if cur[2] and tonumber(cur[2]) < v then
  -- Dirty values never carry a TTL and clean ones always do.
  if redis.call('PTTL', KEYS[1]) == -1 then
    if tonumber(cur[3] or '0') < v then
      redis.call('HSET', KEYS[1], 'stale_below', ARGV[1])
    end
  else
    redis.call('HDEL', KEYS[1], 'data', 'deleted', 'version', 'traceparents', 'stale_below')
  end
end
return 1
