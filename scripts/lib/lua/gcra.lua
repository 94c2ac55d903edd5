-- GCRA (leaky bucket) in Redis, as redis-cell and common Lua scripts do it: the theoretical arrival time
-- in a string key with an expiry. Same decisions and replies as ratelimitd's leaky_bucket.
-- KEYS[1] = key; ARGV = limit, window_ms, burst, cost
-- Returns {allowed (1/0), remaining, reset_ms}
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
local t = redis.call('TIME')
local now = t[1] * 1000 + t[2] / 1000
local interval = window / limit
local tolerance = burst * interval
local tat = tonumber(redis.call('GET', KEYS[1])) or now
tat = math.max(tat, now)
local remaining = math.floor((tolerance - (tat - now)) / interval)
if cost > burst then
  return {0, remaining, -1}
end
local new_tat = tat + cost * interval
if new_tat - now > tolerance then
  return {0, remaining, math.ceil(new_tat - now - tolerance)}
end
local ttl = math.ceil(new_tat - now)
redis.call('SET', KEYS[1], tostring(new_tat), 'PX', math.max(1, ttl))
return {1, math.floor((tolerance - (new_tat - now)) / interval), ttl}
