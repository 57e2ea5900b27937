-- KEYS: product, dirty, dead letters, version floor.
-- ARGV: id, data, deleted, version, the dead-letter record as stored.
-- Takes a record off the dead-letter list and queues it again, unless Redis holds a newer version
-- of the key. Returns 1 when queued, 0 when superseded, -1 when the record was already gone.
if redis.call('LREM', KEYS[3], 1, ARGV[5]) == 0 then
  return -1
end
local current = tonumber(redis.call('HGET', KEYS[1], 'version') or '-1')
if current > tonumber(ARGV[4]) then
  return 0
end
local last = redis.call('HGET', KEYS[1], 'vmax')
local _, now_ms = next_version(last, KEYS[4])
local vmax = tonumber(last or '0')
redis.call('HSET', KEYS[1], 'data', ARGV[2], 'deleted', ARGV[3], 'version', ARGV[4])
if vmax < tonumber(ARGV[4]) then
  redis.call('HSET', KEYS[1], 'vmax', ARGV[4])
end
redis.call('PERSIST', KEYS[1])
redis.call('ZADD', KEYS[2], 'NX', now_ms, ARGV[1])
return 1
