-- ratelimitd client for nginx's Lua module (Debian: libnginx-mod-http-lua; OpenResty).
--
--   lua_package_path "/usr/local/share/ratelimitd/nginx/?.lua;;";
--   access_by_lua_block {
--     require("ratelimitd").enforce{ key = "ip:" .. ngx.var.remote_addr }
--   }
--
-- enforce(opts): ALLOW sets RateLimit-Remaining and RateLimit-Reset (seconds) on the response and goes
-- on; DENY ends the request with 429 and Retry-After (seconds, rounded up; none when the cost can never
-- fit). When the daemon cannot answer (unreachable, slower than timeout_ms, an ERR reply) the request goes
-- on if fail_open (the default), else ends with 503; either way it is logged, at most once a second per
-- worker.
--
-- check(opts) returns verdict ("ALLOW" or "DENY"), remaining, reset_ms; or nil and the reason.
--
-- opts: key (required: 1 to 256 bytes of printable ASCII without spaces), cost (default 1), host
-- (default "127.0.0.1", or "unix:/path/to/socket"), port (default 7283), timeout_ms (default 20: the
-- whole exchange, connecting included), fail_open (default true), token (the daemon's auth token, sent once
-- per connection), pool_size (default 32), keepalive_ms (default 60000; keep it below the daemon's
-- idle_timeout).
--
-- Connections are pooled per worker: a request takes one from the pool, or opens one, and gives it back.

local _M = { _VERSION = "1.0.0" }

local ngx = ngx
local floor = math.floor

-- Module state is per worker: each worker has its own Lua VM.
local last_logged = 0

local function log_throttled(message)
    local now = ngx.now()
    if now - last_logged >= 1 then
        last_logged = now
        ngx.log(ngx.ERR, "ratelimitd: ", message)
    end
end

-- Keys go into a line of the protocol: a space or a newline would let a client's header write its own
-- request (a limit of its choosing), so anything but printable ASCII is refused here.
local function valid_key(key)
    return type(key) == "string" and #key >= 1 and #key <= 256 and not key:find("[^\33-\126]")
end

local function valid_cost(cost)
    return cost ~= nil and cost >= 0 and cost <= 1e9 and cost == floor(cost)
end

local function now_ms()
    ngx.update_time()
    return ngx.now() * 1000
end

-- One exchange on sock within deadline: AUTH first on a new connection when there is a token, then CHECK.
local function exchange(sock, opts, line, deadline)
    local function left()
        local ms = floor(deadline - now_ms())
        if ms < 1 then return nil end
        return ms
    end
    if opts.token and sock:getreusedtimes() == 0 then
        line = "AUTH " .. opts.token .. "\n" .. line
    end
    local ms = left()
    if not ms then return nil, "timeout" end
    sock:settimeouts(ms, ms, ms)
    local sent, err = sock:send(line)
    if not sent then return nil, err end
    if opts.token and sock:getreusedtimes() == 0 then
        local reply, rerr = sock:receive("*l")
        if not reply then return nil, rerr end
        if reply ~= "OK" then return nil, "AUTH refused: " .. reply end
    end
    ms = left()
    if not ms then return nil, "timeout" end
    sock:settimeouts(ms, ms, ms)
    return sock:receive("*l")
end

function _M.check(opts)
    -- A cost may come from a variable (ngx.var.x is a string).
    local key, cost = opts.key, tonumber(opts.cost or 1)
    if not valid_key(key) then
        return nil, "bad key: keys are 1 to 256 bytes of printable ASCII without spaces"
    end
    if not valid_cost(cost) then
        return nil, "bad cost: an integer from 0 to 1000000000"
    end
    if opts.token ~= nil and (type(opts.token) ~= "string" or opts.token == "" or opts.token:find("[^\33-\126]")) then
        return nil, "bad token: printable ASCII without spaces"
    end
    local timeout = opts.timeout_ms or 20
    local deadline = now_ms() + timeout
    local host, port = opts.host or "127.0.0.1", opts.port or 7283
    local address = host:sub(1, 5) == "unix:" and host or (host .. ":" .. port)
    -- Connections authenticated with one token are never handed to a call with another (or none).
    local pool = opts.token and (address .. "#" .. ngx.crc32_long(opts.token)) or address
    local line = "CHECK " .. key .. " " .. string.format("%d", cost) .. "\n"

    local sock = ngx.socket.tcp()
    sock:settimeouts(timeout, timeout, timeout)
    local ok, err
    if host:sub(1, 5) == "unix:" then
        ok, err = sock:connect(host, { pool = pool, pool_size = opts.pool_size or 32 })
    else
        ok, err = sock:connect(host, port, { pool = pool, pool_size = opts.pool_size or 32 })
    end
    if not ok then return nil, "cannot connect to " .. address .. ": " .. err end

    -- nginx drops a pooled connection as soon as the daemon closes it (a restart, its idle_timeout), so
    -- one taken from the pool was open a moment ago.
    local reply
    reply, err = exchange(sock, opts, line, deadline)
    if not reply then
        sock:close()
        return nil, "no answer from " .. address .. ": " .. err
    end

    local verdict, remaining, reset = reply:match("^(%u+) (%d+) (%-?%d+)$")
    if verdict ~= "ALLOW" and verdict ~= "DENY" then
        sock:close()
        return nil, address .. " answered: " .. reply
    end
    sock:setkeepalive(opts.keepalive_ms or 60000, opts.pool_size or 32)
    return verdict, tonumber(remaining), tonumber(reset)
end

local function seconds(ms)
    return math.ceil(ms / 1000)
end

function _M.enforce(opts)
    local verdict, remaining, reset = _M.check(opts)
    if verdict == "ALLOW" then
        ngx.header["RateLimit-Remaining"] = remaining
        ngx.header["RateLimit-Reset"] = seconds(reset)
        return verdict
    elseif verdict == "DENY" then
        ngx.header["RateLimit-Remaining"] = remaining
        -- reset_ms is -1 when the cost can never fit: no time to tell.
        if reset >= 0 then
            ngx.header["RateLimit-Reset"] = seconds(reset)
            ngx.header["Retry-After"] = seconds(reset)
        end
        return ngx.exit(429)
    end
    log_throttled(remaining)
    if opts.fail_open == false then
        return ngx.exit(503)
    end
    return nil, remaining
end

return _M
