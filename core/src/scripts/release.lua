-- KEYS: dirty, in-flight keys, leases, batch since, then the in-flight, in-flight since and
-- leases keys of the per-key format before batches.
-- ARGV: batch record key prefix, then a batch id; without one, every batch whose lease has
-- expired, and any lease of the old format.
-- Hands a batch's keys back to the dirty set with their first-dirtied time. Returns the number
-- of keys handed back.
local batches, n = {}, 0
if ARGV[2] then
  batches[1] = ARGV[2]
else
  local now = now_ms()
  batches = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, 1000)
  -- Keys claimed by a worker of the previous format, which no reaper of that format will return.
  local old = redis.call('ZRANGE', KEYS[6], 0, -1, 'WITHSCORES')
  for i = 1, #old, 2 do
    redis.call('ZADD', KEYS[1], 'LT', old[i + 1], old[i])
    n = n + 1
  end
  if #old > 0 or redis.call('EXISTS', KEYS[5], KEYS[7]) > 0 then
    redis.call('DEL', KEYS[5], KEYS[6], KEYS[7])
  end
end
for _, id in ipairs(batches) do
  local record = redis.call('GET', ARGV[1] .. id)
  if record then
    local batch = cjson.decode(record)
    local ids, sinces = batch[1], batch[2]
    local held = chunked('SMISMEMBER', KEYS[2], ids, 1000)
    for i, key in ipairs(ids) do
      if held[i] == 1 then
        redis.call('ZADD', KEYS[1], 'LT', sinces[i], key)
        n = n + 1
      end
    end
    chunked('SREM', KEYS[2], ids, 1000)
    redis.call('DEL', ARGV[1] .. id)
  end
  redis.call('ZREM', KEYS[3], id)
  redis.call('ZREM', KEYS[4], id)
end
return n
