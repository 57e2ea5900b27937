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
if #due == 0 then
  return {}
end
local candidates = {}
for i = 1, #due, 2 do candidates[(i + 1) / 2] = due[i] end
local busy = chunked('ZMSCORE', KEYS[2], candidates, 1000)
-- Plain indexing: table.insert and # cost more, and this loop runs once per key.
local ids, deadlines, sinces, leases, out = {}, {}, {}, {}, {}
local deadline = string.format('%d', now + tonumber(ARGV[3]))
local token, prefix, n = ARGV[4], ARGV[5], 0
for i, id in ipairs(candidates) do
  if n >= batch then break end
  if not busy[i] then
    local since = due[2 * i]
    n = n + 1
    ids[n] = id
    deadlines[2 * n - 1], deadlines[2 * n] = deadline, id
    sinces[2 * n - 1], sinces[2 * n] = since, id
    leases[2 * n - 1], leases[2 * n] = id, token
    local rec = redis.call('HMGET', prefix .. id, 'data', 'deleted', 'version', 'traceparents')
    local o = 6 * (n - 1)
    out[o + 1], out[o + 2], out[o + 3], out[o + 4], out[o + 5], out[o + 6] =
      id, rec[1] or '', rec[2] or '', rec[3] or '', since, rec[4] or ''
  end
end
if n > 0 then
  chunked('ZREM', KEYS[1], ids, 1000)
  chunked('ZADD', KEYS[2], deadlines, 1000)
  chunked('ZADD', KEYS[3], sinces, 1000)
  chunked('HSET', KEYS[4], leases, 1000)
end
return out
