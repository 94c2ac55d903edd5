import RateLimiting

/// The Lua script that decides in Redis for shared mode: every algorithm with the local arithmetic, to the
/// nanosecond, whatever the values (see its header). Loaded with `SCRIPT LOAD`, called with `EVALSHA`.
/// Kept as Swift source so the installed binary needs no file beside it.
public enum DecisionScript {
    /// gcd(limit, window) for the bucket algorithms, which the script takes with each item: only the ratio
    /// of the two matters to them, and reduced it keeps the script's products small.
    /// The script's name for an algorithm: both buckets are the same mathematics.
    public static func code(_ algorithm: Algorithm) -> String {
        switch algorithm {
        case .tokenBucket, .leakyBucket: "B"
        case .fixedWindow: "F"
        case .slidingWindowCounter: "C"
        case .slidingWindowLog: "L"
        }
    }

    public static func reduction(_ limit: Limit) -> Int64 {
        guard limit.algorithm.usesBurst else { return 1 }
        var (a, b) = (limit.limit, limit.windowNanos)
        while b != 0 { (a, b) = (b, a % b) }
        return a
    }

    public static let source = #"""
-- ratelimitd shared mode: decides CHECKs inside Redis, atomically, with the local algorithms' arithmetic.
--
-- KEYS: the state keys (one per item; a key may repeat: later items see earlier ones' effect).
-- ARGV[1]: now, in nanoseconds since the Unix epoch as a decimal string; "" to read Redis's clock (TIME),
--          as the daemon always does. Keys expire by Redis's clock, so with an explicit time (tests) states
--          are stored without expiry.
-- ARGV[2]: "each" (every item decided on its own) or "all" (applied only if the items that may deny are
--          all allowed, and when some quota-role items exist, not all of them are denied; otherwise nothing
--          is consumed and allowed items are answered as peeks), or "none" (as "all" when it does not
--          apply: tried, nothing consumed).
-- ARGV[3]: how many limits follow; then per limit: algorithm (B bucket, F fixed window, C sliding counter,
--          L sliding log), limit, window ns, burst, gcd(limit, window) for buckets (1 otherwise).
-- Then per item (key): its limit's number (from 1), cost, role (0 shadow: never denies the batch, 1 denies
--          it, 2 quota). Items of one limit share its arguments, which keeps a batch's arguments short.
-- Returns: per item allowed (1/0), remaining, reset ms (-1: never); then, in "all" and "none" modes,
--          applied (1/0).
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
-- floor(a / b) for numbers, integers below 2^53 in size, b > 0: exact (the quotient's rounding is
-- corrected).
local function fdiv(a, b)
  local q = floor(a / b)
  local rem = a - q * b
  if rem < 0 then return q - 1 elseif rem >= b then return q + 1 end
  return q
end

local function div(a, b)
  if type(a) == 'number' and type(b) == 'number' then return fdiv(a, b) end
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
  -- %d: Lua 5.1 formats through a C long, exact for every number below 2^53, and cheaper than %.0f.
  if type(n) == 'number' then return string.format('%d', n) end
  local parts = { tostring(n[#n]) }
  for i = #n - 1, 1, -1 do parts[#parts + 1] = string.format('%07d', n[i]) end
  return (n.neg and '-' or '') .. table.concat(parts)
end

-- Absolute times (nanoseconds since the epoch, about 1.7e18) are read as seconds and nanoseconds, and the
-- algorithms work in offsets from now: small numbers, but for the longest windows.
local G = 1000000000
local nowS, nowN

local function floorDiv(a, b)
  if type(a) == 'number' then return fdiv(a, b) end
  if not a.neg then return div(a, b) end
  local m = negate(a)
  local q = div(m, b)
  if cmp(mul(q, b), m) ~= 0 then q = add(q, 1) end
  return negate(q)
end

-- A stored absolute time as an offset from now.
local function offset(text)
  local length = #text
  local s, n
  if length > 9 then
    s = tonumber(string.sub(text, 1, length - 9))
    n = tonumber(string.sub(text, length - 8))
  else
    s, n = 0, tonumber(text)
  end
  local ds, dn = s - nowS, n - nowN
  if ds < 9000000 and ds > -9000000 then return ds * G + dn end
  return add(mul(ds, G), dn)
end

-- An offset from now as the absolute time to store.
local function absolute(off)
  if type(off) == 'number' and off < 9e15 and off > -9e15 then
    local total = off + nowN
    local carry = floor(total / G)
    local n = total - carry * G
    if n < 0 then carry, n = carry - 1, n + G elseif n >= G then carry, n = carry + 1, n - G end
    return string.format('%d%09d', nowS + carry, n)
  end
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

-- a*b/c and a*b <=> c*d, exact: computed in doubles, and again with big integers only when the doubles'
-- rounding could matter (a product at or past 2^53 whose quotient lies within rounding of an integer, or
-- two products within rounding of each other).
local function mulDivFloor(a, b, c)
  if type(a) == 'number' and type(b) == 'number' and type(c) == 'number' then
    local p = a * b
    if p < MAXN and p > -MAXN then return div(p, c) end
    local q = p / c
    if q > 0 and q < 1e15 then
      local f = floor(q)
      local margin = q * 1e-15 + 1e-9
      local frac = q - f
      if frac > margin and frac < 1 - margin then return f end
    end
  end
  return div(mul(a, b), c)
end

local function mulDivCeil(a, b, c)
  if type(a) == 'number' and type(b) == 'number' and type(c) == 'number' then
    local p = a * b
    if p < MAXN and p > -MAXN then
      local q = div(p, c)
      return q * c == p and q or q + 1
    end
    local q = p / c
    if q > 0 and q < 1e15 then
      local f = floor(q)
      local margin = q * 1e-15 + 1e-9
      local frac = q - f
      if frac > margin and frac < 1 - margin then return f + 1 end
    end
  end
  local p = mul(a, b)
  local q = div(p, c)
  return cmp(mul(q, c), p) == 0 and q or add(q, 1)
end

local function mulCmp(a, b, c, d)
  if type(a) == 'number' and type(b) == 'number' and type(c) == 'number' and type(d) == 'number' then
    local x, y = a * b, c * d
    if x < MAXN and x > -MAXN and y < MAXN and y > -MAXN then
      return x < y and -1 or (x > y and 1 or 0)
    end
    local margin = (math.abs(x) + math.abs(y)) * 1e-15
    if x - y > margin then return 1 elseif y - x > margin then return -1 end
  end
  return cmp(mul(a, b), mul(c, d))
end

-- Milliseconds for a reply's reset: rounded up, 0 for nothing to wait.
local function millis(nanos)
  if type(nanos) == 'number' then
    if nanos <= 0 then return 0 end
    return fdiv(nanos - 1, 1000000) + 1
  end
  if nanos.neg then return 0 end
  return add(div(sub(nanos, 1), 1000000), 1)
end

-- The start of the epoch-aligned window that holds now, as an offset.
local function windowStart(window) return negate(sinceWindowStart(window)) end

-- Each algorithm: check(state or nil, cost, limit, window, burst, g) -> allowed, remaining, reset ns (false:
-- never), new state or nil if unchanged; fresh(state, window) -> when the state stops mattering;
-- encode(state) and decode(stored text). Times are offsets from now. Mirrors RateLimiting.
-- g is gcd(limit, window) for buckets (1 otherwise): only their ratio matters, and reduced it keeps
-- products small.

local bucket = {}
-- Units left with `backlog` queued: burst - ceil(backlog * limit / window).
local function bucketRemaining(backlog, burst, r, w)
  if backlog == 0 then return burst end
  -- Past the burst only when the backlog is another limit's (the key's rate changed): nothing left.
  local queued = mulDivCeil(backlog, r, w)
  if type(queued) ~= 'number' or queued >= burst then return 0 end
  return burst - queued
end
-- bucketRemaining when every product is below 2^53 (see bucket.check).
local function fastRemaining(backlog, burst, r, w)
  if backlog == 0 then return burst end
  local p = backlog * r
  local queued = fdiv(p, w)
  if queued * w ~= p then queued = queued + 1 end
  if queued >= burst then return 0 end
  return burst - queued
end
function bucket.check(s, cost, L)
  local burst, r, w = L.burst, L.r, L.w
  local backlog = 0
  if s and positive(s) then backlog = s end
  -- A backlog left by another limit, past what this one can owe, counts as an empty bucket, and a request
  -- that spends (not a peek) keeps it so.
  local cut = false
  if mulCmp(backlog, r, burst, w) > 0 then
    backlog = mulDivFloor(burst, w, r)
    cut = backlog
  end
  -- The common case, in doubles: with backlog * r below L.span, every product here (and the new backlog
  -- times r) stays below 2^53, so the arithmetic is exact without the general helpers' checks.
  local span = L.span
  if span and type(backlog) == 'number' and backlog * r < span then
    if cost == 0 then return true, fastRemaining(backlog, burst, r, w), backlog end
    if cost > burst then return false, fastRemaining(backlog, burst, r, w), false, cut end
    if backlog * r > (burst - cost) * w then
      return false, fastRemaining(backlog, burst, r, w), backlog - fdiv((burst - cost) * w, r), cut
    end
    local step = fdiv(cost * w, r)
    if step < 1 then step = 1 end
    local newBacklog = backlog + step
    return true, fastRemaining(newBacklog, burst, r, w), newBacklog, newBacklog
  end
  if cost == 0 then return true, bucketRemaining(backlog, burst, r, w), backlog end
  if cost > burst then return false, bucketRemaining(backlog, burst, r, w), false, cut end
  if mulCmp(backlog, r, burst - cost, w) > 0 then
    return false, bucketRemaining(backlog, burst, r, w), sub(backlog, mulDivFloor(burst - cost, w, r)), cut
  end
  local newBacklog = add(backlog, max(mulDivFloor(cost, w, r), 1))
  return true, bucketRemaining(newBacklog, burst, r, w), newBacklog, newBacklog
end
function bucket.fresh(s) return s end
function bucket.encode(s) return 'B ' .. absolute(s) end
function bucket.decode(text) return offset(string.sub(text, 3)) end

local fixed = {}
function fixed.check(s, cost, L)
  local limit, window = L.limit, L.window
  local start = windowStart(window)
  if s then start = max(start, s[1]) end
  local untilEnd = add(start, window)
  local used = (s and cmp(s[1], start) == 0) and s[2] or 0
  -- A count left by a larger limit is at most a full window here.
  if used > limit then used = limit end
  if cost == 0 then return true, limit - used, used > 0 and untilEnd or 0 end
  if cost > limit then return false, limit - used, false end
  if used + cost > limit then return false, limit - used, untilEnd end
  return true, limit - used - cost, untilEnd, { start, used + cost }
end
function fixed.fresh(s, window) return add(s[1], window) end
function fixed.encode(s) return 'F ' .. absolute(s[1]) .. ' ' .. s[2] end
function fixed.decode(text)
  local space = string.find(text, ' ', 3, true)
  return { offset(string.sub(text, 3, space - 1)), tonumber(string.sub(text, space + 1)) }
end

local counter = {}
-- Units left: limit - current - ceil(previous * (window - elapsed) / window).
local function counterRemaining(previous, current, limit, window, elapsed)
  if previous == 0 then return limit - current end
  return limit - current - mulDivCeil(previous, sub(window, elapsed), window)
end
function counter.check(s, cost, L)
  local limit, window = L.limit, L.window
  local start = windowStart(window)
  if s then start = max(start, s[1]) end
  local previous, current = 0, 0
  if s then
    if cmp(start, s[1]) == 0 then
      previous, current = s[2], s[3]
    elseif cmp(start, add(s[1], window)) == 0 then
      previous = s[3]
    end
  end
  -- Counts left by a larger limit are at most a full window here.
  if previous > limit then previous = limit end
  if current > limit then current = limit end
  local elapsed = min(max(negate(start), 0), sub(window, 1))
  local function fullIn(c)
    if c > 0 then return sub(mul(2, window), elapsed) end
    if previous > 0 then return sub(window, elapsed) end
    return 0
  end
  if cost == 0 then
    return true, counterRemaining(previous, current, limit, window, elapsed), fullIn(current)
  end
  if cost > limit then return false, counterRemaining(previous, current, limit, window, elapsed), false end
  -- previous * (window - elapsed) + (current + cost) * window > limit * window
  if limit - current - cost < 0 or mulCmp(previous, sub(window, elapsed), limit - current - cost, window) > 0 then
    local retry
    if current + cost <= limit and previous > 0 then
      local fitsAt = sub(window, mulDivFloor(limit - current - cost, window, previous))
      retry = max(sub(fitsAt, elapsed), 1)
    else
      local fitsAt = 0
      if current > 0 then fitsAt = sub(window, mulDivFloor(limit - cost, window, current)) end
      retry = add(sub(window, elapsed), max(fitsAt, 0))
    end
    return false, counterRemaining(previous, current, limit, window, elapsed), retry
  end
  current = current + cost
  return true, counterRemaining(previous, current, limit, window, elapsed), fullIn(current), { start, previous, current }
end
function counter.fresh(s, window) return add(s[1], mul(s[3] > 0 and 2 or 1, window)) end
function counter.encode(s) return 'C ' .. absolute(s[1]) .. ' ' .. s[2] .. ' ' .. s[3] end
function counter.decode(text)
  local a = string.find(text, ' ', 3, true)
  local b = string.find(text, ' ', a + 1, true)
  return { offset(string.sub(text, 3, a - 1)), tonumber(string.sub(text, a + 1, b - 1)), tonumber(string.sub(text, b + 1)) }
end

local log = {}
function log.check(s, cost, L)
  local limit, window = L.limit, L.window
  local entries, used = {}, 0
  if s then
    for _, e in ipairs(s) do
      if positive(add(e[1], window)) then
        entries[#entries + 1] = e
        used = used + e[2]
      end
    end
  end
  local function fullAt() return #entries > 0 and add(entries[#entries][1], window) or 0 end
  if cost == 0 then return true, limit - used, fullAt() end
  if cost > limit then return false, limit - used, false end
  if used + cost > limit then
    local allowedAt, still = 0, used
    for _, e in ipairs(entries) do
      still = still - e[2]
      if still <= limit - cost then
        allowedAt = add(e[1], window)
        break
      end
    end
    return false, limit - used, allowedAt
  end
  local newest = entries[#entries]
  local time = newest and max(0, newest[1]) or 0
  if newest and cmp(newest[1], time) == 0 then
    entries[#entries] = { time, newest[2] + cost }
  else
    entries[#entries + 1] = { time, cost }
  end
  return true, limit - used - cost, fullAt(), entries
end
function log.fresh(s, window) return add(s[#s][1], window) end
function log.encode(s)
  local parts = { 'L' }
  for _, e in ipairs(s) do
    parts[#parts + 1] = absolute(e[1])
    parts[#parts + 1] = e[2]
  end
  return table.concat(parts, ' ')
end
function log.decode(text)
  local entries, time = {}, nil
  for word in string.gmatch(string.sub(text, 3), '%S+') do
    if time == nil then
      time = offset(word)
    else
      entries[#entries + 1] = { time, tonumber(word) }
      time = nil
    end
  end
  return entries
end

local algorithms = { B = bucket, F = fixed, C = counter, L = log }

local explicit = ARGV[1] ~= ''
if explicit then
  local text = ARGV[1]
  nowS, nowN = tonumber(string.sub(text, 1, #text - 9)) or 0, tonumber(string.sub(text, -9))
else
  -- Before Redis 5, a script that reads the clock may write only with effects replication on (Redis 7 has
  -- REDIS_VERSION_NUM and needs nothing).
  if not redis.REDIS_VERSION_NUM then redis.replicate_commands() end
  local time = redis.call('TIME')
  nowS, nowN = tonumber(time[1]), tonumber(time[2]) * 1000
end
local all = ARGV[2] == 'all' or ARGV[2] == 'none'

local limits = {}
local limitCount = tonumber(ARGV[3])
for j = 1, limitCount do
  local base = 3 + (j - 1) * 5
  local code = ARGV[base + 1]
  local L = {
    code = code, algorithm = algorithms[code], limit = tonumber(ARGV[base + 2]), window = parse(ARGV[base + 3]),
    burst = tonumber(ARGV[base + 4]),
  }
  local g = tonumber(ARGV[base + 5])
  L.r = L.limit / g
  L.w = type(L.window) == 'number' and L.window / g or div(L.window, g)
  -- Room for a bucket's backlog * r below 2^53 once burst * w and r are added (nil: no fast path).
  if L.code == 'B' and type(L.w) == 'number' and L.burst * L.w + L.r < MAXN then
    L.span = MAXN - L.burst * L.w - L.r
  end
  limits[j] = L
  -- Also by the text items name it with, so an item's limit is found without converting its number.
  limits[tostring(j)] = L
end
local itemBase = 3 + limitCount * 5

-- Per key: what Redis holds (text), and the state an earlier item of this batch left (its limit and state,
-- and the keys so changed, in order).
local stored, currentL, currentS, changedKeys = {}, {}, {}, {}
-- Costs by their text: a batch repeats a few costs many times.
local costs = {}
local allowedList, remainingList, resetList = {}, {}, {}
local n = #KEYS
-- MGET for the batch, in slices unpack can take: a call into Redis costs more than the bytes it reads.
local values = {}
for first = 1, n, 1000 do
  local slice = redis.call('MGET', unpack(KEYS, first, math.min(first + 999, n)))
  for k = 1, #slice do values[first + k - 1] = slice[k] end
end
for i = 1, n do
  local base = itemBase + (i - 1) * 3
  local key, L = KEYS[i], limits[ARGV[base + 1]]
  local code = L.code
  local text = stored[key]
  if text == nil then
    text = values[i] or false
    stored[key] = text
  end
  -- The state this item finds: an earlier item's in this batch, else what Redis holds. State of another
  -- algorithm counts as none (the key's limit changed), as locally.
  local state
  local earlier = currentL[key]
  if earlier then
    if earlier.code == code then state = currentS[key] end
  elseif text and string.byte(text, 1) == string.byte(code, 1) then
    state = L.algorithm.decode(text)
  end
  local costText = ARGV[base + 2]
  local cost = costs[costText]
  if not cost then
    cost = tonumber(costText)
    costs[costText] = cost
  end
  local allowed, remaining, reset, changed = L.algorithm.check(state, cost, L)
  if changed then
    if not earlier then changedKeys[#changedKeys + 1] = key end
    currentL[key], currentS[key] = L, changed
  end
  allowedList[i], remainingList[i], resetList[i] = allowed, remaining, reset
end

local apply = ARGV[2] ~= 'none'
if all then
  local quota, quotaOver = 0, 0
  for i = 1, n do
    local role = ARGV[itemBase + (i - 1) * 3 + 3]
    local over = not allowedList[i]
    if role == '1' and over then apply = false end
    if role == '2' then
      quota = quota + 1
      if over then quotaOver = quotaOver + 1 end
    end
  end
  if quota > 0 and quotaOver == quota then apply = false end
end

if apply then
  for k = 1, #changedKeys do
    local key = changedKeys[k]
    local L, state = currentL[key], currentS[key]
    local algorithm = L.algorithm
    local ttl = millis(algorithm.fresh(state, L.window))
    if explicit then
      redis.call('SET', key, algorithm.encode(state))
    elseif positive(ttl) then
      -- A number below 1e14 goes to Redis as its digits (Lua's %.14g), with no format call.
      redis.call('PSETEX', key, (type(ttl) == 'number' and ttl < 1e14) and ttl or format(ttl), algorithm.encode(state))
    else
      redis.call('DEL', key)
    end
  end
else
  -- Nothing is consumed: an item that would have been allowed is answered as a peek of the stored state.
  for i = 1, n do
    if allowedList[i] then
      local L = limits[ARGV[itemBase + (i - 1) * 3 + 1]]
      local text = stored[KEYS[i]]
      local state = (text and string.byte(text, 1) == string.byte(L.code, 1)) and L.algorithm.decode(text) or nil
      allowedList[i], remainingList[i], resetList[i] = L.algorithm.check(state, 0, L)
    end
  end
end

local out = {}
for i = 1, n do
  local remaining, reset = remainingList[i], resetList[i]
  if not positive(remaining) then remaining = 0 end
  local at = i * 3
  out[at - 2] = allowedList[i] and 1 or 0
  out[at - 1] = type(remaining) == 'number' and remaining or format(remaining)
  if reset == false then
    out[at] = -1
  else
    local ms = millis(reset)
    out[at] = type(ms) == 'number' and ms or format(ms)
  end
end
if all then out[n * 3 + 1] = apply and 1 or 0 end
return out
"""#
}
