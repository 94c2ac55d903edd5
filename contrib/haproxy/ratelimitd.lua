-- ratelimitd client for HAProxy (2.2 or later, built with Lua: Debian's is), registering the action
-- lua.ratelimitd:
--
--   global
--     setenv RATELIMITD_ADDR 127.0.0.1:7283
--     lua-load /usr/local/share/ratelimitd/haproxy/ratelimitd.lua
--   frontend fe
--     http-request set-var-fmt(txn.ratelimitd_key) ip:%[src]
--     http-request lua.ratelimitd
--     http-request deny deny_status 429 hdr Retry-After %[var(txn.ratelimitd_retry_after)] if { var(txn.ratelimitd_verdict) -m str DENY }
--
-- The action reads txn.ratelimitd_key (required; a key is 1 to 256 bytes of printable ASCII without
-- spaces) and, if set, txn.ratelimitd_cost (default 1). It sets
-- txn.ratelimitd_verdict to ALLOW, DENY or ERROR, txn.ratelimitd_remaining, and txn.ratelimitd_retry_after
-- (seconds, rounded up; on DENY, unless the cost can never fit) and txn.ratelimitd_reset (seconds). It
-- never fails the request: on ERROR (daemon unreachable, slower than the timeout, an ERR reply) the
-- configuration decides, and the reason is logged at most once a second.
--
-- Environment (setenv in the global section, before lua-load): RATELIMITD_ADDR (host:port, or a unix
-- socket path; default 127.0.0.1:7283), RATELIMITD_TIMEOUT_MS (each step: connecting, each reply;
-- default 20),
-- RATELIMITD_TOKEN (the daemon's auth token, if it has one).
--
-- Connections are pooled per HAProxy thread (a Lua socket may only be used on the thread that made it):
-- a check takes one from its thread's pool, or opens one, and gives it back.

local address = os.getenv("RATELIMITD_ADDR") or "127.0.0.1:7283"
local timeout_ms = tonumber(os.getenv("RATELIMITD_TIMEOUT_MS") or "20")
local token = os.getenv("RATELIMITD_TOKEN")

if not timeout_ms or timeout_ms <= 0 then
    error("ratelimitd: RATELIMITD_TIMEOUT_MS must be a positive number of milliseconds")
end
if token and token:find("[^\33-\126]") then
    error("ratelimitd: RATELIMITD_TOKEN must be printable ASCII without spaces")
end

local host, port
if address:sub(1, 1) == "/" or address:sub(1, 5) == "unix@" then
    host = address
else
    host, port = address:match("^(.+):(%d+)$")
    if not host then
        error("ratelimitd: RATELIMITD_ADDR must be host:port or a unix socket path, got " .. address)
    end
    host = host:gsub("^%[(.*)%]$", "%1")
    port = tonumber(port)
end

local last_logged = 0

local function log_throttled(message)
    local now = core.now().sec
    if now ~= last_logged then
        last_logged = now
        core.Warning("ratelimitd: " .. message)
    end
end

local function seconds(ms)
    return math.ceil(ms / 1000)
end

-- Idle connections kept per thread, and how long one may stay idle (HAProxy closes a socket idle past its
-- timeout; keep it below the daemon's idle_timeout, 300 s by default).
local POOL_SIZE = 32
local IDLE_SECONDS = 60
local pools = {}

local function connect()
    local socket = core.tcp()
    socket:settimeout(timeout_ms / 1000)
    local ok
    if port then
        ok = socket:connect(host, port)
    else
        ok = socket:connect(host)
    end
    if not ok then
        socket:close()
        return nil
    end
    return socket
end

-- Sends `line` (AUTH first on a fresh connection when there is a token) and reads the reply to CHECK.
local function exchange(socket, line, fresh)
    if token and fresh then line = "AUTH " .. token .. "\n" .. line end
    local sent = socket:send(line)
    if not sent or sent < #line then return nil, "cannot send to " .. address end
    if token and fresh then
        local reply = socket:receive("*l")
        if not reply then return nil, "no answer to AUTH from " .. address .. " within " .. timeout_ms .. " ms" end
        if reply ~= "OK" then return nil, "AUTH refused by " .. address .. ": " .. reply end
    end
    local reply = socket:receive("*l")
    if not reply then return nil, "no answer from " .. address .. " within " .. timeout_ms .. " ms" end
    return reply
end

-- One check on `thread`: the reply line to CHECK, or nil and why.
local function now_ms()
    local now = core.now()
    return now.sec * 1000 + now.usec / 1000
end

local function ask(thread, line)
    local pool = pools[thread]
    if not pool then
        pool = {}
        pools[thread] = pool
    end
    local socket = table.remove(pool)
    local reply, err
    if socket then
        socket:settimeout(timeout_ms / 1000)
        local started = now_ms()
        reply, err = exchange(socket, line, false)
        if not reply then
            socket:close()
            -- Failing sooner than the timeout, the pooled connection was closed while it waited (a daemon
            -- restart, its idle_timeout): the check is asked once more on a fresh one. A daemon that was
            -- merely slow is not asked twice.
            -- (Half the timeout: HAProxy times in its own ticks, so a real timeout may measure a little short.)
            if now_ms() - started >= timeout_ms / 2 then return nil, err end
            socket = nil
        end
    end
    if not socket then
        socket = connect()
        if not socket then return nil, "cannot connect to " .. address end
        reply, err = exchange(socket, line, true)
        if not reply then
            socket:close()
            return nil, err
        end
    end
    if #pool < POOL_SIZE and (reply:sub(1, 6) == "ALLOW " or reply:sub(1, 5) == "DENY ") then
        socket:settimeout(IDLE_SECONDS)
        pool[#pool + 1] = socket
    else
        socket:close()
    end
    return reply
end

local function fail(txn, reason)
    txn:set_var("txn.ratelimitd_verdict", "ERROR")
    log_throttled(reason)
end

core.register_action("ratelimitd", { "http-req" }, function(txn)
    local key = txn:get_var("txn.ratelimitd_key")
    if key ~= nil then key = tostring(key) end
    -- A space or a newline in a key would let a client's header write its own request.
    if not key or #key < 1 or #key > 256 or key:find("[^\33-\126]") then
        return fail(txn, "txn.ratelimitd_key is missing or not a key (1 to 256 bytes of printable ASCII without spaces)")
    end
    local cost = txn:get_var("txn.ratelimitd_cost")
    if cost == nil then
        cost = 1
    else
        cost = tonumber(cost)
        if not cost or cost < 0 or cost > 1e9 or cost ~= math.floor(cost) then
            return fail(txn, "txn.ratelimitd_cost is not an integer from 0 to 1000000000")
        end
    end
    local reply, err = ask(txn.f:thread(), string.format("CHECK %s %d\n", key, cost))
    if not reply then return fail(txn, err) end
    local verdict, remaining, reset = reply:match("^(%u+) (%d+) (%-?%d+)$")
    if verdict ~= "ALLOW" and verdict ~= "DENY" then
        return fail(txn, address .. " answered: " .. reply)
    end
    reset = tonumber(reset)
    txn:set_var("txn.ratelimitd_verdict", verdict)
    txn:set_var("txn.ratelimitd_remaining", tonumber(remaining))
    if reset >= 0 then
        txn:set_var("txn.ratelimitd_reset", seconds(reset))
        if verdict == "DENY" then txn:set_var("txn.ratelimitd_retry_after", seconds(reset)) end
    end
end)
