-- wspush: append messages to ids' histories and publish them, each atomically (design §2.1),
-- many per call: about half of Redis's work per message, against one call per message.
-- KEYS  stream {prefix}h:{id} and meta hash {prefix}m:{id} of each message, in pairs
-- ARGV[1] history size (MAXLEN ~)  [2] ttl ms  [3] 'p:<incarnation>'
--      [4] 'PUBLISH', or 'SPUBLISH' on a Redis Cluster (the channel is in the keys' slot)
--      then 6 per message: channel, envelope head (version 2), 't' | 'b', body,
--      fresh epoch candidate, seq of this append for that incarnation
-- Reply: per message {receivers, offset, epoch}; receivers = -1: this seq was applied
-- already (a retry); -2: Redis refused this message (its keys), the others still go.
local size, ttl, field, publish = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if publish ~= 'PUBLISH' and publish ~= 'SPUBLISH' then return redis.error_reply('ERR wspush: bad publish command') end
local replies = {}
for i = 0, #KEYS / 2 - 1 do
  local stream, meta = KEYS[2 * i + 1], KEYS[2 * i + 2]
  local a = 4 + 6 * i
  local channel, head, kind, body, fresh, seq = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4], ARGV[a + 5], ARGV[a + 6]
  local ok, reply = pcall(function()
    local m = redis.call('HMGET', meta, 'e', 's', field)
    local epoch, top = m[1], tonumber(m[2] or '0')
    if epoch and m[3] and tonumber(m[3]) >= tonumber(seq) then
      return {-1, top, epoch}
    else
      if not epoch or (top > 0 and redis.call('EXISTS', stream) == 0) then
        -- History lost (expired, evicted, deleted, Redis restarted empty): a new epoch. The
        -- incarnations' seq fields are kept, so a retry of an append made before still
        -- counts as applied.
        redis.call('DEL', stream)
        epoch = fresh
        top = 0
      end
      if not m[3] and redis.call('HLEN', meta) > 64 then
        -- A new incarnation on this id (a node started): drop the seq fields of the others,
        -- so restarts do not grow the hash forever. Only a retry in flight of another node at
        -- this instant could then be applied twice.
        local fields = redis.call('HKEYS', meta)
        for j = 1, #fields do
          local f = fields[j]
          if f ~= 'e' and f ~= 's' and f ~= field then redis.call('HDEL', meta, f) end
        end
      end
      top = top + 1
      -- tostring() would print 1e+14 forms; %d prints every offset below 2^53 exactly.
      local off = string.format('%d', top)
      redis.call('HSET', meta, 'e', epoch, 's', off, field, seq)
      redis.call('XADD', stream, 'MAXLEN', '~', size, off, kind, body)
      redis.call('PEXPIRE', stream, ttl)
      redis.call('PEXPIRE', meta, ttl)
      local pos = epoch .. ':' .. off
      return {redis.call(publish, channel, head .. string.char(#pos) .. pos .. body), top, epoch}
    end
  end)
  -- An error on one message's keys (a key of another type) fails that message only.
  replies[i + 1] = ok and reply or {-2, 0, ''}
end
return replies
