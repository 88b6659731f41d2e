--- tlsrekey_compat: tlsrekey connections that behave like LuaSocket / LuaSec objects.
--
-- Code written for LuaSec switches with one line:
--
--   local ssl = require "tlsrekey_compat"       -- was: require "ssl"
--   local conn = ssl.wrap(sock, { mode = "client", protocol = "any",
--                                 cafile = "ca.pem", verify = "peer" })
--   conn:sni("example.org")
--   assert(conn:dohandshake())
--   conn:send("GET / HTTP/1.0\r\n\r\n")
--   local line, err, partial = conn:receive("*l")
--
-- and then has key_update, renegotiate, stats and the rest of a tlsrekey connection
-- on the same object. The calls follow LuaSocket's conventions: send and receive
-- never raise for I/O trouble, they return nil, "timeout" | "closed" | message, and
-- what was transferred before it happened (partial data for receive, the index of
-- the last byte sent for send). settimeout(0) makes them non-blocking (nil,
-- "timeout"; want() says whether to wait for reading or writing); LuaSocket's
-- socket.select accepts these objects (getfd, dirty).
--
-- Underneath, the tlsrekey connection is non-blocking and this module waits with
-- socket.select for as long as the timeout allows; the timeout bounds each call.
local tlsrekey = require "tlsrekey"
local socket = require "socket"

local M = { _VERSION = tlsrekey._VERSION }

local Wrapped = {}
local WrappedMT = { __name = "tlsrekey_compat.connection" }

-- Application data is written in pieces of this size, so that a send that must
-- stop part way can say how far it got (and a retry repeats the same piece, as
-- OpenSSL asks after a write that would block).
local PIECE = 16384

-- ---------------------------------------------------------------------------
-- Contexts from LuaSec parameters

local protocols = {
  any = { "TLSv1.2", nil }, tlsv1_2 = { "TLSv1.2", "TLSv1.2" },
  tlsv1_3 = { "TLSv1.3", "TLSv1.3" },
}

-- Options of a tlsrekey context that may also be given in a LuaSec table.
local passthrough = {
  "ciphers", "ciphersuites", "groups", "keylog", "min_version", "max_version",
  "allow_client_renegotiation", "no_renegotiation", "check_hostname", "capath",
  "ignore_unexpected_eof", "release_buffers", "num_tickets", "session_cache",
}

local function has(list, word)
  if type(list) == "string" then return list == word end
  for _, v in ipairs(list or {}) do if v == word then return true end end
  return false
end

--- tlsrekey_compat.newcontext(params) -> context | nil, message
-- A tlsrekey context from LuaSec's parameter table: mode, protocol ("any",
-- "tlsv1_2", "tlsv1_3"), certificate, key (files), cafile, capath, verify ("none",
-- "peer", {"peer", "fail_if_no_peer_cert"}), options ("no_renegotiation"; others
-- ignored), ciphers, ciphersuites, curve/curves_list, alpn; and any tlsrekey context
-- option by its own name. As in LuaSec, a client verifies only with verify = "peer"
-- and checks no host name unless check_hostname = true.
function M.newcontext(params)
  if type(params) ~= "table" then return nil, "parameters must be a table" end
  local mode = params.mode
  if mode ~= "client" and mode ~= "server" then
    return nil, "mode must be \"client\" or \"server\""
  end
  local opts = { mode = mode }
  local versions = protocols[params.protocol or "any"]
  if not versions then return nil, "unsupported protocol: " .. tostring(params.protocol) end
  opts.min_version, opts.max_version = versions[1], versions[2]
  opts.cert, opts.key = params.certificate, params.key
  opts.cafile = params.cafile
  local verify = params.verify or "none"
  if not has(verify, "peer") then
    opts.verify = false
  elseif mode == "server" then
    opts.verify = has(verify, "fail_if_no_peer_cert") or "optional"
  else
    opts.verify = true
    opts.check_hostname = false     -- LuaSec checks no host name
  end
  if has(params.options, "no_renegotiation") then opts.no_renegotiation = true end
  opts.groups = params.curves_list or params.curve
  if type(params.alpn) == "string" then opts.alpn = { params.alpn }
  elseif type(params.alpn) == "table" then opts.alpn = params.alpn end
  for _, name in ipairs(passthrough) do
    if params[name] ~= nil then opts[name] = params[name] end
  end
  local ok, ctx = pcall(tlsrekey.context, opts)
  if not ok then return nil, tostring(ctx) end
  return ctx
