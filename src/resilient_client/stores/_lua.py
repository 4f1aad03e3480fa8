"""The Lua scripts of RedisState: each StateStore operation is one script (atomic, one round trip).

Each script is the helpers it uses followed by its body, and mirrors the step of its operation in
``memory.py`` (``TrySpend``: ``try_spend`` here, ``_try_spend`` there) step for step, so the two
stores give the same numbers. Lua time is part of every call's cost (Redis runs a script's whole
text on each call, helpers' definitions included): so each script carries only its own helpers, and
the hot ones (``circuit``, the limiter's, the guard's) keep their Redis calls and number formatting
few (``INFO commandstats`` shows ``usec_per_call``).

Calling convention. ``ARGV[1]`` is a pinned time or ``''``; ``ARGV[2]`` seconds added to the server's
clock; ``ARGV[3]`` the idle seconds after which a key is forgotten; the operation's own arguments
follow from ``ARGV[4]``. Outside the tests ``ARGV[1]`` is ``''`` and ``ARGV[2]`` is ``0``: the time
is the Redis server's ``TIME``, the one clock a fleet shares.

Numbers. A reply's integers come back as Redis integers, but Redis truncates a Lua number to an
integer on the way out, so every fractional value is returned (and stored) as text formatted with
``%.17g``, which reads back as the very same double; the rate record is stored packed (exact doubles)
and its ticket returned as one text of space-separated numbers.

Records (see the README's table of keys):

* bucket: a string, the level. Absent: full.
* window: a hash; ``width`` and, per bucket index ``i`` (``floor(now / width)``), ``f<i>`` failures
  and ``n<i>`` outcomes.
* circuit: a hash; ``state``, ``epoch``, ``break_ends`` (server time), ``break_duration`` and one
  ``probe:<token>`` field per probe slot, holding the end of its lease.
* lease: a hash; one field per hold (``<token>#<n>``, see redis.py's ``_Holds``), holding the end of
  its lease.
* pause: a string, the server time the pause ends.
* rate: a string, memory.py's ``_Rate`` packed as ten little-endian doubles (``refilled_at``,
  ``ceiling``, ``rate``, ``max_rate``, ``throttled_at``, ``version``, ``slot``, ``count``,
  ``previous``, ``tokens``); ``tokens`` is +inf for a full bucket.
* slots: a hash, an endpoint's concurrency limit: ``base``, ``slow`` (1 in slow start), ``wins``,
  ``epoch``, ``streak`` and ``ceiling``; absent or unreadable: a new record at the initial limit.
* slot leases: a sorted set, one member per slot held (its token), scored by the end of its lease.
* serial: the store-wide counter (INCR) that circuit epochs and rate versions are drawn from.

Unreadable values. A key holding what the SDK cannot read (another type, text that is no number, a
rate record of the wrong length or with a NaN in it, a circuit in no known state) counts as absent:
the script deletes it (or writes over it, with its TTL) and goes on as if it had never existed, so
no corrupt value raises, and none outlives its TTL. A serial that is no integer restarts from the
server's time in milliseconds, above any epoch drawn before. Every key but the serial has a TTL.
"""

from __future__ import annotations

__all__ = ["SCRIPTS"]

# -- helpers: each script carries only those it uses (a script runs its whole text on every call, so a
# helper it never calls still costs the time to define it) --------------------------------------------

_CLOCK = r"""
local now
if ARGV[1] ~= '' then
  now = tonumber(ARGV[1])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000 + tonumber(ARGV[2])
end
local idle = tonumber(ARGV[3])
"""

# A string key's value, or false when absent or unreadable (another type: deleted).
_GET = r"""
local function get(key)
  local value = redis.pcall('GET', key)
  if type(value) == 'table' then
    redis.call('DEL', key)
    return false
  end
  return value
end
"""

# A hash's fields, or {} when absent or of another type (deleted).
_HASH = r"""
local function hash(key)
  local fields = redis.pcall('HGETALL', key)
  if fields.err then
    redis.call('DEL', key)
    return {}
  end
  return fields
end
"""

# The next value of the store-wide serial; one that is no integer restarts above every value drawn.
_SERIAL = r"""
local function next_serial(key)
  local value = redis.pcall('INCR', key)
  if type(value) == 'table' then
    local t = redis.call('TIME')
    value = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    redis.call('SET', key, value)
  end
  return value
end
"""

