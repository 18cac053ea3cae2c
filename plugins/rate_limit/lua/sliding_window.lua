-- Sliding window, counted in sub-windows ("buckets") of a hash:
--   field 't' = units counted in the window, 'o' = oldest bucket that may still count,
--   field '<bucket index>' = units consumed in that bucket.
-- Bucket i covers [i*bucket, (i+1)*bucket) microseconds and counts while i > cur - span,
-- where span = precision + 1: the window plus the bucket it started in. A unit therefore
-- counts for at least the whole window (never over-admits) and stops counting at most one
-- bucket late. The key expires when its newest bucket stops counting, which is never later
-- than one window plus one bucket from the last write.

local function sw_fmt(i)
  return fmt('%d', i)
end

-- Drops buckets that left the window; returns units still counted and the current
-- bucket's count (nil when it has none yet). `field` names the current bucket and `low`
-- is the lowest bucket that counts (both fixed for a whole script call). The current
-- bucket is read in the same HMGET so that the commit needs no HINCRBY.
local function sw_trim(key, field, low, span)
  local h = call('HMGET', key, 't', 'o', field)
  local total = tonumber(h[1]) or 0
  local oldest = tonumber(h[2])
  local used = tonumber(h[3])
  if oldest ~= nil and oldest < low then
    if low - oldest >= span then
      call('DEL', key)
      total = 0
      used = nil
    else
      local fields = {}
      for i = oldest, low - 1 do
        fields[#fields + 1] = sw_fmt(i)
      end
      local counts = call('HMGET', key, unpack(fields))
      for i = 1, #counts do
        total = total - (tonumber(counts[i]) or 0)
      end
      call('HDEL', key, unpack(fields))
      -- Persisted here too: a refusal commits nothing, and the dropped fields are gone.
      call('HSET', key, 't', sw_fmt(total), 'o', sw_fmt(low))
    end
  end
  return total, used
end

-- Microseconds until `need` units have left the window (retry), and until all of them
-- have (full reset). Read-only; only called for refusals and peeks.
local function sw_waits(key, now, bucket, span, low, cur, need)
  local fields = {}
  for i = low, cur do
    fields[#fields + 1] = sw_fmt(i)
  end
  local counts = call('HMGET', key, unpack(fields))
  local freed, retry, newest = 0, -1, nil
  for j = 1, #counts do
    local c = tonumber(counts[j]) or 0
    if c > 0 then
      newest = low + j - 1
      freed = freed + c
      if retry < 0 and freed >= need then
        retry = (newest + span) * bucket - now
      end
    end
  end
  local reset = 0
  if newest ~= nil then
    reset = (newest + span) * bucket - now
  end
  if retry < 0 then
    retry = 0
  end
  return retry, reset
end

-- One HSET writes the bucket, the total and the window floor. The key's expiry only moves
-- when a new bucket starts: it is set to when that bucket stops counting, so later writes
-- to the same bucket would set the same instant again. Numbers go to Redis as strings
-- formatted with '%d': Lua's own conversion is a slower floating-point format (and
-- rounds above 14 digits). `low_s` and `px` are prepared once per call.
local function sw_commit(key, field, low_s, total, used, cost, px)
  call('HSET', key, field, sw_fmt((used or 0) + cost), 't', sw_fmt(total + cost), 'o', low_s)
  if used == nil then
    call('PEXPIRE', key, px)
  end
end
