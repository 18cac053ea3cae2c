-- Current usage of one caller's limits, without consuming or writing anything.
-- KEYS/ARGV as in decide.lua for a single decision (ARGV[1] = 1, cost ignored).
-- Reply: {now_ms, then per limit: limit, remaining, reset_ms, ttl_ms}

local t = call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local out = {floor(now / 1000)}
local nl = tonumber(ARGV[3])
local ai = 4
for j = 1, nl do
  local kind = tonumber(ARGV[ai])
  local a, b, c = tonumber(ARGV[ai + 1]), tonumber(ARGV[ai + 2]), tonumber(ARGV[ai + 3])
  ai = ai + 4
  local key = KEYS[j]
  local remaining, reset
  if kind == 1 then
    local cur = floor(now / b)
    local low = cur - c + 1
    local used = 0
    local fields = {}
    for i = low, cur do
      fields[#fields + 1] = sw_fmt(i)
    end
    local counts = call('HMGET', key, unpack(fields))
    for i = 1, #counts do
      used = used + (tonumber(counts[i]) or 0)
    end
    remaining = a - used
    local _
    _, reset = sw_waits(key, now, b, c, low, cur, 0)
  else
    local d = tb_deficit(key, now, c)
    remaining = floor((a * b - d) / b)
    reset = ceil(d / c)
  end
  out[#out + 1] = a
  out[#out + 1] = remaining
  out[#out + 1] = ceil(reset / 1000)
  out[#out + 1] = call('PTTL', key)
end
return out