_NUM = r"""
local function num(x)
  return string.format('%.17g', x)
end
"""

_TOUCH = r"""
-- Keep a key for the idle time from now, and at least until `ends` (a lease, a break, a pause).
local function touch(key, ends)
  redis.call('PEXPIRE', key, math.ceil(math.max(idle, ends - now) * 1000))
end
"""

_CIRCUIT_READ = r"""
local STATES = {closed = true, open = true, half_open = true}

-- The circuit in `key`; one the SDK cannot read is deleted and read as never opened.
local function load_circuit(key)
  local c = {state = 'closed', epoch = 0, break_ends = 0, break_duration = 0, probes = {}}
  local fields = hash(key)
  local readable = true
  for i = 1, #fields, 2 do
    local name, value = fields[i], fields[i + 1]
    if string.sub(name, 1, 6) == 'probe:' then
      c.probes[string.sub(name, 7)] = tonumber(value)  -- unreadable: nil, no probe
    elseif name == 'state' then
      readable = readable and STATES[value] ~= nil
      c.state = value
    elseif name == 'epoch' or name == 'break_ends' or name == 'break_duration' then
      local number = tonumber(value)
      readable = readable and number ~= nil and number == number
      c[name] = number
    end
  end
  if not readable then
    redis.call('DEL', key)
    return {state = 'closed', epoch = 0, break_ends = 0, break_duration = 0, probes = {}}
  end
  return c
end

local function view(c)
  local retry_after = 0
  if c.state == 'open' then
    retry_after = math.max(0, c.break_ends - now)
  elseif c.state == 'half_open' then
    local earliest = nil
    for _, ends in pairs(c.probes) do
      if earliest == nil or ends < earliest then earliest = ends end
    end
    if earliest ~= nil then retry_after = math.max(0, earliest - now) end
  end
  return {c.state, c.epoch, num(retry_after), num(c.break_duration)}
end
"""

_CIRCUIT_WRITE = r"""
local function save_circuit(key, c, keep_until)
  local fields = {'state', c.state, 'epoch', c.epoch, 'break_ends', num(c.break_ends),
                  'break_duration', num(c.break_duration)}
  for token, ends in pairs(c.probes) do
    fields[#fields + 1] = 'probe:' .. token
    fields[#fields + 1] = num(ends)
  end
  redis.call('DEL', key)
  redis.call('HSET', key, unpack(fields))
  touch(key, keep_until)
end

-- The circuit moves to a new state with a new epoch; every probe slot is freed.
local function move(c, state, break_ends, break_duration, serial)
  c.state = state
  c.epoch = next_serial(serial)
  c.break_ends = break_ends
  c.break_duration = break_duration
  c.probes = {}
end
"""

