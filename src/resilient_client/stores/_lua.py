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
* serial: the store-wide counter (INCR) that circuit epochs and rate versions are drawn from.
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
local function load_circuit(key)
  local c = {state = 'closed', epoch = 0, break_ends = 0, break_duration = 0, probes = {}}
  local fields = redis.call('HGETALL', key)
  for i = 1, #fields, 2 do
    local name, value = fields[i], fields[i + 1]
    if string.sub(name, 1, 6) == 'probe:' then
      c.probes[string.sub(name, 7)] = tonumber(value)
    elseif name == 'state' then
      c.state = value
    else
      c[name] = tonumber(value)
    end
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
  c.epoch = redis.call('INCR', serial)
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
local function load_rate(key, create, packed)
  if packed == nil then packed = redis.call('GET', key) end
  if not packed then
    if not create then return nil end
    return {refilled_at = now, ceiling = 0, rate = 0, max_rate = 0, throttled_at = now, version = 0,
            slot = math.floor(now), count = 0, previous = 0, tokens = math.huge}
  end
  local r = {}
  r.refilled_at, r.ceiling, r.rate, r.max_rate, r.throttled_at, r.version, r.slot, r.count,
    r.previous, r.tokens = struct.unpack(RATE, packed)
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
local level = math.min(tonumber(redis.call('GET', KEYS[1]) or ARGV[5]), cap)
level = math.min(cap, level + tonumber(ARGV[4]))
redis.call('SET', KEYS[1], num(level))
touch(KEYS[1], 0)
return num(level)
"""

# ARGV[6]: tokens earned, deposited first.
_TRY_SPEND = r"""
local cost, cap = tonumber(ARGV[4]), tonumber(ARGV[5])
local level = math.min(tonumber(redis.call('GET', KEYS[1]) or ARGV[5]), cap)
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
_RECORD_OUTCOME = r"""
local width = tonumber(ARGV[5]) / 10
local stored = redis.call('HGET', KEYS[1], 'width')
if not stored or tonumber(stored) ~= width then
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 'width', num(width))
end
local current = math.floor(now / width)
local successes = tonumber(ARGV[6])
if successes > 0 then
  local index = math.min(current, math.floor((now - math.max(0, tonumber(ARGV[7]))) / width))
  if index > current - 10 then
    redis.call('HINCRBY', KEYS[1], 'n' .. num(index), successes)
  end
end
redis.call('HINCRBY', KEYS[1], 'f' .. num(current), tonumber(ARGV[4]))
redis.call('HINCRBY', KEYS[1], 'n' .. num(current), 1)
local failures, total = 0, 0
local fields = redis.call('HGETALL', KEYS[1])
for i = 1, #fields, 2 do
  local name = fields[i]
  local kind = string.sub(name, 1, 1)
  if kind == 'f' or kind == 'n' then
    if tonumber(string.sub(name, 2)) <= current - 10 then
      redis.call('HDEL', KEYS[1], name)
    elseif kind == 'f' then
      failures = failures + tonumber(fields[i + 1])
    else
      total = total + tonumber(fields[i + 1])
    end
  end
end
touch(KEYS[1], 0)
return {failures, total}
"""

_RECORD_SUCCESSES = r"""
local width = tonumber(ARGV[6]) / 10
local stored = redis.call('HGET', KEYS[1], 'width')
if not stored or tonumber(stored) ~= width then
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 'width', num(width))
end
local current = math.floor(now / width)
local index = math.min(current, math.floor((now - math.max(0, tonumber(ARGV[5]))) / width))
if index > current - 10 then
  redis.call('HINCRBY', KEYS[1], 'n' .. num(index), tonumber(ARGV[4]))
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
  c.epoch = redis.call('INCR', KEYS[2])
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
redis.call('HDEL', KEYS[1], 'probe:' .. ARGV[4])
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
  local fields = redis.call('HGETALL', key)
  local count, mine, latest = 0, false, now + lease
  for j = 1, #fields, 2 do
    local holder, ends = fields[j], tonumber(fields[j + 1])
    if ends <= now then
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
  redis.call('HDEL', KEYS[i], ARGV[4])
end
return 0
"""

_PAUSE = r"""
local ends = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), now + tonumber(ARGV[4]))
redis.call('SET', KEYS[1], num(ends))
touch(KEYS[1], ends)
return 0
"""

_END_PAUSE = r"""
redis.call('DEL', KEYS[1])
return 0
"""

_PAUSED_FOR = r"""
local ends = redis.call('GET', KEYS[1])
if not ends then return '0' end
return num(math.max(0, tonumber(ends) - now))
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
local spent, unspent, age = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])
if ends then
  local paused = tonumber(ends) - now
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
  r.version = redis.call('INCR', KEYS[2])
end
save_rate(KEYS[1], r)
return 1
"""

#: script name -> (its helpers, its body)
_PARTS: dict[str, tuple[tuple[str, ...], str]] = {
    "deposit": ((_CLOCK, _NUM, _TOUCH), _DEPOSIT),
    "try_spend": ((_CLOCK, _NUM, _TOUCH), _TRY_SPEND),
    "record_outcome": ((_CLOCK, _NUM, _TOUCH), _RECORD_OUTCOME),
    "record_successes": ((_CLOCK, _NUM, _TOUCH), _RECORD_SUCCESSES),
    "circuit": ((_CIRCUIT_UNSEEN, _CLOCK, _NUM, _CIRCUIT_READ), _CIRCUIT),
    "try_probe": ((_CLOCK, _NUM, _TOUCH, _CIRCUIT_READ, _CIRCUIT_WRITE), _TRY_PROBE),
    "release_probe": ((), _RELEASE_PROBE),
    "open_circuit": ((_CLOCK, _NUM, _TOUCH, _CIRCUIT_READ, _CIRCUIT_WRITE), _OPEN_CIRCUIT),
    "close_circuit": ((_CLOCK, _NUM, _TOUCH, _CIRCUIT_READ, _CIRCUIT_WRITE), _CLOSE_CIRCUIT),
    "acquire": ((_CLOCK, _NUM, _TOUCH), _ACQUIRE),
    "release": ((), _RELEASE),
    "pause": ((_CLOCK, _NUM, _TOUCH), _PAUSE),
    "paused_for": ((_CLOCK, _NUM), _PAUSED_FOR),
    "end_pause": ((), _END_PAUSE),
    "limiter_acquire": ((_CLOCK, _RATE_HELPERS), _LIMITER_ACQUIRE),
    "limiter_admit": ((_CLOCK, _NUM, _RATE_HELPERS), _LIMITER_ADMIT),
    "limiter_state": ((_CLOCK, _RATE_HELPERS), _LIMITER_STATE),
    "limiter_learn": ((_CLOCK, _RATE_HELPERS), _LIMITER_LEARN),
}

#: script name -> the whole script (its helpers, then its body)
SCRIPTS: dict[str, str] = {name: "".join(helpers) + body for name, (helpers, body) in _PARTS.items()}
