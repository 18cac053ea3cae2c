-- Store one response and its Vary spec atomically, both with a TTL.
-- KEYS[1]: Vary spec key, KEYS[2]: entry key (same hash tag)
-- ARGV[1]: spec (comma-joined header names, "" for none), ARGV[2]: entry, ARGV[3]: TTL in ms
local ttl = tonumber(ARGV[3])
-- The spec must outlive every variant it points at.
local spec_ttl = redis.call('PTTL', KEYS[1])
if spec_ttl < ttl then
  spec_ttl = ttl
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', spec_ttl)
redis.call('SET', KEYS[2], ARGV[2], 'PX', ttl)
return 1