# The rate record is one string, ten little-endian doubles (struct, built into Redis's Lua): one GET
# and one SET with its expiry, and no number formatting, where a hash took four calls and thirteen
# formatted fields (the limiter's script ran ~4x longer). ``tokens`` is +inf while the bucket is full
# whatever its size (as memory.py's math.inf), so ``min(burst, tokens + ...)`` needs no special case.
_RATE_HELPERS = r"""
local RATE = '<dddddddddd'

-- The record of `key`; `packed` is its value when the caller read it already (false: absent).
-- Whether `x` is a number, neither NaN nor infinite (tokens may be +inf: a full bucket).
local function finite(x)
  return type(x) == 'number' and x == x and x > -math.huge and x < math.huge
end

-- The record of `key`; `packed` is its value when the caller read it already (false: absent). A
-- value that is no record (its length, a NaN, a negative rate) is read as absent.
local function load_rate(key, create, packed)
  if packed == nil then packed = get(key) end
  local r = nil
  if packed and #packed == 80 then
    r = {}
    r.refilled_at, r.ceiling, r.rate, r.max_rate, r.throttled_at, r.version, r.slot, r.count,
      r.previous, r.tokens = struct.unpack(RATE, packed)
    if not (finite(r.refilled_at) and finite(r.ceiling) and finite(r.rate) and finite(r.max_rate)
            and finite(r.throttled_at) and finite(r.version) and finite(r.slot) and finite(r.count)
            and finite(r.previous) and r.tokens == r.tokens and r.tokens > -math.huge
            and r.ceiling >= 0 and r.rate >= 0 and r.max_rate >= 0) then
      r = nil
    end
  end
  if r == nil then
    if packed then redis.call('DEL', key) end
    if not create then return nil end
    return {refilled_at = now, ceiling = 0, rate = 0, max_rate = 0, throttled_at = now, version = 0,
            slot = math.floor(now), count = 0, previous = 0, tokens = math.huge}
  end
  return r
end

local function save_rate(key, r)
  local packed = struct.pack(RATE, r.refilled_at, r.ceiling, r.rate, r.max_rate, r.throttled_at,
                             r.version, r.slot, r.count, r.previous, r.tokens)
  redis.call('SET', key, packed, 'PX', math.ceil(idle * 1000))
end

local function roll(r)
  local slot = math.floor(now)
  if slot ~= r.slot then
    if slot == r.slot + 1 then r.previous = r.count else r.previous = 0 end
    r.count = 0
    r.slot = slot
  end
end

local function pace(r)
  local p = 0
  if r.ceiling > 0 then p = r.ceiling end
  if r.rate > 0 and (p == 0 or r.rate < p) then p = r.rate end
  return p
end

-- One text reply, the RateTicket's fields, the pause and the spare sends in order (one format, not six).
local function ticket(r, wait, paused, spare)
  local since = 0
  if r.rate > 0 then since = now - r.throttled_at end
  local sent = r.previous * math.max(0, 1 - (now - r.slot)) + r.count
  return string.format('%.17g %d %.17g %.17g %.17g %.17g %.17g %d', wait, r.version, r.rate, r.max_rate,
                       since, sent, paused, spare)
end

-- Spare sends of earlier answers: those made are counted in the slot of the latest (`age` seconds
-- ago; `r` rolled to now first), those not made give their tokens back.
local function settle(r, spent, unspent, age)
  if spent > 0 then
    local slot = math.floor(now - math.max(0, age))
    if slot >= r.slot then
      r.count = r.count + spent
    elseif slot == r.slot - 1 then
      r.previous = r.previous + spent
    end
  end
  r.tokens = r.tokens + unspent
end

-- LimiterAcquire's step: settle the spares, reserve one send unless the wait would pass max_wait,
-- and up to `spare` more that go at once while nothing is learned. Returns the ticket's text and
-- the wait.
local function reserve(key, ceiling, burst, max_wait, packed, spare, spent, unspent, age)
  local r = load_rate(key, true, packed)
  roll(r)
  local p = pace(r)
  if p > 0 then
    r.tokens = math.min(burst, r.tokens + (now - r.refilled_at) * p)
  else
    r.tokens = burst
  end
  r.refilled_at = now
  r.ceiling = ceiling
  settle(r, spent, unspent, age)
  p = pace(r)
  local wait = 0
  local extra = 0
  if p > 0 then
    local tokens = math.min(burst, r.tokens) - 1
    if tokens < 0 then wait = -tokens / p end
    if wait > max_wait then
      save_rate(key, r)
      return ticket(r, wait, 0, 0), wait
    end
    if r.rate <= 0 and tokens >= 1 then extra = math.min(spare, math.floor(tokens)) end
    r.tokens = tokens - extra
  elseif r.rate <= 0 then
    extra = spare
  end
  r.count = r.count + 1
  save_rate(key, r)
  return ticket(r, wait, 0, extra), wait
end
"""

_DEPOSIT = r"""
local cap = tonumber(ARGV[5])
local level = tonumber(get(KEYS[1]) or ARGV[5])
if level == nil or level ~= level then level = cap end
level = math.min(level, cap)
level = math.min(cap, level + tonumber(ARGV[4]))
redis.call('SET', KEYS[1], num(level))
touch(KEYS[1], 0)
return num(level)
"""

# ARGV[6]: tokens earned, deposited first.
_TRY_SPEND = r"""
local cost, cap = tonumber(ARGV[4]), tonumber(ARGV[5])
local level = tonumber(get(KEYS[1]) or ARGV[5])
if level == nil or level ~= level then level = cap end
level = math.min(level, cap)
level = math.min(cap, level + tonumber(ARGV[6]))
local spent = 0
if level >= cost then
  level = level - cost
  spent = 1
end
redis.call('SET', KEYS[1], num(level))
touch(KEYS[1], 0)
return spent
"""

