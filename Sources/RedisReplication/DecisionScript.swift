/// The Lua script that decides in Redis for shared mode: every algorithm with the local arithmetic, to the
/// nanosecond, whatever the values (see its header). Loaded with `SCRIPT LOAD`, called with `EVALSHA`.
/// Kept as Swift source so the installed binary needs no file beside it.
public enum DecisionScript {
    public static let source = #"""
-- ratelimitd shared mode: decides CHECKs inside Redis, atomically, with the local algorithms' arithmetic.
--
-- KEYS: the state keys (one per item; a key may repeat: later items see earlier ones' effect).
-- ARGV[1]: now, in nanoseconds since the Unix epoch as a decimal string; "" to read Redis's clock (TIME),
--          as the daemon always does. Keys expire by Redis's clock, so with an explicit time (tests) states
--          are stored without expiry.
-- ARGV[2]: "each" (every item decided on its own) or "all" (applied only if the items that may deny are
--          all allowed, and when some quota-role items exist, not all of them are denied; otherwise nothing
--          is consumed and allowed items are answered as peeks).
-- ARGV[3 + 6i ...]: per item: algorithm (B bucket, F fixed window, C sliding counter, L sliding log),
--          limit, window ns, burst, cost, role (0 shadow: never denies the batch, 1 denies it, 2 quota).
-- Returns: per item allowed (1/0), remaining, reset ms (-1: never); then, in "all" mode, applied (1/0).
--
-- Lua's numbers are doubles, exact only below 2^53, and times here are ~1.7e18 ns: every value is a Lua
-- number while it fits and a signed big integer (base 1e7 limbs) beyond, so results are the local
-- algorithms' to the nanosecond, whatever the limit, window or clock.
local B = 10000000
local MAXN = 9007199254740992
local floor = math.floor

local function mag(x)
  local t = {}
  repeat
    local r = x % B
    t[#t + 1] = r
    x = (x - r) / B
  until x == 0
  return t
end

local function tobig(x)
  if type(x) == 'number' then
    local t = mag(x < 0 and -x or x)
    t.neg = x < 0
    return t
  end
  return x
end

local function trim(t)
  while #t > 1 and t[#t] == 0 do t[#t] = nil end
  if #t == 1 and t[1] == 0 then t.neg = false end
  return t
end

local function small(t)
  trim(t)
  if #t <= 3 then
    local v = 0
    for i = #t, 1, -1 do v = v * B + t[i] end
    if v < MAXN then return t.neg and -v or v end
  end
  return t
end

local function cmpMag(a, b)
  if #a ~= #b then return #a < #b and -1 or 1 end
  for i = #a, 1, -1 do
    if a[i] ~= b[i] then return a[i] < b[i] and -1 or 1 end
  end
  return 0
end

local function addMag(a, b)
  local t, carry = {}, 0
  for i = 1, math.max(#a, #b) do
    local s = (a[i] or 0) + (b[i] or 0) + carry
    if s >= B then t[i] = s - B; carry = 1 else t[i] = s; carry = 0 end
  end
  if carry > 0 then t[#t + 1] = carry end
  return t
end

local function subMag(a, b)
  local t, borrow = {}, 0
  for i = 1, #a do
    local s = a[i] - (b[i] or 0) - borrow
    if s < 0 then t[i] = s + B; borrow = 1 else t[i] = s; borrow = 0 end
  end
  return trim(t)
end

local function mulMag(a, b)
  local t = {}
  for i = 1, #a + #b do t[i] = 0 end
  for i = 1, #a do
    local ai = a[i]
    if ai ~= 0 then
      local carry = 0
      for j = 1, #b do
        local cur = t[i + j - 1] + ai * b[j] + carry
        carry = floor(cur / B)
        t[i + j - 1] = cur - carry * B
      end
      local k = i + #b
      while carry > 0 do
        local cur = t[k] + carry
        carry = floor(cur / B)
        t[k] = cur - carry * B
        k = k + 1
      end
    end
  end
  return trim(t)
end

local function add(a, b)
  if type(a) == 'number' and type(b) == 'number' then
    local s = a + b
    if s < MAXN and s > -MAXN then return s end
  end
  a, b = tobig(a), tobig(b)
  local t
  if a.neg == b.neg then
    t = addMag(a, b); t.neg = a.neg
  elseif cmpMag(a, b) >= 0 then
    t = subMag(a, b); t.neg = a.neg
  else
    t = subMag(b, a); t.neg = b.neg
  end
  return small(t)
end

local function negate(a)
  if type(a) == 'number' then return -a end
  local t = { neg = not a.neg }
  for i = 1, #a do t[i] = a[i] end
  return t
end

local function sub(a, b) return add(a, negate(b)) end

local function mul(a, b)
  if type(a) == 'number' and type(b) == 'number' then
    local p = a * b
    if p < MAXN and p > -MAXN then return p end
  end
  a, b = tobig(a), tobig(b)
  local t = mulMag(a, b)
  t.neg = a.neg ~= b.neg
  return small(t)
end

local function cmp(a, b)
  if type(a) == 'number' and type(b) == 'number' then
    return a < b and -1 or (a > b and 1 or 0)
  end
  local d = sub(a, b)
  if type(d) == 'number' then return d < 0 and -1 or (d > 0 and 1 or 0) end
  return d.neg and -1 or 1
end

local function max(a, b) return cmp(a, b) >= 0 and a or b end
local function min(a, b) return cmp(a, b) <= 0 and a or b end

-- floor(a / b) for a >= 0, b > 0.
local function div(a, b)
  if type(a) == 'number' and type(b) == 'number' then
    local q = floor(a / b)
    local r = a - q * b
    if r < 0 then q = q - 1 elseif r >= b then q = q + 1 end
    return q
  end
  a, b = tobig(a), tobig(b)
  local q, r = {}, { 0 }
  for i = #a, 1, -1 do
    table.insert(r, 1, a[i])
    trim(r)
    local d = 0
    if cmpMag(r, b) >= 0 then
      local rv, bv = 0, 0
      for k = #r, 1, -1 do rv = rv * B + r[k] end
      for k = #b, 1, -1 do bv = bv * B + b[k] end
      d = floor(rv / bv)
      if d > B - 1 then d = B - 1 end
      local product = mulMag(b, mag(d))
      while cmpMag(product, r) > 0 do
        d = d - 1
        product = subMag(product, b)
      end
      r = subMag(r, product)
      while cmpMag(r, b) >= 0 do
        d = d + 1
        r = subMag(r, b)
      end
    end
    q[i] = d
  end
  q.neg = false
  return small(q)
end

local function mod(a, b) return sub(a, mul(div(a, b), b)) end

local function parse(s)
  local v = tonumber(s)
  if v < MAXN and v > -MAXN then return v end
  local negative = string.sub(s, 1, 1) == '-'
  local digits = negative and string.sub(s, 2) or s
  local t = { neg = negative }
  local i = #digits
  while i >= 1 do
    local from = i - 6
    if from < 1 then from = 1 end
    t[#t + 1] = tonumber(string.sub(digits, from, i))
    i = from - 1
  end
  return small(t)
end

local function format(n)
  if type(n) == 'number' then return string.format('%.0f', n) end
  local parts = { tostring(n[#n]) }
  for i = #n - 1, 1, -1 do parts[#parts + 1] = string.format('%07d', n[i]) end
  return (n.neg and '-' or '') .. table.concat(parts)
end

-- Absolute times (nanoseconds since the epoch, about 1.7e18) are read as seconds and nanoseconds, and the
-- algorithms work in offsets from now: small numbers, but for the longest windows.
local G = 1000000000
local nowS, nowN

local function floorDiv(a, b)
  if type(a) == 'number' then
    local q = floor(a / b)
    local r = a - q * b
    if r < 0 then q = q - 1 elseif r >= b then q = q + 1 end
    return q
  end
  if not a.neg then return div(a, b) end
  local m = negate(a)
  local q = div(m, b)
  if cmp(mul(q, b), m) ~= 0 then q = add(q, 1) end
  return negate(q)
end

-- A stored absolute time as an offset from now.
local function offset(text)
  local length = #text
  local s, n = 0, tonumber(text)
  if length > 9 then
    s = tonumber(string.sub(text, 1, length - 9))
    n = tonumber(string.sub(text, length - 8))
  end
  local ds, dn = s - nowS, n - nowN
  if ds < 9000000 and ds > -9000000 then return ds * G + dn end
  return add(mul(ds, G), dn)
end

-- An offset from now as the absolute time to store.
local function absolute(off)
  local total = add(off, nowN)
  local carry = floorDiv(total, G)
  local n = sub(total, mul(carry, G))
  return string.format('%.0f%09d', add(nowS, carry), n)
end

-- now mod window, the distance back to the start of the epoch-aligned window that holds now.
local function sinceWindowStart(window)
  if type(window) == 'number' then
    if G % window == 0 then return nowN % window end
    if window % G == 0 then return add(mul(nowS % (window / G), G), nowN) end
  end
  return mod(add(mul(nowS, G), nowN), window)
end

local function positive(n)
  if type(n) == 'number' then return n > 0 end
  return not n.neg
end

-- Milliseconds for a reply's reset: rounded up, 0 for nothing to wait.
local function millis(nanos)
  if not positive(nanos) then return 0 end
  return add(div(sub(nanos, 1), 1000000), 1)
end

local function reply(allowed, remaining, resetNanos)
  if not positive(remaining) then remaining = 0 end
  return { allowed and 1 or 0, remaining, millis(resetNanos) }
end

local function never(remaining)
  if not positive(remaining) then remaining = 0 end
  return { 0, remaining, -1 }
end

-- The start of the epoch-aligned window that holds now, as an offset.
local function windowStart(window) return negate(sinceWindowStart(window)) end

-- Each algorithm: (state or nil, cost, limit, window, burst) -> decision, new state or nil if unchanged;
-- fresh(state, window) -> when the state stops mattering. Times are offsets from now. Mirrors RateLimiting.

local bucket = {}
function bucket.check(s, cost, limit, window, burst)
  local capacity = mul(burst, window)
  local backlog = s and max(s.tat, 0) or 0
  local function remaining(b)
    local left = sub(capacity, mul(b, limit))
    if not positive(left) then return 0 end
    return div(left, window)
  end
  if cost == 0 then return reply(true, remaining(backlog), backlog) end
  if cost > burst then return never(remaining(backlog)) end
  local costTime = mul(cost, window)
  if cmp(add(mul(backlog, limit), costTime), capacity) > 0 then
    local allowedBacklog = div(sub(capacity, costTime), limit)
    return reply(false, remaining(backlog), sub(backlog, allowedBacklog))
  end
  local newBacklog = add(backlog, max(div(costTime, limit), 1))
  return reply(true, remaining(newBacklog), newBacklog), { tat = newBacklog }
end
function bucket.fresh(s) return s.tat end
function bucket.encode(s) return 'B ' .. absolute(s.tat) end
function bucket.decode(words) return { tat = offset(words[2]) } end

local fixed = {}
function fixed.check(s, cost, limit, window, burst)
  local start = windowStart(window)
  if s then start = max(start, s.start) end
  local untilEnd = add(start, window)
  local used = (s and cmp(s.start, start) == 0) and s.used or 0
  if cost == 0 then return reply(true, limit - used, used > 0 and untilEnd or 0) end
  if cost > limit then return never(limit - used) end
  if used + cost > limit then return reply(false, limit - used, untilEnd) end
  return reply(true, limit - used - cost, untilEnd), { start = start, used = used + cost }
end
function fixed.fresh(s, window) return add(s.start, window) end
function fixed.encode(s) return 'F ' .. absolute(s.start) .. ' ' .. format(s.used) end
function fixed.decode(words) return { start = offset(words[2]), used = tonumber(words[3]) } end

local counter = {}
function counter.check(s, cost, limit, window, burst)
  local start = windowStart(window)
  if s then start = max(start, s.start) end
  local c = { start = start, previous = 0, current = 0 }
  if s then
    if cmp(start, s.start) == 0 then
      c.previous, c.current = s.previous, s.current
    elseif cmp(start, add(s.start, window)) == 0 then
      c.previous = s.current
    end
  end
  local elapsed = min(max(negate(start), 0), sub(window, 1))
  local capacity = mul(limit, window)
  local function scaled(x) return add(mul(x.previous, sub(window, elapsed)), mul(x.current, window)) end
  local function remaining(x)
    local left = sub(capacity, scaled(x))
    if not positive(left) then return 0 end
    return div(left, window)
  end
  local function fullIn(x)
    if x.current > 0 then return sub(mul(2, window), elapsed) end
    if x.previous > 0 then return sub(window, elapsed) end
    return 0
  end
  if cost == 0 then return reply(true, remaining(c), fullIn(c)) end
  if cost > limit then return never(remaining(c)) end
  if cmp(add(scaled(c), mul(cost, window)), capacity) > 0 then
    local retry
    if c.current + cost <= limit and c.previous > 0 then
      local fitsAt = sub(window, div(mul(limit - c.current - cost, window), c.previous))
      retry = max(sub(fitsAt, elapsed), 1)
    else
      local fitsAt = 0
      if c.current > 0 then fitsAt = sub(window, div(mul(limit - cost, window), c.current)) end
      retry = add(sub(window, elapsed), max(fitsAt, 0))
    end
    return reply(false, remaining(c), retry)
  end
  c.current = c.current + cost
  return reply(true, remaining(c), fullIn(c)), c
end
function counter.fresh(s, window) return add(s.start, mul(s.current > 0 and 2 or 1, window)) end
function counter.encode(s)
  return 'C ' .. absolute(s.start) .. ' ' .. format(s.previous) .. ' ' .. format(s.current)
end
function counter.decode(words)
  return { start = offset(words[2]), previous = tonumber(words[3]), current = tonumber(words[4]) }
end

local log = {}
function log.check(s, cost, limit, window, burst)
  local entries, used = {}, 0
  if s then
    for _, e in ipairs(s.entries) do
      if positive(add(e.time, window)) then
        entries[#entries + 1] = e
        used = used + e.count
      end
    end
  end
  local function fullAt() return #entries > 0 and add(entries[#entries].time, window) or 0 end
  if cost == 0 then return reply(true, limit - used, fullAt()) end
  if cost > limit then return never(limit - used) end
  if used + cost > limit then
    local allowedAt, still = 0, used
    for _, e in ipairs(entries) do
      still = still - e.count
      if still <= limit - cost then
        allowedAt = add(e.time, window)
        break
      end
    end
    return reply(false, limit - used, allowedAt)
  end
  local newest = entries[#entries]
  local time = newest and max(0, newest.time) or 0
  if newest and cmp(newest.time, time) == 0 then
    newest.count = newest.count + cost
  else
    entries[#entries + 1] = { time = time, count = cost }
  end
  used = used + cost
  return reply(true, limit - used, fullAt()), { entries = entries }
end
function log.fresh(s, window) return add(s.entries[#s.entries].time, window) end
function log.encode(s)
  local parts = { 'L' }
  for _, e in ipairs(s.entries) do
    parts[#parts + 1] = absolute(e.time)
    parts[#parts + 1] = format(e.count)
  end
  return table.concat(parts, ' ')
end
function log.decode(words)
  local entries = {}
  for i = 2, #words - 1, 2 do entries[#entries + 1] = { time = offset(words[i]), count = tonumber(words[i + 1]) } end
  return { entries = entries }
end

local algorithms = { B = bucket, F = fixed, C = counter, L = log }

local function words(key)
  local value = redis.call('GET', key)
  if not value then return nil end
  local list = {}
  for word in string.gmatch(value, '%S+') do list[#list + 1] = word end
  return list
end

local explicit = ARGV[1] ~= ''
if explicit then
  local text = ARGV[1]
  nowS, nowN = tonumber(string.sub(text, 1, #text - 9)) or 0, tonumber(string.sub(text, -9))
else
  local time = redis.call('TIME')
  nowS, nowN = tonumber(time[1]), tonumber(time[2]) * 1000
end
local all = ARGV[2] == 'all'

local items, slots, decisions = {}, {}, {}
for i = 1, #KEYS do
  local base = 2 + (i - 1) * 6
  local item = {
    key = KEYS[i], code = ARGV[base + 1], limit = tonumber(ARGV[base + 2]), window = parse(ARGV[base + 3]),
    burst = tonumber(ARGV[base + 4]), cost = tonumber(ARGV[base + 5]), role = tonumber(ARGV[base + 6]),
  }
  item.algorithm = algorithms[item.code]
  items[i] = item
  local slot = slots[item.key]
  if slot == nil then
    slot = { words = words(item.key) }
    slots[item.key] = slot
  end
  -- The state this item finds: an earlier item's in this batch, else what Redis holds. State of another
  -- algorithm counts as none (the key's limit changed), as locally.
  local state
  if slot.code ~= nil then
    if slot.code == item.code then state = slot.state end
  elseif slot.words and slot.words[1] == item.code then
    state = item.algorithm.decode(slot.words)
  end
  local decision, changed = item.algorithm.check(state, item.cost, item.limit, item.window, item.burst)
  if changed then
    slot.state, slot.code, slot.window, slot.dirty = changed, item.code, item.window, true
  end
  decisions[i] = decision
end

local apply = true
if all then
  local quota, quotaOver = 0, 0
  for i, item in ipairs(items) do
    local over = decisions[i][1] == 0
    if item.role == 1 and over then apply = false end
    if item.role == 2 then
      quota = quota + 1
      if over then quotaOver = quotaOver + 1 end
    end
  end
  if quota > 0 and quotaOver == quota then apply = false end
end

if apply then
  for key, slot in pairs(slots) do
    if slot.dirty then
      local algorithm = algorithms[slot.code]
      local ttl = millis(algorithm.fresh(slot.state, slot.window))
      if explicit then
        redis.call('SET', key, algorithm.encode(slot.state))
      elseif positive(ttl) then
        redis.call('SET', key, algorithm.encode(slot.state), 'PX', format(ttl))
      else
        redis.call('DEL', key)
      end
    end
  end
else
  -- Nothing is consumed: an item that would have been allowed is answered as a peek of the stored state.
  for i, item in ipairs(items) do
    if decisions[i][1] == 1 then
      local list = slots[item.key].words
      local stored = (list and list[1] == item.code) and item.algorithm.decode(list) or nil
      decisions[i] = item.algorithm.check(stored, 0, item.limit, item.window, item.burst)
    end
  end
end

local out = {}
for i = 1, #decisions do
  local d = decisions[i]
  out[#out + 1] = d[1]
  out[#out + 1] = type(d[2]) == 'number' and d[2] or format(d[2])
  out[#out + 1] = type(d[3]) == 'number' and d[3] or format(d[3])
end
if all then out[#out + 1] = apply and 1 or 0 end
return out
"""#
}
