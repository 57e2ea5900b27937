-- KEYS: version floor. ARGV: a version. Raises the floor to it; never lowers it.
if tonumber(redis.call('GET', KEYS[1]) or '0') < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1])
end
return 1