# ARGV[6], ARGV[7]: successes counted in process and the age of the latest, written first.
# A count added to a field; a field that holds no integer is written over.
_ADD = r"""
local function add(key, field, amount)
  if type(redis.pcall('HINCRBY', key, field, amount)) == 'table' then
    redis.call('HSET', key, field, amount)
  end
end
"""

_RECORD_OUTCOME = r"""
local width = tonumber(ARGV[5]) / 10
local stored = redis.pcall('HGET', KEYS[1], 'width')
if type(stored) ~= 'string' or tonumber(stored) ~= width then  -- absent, another type, or unreadable
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 'width', num(width))
end
local current = math.floor(now / width)
local successes = tonumber(ARGV[6])
if successes > 0 then
  local index = math.min(current, math.floor((now - math.max(0, tonumber(ARGV[7]))) / width))
  if index > current - 10 then
    add(KEYS[1], 'n' .. num(index), successes)
  end
end
add(KEYS[1], 'f' .. num(current), tonumber(ARGV[4]))
add(KEYS[1], 'n' .. num(current), 1)
local failures, total = 0, 0
local fields = redis.call('HGETALL', KEYS[1])
for i = 1, #fields, 2 do
  local name = fields[i]
  local kind = string.sub(name, 1, 1)
  if kind == 'f' or kind == 'n' then
    local index, count = tonumber(string.sub(name, 2)), tonumber(fields[i + 1])
    if index == nil or count == nil or index <= current - 10 then  -- gone by, or unreadable
      redis.call('HDEL', KEYS[1], name)
    elseif kind == 'f' then
      failures = failures + count
    else
      total = total + count
    end
  end
end
touch(KEYS[1], 0)
return {failures, total}
"""

_RECORD_SUCCESSES = r"""
local width = tonumber(ARGV[6]) / 10
local stored = redis.pcall('HGET', KEYS[1], 'width')
if type(stored) ~= 'string' or tonumber(stored) ~= width then  -- absent, another type, or unreadable
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 'width', num(width))
end
local current = math.floor(now / width)
local index = math.min(current, math.floor((now - math.max(0, tonumber(ARGV[5]))) / width))
if index > current - 10 then
  add(KEYS[1], 'n' .. num(index), tonumber(ARGV[4]))
end
touch(KEYS[1], 0)
return 1
"""

# Every call reads its circuit, and a vendor whose circuit never opened has no key: that answer needs
# neither the clock nor the helpers, so the check comes before them.
_CIRCUIT_UNSEEN = r"""
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {'closed', 0, '0', '0'}
end
"""

_CIRCUIT = r"""
return view(load_circuit(KEYS[1]))
"""

_TRY_PROBE = r"""
local token, limit, lease = ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6])
local c = load_circuit(KEYS[1])
if c.state == 'open' and now >= c.break_ends then
  c.state = 'half_open'
  c.epoch = next_serial(KEYS[2])
  c.probes = {}
end
local taken = 0
if c.state == 'half_open' then
  local live, count = {}, 0
  for t, ends in pairs(c.probes) do
    if ends > now then
      live[t] = ends
      count = count + 1
    end
  end
  if live[token] ~= nil or count < limit then
    live[token] = now + lease
    taken = 1
  end
  c.probes = live
end
local keep = math.max(c.break_ends, 0)
for _, ends in pairs(c.probes) do keep = math.max(keep, ends) end
save_circuit(KEYS[1], c, keep)
local answer = view(c)
table.insert(answer, 1, taken)
return answer
"""

_RELEASE_PROBE = r"""
-- Another type, or a hash without the TTL every key written here has: not the SDK's, deleted.
local refused = type(redis.pcall('HDEL', KEYS[1], 'probe:' .. ARGV[4])) == 'table'
if refused or redis.call('PTTL', KEYS[1]) == -1 then
  redis.call('DEL', KEYS[1])
end
return 0
"""

_OPEN_CIRCUIT = r"""
local c = load_circuit(KEYS[1])
if c.epoch ~= tonumber(ARGV[4]) then return 0 end
local seconds = tonumber(ARGV[5])
move(c, 'open', now + seconds, seconds, KEYS[2])
save_circuit(KEYS[1], c, c.break_ends)
return 1
"""

