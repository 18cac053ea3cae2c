-- One service's circuit breaker, shared by every worker and pod. Every transition is decided
-- here, atomically, with Redis time; hotpath/resilience/machine.py holds the same rules.
--
-- KEYS[1]   the breaker's hash (its {service} hash tag keeps it in one Cluster slot)
-- ARGV[1]   op: sync | record | probe | done | reset
-- ARGV[2]   failure-rate threshold in basis points (0: rule off)
-- ARGV[3]   minimum calls in the window before the rate counts
-- ARGV[4]   window bucket width, ms
-- ARGV[5]   buckets per window
-- ARGV[6]   consecutive failures that open (0: rule off)
-- ARGV[7]   open duration, ms
-- ARGV[8]   probes admitted while half-open
-- ARGV[9]   successful probes that close
-- ARGV[10]  probe lease, ms (an unreported probe counts as failed after it)
-- ARGV[11]  key TTL, ms
-- ARGV[12]  pub/sub channel for state changes
-- ARGV[13]  service name (in published messages)
-- ARGV[14]  record: the epoch the calls were admitted in; probe/done: lease token
-- ARGV[15]  record: outcomes in order, one letter each (S or F); done: S, F or I (cancelled)
--
-- Hash fields: s state (0 closed, 1 open, 2 half-open), e epoch, u open until (ms),
-- n consecutive failures, i probes issued, k probe successes, c:<bucket> / f:<bucket> calls
-- and failures per window bucket, l:<token> lease expiry (ms).
--
-- Returns {state, epoch, open ms left, probes free, ms until the next lease expires,
-- transition ("" | "opened" | "closed" | "half_open"), granted (probe: 1 or 0), reason,
-- the state the last transition left}.

local key = KEYS[1]
local op = ARGV[1]
local rate_bp = tonumber(ARGV[2])
local min_calls = tonumber(ARGV[3])
local bucket_ms = tonumber(ARGV[4])
local nbuckets = tonumber(ARGV[5])
local consec_limit = tonumber(ARGV[6])
local open_ms = tonumber(ARGV[7])
local probes = tonumber(ARGV[8])
local successes = tonumber(ARGV[9])
local lease_ms = tonumber(ARGV[10])
local ttl_ms = tonumber(ARGV[11])
local channel = ARGV[12]
local service = ARGV[13]

local CLOSED, OPEN, HALF = 0, 1, 2

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local raw = redis.call('HGETALL', key)
local h = {}
for i = 1, #raw, 2 do
  h[raw[i]] = raw[i + 1]
end

local state = tonumber(h['s'] or CLOSED)
-- A new (or expired) breaker starts its epochs at the current time, so epochs never repeat.
local epoch = tonumber(h['e'] or now)
local open_until = tonumber(h['u'] or 0)
local issued = tonumber(h['i'] or 0)
local oks = tonumber(h['k'] or 0)
local transition = ''
local from_state = state
local reason = ''
local dirty = h['e'] == nil

local function go(new_state, why)
  local old = state
  from_state = old
  state = new_state
  epoch = epoch + 1
  issued, oks = 0, 0
  redis.call('DEL', key)
  if new_state == OPEN then
    open_until = now + open_ms
    redis.call('HSET', key, 's', OPEN, 'e', epoch, 'u', open_until)
    transition = 'opened'
  elseif new_state == HALF then
    redis.call('HSET', key, 's', HALF, 'e', epoch, 'i', 0, 'k', 0)
    transition = 'half_open'
  else
    redis.call('HSET', key, 's', CLOSED, 'e', epoch, 'n', 0)
    transition = 'closed'
  end
  h = {}
  reason = why
  dirty = true
  local left = 0
  if new_state == OPEN then left = open_ms end
  redis.call('PUBLISH', channel, service .. ' ' .. new_state .. ' ' .. epoch .. ' ' .. left .. ' ' .. old)
end

