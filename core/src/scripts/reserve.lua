-- KEYS: product, version floor. Issues a version for a write-through write, without a value.
local version = next_version(KEYS[1], KEYS[2])
local v = string.format('%d', version)
redis.call('HSET', KEYS[1], 'vmax', v)
return v
