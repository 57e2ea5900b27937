-- KEYS: dirty, in-flight keys, leases, batch since.
-- ARGV: batch record key prefix, then a batch id; without one, every batch whose lease has
-- expired.
-- Hands a batch's keys back to the dirty set with their first-dirtied time. Returns the number
-- of keys handed back.
local batches, n = {}, 0
if ARGV[2] then
  batches[1] = ARGV[2]
else
  batches = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now_ms(), 'LIMIT', 0, 1000)
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
