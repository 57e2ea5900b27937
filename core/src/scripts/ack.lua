-- KEYS: dirty, in-flight keys, leases, batch since, batch record.
-- ARGV: batch id, clean ttl ms, product key prefix, the persisted versions as a JSON object of
-- id to version, then the ids PostgreSQL refused as stale.
-- Ends a batch's lease if it still holds: every key of the batch is settled (a dead letter has
-- left it already). A value not written again becomes clean and gets a TTL; a stale one, older
-- than its row, is dropped so that reads go to PostgreSQL. A key written again since the claim
-- is back in the dirty set; as values are read after the claim, the flush may have persisted
-- that very write, and then the key is clean too, instead of being flushed twice.
-- Returns the number of keys acknowledged.
local record = redis.call('GET', KEYS[5])
if not record then
  return 0 -- the lease expired and the reaper handed the keys back
end
local ids = cjson.decode(record)[1]
local stale = {}
for i = 5, #ARGV do stale[ARGV[i]] = true end
chunked('SREM', KEYS[2], ids, 1000)
local dirty = chunked('ZMSCORE', KEYS[1], ids, 1000)
-- An absolute deadline: PEXPIRE would make Redis rewrite every call into a PEXPIREAT.
local expire_at = string.format('%d', now_ms() + tonumber(ARGV[2]))
local prefix, versions = ARGV[3], nil
for n, id in ipairs(ids) do
  local key = prefix .. id
  local clean = not dirty[n]
  if not clean then
    versions = versions or cjson.decode(ARGV[4])
    local v = versions[id]
    if v and redis.call('HGET', key, 'version') == v then
      redis.call('ZREM', KEYS[1], id)
      clean = true
    end
  end
  if clean then
    if stale[id] then
      redis.call('DEL', key)
    else
      redis.call('PEXPIREAT', key, expire_at)
    end
  end
end
redis.call('DEL', KEYS[5])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
return #ids
