-- KEYS: dirty, in-flight, in-flight since, leases. ARGV: worker token ('' for any), then ids.
-- Hands keys back to the dirty set with their first-dirtied time. With an empty token and no
-- ids, it reaps every lease whose deadline has passed. Returns the number of keys handed back.
local ids = {}
if #ARGV > 1 then
  for i = 2, #ARGV do table.insert(ids, ARGV[i]) end
else
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  ids = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 10000)
end
local n = 0
for _, id in ipairs(ids) do
  if ARGV[1] == '' or redis.call('HGET', KEYS[4], id) == ARGV[1] then
    local since = redis.call('ZSCORE', KEYS[3], id)
    if redis.call('ZREM', KEYS[2], id) == 1 then
      redis.call('ZADD', KEYS[1], 'LT', since or 0, id)
      n = n + 1
    end
    redis.call('ZREM', KEYS[3], id)
    redis.call('HDEL', KEYS[4], id)
  end
end
return n
