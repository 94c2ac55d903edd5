-- A token bucket in Redis, as users write it without ratelimitd: tokens and last refill in a hash, refilled
-- continuously at limit/window, capacity burst. Same decisions and replies as ratelimitd's token_bucket.
-- KEYS[1] = key; ARGV = limit, window_ms, burst, cost
-- Returns {allowed (1/0), remaining, reset_ms}
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
local t = redis.call('TIME')
local now = t[1] * 1000 + t[2] / 1000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil then
  tokens = burst
  ts = now
end
tokens = math.min(burst, tokens + math.max(0, now - ts) * limit / window)
if cost > burst then
  return {0, math.floor(tokens), -1}
end
if tokens < cost then
  return {0, math.floor(tokens), math.ceil((cost - tokens) * window / limit)}
end
tokens = tokens - cost
local full_in = math.ceil((burst - tokens) * window / limit)
redis.call('HSET', KEYS[1], 'tokens', tokens, 'ts', now)
redis.call('PEXPIRE', KEYS[1], math.max(1, full_in))
return {1, math.floor(tokens), full_in}
