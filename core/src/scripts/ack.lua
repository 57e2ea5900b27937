-- KEYS: dirty, in-flight, in-flight since, leases.
-- ARGV: worker token, clean ttl ms, product key prefix, then id, version, stale (0/1) triples.
-- Ends the leases this worker still holds. A value not written again becomes clean and gets a
-- TTL; one that PostgreSQL refused as older than its row is dropped, so reads go to PostgreSQL.
-- Returns the number of keys acknowledged.
local all = {}
for i = 4, #ARGV, 3 do all[(i - 1) / 3] = ARGV[i] end
if #all == 0 then
  return 0
end
-- Up to 512 leases are a listpack, where HMGET scans the whole hash for each field: when the
-- hash is not much larger than the batch, reading it once is cheaper.
local owner = {}
if redis.call('HLEN', KEYS[4]) <= 4 * #all then
  local flat = redis.call('HGETALL', KEYS[4])
  for i = 1, #flat, 2 do owner[flat[i]] = flat[i + 1] end
else
  local owners = chunked('HMGET', KEYS[4], all, 1000)
  for n, id in ipairs(all) do owner[id] = owners[n] end
end
local mine, at = {}, {}
for n, id in ipairs(all) do
  if owner[id] == ARGV[1] then
    at[#mine + 1] = 4 + 3 * (n - 1)
    mine[#mine + 1] = id
  end
end
if #mine == 0 then
  return 0
end
chunked('ZREM', KEYS[2], mine, 1000)
chunked('ZREM', KEYS[3], mine, 1000)
chunked('HDEL', KEYS[4], mine, 1000)
local dirty = chunked('ZMSCORE', KEYS[1], mine, 1000)
for n, id in ipairs(mine) do
  local i = at[n]
  local version, stale = ARGV[i + 1], ARGV[i + 2]
  local key = ARGV[3] .. id
  if not dirty[n] and redis.call('HGET', key, 'version') == version then
    if stale == '1' then
      redis.call('DEL', key)
    else
      redis.call('PEXPIRE', key, ARGV[2])
    end
  end
end
return #mine
