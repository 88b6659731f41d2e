-- tlsrekey (Lua): the benchmark workloads over the in-memory pair and over sockets.
-- Run with LUA_PATH/LUA_CPATH reaching bench/lua, lua/ and build/lua (bench/run.py).
-- Reads go into a tlsrekey.buffer with read_into, as a program after speed would
-- write them (and as the C limit reads into a buffer): no string per read.
-- `--read string` makes W1 read with read(n) instead, a new string per record: what
-- that costs (not a row of run.py; for callgrind or a run by hand).
local B = require "benchlib"
local tlsrekey = require "tlsrekey"

local a = B.parse_args(arg)
local n = a.count
local read_strings = a.read == "string"
if a.read ~= nil and a.read ~= "string" and a.read ~= "buffer" then
  B.fail("--read takes string or buffer")
end

local function contexts()
  local v = a.tls12 and "TLSv1.2" or "TLSv1.3"
  local function opts(t)
    t.min_version, t.max_version = v, v
    t.ciphersuites, t.ciphers = B.SUITE13, B.CIPHER12
    t.groups = a.tls12 and B.GROUPS12 or B.GROUPS13
    t.release_buffers = a["release-buffers"] == "1"
    return t
  end
  local cctx = tlsrekey.context(opts { mode = "client", cafile = a.cert })
  local sctx = tlsrekey.context(opts { mode = "server", cert = a.cert, key = a.key,
                                       allow_client_renegotiation = true })
  return cctx, sctx
end

local function negotiated(conn)
  return B.check(a, conn:version(), conn:cipher(), conn:group())
end

-- The rest of a message of which `got` bytes have come: read into buf (over
-- what was there: only the count matters), echoing each piece when `echo`.
local function read_rest(conn, buf, got, len, echo)
  while got < len do
    local k = conn:read_into(buf, len - got) or B.fail("closed early")
    if echo then conn:write(buf, k) end
    got = got + k
  end
end

local function run_pair()
  local cctx, sctx = contexts()
  -- one pair of contexts for every pair, as W4 wants
  local function pair(client_ctx, server_ctx, hostname)
    return tlsrekey.pair { client_ctx = client_ctx, server_ctx = server_ctx,
                           server_hostname = hostname }
  end
  if a.workload == "W4" or a.workload == "MEM" then
    local c, s = pair(cctx, sctx, B.HOST)
    local neg = negotiated(c)
    c:close(); s:close()
    local keep = a.workload == "MEM" and {} or nil
    local rb = tlsrekey.buffer(1)
    local rss0 = B.rss()
    B.start()
    for i = 1, n do
      c, s = pair(cctx, sctx, B.HOST)
      s:write("x")
      c:read_into(rb)
      if keep then
        keep[i] = { c, s }
      else
        c:close(); s:close()
      end
    end
    B.stop()
    if keep then
      B.emit { ops = n, rss_delta = B.rss() - rss0, negotiated = neg }
    else
      B.emit(B.timed { ops = n, negotiated = neg })
    end
    return
  end

  local c, s = pair(cctx, sctx, B.HOST)
  local neg = negotiated(c)
  local cw, sw, cri, sri = c.write, s.write, c.read_into, s.read_into
  local rb = tlsrekey.buffer(B.CHUNK)
  if a.workload == "W1" then
    local data, CH = string.rep("x", B.CHUNK), B.CHUNK
    if read_strings then
      local sr = s.read
      B.start()
      for _ = 1, n do
        cw(c, data)
        if #sr(s, CH) ~= CH then B.fail("short read") end
      end
    else
      B.start()
      for _ = 1, n do
        cw(c, data)
        if sri(s, rb, CH) ~= CH then B.fail("short read") end
      end
    end
    B.stop()
  elseif a.workload == "W2" then
    local msg, M = string.rep("m", B.MSG), B.MSG
    local mb = tlsrekey.buffer(M)     -- message-sized, as Python's bytearray(64)
    B.start()
    for _ = 1, n do
      cw(c, msg)
      local k = sri(s, mb)
      if k == M then
        sw(s, mb)                       -- the echo: what was read, from the buffer
      else
        sw(s, mb, k); read_rest(s, mb, k, M, true)
      end
      k = cri(c, mb)
      if k ~= M then read_rest(c, mb, k, M) end
    end
    B.stop()
  elseif a.workload == "W3" then
    local ku = c.key_update
    B.start()
    for _ = 1, n do
      ku(c)
      cw(c, "x")
      sri(s, rb, 1)
    end
    B.stop()
    if c:stats().key_updates_sent ~= n or s:stats().key_updates_received ~= n then
      B.fail("key update count mismatch")
    end
  elseif a.workload == "W3b" then
    local reneg = c.renegotiate
    B.start()
    for _ = 1, n do
      reneg(c)
      cw(c, "x")            -- the pair runs the handshake inside this write
      sri(s, rb, 1)
    end
    B.stop()
    if c:stats().renegotiations ~= n or c:session_reused() then
      B.fail("expected full renegotiations")
    end
  end
  B.emit(B.timed { ops = n, negotiated = neg })
