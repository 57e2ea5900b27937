-- KEYS: product, version floor. Issues a version for a write-through write, without a value.
local version = next_version(redis.call('HGET', KEYS[1], 'vmax'), KEYS[2])
local v = string.format('%d', version)
redis.call('HSET', KEYS[1], 'vmax', v)
return v
