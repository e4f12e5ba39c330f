"""The Lua scripts: every move of more than one step happens in one of them, atomically.

A retried call (a reply lost with its connection, redis-py retrying) cannot duplicate or
lose anything: each script first checks that the entry is still pending for this delivery
(owner and times-delivered, the fence), so running it twice is a no-op the second time.

Every script gets the same keys, one hash tag so they live in one Redis Cluster slot:
``KEYS[1]`` the stream ``{name}``, ``KEYS[2]`` the dead letters ``{name}:dead``,
``KEYS[3]`` the delayed retries ``{name}:delayed`` (a sorted set by due time in ms),
``KEYS[4]`` the last errors of entries waiting for a retry ``{name}:errors`` (a hash).
``ARGV[1]`` is the group and ``ARGV[2]`` this consumer's name.

Entry fields: ``k`` the body kind, ``d`` the body, ``a`` the attempts spent before this
entry was added (a retry after a long delay, absent when 0).
"""

from __future__ import annotations

__all__ = [
    "BURY",
    "CLEANUP",
    "EXTEND",
    "PROMOTE",
    "PRUNE",
    "PURGE",
    "RECLAIM",
    "REDRIVE",
    "RELEASE",
    "RETRY_LATER",
    "RETRY_SOON",
]

_COMMON = r"""
local stream, dead, delayed, errors = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local group, me = ARGV[1], ARGV[2]

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- The pending entry if this delivery still holds it: owner me, delivered this often.
local function held(id, delivered)
  local p = redis.call('XPENDING', stream, group, id, id, 1)[1]
  if p and p[2] == me and tonumber(p[4]) == delivered then
    return p
  end
  return nil
end

-- Fields of an entry without the ones named in `drop`, as a flat list.
local function fields_without(flat, drop)
  local out = {}
  for i = 1, #flat, 2 do
    if not drop[flat[i]] then
      out[#out + 1] = flat[i]
      out[#out + 1] = flat[i + 1]
    end
  end
  return out
end

local function carried(flat)
  for i = 1, #flat, 2 do
    if flat[i] == 'a' then
      return tonumber(flat[i + 1]) or 0
    end
  end
  return 0
end

-- Dead-letter one entry: copy to the dead stream first, then ack and delete. A failed
-- copy raises before anything is removed (Redis runs the rest of a script only if the
-- earlier calls succeeded): a duplicate at worst, never a loss.
local function bury(id, attempts, err, fallback)
  local entry = redis.call('XRANGE', stream, id, id)[1]
  if entry then
    local out = fields_without(entry[2], {a = true})
    if not err then
      err = redis.call('HGET', errors, id) or fallback
    end
    out[#out + 1] = 'qc_source_id'
    out[#out + 1] = id
    out[#out + 1] = 'qc_attempts'
    out[#out + 1] = tostring(attempts)
    out[#out + 1] = 'qc_died'
    out[#out + 1] = tostring(now_ms())
    if err then
      out[#out + 1] = 'qc_error'
      out[#out + 1] = err
    end
    redis.call('XADD', dead, '*', unpack(out))
  end
  redis.call('XACK', stream, group, id)
  redis.call('XDEL', stream, id)
  redis.call('HDEL', errors, id)
  return entry and 1 or 0
end
"""

#: ARGV[3..]: id, delivered pairs. XACK + XDEL each entry still held. Returns one
#: character per pair: '1' done, '0' no longer held.
CLEANUP = (
    _COMMON
    + r"""
local has_errors = redis.call('EXISTS', errors) == 1
local done = {}
for i = 3, #ARGV, 2 do
  local id = ARGV[i]
  if held(id, tonumber(ARGV[i + 1])) then
    redis.call('XACK', stream, group, id)
    redis.call('XDEL', stream, id)
    if has_errors then
      redis.call('HDEL', errors, id)
    end
    done[#done + 1] = '1'
  else
    done[#done + 1] = '0'
  end
end
return table.concat(done)
"""
)