# KEYS: the circuit, the serial, the circuit's window of outcomes (cleared on closing).
_CLOSE_CIRCUIT = r"""
local c = load_circuit(KEYS[1])
if ARGV[4] ~= 'any' and c.epoch ~= tonumber(ARGV[4]) then return 0 end
move(c, 'closed', 0, 0, KEYS[2])
redis.call('DEL', KEYS[3])
save_circuit(KEYS[1], c, 0)
return 1
"""

# KEYS: every lease key wanted, sorted and without duplicates. All are taken, or none: 1 when taken,
# 0 when any is at its limit.
_ACQUIRE = r"""
local limit, lease, token = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
local last_end = {}
for i = 1, #KEYS do
  local key = KEYS[i]
  local fields = hash(key)
  local count, mine, latest = 0, false, now + lease
  for j = 1, #fields, 2 do
    local holder, ends = fields[j], tonumber(fields[j + 1])
    if ends == nil or ends ~= ends or ends <= now then  -- ended, or unreadable
      redis.call('HDEL', key, holder)
    else
      count = count + 1
      if holder == token then mine = true end
      if holder ~= token and ends > latest then latest = ends end
    end
  end
  if not mine and count >= limit then return 0 end
  last_end[i] = latest
end
for i = 1, #KEYS do
  redis.call('HSET', KEYS[i], token, num(now + lease))
  touch(KEYS[i], last_end[i])
end
return 1
"""

# KEYS: the lease keys; ARGV[4]: the holder's field. Only the holder's own field is deleted, so a hold
# is released by its holder and by nothing else.
_RELEASE = r"""
for i = 1, #KEYS do
  if type(redis.pcall('HDEL', KEYS[i], ARGV[4])) == 'table' or redis.call('PTTL', KEYS[i]) == -1 then
    redis.call('DEL', KEYS[i])  -- another type, or without the TTL every key written here has
  end
end
return 0
"""

# KEYS: the slot leases. ARGV[4]: the token whose slot is dropped (one that outlived its caller).
_DROP_SLOT = r"""
if type(redis.pcall('ZREM', KEYS[1], ARGV[4])) == 'table' then
  redis.call('DEL', KEYS[1])  -- another type: unreadable, so absent
end
return 0
"""

_PAUSE = r"""
local ends = tonumber(get(KEYS[1]) or '0')
if ends == nil or ends ~= ends then ends = 0 end
ends = math.max(ends, now + tonumber(ARGV[4]))
redis.call('SET', KEYS[1], num(ends))
touch(KEYS[1], ends)
return 0
"""

_END_PAUSE = r"""
redis.call('DEL', KEYS[1])
return 0
"""

_PAUSED_FOR = r"""
local ends = tonumber(get(KEYS[1]) or '0')
if ends == nil or ends ~= ends then
  redis.call('DEL', KEYS[1])
  return '0'
end
return num(math.max(0, ends - now))
"""

# ARGV[4..10]: ceiling, burst, max_wait, spare, spent, unspent, age.
_LIMITER_ACQUIRE = r"""
return (reserve(KEYS[1], tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), nil,
                tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])))
"""

# KEYS: the pause, the rate record. A paused key reserves nothing (its spares are settled).
_LIMITER_ADMIT = r"""
local both = redis.call('MGET', KEYS[1], KEYS[2])  -- one call for the pause and the record
local ends, packed = both[1], both[2]
-- MGET reads a key of another type as absent: such a key is found by counting, and deleted.
if not (ends and packed) then
  local found = 0
  if ends then found = 1 end
  if packed then found = found + 1 end
  if redis.call('EXISTS', KEYS[1], KEYS[2]) > found then
    ends, packed = get(KEYS[1]), get(KEYS[2])
  end
end
local spent, unspent, age = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])
if ends then
  local paused = tonumber(ends)
  if paused == nil or paused ~= paused then
    redis.call('DEL', KEYS[1])
    paused = 0
  else
    paused = paused - now
  end
  if paused > 0 then
    local settling = spent + unspent > 0
    local r = load_rate(KEYS[2], settling, packed)
    if r == nil then return '0 0 0 0 0 0 ' .. num(paused) .. ' 0' end
    roll(r)
    if settling then
      settle(r, spent, unspent, age)
      save_rate(KEYS[2], r)
    end
    return ticket(r, 0, paused, 0)
  end
end
return (reserve(KEYS[2], tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), packed,
                tonumber(ARGV[7]), spent, unspent, age))
"""

