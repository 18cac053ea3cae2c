-- Store an answer (ARGV[1], for ARGV[2] ms; none when ARGV[2] is 0) and give up the claim.
-- KEYS[1]: the answer, KEYS[2]: the claim.
if tonumber(ARGV[2]) > 0 then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
redis.call('DEL', KEYS[2])
return 1
