-- One call decides a batch of requests. Each request's limits are decided all-or-nothing:
-- every limit is checked first, and only if all have room is the cost consumed from all.
--
-- KEYS: for each decision, one key per limit of its plan, in order (decisions of one call
-- share a Cluster slot when running on a Cluster).
-- ARGV[1]: number of plans. Then per plan: cost, number of limits, and per limit four
-- integers: kind, a, b, c. Then one plan number (1-based) per decision.
--   kind 1, sliding window: a = limit, b = bucket length (us), c = buckets that count (precision + 1)
--   kind 2, token bucket:   a = burst, b = period (us), c = tokens per period
-- A batch holds a handful of distinct plans (a route's cost and a tier), so each is sent
-- and prepared once per call: parsing and formatting numbers was a large part of the
-- script's cost when every decision carried its own.
-- Reply: {now_ms, then per decision: allowed (1/0), index (1-based), limit, remaining,
-- reset_ms, retry_ms} for the tightest limit: the one with least remaining when allowed, the one that needs
-- the longest wait when refused. reset_ms: until that limit is entirely unused again.

local t = call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now_s = sw_fmt(now)
local out = {floor(now / 1000)}

-- Per plan, what depends only on the plan and this call's clock: the current bucket of
-- each window (its field name, floor and expiry are the same for every decision). Keyed by
-- the plan number as the caller writes it ('%d'), so that a decision finds its plan without
-- converting the number (tonumber parses with strtod).
local PLANS = {}
local ai = 2
for p = 1, tonumber(ARGV[1]) do
  local cost, nl = tonumber(ARGV[ai]), tonumber(ARGV[ai + 1])
  ai = ai + 2
  local K, A, B, C, FLD, LOW, LOWS, RS, PX = {}, {}, {}, {}, {}, {}, {}, {}, {}
  for j = 1, nl do
    local kind, a, b, c = tonumber(ARGV[ai]), tonumber(ARGV[ai + 1]), tonumber(ARGV[ai + 2]), tonumber(ARGV[ai + 3])
    ai = ai + 4
    K[j], A[j], B[j], C[j] = kind, a, b, c
    if kind == 1 then
      local cur = floor(now / b)
      local low = cur - c + 1
      FLD[j], LOW[j], LOWS[j] = sw_fmt(cur), low, sw_fmt(low)
      -- Until the current bucket stops counting: the reset of a window written now.
      RS[j] = (cur + c) * b - now
      PX[j] = sw_fmt(ceil(RS[j] / 1000))
    end
  end
  PLANS[fmt('%d', p)] = {cost, nl, K, A, B, C, FLD, LOW, LOWS, RS, PX}
end

-- Per-limit state of the decision at hand, indexed by limit, in arrays reused by every
-- decision of the call: a table per limit and decision was a fifth of the script's cost.
-- Every slot a decision reads was written by that decision (USED only for windows, D only
-- for buckets).
local KEY, FIT, REM, TOT, USED, D = {}, {}, {}, {}, {}, {}
local ki, oi = 1, 2

for di = ai, #ARGV do
  local plan = PLANS[ARGV[di]]
  local cost, nl, K, A, B, C = plan[1], plan[2], plan[3], plan[4], plan[5], plan[6]
  local FLD, LOW = plan[7], plan[8]
  local ok = true
  for j = 1, nl do
    local a, b, c = A[j], B[j], C[j]
    local key = KEYS[ki]
    ki = ki + 1
    KEY[j] = key
    local fits
    if K[j] == 1 then
      local total
      total, USED[j] = sw_trim(key, FLD[j], LOW[j], c)
      TOT[j] = total
      fits = total + cost <= a
      REM[j] = a - total
    else
      local d = tb_deficit(key, now, c)
      D[j] = d
      fits = d + cost * b <= a * b
      REM[j] = floor((a * b - d) / b)
    end
    FIT[j] = fits
    if not fits then
      ok = false
    end
  end

  local idx, limit, remaining, reset, retry = 0, 0, -1, 0, -1
  if ok then
    local LOWS, RS, PX = plan[9], plan[10], plan[11]
    for j = 1, nl do
      local r, rs
      if K[j] == 1 then
        sw_commit(KEY[j], FLD[j], LOWS[j], TOT[j], USED[j], cost, PX[j])
        rs = RS[j]
        r = REM[j] - cost
      else
        local d = D[j] + cost * B[j]
        rs = tb_commit(KEY[j], now_s, C[j], d)
        r = floor((A[j] * B[j] - d) / B[j])
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
          w, rs = sw_waits(KEY[j], now, b, c, LOW[j], LOW[j] + c - 1, TOT[j] + cost - a)
        else
          local d = D[j]
          w = ceil((d + cost * b - a * b) / c)
          rs = ceil(d / c)
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
  out[oi + 4] = ceil(reset / 1000)
  out[oi + 5] = ceil(retry / 1000)
  oi = oi + 6
end
return out