# ARGV[4..6]: spare sends spent and unspent, and the age of the latest spent, settled first.
_LIMITER_STATE = r"""
local spent, unspent, age = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local settling = spent + unspent > 0
local r = load_rate(KEYS[1], settling)
if r == nil then return '0 0 0 0 0 0 0 0' end
roll(r)
if settling then
  settle(r, spent, unspent, age)
  save_rate(KEYS[1], r)
end
return ticket(r, 0, 0, 0)
"""

_LIMITER_LEARN = r"""
local r = load_rate(KEYS[1], true)
roll(r)
if r.version ~= tonumber(ARGV[4]) then return 0 end
local p = pace(r)
if p > 0 then r.tokens = r.tokens + (now - r.refilled_at) * p end
r.refilled_at = now
r.rate = tonumber(ARGV[5])
r.max_rate = tonumber(ARGV[6])
if ARGV[7] == '1' then
  r.throttled_at = now
  r.version = next_serial(KEYS[2])
end
save_rate(KEYS[1], r)
return 1
"""

_SLOTS = r"""
local minimum, maximum, probe_after
-- memory.py's concurrency_limit, and the record it reads (nil: absent or unreadable)
local function load_slots(key)
  local r = redis.call('HMGET', key, 'base', 'slow', 'wins', 'epoch', 'streak', 'ceiling')
  local base, wins, epoch = tonumber(r[1]), tonumber(r[3]), tonumber(r[4])
  if base == nil or wins == nil or epoch == nil then return nil end
  return {base = base, slow = r[2] == '1', wins = wins, epoch = epoch,
    streak = tonumber(r[5]) or 0, ceiling = tonumber(r[6]) or 0}
end
local function slot_limit(s)
  local limit = s.base
  if not s.slow then limit = s.base + (s.wins / (probe_after * math.max(s.base, 4))) ^ 3 end  -- PROBE_SLOTS
  return math.max(minimum, math.min(maximum, limit))
end
"""

# KEYS: the record, the leases. ARGV[4..]: token, lease, initial, minimum, maximum, probe_after.
# Answers {entered, limit, in flight, epoch}.
_ENTER_SLOT = r"""
local token, lease, initial = ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6])
minimum, maximum, probe_after = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local s = load_slots(KEYS[1])
if s == nil then
  s = {base = initial, slow = true, wins = 0, epoch = 0}
  redis.call('HSET', KEYS[1], 'base', num(initial), 'slow', '1', 'wins', '0', 'epoch', '0')
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', num(now))
local limit = slot_limit(s)
local count = redis.call('ZCARD', KEYS[2])
local entered = 0
if redis.call('ZSCORE', KEYS[2], token) or count < math.floor(limit) then
  count = count + redis.call('ZADD', KEYS[2], num(now + lease), token)
  entered = 1
end
local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
local ends = now
if last[2] then ends = tonumber(last[2]) end
touch(KEYS[1], ends)
if count > 0 then touch(KEYS[2], ends) end
return {entered, num(limit), count, s.epoch}
"""

