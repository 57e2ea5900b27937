-- Shared prelude of the batch scripts (claim, ack, release).

-- Redis TIME in Unix milliseconds.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- One variadic command over many arguments, in chunks that stay below Lua's unpack limit;
-- returns the replies concatenated. One call per chunk rather than one per key keeps the
-- worker's share of Redis time small.
local function chunked(cmd, key, args, step)
  local out, n = {}, 0
  for i = 1, #args, step do
    local part = redis.call(cmd, key, unpack(args, i, math.min(i + step - 1, #args)))
    if type(part) == 'table' then
      for j = 1, #part do out[n + j] = part[j] end
      n = n + #part
    end
  end
  return out
end
