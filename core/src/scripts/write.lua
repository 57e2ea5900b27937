-- KEYS: product, dirty, version floor. ARGV: id, data, deleted (0/1), queue capacity, traceparent.
-- Stores the value, issues its version and marks the key dirty, atomically. The traceparents of
-- the writes a flush will coalesce are kept (at most 32), so the flush can link to each of them.
-- Returns {version, coalesced (0/1)} or {-1, capacity} when the queue is full.
local version, now_ms = next_version(KEYS[1], KEYS[3])
local dirty_since = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not dirty_since then
  local capacity = tonumber(ARGV[4])
  if redis.call('ZCARD', KEYS[2]) >= capacity then
    return {-1, capacity}
  end
  redis.call('ZADD', KEYS[2], now_ms, ARGV[1])
end
local v = string.format('%d', version)
redis.call('HSET', KEYS[1], 'data', ARGV[2], 'deleted', ARGV[3], 'version', v, 'vmax', v)
redis.call('PERSIST', KEYS[1])
local tp = ARGV[5]
if tp == '' then
  if not dirty_since then redis.call('HDEL', KEYS[1], 'traceparents') end
elseif dirty_since then
  local tps = redis.call('HGET', KEYS[1], 'traceparents')
  if not tps then
    tps = tp
  elseif select(2, string.gsub(tps, ',', '')) < 31 then
    tps = tps .. ',' .. tp
  end
  redis.call('HSET', KEYS[1], 'traceparents', tps)
else
  redis.call('HSET', KEYS[1], 'traceparents', tp)
end
return {v, dirty_since and 1 or 0}