# KEYS: the record, the leases, the serial. ARGV[4..]: token, verdict, epoch, target, in flight,
# capacity (1/0), initial, minimum, maximum, probe_after. Only the token's own lease is removed.
_LEAVE_SLOT = r"""
local held = redis.call('ZCARD', KEYS[2])
redis.call('ZREM', KEYS[2], ARGV[4])
local verdict = ARGV[5]
if verdict == 'hold' then return 0 end
minimum, maximum, probe_after = tonumber(ARGV[11]), tonumber(ARGV[12]), tonumber(ARGV[13])
local s = load_slots(KEYS[1])
if s == nil then return 0 end
local in_flight = tonumber(ARGV[8])
local epoch_now = s.epoch == tonumber(ARGV[6])
if verdict == 'grow' then
  if s.streak > 0 then redis.call('HSET', KEYS[1], 'streak', '0') end
  if s.slow then
    local ceiling = s.ceiling
    if ceiling <= 0 then ceiling = maximum end
    local base = math.min(ceiling, s.base + 1)  -- SLOW_START_STEP
    if base >= ceiling then
      redis.call('HSET', KEYS[1], 'base', num(base), 'slow', '0', 'wins', '0', 'ceiling', '0')
    else
      redis.call('HSET', KEYS[1], 'base', num(base))
    end
  elseif epoch_now and in_flight > math.floor(s.base) + 1 then
    redis.call('HSET', KEYS[1], 'base', num(math.min(maximum, in_flight)), 'slow', '1', 'ceiling', '0')
  else
    redis.call('HINCRBY', KEYS[1], 'wins', 1)
  end
elseif verdict == 'lower' then
  local target, limit = tonumber(ARGV[7]), slot_limit(s)
  if epoch_now then
    local base, slow, ceiling, streak = math.min(target, limit), '0', 0, s.streak
    if ARGV[9] == '1' then
      local measured = math.min(math.max(target, held - 1), limit - 1)
      base = measured
      if streak > 0 then  -- refused again: halve, then slow start back to the measure
        base, slow, ceiling = math.min(measured, limit / 2), '1', measured
      end
      streak = math.min(streak + 1, 30)
    end
    local epoch = redis.call('INCR', KEYS[3])
    redis.call('HSET', KEYS[1], 'base', num(math.max(minimum, base)), 'slow', slow, 'wins', '0',
      'epoch', epoch, 'streak', streak, 'ceiling', num(ceiling))
  elseif ARGV[9] == '1' and math.max(target, held - 1) < limit then
    -- sent under an older limit, yet refused with fewer in flight than this one allows
    local base = math.max(minimum, target, held - 1)
    redis.call('HSET', KEYS[1], 'base', num(base), 'slow', '0', 'wins', '0', 'ceiling', '0')
  end
end
touch(KEYS[1], now)
return 0
"""

#: script name -> (its helpers, its body)
_PARTS: dict[str, tuple[tuple[str, ...], str]] = {
    "deposit": ((_CLOCK, _GET, _NUM, _TOUCH), _DEPOSIT),
    "try_spend": ((_CLOCK, _GET, _NUM, _TOUCH), _TRY_SPEND),
    "record_outcome": ((_CLOCK, _NUM, _TOUCH, _ADD), _RECORD_OUTCOME),
    "record_successes": ((_CLOCK, _NUM, _TOUCH, _ADD), _RECORD_SUCCESSES),
    "circuit": ((_CIRCUIT_UNSEEN, _CLOCK, _NUM, _HASH, _CIRCUIT_READ), _CIRCUIT),
    "try_probe": ((_CLOCK, _NUM, _TOUCH, _HASH, _SERIAL, _CIRCUIT_READ, _CIRCUIT_WRITE), _TRY_PROBE),
    "release_probe": ((), _RELEASE_PROBE),
    "open_circuit": ((_CLOCK, _NUM, _TOUCH, _HASH, _SERIAL, _CIRCUIT_READ, _CIRCUIT_WRITE), _OPEN_CIRCUIT),
    "close_circuit": ((_CLOCK, _NUM, _TOUCH, _HASH, _SERIAL, _CIRCUIT_READ, _CIRCUIT_WRITE), _CLOSE_CIRCUIT),
    "acquire": ((_CLOCK, _NUM, _TOUCH, _HASH), _ACQUIRE),
    "release": ((), _RELEASE),
    "drop_slot": ((), _DROP_SLOT),
    "pause": ((_CLOCK, _GET, _NUM, _TOUCH), _PAUSE),
    "paused_for": ((_CLOCK, _GET, _NUM), _PAUSED_FOR),
    "end_pause": ((), _END_PAUSE),
    "limiter_acquire": ((_CLOCK, _GET, _RATE_HELPERS), _LIMITER_ACQUIRE),
    "limiter_admit": ((_CLOCK, _GET, _NUM, _RATE_HELPERS), _LIMITER_ADMIT),
    "limiter_state": ((_CLOCK, _GET, _RATE_HELPERS), _LIMITER_STATE),
    "limiter_learn": ((_CLOCK, _GET, _SERIAL, _RATE_HELPERS), _LIMITER_LEARN),
    "enter_slot": ((_CLOCK, _NUM, _TOUCH, _SLOTS), _ENTER_SLOT),
    "leave_slot": ((_CLOCK, _NUM, _TOUCH, _SLOTS), _LEAVE_SLOT),
}

#: script name -> the whole script (its helpers, then its body)
SCRIPTS: dict[str, str] = {name: "".join(helpers) + body for name, (helpers, body) in _PARTS.items()}
