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
for i = 1, #due, 2 do table.insert(candidates, due[i]) end
local busy = chunked('ZMSCORE', KEYS[2], candidates, 1000)
local ids, deadlines, sinces, leases, out = {}, {}, {}, {}, {}
local deadline = string.format('%d', now + tonumber(ARGV[3]))
for i, id in ipairs(candidates) do
  if #ids >= batch then break end
  if not busy[i] then
    local since = due[2 * i]
    table.insert(ids, id)
    table.insert(deadlines, deadline)
    table.insert(deadlines, id)
    table.insert(sinces, since)
    table.insert(sinces, id)
    table.insert(leases, id)
    table.insert(leases, ARGV[4])
    local rec = redis.call('HMGET', ARGV[5] .. id, 'data', 'deleted', 'version', 'traceparents')
    table.insert(out, id)
    table.insert(out, rec[1] or '')
    table.insert(out, rec[2] or '')
    table.insert(out, rec[3] or '')
    table.insert(out, since)
    table.insert(out, rec[4] or '')
  end
end
if #ids > 0 then
  chunked('ZREM', KEYS[1], ids, 1000)
  chunked('ZADD', KEYS[2], deadlines, 1000)
  chunked('ZADD', KEYS[3], sinces, 1000)
  chunked('HSET', KEYS[4], leases, 1000)
end
return out
