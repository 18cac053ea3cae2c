-- The shared answer for a description, or the right to ask for it.
-- KEYS[1]: the answer, KEYS[2]: the claim. ARGV[1]: how long a claim lives (ms).
-- Returns {1, answer} when one is stored, {2} when this caller now holds the claim, {0}
-- when another caller holds it (and will store the answer).
local answer = redis.call('GET', KEYS[1])
if answer then
  return {1, answer}
end
if redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[1]) then
  return {2}
end
return {0}
