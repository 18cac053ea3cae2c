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
local ai, ki, oi = 2, 1, 2
-- Per-limit state of the decision at hand, indexed by limit, in arrays reused by every
-- decision of the call: a table per limit and decision was a fifth of the script's cost.
-- Every slot a decision reads was written by that decision (USED and FLD only for windows,
-- D only for buckets).
local K, A, B, C, KEY, FIT, REM = {}, {}, {}, {}, {}, {}, {}
local TOT, CUR, LOW, USED, FLD, D = {}, {}, {}, {}, {}, {}

for _ = 1, n do
  local cost = tonumber(ARGV[ai])
  local nl = tonumber(ARGV[ai + 1])
  ai = ai + 2
  local ok = true
  for j = 1, nl do
    local kind = tonumber(ARGV[ai])
    local a, b, c = tonumber(ARGV[ai + 1]), tonumber(ARGV[ai + 2]), tonumber(ARGV[ai + 3])
    ai = ai + 4
    local key = KEYS[ki]
    ki = ki + 1
    K[j], A[j], B[j], C[j], KEY[j] = kind, a, b, c, key
    local fits
    if kind == 1 then
      local total
      total, CUR[j], LOW[j], USED[j], FLD[j] = sw_trim(key, now, b, c)
      TOT[j] = total
      fits = total + cost <= a
      REM[j] = a - total
    else
      local d = tb_deficit(key, now, c)
      D[j] = d
      fits = d + cost * b <= a * b
      REM[j] = math.floor((a * b - d) / b)
    end
    FIT[j] = fits
    if not fits then
      ok = false
    end
  end

  local idx, limit, remaining, reset, retry = 0, 0, -1, 0, -1
  if ok then
    for j = 1, nl do
      local r, rs
      if K[j] == 1 then
        rs = sw_commit(KEY[j], now, B[j], C[j], CUR[j], LOW[j], TOT[j], USED[j], cost, FLD[j])
        r = REM[j] - cost
      else
        local d = D[j] + cost * B[j]
        rs = tb_commit(KEY[j], now, C[j], d)
        r = math.floor((A[j] * B[j] - d) / B[j])
      end
      if remaining < 0 or r < remaining or (r == remaining and rs > reset) then
        idx, limit, remaining, reset = j, A[j], r, rs
      end
    end
    retry = 0
  else
    for j = 1, nl do
      if not FIT[j] then
        local w, rs
        local a, b, c = A[j], B[j], C[j]
        if K[j] == 1 then
          w, rs = sw_waits(KEY[j], now, b, c, LOW[j], CUR[j], TOT[j] + cost - a)
        else
          local d = D[j]
          w = math.ceil((d + cost * b - a * b) / c)
          rs = math.ceil(d / c)
        end
        if w > retry then
          idx, limit, remaining, reset, retry = j, a, REM[j], rs, w
        end
      end
    end
  end
  out[oi] = ok and 1 or 0
  out[oi + 1] = idx
  out[oi + 2] = limit
  out[oi + 3] = remaining
  out[oi + 4] = math.ceil(reset / 1000)
  out[oi + 5] = math.ceil(retry / 1000)
  oi = oi + 6
end
return out
