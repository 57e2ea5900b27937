-- KEYS: product, dirty, version floor, in-flight keys, write sequence.
-- ARGV: id, data, deleted (0/1), queue capacity, traceparent, deadline (Redis time, microseconds),
-- the version PostgreSQL holds for the key (0 for none; '' when the caller has not read it).
-- Stores the value, issues its version and marks the key dirty, atomically. The traceparents of
-- the writes a flush will coalesce are kept (at most 32), so the flush can link to each of them.
-- Returns the version, negated when the write coalesced with a queued one; 0 when the queue is
-- full; 1 when Redis does not remember the key's last version (`vmax`: the hash expired, was
-- evicted or dropped) and the caller has not read PostgreSQL's, which may be above Redis's clock;
-- 2 when Redis runs it after its deadline: the API may have given up on it by then and written it
-- through PostgreSQL, and a later write may have followed, so it must never apply.
-- One integer, as a table reply costs Redis more to convert.
-- Every write costs Redis time, so the script makes as few calls as it can.
local now = now_us()
if now > tonumber(ARGV[6]) then
  return 2
end
local cur = redis.call('HMGET', KEYS[1], 'vmax', 'version', 'traceparents')
local last = cur[1]
if ARGV[7] ~= '' then
  if tonumber(ARGV[7]) > tonumber(last or '0') then
    last = ARGV[7]
  end
elseif not last then
  return 1
end
local version, now_ms = next_version(last, KEYS[3], now)
-- A number argument goes through Lua's float formatting; '%d' is cheaper.
local coalesced = redis.call('ZADD', KEYS[2], 'NX', string.format('%d', now_ms), ARGV[1]) == 0
if not coalesced then
  -- Keys in flight count too, so that handing a batch back can never overfill the queue.
  local capacity = tonumber(ARGV[4])
  if redis.call('ZCARD', KEYS[2]) + redis.call('SCARD', KEYS[4]) > capacity then
    redis.call('ZREM', KEYS[2], ARGV[1])
    return 0
  end
end
local v = string.format('%d', version)
local tp, tps = ARGV[5], cur[3]
-- HSET with literal arguments: a table and unpack cost more.
if tp ~= '' then
  if coalesced and tps then
    if select(2, string.gsub(tps, ',', '')) < 31 then
      tp = tps .. ',' .. tp
    else
      tp = tps
    end
  end
  redis.call('HSET', KEYS[1], 'data', ARGV[2], 'deleted', ARGV[3], 'version', v, 'vmax', v, 'traceparents', tp)
else
  if tps and not coalesced then
    redis.call('HDEL', KEYS[1], 'traceparents')
  end
  redis.call('HSET', KEYS[1], 'data', ARGV[2], 'deleted', ARGV[3], 'version', v, 'vmax', v)
end
redis.call('INCR', KEYS[5])
-- Only a cached clean value has a TTL, and such a hash has a version (a new key has neither).
if cur[1] or cur[2] then
  redis.call('PERSIST', KEYS[1])
end
return coalesced and -version or version
