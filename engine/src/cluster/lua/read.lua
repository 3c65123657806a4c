-- wspush: read a page of an id's history (design §2.4).
-- KEYS[1] stream {prefix}h:{id}   KEYS[2] meta hash {prefix}m:{id}
-- ARGV[1] from offset (0: the position only)  [2] most entries  [3] fresh epoch candidate
--      [4] ttl ms
-- Reply {epoch, top, entries}, entries as XRANGE gives them: {{'OFFSET-0', {'t'|'b', body}}, ...}
local stream, meta = KEYS[1], KEYS[2]
local m = redis.call('HMGET', meta, 'e', 's')
local epoch, top = m[1], tonumber(m[2] or '0')
if not epoch or (top > 0 and redis.call('EXISTS', stream) == 0) then
  -- No history (never written, expired, lost): start an epoch now, so that a silent id has a
  -- position and a Redis restarted empty is seen without waiting for a message. Seq fields
  -- of the publishers are kept (see append.lua).
  redis.call('DEL', stream)
  epoch = ARGV[3]
  redis.call('HSET', meta, 'e', epoch, 's', '0')
  redis.call('PEXPIRE', meta, ARGV[4])
  return {epoch, 0, {}}
end
local from = tonumber(ARGV[1])
if from == 0 or from > top then return {epoch, top, {}} end
return {epoch, top, redis.call('XRANGE', stream, ARGV[1], '+', 'COUNT', ARGV[2])}
