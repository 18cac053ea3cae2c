-- Find a cached response in one round trip when it does not vary.
-- KEYS[1]: the Vary spec of the primary key ("" when the response has no Vary)
-- KEYS[2]: the entry stored for "no Vary"
-- Returns {} (nothing cached), {spec} (caller fetches the variant), or {"", entry}.
local spec = redis.call('GET', KEYS[1])
if not spec then
  return {}
end
if spec == '' then
  local blob = redis.call('GET', KEYS[2])
  if blob then
    return {spec, blob}
  end
end
return {spec}