#: ARGV[3..]: id, delivered pairs. Reset the idle time of each entry still held (JUSTID:
#: the delivery count stays). Returns the ids no longer held.
EXTEND = (
    _COMMON
    + r"""
local lost = {}
for i = 3, #ARGV, 2 do
  local id = ARGV[i]
  if held(id, tonumber(ARGV[i + 1])) then
    redis.call('XCLAIM', stream, group, me, 0, id, 'JUSTID')
  else
    lost[#lost + 1] = id
  end
end
return lost
"""
)

#: ARGV[3]: idle ms to set (claim_idle + 1); ARGV[4..]: id, delivered pairs. Makes each
#: entry claimable at once and hands the attempt back (RETRYCOUNT delivered - 1).
RELEASE = (
    _COMMON
    + r"""
local idle = ARGV[3]
local n = 0
for i = 4, #ARGV, 2 do
  local id, delivered = ARGV[i], tonumber(ARGV[i + 1])
  if held(id, delivered) then
    redis.call('XCLAIM', stream, group, me, 0, id, 'IDLE', idle,
               'RETRYCOUNT', math.max(delivered - 1, 0), 'JUSTID')
    n = n + 1
  end
end
return n
"""
)

#: ARGV[3]: the error ('' for none); ARGV[4..]: id, delivered, idle ms triples. A short
#: retry: the entry keeps its id and becomes claimable once its idle time reaches
#: claim_idle, i.e. after the backoff; the reclaim that takes it counts the attempt.
RETRY_SOON = (
    _COMMON
    + r"""
local err = ARGV[3]
local n = 0
for i = 4, #ARGV, 3 do
  local id = ARGV[i]
  if held(id, tonumber(ARGV[i + 1])) then
    redis.call('XCLAIM', stream, group, me, 0, id, 'IDLE', ARGV[i + 2], 'JUSTID')
    if err ~= '' then
      redis.call('HSET', errors, id, err)
    end
    n = n + 1
  end
end
return n
"""
)

#: ARGV[3]: the error ('' for none); ARGV[4..]: id, delivered, delay ms, attempts
#: quadruples. A long retry: the entry moves to the delayed set (due at server time +
#: delay) with its attempts, then is acked and deleted, in this one script.
RETRY_LATER = (
    _COMMON
    + r"""
local err = ARGV[3]
local now = now_ms()
local n = 0
for i = 4, #ARGV, 4 do
  local id = ARGV[i]
  if held(id, tonumber(ARGV[i + 1])) then
    local entry = redis.call('XRANGE', stream, id, id)[1]
    if entry then
      local payload = {id = id, f = fields_without(entry[2], {a = true}),
                       a = tonumber(ARGV[i + 3])}
      if err ~= '' then
        payload.e = err
      else
        payload.e = redis.call('HGET', errors, id) or nil
      end
      redis.call('ZADD', delayed, now + tonumber(ARGV[i + 2]), cmsgpack.pack(payload))
    end
    redis.call('XACK', stream, group, id)
    redis.call('XDEL', stream, id)
    redis.call('HDEL', errors, id)
    n = n + 1
  end
end
return n
"""
)

#: ARGV[3]: the most to move. Delayed retries that are due go back on the stream (XADD,
#: then ZREM, in this one script). Returns how many.
PROMOTE = (
    _COMMON
    + r"""
local due = redis.call('ZRANGEBYSCORE', delayed, '-inf', now_ms(), 'LIMIT', 0, tonumber(ARGV[3]))
for _, member in ipairs(due) do
  local p = cmsgpack.unpack(member)
  local f = p.f
  f[#f + 1] = 'a'
  f[#f + 1] = tostring(p.a)
  local id = redis.call('XADD', stream, '*', unpack(f))
  if p.e then
    redis.call('HSET', errors, id, p.e)
  end
  redis.call('ZREM', delayed, member)
end
return #due
"""
)

