-- KEYS: product, version floor. ARGV: clean ttl ms.
-- Issues a version for a write-through write, without a value. A hash left holding no value (new,
-- or only versions) is not dirty, so it expires as a clean value would, even if the write fails.
-- Redis running this late, after its caller gave up and wrote through PostgreSQL, does no harm:
-- it only raises the key's last issued version.
local cur = redis.call('HMGET', KEYS[1], 'vmax', 'version')
local version = next_version(cur[1], KEYS[2])
local v = string.format('%d', version)
redis.call('HSET', KEYS[1], 'vmax', v)
if not cur[2] and redis.call('PTTL', KEYS[1]) == -1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return v
