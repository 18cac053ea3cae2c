-- One call decides a batch of requests. Each request's limits are decided all-or-nothing:
-- every limit is checked first, and only if all have room is the cost consumed from all.
--
-- KEYS: for each decision, one key per limit, in order (decisions of one call share a
-- Cluster slot when running on a Cluster).
-- ARGV[1]: number of decisions; then per decision: cost, number of limits, and per limit
-- four integers: kind, a, b, c.
--   kind 1, sliding window: a = limit, b = bucket length (us), c = buckets that count (precision + 1)
--   kind 2, token bucket:   a = burst, b = period (us), c = tokens per period
-- Reply: {now_ms, then per decision: allowed (1/0), index (1-based), limit, remaining,
-- reset_ms, retry_ms} for the tightest limit: the one with least remaining when allowed, the one that needs
-- the longest wait when refused. reset_ms: until that limit is entirely unused again.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local out = {math.floor(now / 1000)}
local n = tonumber(ARGV[1])
local ai, ki = 2, 1

for _ = 1, n do
  local cost = tonumber(ARGV[ai])
  local nl = tonumber(ARGV[ai + 1])
  ai = ai + 2
  local st = {}
  local ok = true
  for j = 1, nl do
    local kind = tonumber(ARGV[ai])
    local a, b, c = tonumber(ARGV[ai + 1]), tonumber(ARGV[ai + 2]), tonumber(ARGV[ai + 3])
    ai = ai + 4
    local key = KEYS[ki]
    ki = ki + 1
    local s = {kind = kind, key = key, a = a, b = b, c = c}
    if kind == 1 then
      s.total, s.cur, s.low, s.used = sw_trim(key, now, b, c)
      s.fits = s.total + cost <= a
      s.remaining = a - s.total
    else
      s.d = tb_deficit(key, now, c)
      s.fits = s.d + cost * b <= a * b
      s.remaining = math.floor((a * b - s.d) / b)
    end
    if not s.fits then
      ok = false
    end
    st[j] = s
  end

  local idx, limit, remaining, reset, retry = 0, 0, -1, 0, -1
  if ok then
    for j = 1, nl do
      local s = st[j]
      local r, rs
      if s.kind == 1 then
        rs = sw_commit(s.key, now, s.b, s.c, s.cur, s.low, s.total, s.used, cost)
        r = s.remaining - cost
      else
        local d = s.d + cost * s.b
        rs = tb_commit(s.key, now, s.c, d)
        r = math.floor((s.a * s.b - d) / s.b)
      end
      if remaining < 0 or r < remaining or (r == remaining and rs > reset) then
        idx, limit, remaining, reset = j, s.a, r, rs
      end
    end
    retry = 0
  else
    for j = 1, nl do
      local s = st[j]
      if not s.fits then
        local w, rs
        if s.kind == 1 then
          w, rs = sw_waits(s.key, now, s.b, s.c, s.low, s.cur, s.total + cost - s.a)
        else
          w = math.ceil((s.d + cost * s.b - s.a * s.b) / s.c)
          rs = math.ceil(s.d / s.c)
        end
        if w > retry then
          idx, limit, remaining, reset, retry = j, s.a, s.remaining, rs, w
        end
      end
    end
  end
  out[#out + 1] = ok and 1 or 0
  out[#out + 1] = idx
  out[#out + 1] = limit
  out[#out + 1] = remaining
  out[#out + 1] = math.ceil(reset / 1000)
  out[#out + 1] = math.ceil(retry / 1000)
end
return out