#: ARGV[3]: min idle ms; ARGV[4]: count; ARGV[5]: cursor (an XPENDING start, '-' or
#: '(id'); ARGV[6]: max_attempts; ARGV[7]: '' for every consumer's entries idle that long,
#: else only this consumer's own (a restarted consumer taking its entries back, idle 0)
#: up to the id ARGV[8]. Entries whose attempts are spent are dead-lettered; the others
#: are claimed (XCLAIM with the min idle time: of two consumers claiming one entry, one
#: wins; no lock). Returns {next cursor, {{id, fields, delivery_count, delivered}...},
#: buried}.
RECLAIM = (
    _COMMON
    + r"""
local idle, count, cursor, max = tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5], tonumber(ARGV[6])
local pending
if ARGV[7] ~= '' then
  pending = redis.call('XPENDING', stream, group, cursor, ARGV[8], count, ARGV[7])
else
  pending = redis.call('XPENDING', stream, group, 'IDLE', idle, cursor, '+', count)
end
local ids, counts, buried = {}, {}, 0
for _, p in ipairs(pending) do
  local id, delivered = p[1], tonumber(p[4])
  local entry = redis.call('XRANGE', stream, id, id)[1]
  if not entry then
    redis.call('XACK', stream, group, id)  -- deleted under it: nothing to deliver
  else
    local attempts = carried(entry[2]) + delivered
    if attempts >= max then
      bury(id, attempts, nil, 'claimed back ' .. delivered .. ' time(s) without being settled; '
                              .. attempts .. ' attempt(s) spent')
      buried = buried + 1
    else
      ids[#ids + 1] = id
      counts[id] = {attempts + 1, delivered + 1}
    end
  end
end
local out = {}
if #ids > 0 then
  local claimed = redis.call('XCLAIM', stream, group, me, idle, unpack(ids))
  for _, e in ipairs(claimed) do
    local c = counts[e[1]]
    out[#out + 1] = {e[1], e[2], c[1], c[2]}
  end
end
local nxt = '-'
if #pending >= count then
  nxt = '(' .. pending[#pending][1]
end
return {nxt, out, buried}
"""
)

#: ARGV[3]: the error ('' for none: the one kept by an earlier reject, else ARGV[4]);
#: ARGV[5..]: id, delivered, attempts triples. Dead-letter entries still held. Returns
#: how many.
BURY = (
    _COMMON
    + r"""
local err = ARGV[3]
if err == '' then err = nil end
local n = 0
for i = 5, #ARGV, 3 do
  local id = ARGV[i]
  if held(id, tonumber(ARGV[i + 1])) then
    bury(id, tonumber(ARGV[i + 2]), err, ARGV[4])
    n = n + 1
  end
end
return n
"""
)

#: ARGV[3..]: dead-letter ids. Each goes back on the stream, attempts reset (XADD, then
#: XDEL from the dead letters). Returns how many.
REDRIVE = (
    _COMMON
    + r"""
local drop = {a = true, qc_source_id = true, qc_attempts = true, qc_died = true, qc_error = true}
local n = 0
for i = 3, #ARGV do
  local entry = redis.call('XRANGE', dead, ARGV[i], ARGV[i])[1]
  if entry then
    redis.call('XADD', stream, '*', unpack(fields_without(entry[2], drop)))
    redis.call('XDEL', dead, ARGV[i])
    n = n + 1
  end
end
return n
"""
)

#: ARGV[3]: min idle ms. Delete consumers of the group, other than me, idle that long
#: with nothing pending: the check and the delete in one script, so a consumer that
#: still holds entries is never deleted (that would make them unclaimable).
PRUNE = (
    _COMMON
    + r"""
local min_idle = tonumber(ARGV[3])
local n = 0
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', stream, group)) do
  local info = {}
  for i = 1, #c, 2 do
    info[c[i]] = c[i + 1]
  end
  if info.name ~= me and tonumber(info.pending) == 0 and tonumber(info.idle) >= min_idle then
    redis.call('XGROUP', 'DELCONSUMER', stream, group, info.name)
    n = n + 1
  end
end
return n
"""
)

#: ARGV[3]: '1' to delete the dead letters too. Deletes every entry (pending ones too),
#: then creates the group again at once. Returns how many entries went.
PURGE = (
    _COMMON
    + r"""
local n = redis.call('XLEN', stream) + redis.call('ZCARD', delayed)
redis.call('DEL', stream, delayed, errors)
if ARGV[3] == '1' then
  n = n + redis.call('XLEN', dead)
  redis.call('DEL', dead)
end
redis.call('XGROUP', 'CREATE', stream, group, '0', 'MKSTREAM')
return n
"""
)
