-- ratelimitd client for HAProxy (2.2 or later, built with Lua: Debian's is), registering the action
-- lua.ratelimitd:
--
--   global
--     setenv RATELIMITD_ADDR 127.0.0.1:7283
--     lua-load /usr/local/share/ratelimitd/haproxy/ratelimitd.lua
--   frontend fe
--     http-request set-var(txn.ratelimitd_key) src
--     http-request lua.ratelimitd
--     http-request deny deny_status 429 hdr Retry-After %[var(txn.ratelimitd_retry_after)] if { var(txn.ratelimitd_verdict) -m str DENY }
--
-- The action reads txn.ratelimitd_key (required; a key is 1 to 256 bytes of printable ASCII without
-- spaces; prefix it in set-var, e.g. concat) and, if set, txn.ratelimitd_cost (default 1). It sets
-- txn.ratelimitd_verdict to ALLOW, DENY or ERROR, txn.ratelimitd_remaining, and txn.ratelimitd_retry_after
-- (seconds, rounded up; on DENY, unless the cost can never fit) and txn.ratelimitd_reset (seconds). It
-- never fails the request: on ERROR (daemon unreachable, slower than the timeout, an ERR reply) the
-- configuration decides, and the reason is logged at most once a second.
--
-- Environment (setenv in the global section, before lua-load): RATELIMITD_ADDR (host:port, or a unix
-- socket path; default 127.0.0.1:7283), RATELIMITD_TIMEOUT_MS (the whole exchange; default 20),
-- RATELIMITD_TOKEN (the daemon's auth token, if it has one).
--
-- Each check opens its own connection: HAProxy's Lua sockets belong to the thread that made them, and a
-- socket's timeout also closes it when idle, so a pool would need care this module does not take.

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

-- One exchange: the reply line to CHECK, or nil and why.
local function ask(line)
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
        return nil, "cannot connect to " .. address
    end
    if token then line = "AUTH " .. token .. "\n" .. line end
    local sent = socket:send(line)
    if not sent or sent < #line then
        socket:close()
        return nil, "cannot send to " .. address
    end
    if token then
        local reply = socket:receive("*l")
        if reply ~= "OK" then
            socket:close()
            return nil, "AUTH refused by " .. address .. ": " .. tostring(reply)
        end
    end
    local reply = socket:receive("*l")
    socket:close()
    if not reply then
        return nil, "no answer from " .. address .. " within " .. timeout_ms .. " ms"
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
    local reply, err = ask(string.format("CHECK %s %d\n", key, cost))
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