end

-- W4 and MEM: one Unix-socket connection per handshake (see limit.c).
local function run_socket_conns(cctx, sctx)
  local mem = a.workload == "MEM"
  if mem then collectgarbage("generational") end
  local lsock = a.server and B.listen(a.path) or nil
  local neg, keep, rss0 = nil, {}, 0
  local rb = tlsrekey.buffer(1)
  for i = 0, n do
    if i == 1 then
      rss0 = B.rss()
      B.start()
    end
    local sock = a.server and assert(lsock:accept()) or B.connect(a.path)
    local kept = mem and i > 0
    -- MEM wraps the bare fd, as C holds one: a LuaSocket object kept alive by wrap()
    -- would add its own 8 KiB buffer to every connection (bench/README.md).
    local target = sock
    if kept then
      target = sock:getfd()
      sock:setfd(-1) -- the fd now belongs to nobody; the process exits soon
      -- The dropped LuaSocket object (8.4 KiB) is the program's way to an fd, not
      -- the binding's: left to a late full collection, each one leaves a hole
      -- between the connections' allocations that RSS counts. A minor collection
      -- (generational mode, set below) frees it while it is young.
      sock = nil
      collectgarbage("step")
    end
    local conn
    if a.server then
      conn = sctx:wrap(target)
      conn:do_handshake()
      conn:write("x")
    else
      conn = cctx:wrap(target, { server_hostname = B.HOST })
      conn:do_handshake()
      conn:read_into(rb)
      if i == 0 then neg = negotiated(conn) end
    end
    if kept then
      keep[i] = conn
    else
      conn:close()
      sock:close()
    end
  end
  B.stop()
  if mem then
    B.emit { ops = n, rss_delta = B.rss() - rss0, negotiated = neg }
  elseif a.server then
    B.emit(B.timed { ops = n })
  else
    B.emit(B.timed { ops = n, negotiated = neg })
  end
end

local function run_socket()
  local cctx, sctx = contexts()
  if a.workload == "W4" or a.workload == "MEM" then return run_socket_conns(cctx, sctx) end
  if not a.fd then B.fail("--fd is required") end
  local server = a.server
  local conn = server and sctx:wrap(a.fd) or cctx:wrap(a.fd, { server_hostname = B.HOST })
  conn:do_handshake()
  local neg = not server and negotiated(conn) or nil
  local w, ri = conn.write, conn.read_into
  local rb = tlsrekey.buffer(B.CHUNK)
  if server then
    read_rest(conn, rb, 0, 1); w(conn, "s")
  else
    w(conn, "s"); read_rest(conn, rb, 0, 1)
  end
  B.start()
  if a.workload == "W1" then
    if server then
      local left, CH = n * B.CHUNK, B.CHUNK
      if read_strings then
        local r = conn.read
        while left > 0 do left = left - #r(conn, CH) end
      else
        while left > 0 do left = left - ri(conn, rb, CH) end
      end
    else
      local data = string.rep("x", B.CHUNK)
      for _ = 1, n do w(conn, data) end
    end
  elseif a.workload == "W2" then
    local M = B.MSG
    local mb = tlsrekey.buffer(M)     -- message-sized, as Python's bytearray(64)
    if server then
      for _ = 1, n do
        local k = ri(conn, mb)
        if k == M then
          w(conn, mb)
        else
          w(conn, mb, k); read_rest(conn, mb, k, M, true)
        end
      end
    else
      local msg = string.rep("m", M)
      for _ = 1, n do
        w(conn, msg)
        local k = ri(conn, mb)
        if k ~= M then read_rest(conn, mb, k, M) end
      end
    end
  elseif a.workload == "W3" or a.workload == "W3b" then
    if server then
      for _ = 1, n do ri(conn, rb, 1) end
    else
      local rekey = a.workload == "W3" and conn.key_update or conn.renegotiate
      for _ = 1, n do
        rekey(conn)
        w(conn, "x")
      end
      local st = conn:stats()
      local got = a.workload == "W3" and st.key_updates_sent or st.renegotiations
      if got ~= n then B.fail(("expected %d rekeys, saw %d"):format(n, got)) end
    end
  end
  if server then
    w(conn, "d")
    B.emit(B.timed { ops = n })
  else
    read_rest(conn, rb, 0, 1)
    B.emit(B.timed { ops = n, negotiated = neg })
  end
end

if a.transport == "pair" then run_pair() else run_socket() end
