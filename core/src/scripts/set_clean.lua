-- KEYS: product, dirty. ARGV: id, data, deleted, version, ttl ms.
-- Caches a value that PostgreSQL holds, unless Redis already has a newer one, or has issued a
-- newer version (`vmax`): that write may be committed already (a write-through in progress, or a
-- version PostgreSQL issued while Redis was down), so this value could be older than the row.
-- Returns 1 when stored, 0 when a newer version was kept.
local cur = redis.call('HMGET', KEYS[1], 'version', 'vmax')
local version = tonumber(ARGV[4])
local vmax = tonumber(cur[2] or '0')
if tonumber(cur[1] or '-1') >= version or vmax > version then
  return 0
end
if vmax < version then
  redis.call('HSET', KEYS[1], 'data', ARGV[2], 'deleted', ARGV[3], 'version', ARGV[4], 'vmax', ARGV[4])
else
  redis.call('HSET', KEYS[1], 'data', ARGV[2], 'deleted', ARGV[3], 'version', ARGV[4])
end
if not redis.call('ZSCORE', KEYS[2], ARGV[1]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
end
return 1
