-- Shared prelude: Redis's clock, and the next version of a key, strictly above every version
-- issued for it.

-- Redis TIME in Unix microseconds.
local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

-- Versions are microseconds of Redis TIME (`now`, read by the caller or here), raised past the
-- key's last issued version (its `vmax`, read by the caller) and past the floor that loss
-- recovery sets, so they keep growing after Redis loses its data. Returns the version and the
-- time in milliseconds.
local function next_version(vmax, floor_key, now)
  now = now or now_us()
  local floor = tonumber(redis.call('GET', floor_key) or '0')
  return math.max(now, tonumber(vmax or '0') + 1, floor + 1), math.floor(now / 1000)
end
