-- KEYS: product, dirty, dead letters, version floor, in-flight keys, write sequence.
-- ARGV: id, data, deleted, version, the dead-letter record as stored, queue capacity.
-- Takes a record off the dead-letter list and queues it again, unless Redis holds a newer version
-- of the key. A record that would grow a full queue stays in the list (keys in flight count, as
-- for a write). Returns 1 when queued, 0 when superseded, -1 when the record was already gone,
-- -2 when the queue is full.
if not redis.call('LPOS', KEYS[3], ARGV[5]) then
  return -1
end
local current = tonumber(redis.call('HGET', KEYS[1], 'version') or '-1')
if current > tonumber(ARGV[4]) then
  redis.call('LREM', KEYS[3], 1, ARGV[5])
  return 0
end
local queued = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not queued and redis.call('ZCARD', KEYS[2]) + redis.call('SCARD', KEYS[5]) >= tonumber(ARGV[6]) then
  return -2
end
redis.call('LREM', KEYS[3], 1, ARGV[5])
local last = redis.call('HGET', KEYS[1], 'vmax')
local _, now_ms = next_version(last, KEYS[4])
local vmax = tonumber(last or '0')
redis.call('HSET', KEYS[1], 'data', ARGV[2], 'deleted', ARGV[3], 'version', ARGV[4])
if vmax < tonumber(ARGV[4]) then
  redis.call('HSET', KEYS[1], 'vmax', ARGV[4])
end
redis.call('PERSIST', KEYS[1])
redis.call('ZADD', KEYS[2], 'NX', now_ms, ARGV[1])
redis.call('INCR', KEYS[6])
return 1
