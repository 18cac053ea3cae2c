-- Redis's Lua (5.1) reads a global through a table lookup at every use, and `redis.call` or
-- `math.floor` through two. Bound once here, the fragments and bodies below read them as
-- locals and upvalues instead: every decision makes dozens of these calls.
local call, tonumber, floor, ceil, fmt, match, unpack = redis.call, tonumber, math.floor, math.ceil, string.format, string.match, unpack
