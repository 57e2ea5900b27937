-- Shared prelude: the next version of a key, strictly above every version issued for it.
-- Versions are microseconds of Redis TIME, raised past the key's last issued version (its
-- `vmax`, read by the caller) and past the floor that loss recovery sets, so they keep growing
-- after Redis loses its data.
local function next_version(vmax, floor_key)
  local t = redis.call('TIME')
  local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local floor = tonumber(redis.call('GET', floor_key) or '0')
  return math.max(now_us, tonumber(vmax or '0') + 1, floor + 1), math.floor(now_us / 1000)
end
