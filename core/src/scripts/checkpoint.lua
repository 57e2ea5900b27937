-- KEYS: checkpoint, write sequence. ARGV: the checkpoint PostgreSQL remembers.
-- One pass of loss detection. Redis holds a checkpoint at least as high as PostgreSQL's unless
-- it went back in time (lost its data, restarted from an older snapshot or an `everysec` AOF, or
-- a replica that missed writes took over): then nothing is changed, so that the loss stays
-- visible until it is reported. Otherwise the checkpoint is raised past both.
-- Returns {1 when raised or 0 when behind, Redis's checkpoint, the new checkpoint, the write sequence}.
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local seq = tonumber(redis.call('GET', KEYS[2]) or '0')
local remembered = tonumber(ARGV[1])
if current < remembered then
  return {0, current, current, seq}
end
local next = math.max(current, remembered) + 1
redis.call('SET', KEYS[1], string.format('%d', next))
return {1, current, next, seq}
