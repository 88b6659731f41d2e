-- Shared helpers of the busted specs: transports that give a handshaken client and
-- server (in memory, or over a TCP loopback socket pair driven from this one Lua
-- state with non-blocking I/O), a pump that moves data between two ends whatever
-- handshake is under way, error checks, and peers in child processes.
local tlsrekey = require "tlsrekey"
local socket = require "socket"

local H = { tlsrekey = tlsrekey, socket = socket }

local DEADLINE = 10 -- seconds any pump may take before the test fails

-- Everything a case opened that must be closed when it ends (sockets, processes).
local open_things = {}

function H.defer(fn) open_things[#open_things + 1] = fn end

--- The GC/leak pass run after each case: close what the case left, collect twice.
function H.cleanup()
  for i = #open_things, 1, -1 do
    pcall(open_things[i])
    open_things[i] = nil
  end
  collectgarbage()
  collectgarbage()
end

--- Calls fn(...) and returns the error object it raised (fails if it did not).
function H.error_of(fn, ...)
  local ok, err = pcall(fn, ...)
  assert(not ok, "expected an error, the call succeeded")
  return err
end

--- Asserts fn raises a tlsrekey error with `code`; returns it.
function H.raises(code, fn, ...)
  local err = H.error_of(fn, ...)
  assert(tlsrekey.is_error(err), "expected a tlsrekey error, got: " .. tostring(err))
  assert(err.code == code, ("expected code %q, got %q (%s)"):format(code, tostring(err.code),
                                                                   tostring(err)))
  return err
end

--- Asserts fn raises "bad argument #argn to 'name' (...)"; returns the message.
-- A module function may be named with its module ('tlsrekey.context' or
-- 'tlsrekey.core.context': Lua picks whichever loaded table it finds first).
function H.bad_argument(argn, name, fn, ...)
  local err = H.error_of(fn, ...)
  assert(type(err) == "string", "expected an argument error, got " .. tostring(err))
  local pattern = ("bad argument #%d to '[%%w_.]*%s' %%("):format(argn, name:gsub("%p", "%%%0"))
  assert(err:find(pattern) and (err:find("'" .. name .. "'", 1, true) or
                                err:find("." .. name .. "'", 1, true)),
         ("expected \"bad argument #%d to '%s' (...)\", got %q"):format(argn, name, err))
  return err
end

local function is_want(err)
  return tlsrekey.is_error(err) and (err.code == "want_read" or err.code == "want_write")
end

--- Calls method on each connection until none raises want_read/want_write.
function H.drive(method, ...)
  local conns, done = { ... }, {}
  local deadline = socket.gettime() + DEADLINE
  while true do
    local all = true
    for i, c in ipairs(conns) do
      if not done[i] then
        local ok, err = pcall(c[method], c)
        if ok then done[i] = true
        elseif is_want(err) then all = false
        else error(err, 0) end
      end
    end
    if all then return end
    assert(socket.gettime() < deadline, "drive(" .. method .. ") did not finish")
    socket.sleep(0.0005)
  end
end

--- Writes data on `from` and reads it on `to`, retrying each side while it would
-- block: a handshake under way (renegotiation, an answer to a key update request)
-- progresses inside these ordinary calls. Returns what `to` read.
function H.exchange(from, to, data)
  local written, got = false, {}
  local need = #data
  local deadline = socket.gettime() + DEADLINE
  while true do
    if not written then
      local n, want = from:write(data)
      if n then
        assert(n == #data, "a write returned " .. tostring(n) .. " of " .. #data)
        written = true
      else
        assert(want == "want_read" or want == "want_write", tostring(want))
      end
    end
    if need > 0 then
      local s, want = to:read()
      if s then
        got[#got + 1] = s
        need = need - #s
      elseif not want then
        error("the connection closed during exchange", 2)
      end
    end
    if written and need <= 0 then return table.concat(got) end
    assert(socket.gettime() < deadline, "exchange did not finish")
    socket.sleep(0.0002)
  end
end

--- Reads on `conn` (keeping what it reads) until check() is true: for protocol
-- messages that carry no data, such as a KeyUpdate. Returns the data read;
-- on_data(s), if given, sees each piece as it arrives.
function H.read_until(conn, check, on_data)
  local got = {}
  local deadline = socket.gettime() + DEADLINE
  while not check() do
    local s = conn:read()
    if s then
      got[#got + 1] = s
      if on_data then on_data(s) end
    end
    assert(socket.gettime() < deadline, "read_until: the condition never came true")
    socket.sleep(0.0002)
  end
  return table.concat(got)
end

--- Keeps reading on `conn` until it would block (handling what arrived); returns
-- the data read, if any.
function H.read_available(conn)
  local got = {}
  for _ = 1, 100 do
    local s = conn:read()
    if not s then break end
    got[#got + 1] = s
  end
  return table.concat(got)
end

-- ---------------------------------------------------------------------------
-- Transports

--- A listening socket on 127.0.0.1 with a free port: server, port.
function H.listen()
  local srv = assert(socket.bind("127.0.0.1", 0))
  H.defer(function() srv:close() end)
  local _, port = srv:getsockname()
  return srv, tonumber(port)
end

--- Two connected TCP sockets on loopback: client, server (LuaSocket objects).
function H.tcp_pair()
  local srv, port = H.listen()
  local csock = socket.tcp()
  H.defer(function() csock:close() end)
  csock:settimeout(5)
  assert(csock:connect("127.0.0.1", port))
  srv:settimeout(5)
  local ssock = assert(srv:accept())
  H.defer(function() ssock:close() end)
  -- no Nagle delay: a lone KeyUpdate must not wait for an ACK
  csock:setoption("tcp-nodelay", true)
  ssock:setoption("tcp-nodelay", true)
  srv:close()
  return csock, ssock
end

local function memory_raw(opts)
  local cctx, sctx, hostname = tlsrekey.pair_contexts(opts)
  local c, s = cctx:memory { server_hostname = hostname }, sctx:memory()
  return c, s
end

--- Moves bytes between two memory-transport connections until neither has output.
function H.shuttle(a, b)
  for _ = 1, 50 do
    local moved = false
    local out = a:drain()
    if #out > 0 then b:feed(out); moved = true end
    out = b:drain()
    if #out > 0 then a:feed(out); moved = true end
    if not moved then return end
  end
end

--- Handshakes two memory-transport connections by hand.
function H.memory_handshake(c, s)
  for _ = 1, 50 do
    local cdone = pcall(c.do_handshake, c)
    H.shuttle(c, s)
    local sdone = pcall(s.do_handshake, s)
    H.shuttle(c, s)
    if cdone and sdone and c:handshake_done() and s:handshake_done() then return end
  end
  -- one more time, so that a real error is raised rather than swallowed
  c:do_handshake(); s:do_handshake()
end

local function socket_raw(opts)
  local cctx, sctx, hostname = tlsrekey.pair_contexts(opts)
  local csock, ssock = H.tcp_pair()
  local c = cctx:wrap(csock, { server_hostname = hostname, timeout = 0 })
  local s = sctx:wrap(ssock, { timeout = 0 })
  return c, s, csock, ssock
end

--- The transports every seed statement runs over. new(opts) gives a handshaken
-- client and server; raw(opts) the same ends before the handshake.
H.transports = {
  {
    name = "the in-memory pair",
    new = function(opts) return tlsrekey.pair(opts) end,
    raw = memory_raw,
    raw_memory = memory_raw,
    sockets = false,
  },
  {
    name = "a TCP socket pair",
    new = function(opts)
      local c, s, csock, ssock = socket_raw(opts)
      H.drive("do_handshake", c, s)
      return c, s, csock, ssock
    end,
    raw = socket_raw,
    sockets = true,
  },
}

-- ---------------------------------------------------------------------------
-- Child processes (peers): started with a pid file, always killed by pid.

local tmpfiles = 0
function H.tmpname(suffix)
  tmpfiles = tmpfiles + 1
  local name = os.tmpname() .. (suffix or "")
  H.defer(function() os.remove(name) end)
  return name
end

function H.write_file(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

function H.read_file(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("a")
  f:close()
  return s
end

local function shell_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
H.shell_quote = shell_quote

--- Starts `argv` (a list) with stdin from a pipe we write to and stdout+stderr in
-- a file. Returns a process object: p:send(line), p:output(), p:wait_output(pattern),
-- p:kill(). The process is killed when the case ends, whatever happens.
function H.spawn(argv)
  local pidfile, outfile = H.tmpname(".pid"), H.tmpname(".out")
  local quoted = {}
  for i, a in ipairs(argv) do quoted[i] = shell_quote(a) end
  -- Peers are not our code: they run without the sanitizer runtime that the ASan
  -- suite preloads into this process, so their own exit-time leaks are not ours.
  local cmd = ("exec sh -c 'echo $$ > %s; exec env -u LD_PRELOAD -u ASAN_OPTIONS -u LSAN_OPTIONS"
               .. " -u UBSAN_OPTIONS \"$@\" > %s 2>&1' sh %s"):format(
    pidfile, outfile, table.concat(quoted, " "))
  local pipe = assert(io.popen(cmd, "w"))
  local p = { pipe = pipe, outfile = outfile }
  local deadline = socket.gettime() + 5
  while not p.pid do
    p.pid = tonumber(H.read_file(pidfile):match("%d+"))
    if not p.pid then
      assert(socket.gettime() < deadline, "the child process did not start")
      socket.sleep(0.01)
    end
  end
  function p:send(line)
    self.pipe:write(line, "\n")
    self.pipe:flush()
  end
  function p:output() return H.read_file(self.outfile) end
  function p:wait_output(pattern, timeout)
    local limit = socket.gettime() + (timeout or 5)
    repeat
      local out = self:output()
      local found = out:match(pattern)
      if found then return found, out end
      socket.sleep(0.02)
    until socket.gettime() > limit
    return nil, self:output()
  end
  function p:count(pattern)
    local n = 0
    for _ in self:output():gmatch(pattern) do n = n + 1 end
    return n
  end
  function p:wait_count(pattern, n, timeout)
    local limit = socket.gettime() + (timeout or 5)
    while self:count(pattern) < n and socket.gettime() < limit do socket.sleep(0.02) end
    return self:count(pattern)
  end
  function p:kill()
    if self.pid then
      os.execute("kill " .. self.pid .. " 2>/dev/null")
      self.pid = nil
      pcall(self.pipe.close, self.pipe)
    end
  end
  H.defer(function() p:kill() end)
  return p
end

--- A free TCP port on 127.0.0.1 (bound and released: good enough for a child peer
-- started right away).
function H.free_port()
  local s = assert(socket.bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return tonumber(port)
end

--- Connects a LuaSocket to 127.0.0.1:port, retrying while the peer starts up.
function H.connect_retry(port, timeout)
  local limit = socket.gettime() + (timeout or 5)
  while true do
    local s = socket.tcp()
    s:settimeout(2)
    local ok, err = s:connect("127.0.0.1", port)
    if ok then
      H.defer(function() s:close() end)
      return s
    end
    s:close()
    assert(socket.gettime() < limit, "could not connect to port " .. port .. ": " .. err)
    socket.sleep(0.05)
  end
end

--- Writes a throwaway certificate and key to files: cert_path, key_path, cert, key.
function H.cert_files(cn)
  local cert, key = tlsrekey.make_test_cert(cn or "localhost")
  local cpath, kpath = H.tmpname(".crt"), H.tmpname(".key")
  H.write_file(cpath, cert)
  H.write_file(kpath, key)
  return cpath, kpath, cert, key
end

return H
