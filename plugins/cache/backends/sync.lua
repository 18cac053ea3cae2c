-- What a worker polls: Redis time, and the invalidation records when they changed.
-- KEYS[1]: the invalidation hash; ARGV[1]: the version the worker already has
-- Returns {now_us, version} or {now_us, version, {field, us, ...}}.
local t = redis.call('TIME')
-- Kept as a string: Lua 5.1 would print a number this large in exponent form.
local now_s = t[1] .. string.rep('0', 6 - #t[2]) .. t[2]
local version = redis.call('HGET', KEYS[1], '~v') or '0'
if version == ARGV[1] then
  return {now_s, version}
end
return {now_s, version, redis.call('HGETALL', KEYS[1])}
