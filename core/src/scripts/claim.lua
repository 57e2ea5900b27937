-- KEYS: dirty, in-flight keys, leases, batch since, batch record.
-- ARGV: flush interval ms, batch size, lease ms, batch id.
-- Moves up to a batch of keys dirty for at least the flush interval, and not in flight in
-- another batch, into a new batch under a lease: one record and two sorted-set entries per
-- batch, so that the per-key work is the dirty-set removal and the in-flight set. The values
-- are read afterwards, outside the script, which costs Redis less than a call per key here.
-- Returns the batch record, `[[id, …], [dirty since ms, …]]` in JSON (one string is cheaper to
-- send and to read than two per key), or nil when no key is due.
local now = now_ms()
local due_by = now - tonumber(ARGV[1])
local batch = tonumber(ARGV[2])
-- Plain indexing: table.insert and # cost more, and these loops run once per key.
local ids, sinces, n, scanned, skipped = {}, {}, 0, 0, 0
while n < batch do
  local want = batch - n
  local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', due_by, 'WITHSCORES', 'LIMIT', scanned, want)
  local found = #due / 2
  if found == 0 then break end
  local candidates = {}
  for i = 1, found do candidates[i] = due[2 * i - 1] end
  local busy = chunked('SMISMEMBER', KEYS[2], candidates, 1000)
  for i = 1, found do
    if busy[i] == 0 then
      n = n + 1
      ids[n], sinces[n] = candidates[i], due[2 * i]
    else
      skipped = skipped + 1
    end
  end
  scanned = scanned + found
  if found < want then break end
end
if n == 0 then
  return false
end
if skipped == 0 then
  -- The batch is the head of the dirty set: one range removal instead of a lookup per key.
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, n - 1)
else
  chunked('ZREM', KEYS[1], ids, 1000)
end
chunked('SADD', KEYS[2], ids, 1000)
local record = cjson.encode({ids, sinces})
redis.call('SET', KEYS[5], record)
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[3]), ARGV[4])
-- Keys are claimed oldest first, so the first one's time is the batch's oldest.
redis.call('ZADD', KEYS[4], sinces[1], ARGV[4])
return record
