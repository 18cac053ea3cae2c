-- Record an invalidation, stamped with Redis time, in the invalidation hash.
-- KEYS[1]: the hash (field -> microseconds; field "~v" is the version every worker polls)
-- ARGV[1]: field naming (route, path prefix)
-- ARGV[2]: how long a record matters, in ms (the longest cache TTL): older ones are pruned
-- ARGV[3]: most records kept; beyond it, everything collapses into ARGV[4] (clear all)
-- ARGV[4]: the field that invalidates every route and path
-- Returns the record's time in microseconds.
local t = redis.call('TIME')
-- Kept as a string: Lua 5.1 would print a number this large in exponent form.
local now_s = t[1] .. string.rep('0', 6 - #t[2]) .. t[2]
local now = tonumber(now_s)
local horizon = now - tonumber(ARGV[2]) * 1000
local fields = redis.call('HGETALL', KEYS[1])
local live = 0
for i = 1, #fields, 2 do
  if fields[i] ~= '~v' then
    if tonumber(fields[i + 1]) < horizon then
      redis.call('HDEL', KEYS[1], fields[i])
    else
      live = live + 1
    end
  end
end
if live >= tonumber(ARGV[3]) then
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], ARGV[4], now_s)
else
  redis.call('HSET', KEYS[1], ARGV[1], now_s)
end
redis.call('HSET', KEYS[1], '~v', now_s)
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
return now_s
