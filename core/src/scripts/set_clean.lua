-- KEYS: product, dirty. ARGV: id, data, deleted, version, ttl ms.
-- Caches a value that PostgreSQL holds, unless Redis already has a newer one.
-- Returns 1 when stored, 0 when a newer version was kept.
local current = tonumber(redis.call('HGET', KEYS[1], 'version') or '-1')
local version = tonumber(ARGV[4])
if current >= version then
  return 0
end
local vmax = tonumber(redis.call('HGET', KEYS[1], 'vmax') or '0')
local fields = {'data', ARGV[2], 'deleted', ARGV[3], 'version', ARGV[4]}
if vmax < version then
  table.insert(fields, 'vmax')
  table.insert(fields, ARGV[4])
end
redis.call('HSET', KEYS[1], unpack(fields))
if not redis.call('ZSCORE', KEYS[2], ARGV[1]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
end
return 1
