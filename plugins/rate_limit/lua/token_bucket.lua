-- Token bucket as GCRA, in exact integer arithmetic.
-- The value is "<ts> <d>": at time ts (microseconds) the bucket was d / period tokens short
-- of full, where d is kept in units of microseconds*tokens so that a refill of `rate`
-- tokens per `period` microseconds subtracts exactly elapsed*rate. A request of `cost`
-- tokens fits when d + cost*period <= burst*period. The key expires when the bucket is
-- full again (d reaches 0), which is when it stops carrying information.

-- Returns d as of now.
local function tb_deficit(key, now, rate)
  local v = call('GET', key)
  if not v then
    return 0
  end
  local ts, d = match(v, '^(%d+) (%d+)$')
  if not ts then
    return 0
  end
  local left = tonumber(d) - (now - tonumber(ts)) * rate
  if left < 0 then
    return 0
  end
  return left
end

-- `now_s` is the call's clock, formatted once per call.
local function tb_commit(key, now_s, rate, d)
  local ttl = ceil(d / rate)
  call('SET', key, now_s .. ' ' .. fmt('%d', d), 'PX', fmt('%d', ceil(ttl / 1000)))
  return ttl
end