end

-- What arrived and was not received yet: the chunks as they came (head is the
-- first, `off` bytes of it already taken), so that receiving a long line or many
-- short ones costs time in proportion to the bytes, never to their square. `scan`:
-- the bytes already searched for a line end, not searched again.
local Buffer = {}
Buffer.__index = Buffer

local function new_buffer()
  return setmetatable({ parts = {}, head = 1, tail = 0, off = 0, len = 0, scan = 0 },
                      Buffer)
end

function Buffer:add(s)
  self.tail = self.tail + 1
  self.parts[self.tail] = s
  self.len = self.len + #s
end

--- The offset of the first "\n" from the start of what is buffered, or nil.
function Buffer:find_newline()
  local pos = 0
  for i = self.head, self.tail do
    local p = self.parts[i]
    local first = i == self.head and self.off or 0
    local avail = #p - first
    if pos + avail > self.scan then
      local from = first + math.max(0, self.scan - pos) + 1
      local at = p:find("\n", from, true)
      if at then return pos + at - first end
    end
    pos = pos + avail
  end
  self.scan = self.len
  return nil
end

--- Takes the first n bytes (n <= len) out.
function Buffer:take(n)
  local out = {}
  while n > 0 do
    local p = self.parts[self.head]
    local avail = #p - self.off
    if avail <= n then
      out[#out + 1] = self.off == 0 and p or p:sub(self.off + 1)
      self.parts[self.head] = nil
      self.head, self.off = self.head + 1, 0
      n, self.len = n - avail, self.len - avail
    else
      out[#out + 1] = p:sub(self.off + 1, self.off + n)
      self.off, self.len, n = self.off + n, self.len - n, 0
    end
  end
  if self.head > self.tail then self.head, self.tail, self.off = 1, 0, 0 end
  self.scan = 0
  return table.concat(out)
end

--- tlsrekey_compat.wrap(sock, ctx_or_params [, opts]) -> connection | nil, message
-- Wraps a connected LuaSocket tcp object with a tlsrekey context (or LuaSec
-- parameters, see newcontext). opts.server_hostname (or conn:sni(name) before the
-- handshake) names the server for a client. The TLS connection is made at the first
-- dohandshake/send/receive. The object keeps the socket, and close() closes it.
function M.wrap(sock, ctx, opts)
  if type(sock) ~= "userdata" and type(sock) ~= "table" or not sock.getfd then
    return nil, "a LuaSocket tcp object is expected"
  end
  if type(ctx) == "table" then
    local err
    ctx, err = M.newcontext(ctx)
    if not ctx then return nil, err end
  end
  local self = setmetatable({
    sock = sock, ctx = ctx, buf = new_buffer(), timeout = nil, wants = "nothing",
    hostname = opts and opts.server_hostname or nil,
  }, WrappedMT)
  -- The socket's own timeout is the starting point, as a LuaSec object inherits it.
  if sock.gettimeout then
    local t = sock:gettimeout()
    if type(t) == "number" and t >= 0 then self.timeout = t end
  end
  return self
end

-- ---------------------------------------------------------------------------
-- Waiting

local function now() return socket.gettime() end

-- The connection, made on first use.
local function conn_of(self)
  if self.closed then return nil, "closed" end
  if not self.conn then
    local ok, conn = pcall(self.ctx.wrap, self.ctx, self.sock,
                           { server_hostname = self.hostname, timeout = 0 })
    if not ok then return nil, tostring(conn) end
    self.conn = conn
  end
  return self.conn
end

local function deadline_of(self)
  if self.timeout == nil then return nil end
  return now() + self.timeout
end

-- After a call would block: waits for the socket as `want` ("want_read" or
-- "want_write") says, until the deadline. true to try again, or nil, "timeout".
local function wait(self, want, deadline)
  self.wants = want == "want_write" and "write" or "read"
  local remaining
  if deadline then
    remaining = deadline - now()
    if remaining <= 0 then return nil, "timeout" end
  end
  local r, w
  if want == "want_write" then w = { self.sock } else r = { self.sock } end
  local _, _, err = socket.select(r, w, remaining)
  if err == "timeout" then return nil, "timeout" end
  return true
end

-- A tlsrekey error as LuaSocket would say it.
local function io_error(self, err)
  self.last_error = err
  if tlsrekey.is_error(err) then
    if err.code == "closed" or err.code == "syscall" then return "closed" end
    if err.code == "timeout" then return "timeout" end
  end
  return tostring(err)
end

-- Reads more into self.buf: true, or nil and "closed" / "timeout" / a message.
local function fill(self, deadline)
  local conn, err = conn_of(self)
  if not conn then return nil, err end
  if self.eof then return nil, "closed" end
  while true do
    local ok, data, want = pcall(conn.read, conn)
    if not ok then return nil, io_error(self, data) end
    if data then
      self.buf:add(data)
      self.wants = "nothing"
      return true
    end
    if not want then
      self.eof = true
      return nil, "closed"
    end
    local waited, werr = wait(self, want, deadline)
    if not waited then return nil, werr end
  end
end

-- ---------------------------------------------------------------------------
-- LuaSocket / LuaSec calls

--- conn:dohandshake() -> true | nil, "wantread" | "wantwrite" | "timeout" | message
-- Runs the handshake within the timeout. Non-blocking (timeout 0): nil and
-- "wantread"/"wantwrite", as LuaSec says, until it completes.
function Wrapped:dohandshake()
  local conn, err = conn_of(self)
  if not conn then return nil, err end
  local deadline = deadline_of(self)
  while true do
    local ok, e = pcall(conn.do_handshake, conn)
    if ok then
      self.wants = "nothing"
      return true
    end
    local want = tlsrekey.is_error(e) and (e.code == "want_read" or e.code == "want_write")
                 and e.code
    if not want then return nil, io_error(self, e) end
    if self.timeout == 0 then
      self.wants = want == "want_write" and "write" or "read"
      return nil, want == "want_write" and "wantwrite" or "wantread"
    end
    local waited, werr = wait(self, want, deadline)
    if not waited then return nil, werr end
  end
end

local function strip_cr(s) return (s:gsub("\r", "")) end

--- conn:receive([pattern [, prefix]]) -> data | nil, err, partial
-- pattern: "*l"/"l" a line (LF ends it, CRs are dropped; the default), "*a"/"a"
-- everything until the peer closes, or a number of bytes. prefix is put before
-- the data (pass back a partial result). err: "timeout", "closed" or a message;
-- partial holds what arrived (prefix included).
function Wrapped:receive(pattern, prefix)
  pattern = pattern or "*l"
  prefix = prefix or ""
  local deadline = deadline_of(self)
  local kind, want
  if type(pattern) == "number" then
    kind, want = "n", math.tointeger(pattern) or math.floor(pattern)
    if want < 0 then error("bad argument #1 to 'receive' (invalid receive pattern)", 2) end
    want = want - #prefix
    if want <= 0 then return prefix end
  elseif pattern == "*l" or pattern == "l" then kind = "l"
  elseif pattern == "*a" or pattern == "a" then kind = "a"
  else error("bad argument #1 to 'receive' (invalid receive pattern)", 2) end

  local buf = self.buf
  while true do
    if kind == "l" then
      local nl = buf:find_newline()
      if nl then
        local line = buf:take(nl)
        return prefix .. strip_cr(line:sub(1, -2))
      end
    elseif kind == "n" and buf.len >= want then
      return prefix .. buf:take(want)
    end
    local ok, err = fill(self, deadline)
    if not ok then
      -- What arrived belongs to the caller now, as LuaSocket hands it over.
      local partial = buf:take(buf.len)
      if kind == "a" and err == "closed" then return prefix .. partial end
      if kind == "l" then partial = strip_cr(partial) end
      return nil, err, prefix .. partial
    end
  end
end

--- conn:send(data [, i [, j]]) -> last index sent | nil, err, last index sent
-- Sends data:sub(i, j) (LuaSocket's arguments). On "timeout" retry with
-- send(data, last + 1, j).
function Wrapped:send(data, i, j)
  if type(data) ~= "string" and type(data) ~= "number" then
    error("bad argument #1 to 'send' (string expected, got " .. type(data) .. ")", 2)
  end
  data = tostring(data)
  local len = #data
  i = i or 1
  j = j or -1
  if i < 0 then i = math.max(len + i + 1, 1) elseif i == 0 then i = 1 end
  if j < 0 then j = len + j + 1 elseif j > len then j = len end
  local sent = i - 1
  local conn, err = conn_of(self)
  if not conn then return nil, err, sent end
  local deadline = deadline_of(self)
  while sent < j do
    local piece = data:sub(sent + 1, math.min(sent + PIECE, j))
    local ok, n, want = pcall(conn.write, conn, piece)
    if not ok then
      -- what went out before the failure (an event callback's) is sent
      if tlsrekey.is_error(n) and type(n.written) == "number" then sent = sent + n.written end
      return nil, io_error(self, n), sent
    end
    if n then
      sent = sent + #piece
      self.wants = "nothing"
    else
      local waited, werr = wait(self, want, deadline)
      if not waited then return nil, werr, sent end
    end
  end
  return sent
end

--- conn:settimeout(value [, mode]) -> 1
-- nil or negative: block; 0: never block; > 0: seconds each call may take. mode
-- ("b"/"t") is accepted for LuaSocket's sake; the timeout bounds each whole call.
function Wrapped:settimeout(value, mode)
  local _ = mode
  if value ~= nil and type(value) ~= "number" then
    error("bad argument #1 to 'settimeout' (number expected, got " .. type(value) .. ")", 2)
  end
  if value ~= nil and value < 0 then value = nil end
  self.timeout = value
  return 1
end

--- conn:gettimeout() -> seconds, or nil when blocking.
function Wrapped:gettimeout() return self.timeout end

--- conn:close() -> 1
-- Sends close_notify if it can without waiting, frees the TLS state and closes the
-- socket (as LuaSec's close does). Idempotent.
function Wrapped:close()
  if self.closed then return 1 end
  self.closed = true
  if self.conn then
    if self.conn:state() == "established" then pcall(self.conn.shutdown, self.conn) end
    self.conn:close()
  end
  self.sock:close()
  return 1
end

--- conn:getfd() -> the socket's file descriptor (for socket.select).
function Wrapped:getfd() return self.sock:getfd() end

--- conn:dirty() -> true when data can be received without waiting on the socket.
function Wrapped:dirty()
  if self.buf.len > 0 then return true end
  return self.conn ~= nil and not self.closed and self.conn:pending() > 0
end

--- conn:want() -> "read", "write" or "nothing": what the last call that returned
-- "timeout" (or "wantread"/"wantwrite") waits for.
function Wrapped:want() return self.wants end

--- conn:sni(name): a client's server name (SNI and, with check_hostname, the name
-- checked), before the handshake.
function Wrapped:sni(name)
  if self.conn then error("sni: the connection has already started", 2) end
  self.hostname = name
  return true
end

--- conn:info([field]) -> { protocol = "TLSv1.3", cipher = "..." } (or one field).
function Wrapped:info(field)
  if not self.conn or self.closed then return nil end
  local t = { protocol = self.conn:version(), cipher = self.conn:cipher() }
  if field then return t[field] end
  return t
end

--- conn:connection() -> the tlsrekey connection underneath (nil before first use).
function Wrapped:connection() return self.conn end

--- conn:socket() -> the LuaSocket object underneath.
function Wrapped:socket() return self.sock end

-- LuaSocket calls that concern the socket, not TLS.
for _, name in ipairs { "getpeername", "getsockname", "setoption", "getoption",
                        "getstats" } do
  Wrapped[name] = function(self, ...)
    local sock = self.sock
    return sock[name](sock, ...)
  end
end

-- Every method of a tlsrekey connection (key_update, renegotiate, stats, on_event,
-- ...) is also a method of this object: it calls the connection, which is made if it
-- does not exist yet, and raises tlsrekey errors as the connection does.
local connection_methods
local delegates = {}
local function connection_method(name)
  if delegates[name] then return delegates[name] end
  if not connection_methods then
    local probe = tlsrekey.context { mode = "client", verify = false }:memory()
    connection_methods = getmetatable(probe).__index
    probe:close()
  end
  local fn = connection_methods[name]
  if type(fn) ~= "function" then return nil end
  delegates[name] = function(self, ...)
    local conn, err = conn_of(self)
    if not conn then error(err, 2) end
    return fn(conn, ...)
  end
  return delegates[name]
end

function WrappedMT.__index(_, name)
  local fn = Wrapped[name]
  if fn == nil and type(name) == "string" then fn = connection_method(name) end
  return fn
end
WrappedMT.__close = Wrapped.close
function WrappedMT.__tostring(self)
  if self.closed then return "tlsrekey_compat.connection (closed)" end
  if not self.conn then return "tlsrekey_compat.connection (not started)" end
  return "tlsrekey_compat.connection: " .. tostring(self.conn)
end

--- tlsrekey_compat.is_wrapped(v) -> true for objects made by wrap().
function M.is_wrapped(v) return getmetatable(v) == WrappedMT end

M.methods = Wrapped
return M
