-- KEYS: dirty, in-flight, in-flight since, leases.
-- ARGV: flush interval ms, batch size, lease ms, worker token, product key prefix.
-- Moves up to a batch of keys dirty for at least the flush interval, and not in flight
-- with another worker, to the in-flight set under this worker's lease.
-- Returns a flat list of {id, data, deleted, version, dirty since ms, traceparents} per key.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local batch = tonumber(ARGV[2])
local scan = batch + redis.call('ZCARD', KEYS[2])
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[1]), 'WITHSCORES', 'LIMIT', 0, scan)
local out = {}
local taken = 0
for i = 1, #due, 2 do
  if taken >= batch then break end
  local id, since = due[i], due[i + 1]
  if not redis.call('ZSCORE', KEYS[2], id) then
    redis.call('ZREM', KEYS[1], id)
    redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), id)
    redis.call('ZADD', KEYS[3], since, id)
    redis.call('HSET', KEYS[4], id, ARGV[4])
    local rec = redis.call('HMGET', ARGV[5] .. id, 'data', 'deleted', 'version', 'traceparents')
    table.insert(out, id)
    table.insert(out, rec[1] or '')
    table.insert(out, rec[2] or '')
    table.insert(out, rec[3] or '')
    table.insert(out, since)
    table.insert(out, rec[4] or '')
    taken = taken + 1
  end
end
return out
