-- KEYS: in-flight keys, batch since, dead letters, batch record, product, dirty.
-- ARGV: batch id, id, dead-letter record, clean ttl ms.
-- Parks a record that keeps failing and takes its key out of the batch, atomically, so that
-- neither the ack nor the reaper hands it back. The parked value is not stored, so the cache
-- stops serving it: unless the key was written again since (it is dirty), the value goes and
-- only the key's highest issued version stays, with the clean TTL; reads then answer what
-- PostgreSQL holds. Returns 1 if the batch's lease still held.
local record = redis.call('GET', KEYS[4])
if not record then
  return 0
end
local batch = cjson.decode(record)
local ids, sinces = batch[1], batch[2]
for i, id in ipairs(ids) do
  if id == ARGV[2] then
    table.remove(ids, i)
    table.remove(sinces, i)
    redis.call('SET', KEYS[4], cjson.encode({ids, sinces}))
    if #ids > 0 then
      redis.call('ZADD', KEYS[2], sinces[1], ARGV[1])
    end
    redis.call('SREM', KEYS[1], ARGV[2])
    redis.call('LPUSH', KEYS[3], ARGV[3])
    if not redis.call('ZSCORE', KEYS[6], ARGV[2]) then
      redis.call('HDEL', KEYS[5], 'data', 'deleted', 'version', 'traceparents')
      redis.call('PEXPIRE', KEYS[5], ARGV[4])
    end
    return 1
  end
end
return 0
