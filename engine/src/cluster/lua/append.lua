-- wspush: append one message to an id's history and publish it, atomically (design §2.1).
-- KEYS[1] stream {prefix}h:{id}   KEYS[2] meta hash {prefix}m:{id}
-- ARGV[1] channel  [2] envelope head (version 2)  [3] 't' | 'b'  [4] body
--      [5] history size (MAXLEN ~)  [6] ttl ms  [7] fresh epoch candidate
--      [8] 'p:<incarnation>'  [9] seq of this append for that incarnation
-- Reply {receivers, offset, epoch}; receivers = -1: this seq was applied already (a retry).
local stream, meta = KEYS[1], KEYS[2]
local m = redis.call('HMGET', meta, 'e', 's', ARGV[8])
local epoch, top = m[1], tonumber(m[2] or '0')
if epoch and m[3] and tonumber(m[3]) >= tonumber(ARGV[9]) then
  return {-1, top, epoch}
end
if not epoch or (top > 0 and redis.call('EXISTS', stream) == 0) then
  -- History lost (expired, evicted, deleted, Redis restarted empty): a new epoch. The
  -- incarnations' seq fields are kept, so a retry of an append made before still counts
  -- as applied.
  redis.call('DEL', stream)
  epoch = ARGV[7]
  top = 0
end
if not m[3] and redis.call('HLEN', meta) > 64 then
  -- A new incarnation on this id (a node started): drop the seq fields of the others, so
  -- restarts do not grow the hash forever. Only a retry in flight of another node at this
  -- instant could then be applied twice.
  local fields = redis.call('HKEYS', meta)
  for i = 1, #fields do
    local f = fields[i]
    if f ~= 'e' and f ~= 's' and f ~= ARGV[8] then redis.call('HDEL', meta, f) end
  end
end
top = top + 1
-- tostring() would print 1e+14 forms; %d prints every offset below 2^53 exactly.
local off = string.format('%d', top)
redis.call('HSET', meta, 'e', epoch, 's', off, ARGV[8], ARGV[9])
redis.call('XADD', stream, 'MAXLEN', '~', ARGV[5], off, ARGV[3], ARGV[4])
redis.call('PEXPIRE', stream, ARGV[6])
redis.call('PEXPIRE', meta, ARGV[6])
local pos = epoch .. ':' .. off
return {redis.call('PUBLISH', ARGV[1], ARGV[2] .. string.char(#pos) .. pos .. ARGV[4]), top, epoch}