local function next_lease()
  local soonest = nil
  for f, v in pairs(h) do
    if string.sub(f, 1, 2) == 'l:' then
      local exp = tonumber(v)
      if soonest == nil or exp < soonest then soonest = exp end
    end
  end
  return soonest
end

-- Transitions that time alone causes.
if state == OPEN and now >= open_until then
  go(HALF, 'open duration elapsed')
elseif state == HALF then
  local soonest = next_lease()
  if soonest ~= nil and soonest <= now then
    go(OPEN, 'a probe did not report within probe_timeout')
  end
end

local granted = 0

if op == 'record' then
  local seq = ARGV[15]
  if state == CLOSED and tonumber(ARGV[14]) == epoch and #seq > 0 then
    local bucket = math.floor(now / bucket_ms)
    local oldest = bucket - nbuckets + 1
    local calls, fails = 0, 0
    for f, v in pairs(h) do
      local kind = string.sub(f, 1, 2)
      if kind == 'c:' or kind == 'f:' then
        if tonumber(string.sub(f, 3)) < oldest then
          redis.call('HDEL', key, f)
        elseif kind == 'c:' then
          calls = calls + tonumber(v)
        else
          fails = fails + tonumber(v)
        end
      end
    end
    local consec = tonumber(h['n'] or 0)
    local add_c, add_f = 0, 0
    local tripped = false
    for i = 1, #seq do
      add_c = add_c + 1
      calls = calls + 1
      if string.byte(seq, i) == 70 then -- 'F'
        add_f = add_f + 1
        fails = fails + 1
        consec = consec + 1
      else
        consec = 0
      end
      if consec_limit > 0 and consec >= consec_limit then
        go(OPEN, consec .. ' consecutive failures')
        tripped = true
        break
      end
      if rate_bp > 0 and calls >= min_calls and fails * 10000 >= rate_bp * calls then
        go(OPEN, string.format('failure rate %.1f%% over %d calls', 100 * fails / calls, calls))
        tripped = true
        break
      end
    end
    if not tripped then
      redis.call('HINCRBY', key, 'c:' .. bucket, add_c)
      if add_f > 0 then
        redis.call('HINCRBY', key, 'f:' .. bucket, add_f)
      end
      redis.call('HSET', key, 'n', consec)
      dirty = true
    end
  end
elseif op == 'probe' then
  if state == HALF and issued < probes then
    issued = issued + 1
    local exp = now + lease_ms
    h['l:' .. ARGV[14]] = tostring(exp)
    redis.call('HSET', key, 'i', issued, 'l:' .. ARGV[14], exp)
    granted = 1
    dirty = true
  end
elseif op == 'done' then
  local field = 'l:' .. ARGV[14]
  if state == HALF and h[field] ~= nil then
    redis.call('HDEL', key, field)
    h[field] = nil
    dirty = true
    local result = ARGV[15]
    if result == 'S' then
      oks = oks + 1
      redis.call('HSET', key, 'k', oks)
      if oks >= successes then
        go(CLOSED, oks .. ' successful probes')
      end
    elseif result == 'F' then
      go(OPEN, 'a probe failed')
    else
      issued = issued - 1
      redis.call('HSET', key, 'i', issued)
    end
  end
elseif op == 'reset' then
  go(CLOSED, 'reset by an operator')
end

if dirty then
  if h['e'] == nil and transition == '' then
    redis.call('HSET', key, 's', state, 'e', epoch)
  end
  redis.call('PEXPIRE', key, ttl_ms)
end

local open_left, free, lease_wait = 0, 0, 0
if state == OPEN then
  open_left = math.max(0, open_until - now)
elseif state == HALF then
  free = probes - issued
  local soonest = next_lease()
  if soonest ~= nil then lease_wait = math.max(0, soonest - now) end
end
return {state, epoch, open_left, free, lease_wait, transition, granted, reason, from_state}
