-- LuaSec over sockets (it has no memory transport). No key update and no
-- renegotiation API: W3 and W3b are "n/a". Its send() goes through LuaSocket's
-- buffer, which writes at most 8 KiB per SSL_write: two records per 16 KiB write.
-- Clients verify the chain; LuaSec has no host name check (SNI is sent).
local B = require "benchlib"
local ssl = require "ssl"
local sslcore = require "ssl.core"

local a = B.parse_args(arg)
local n = a.count
if a.transport ~= "socket" then B.na("LuaSec has no memory transport") end
if a.workload == "W3" then B.na("LuaSec has no key update API") end
if a.workload == "W3b" then B.na("LuaSec has no renegotiation API") end

local function contexts()
  local common = {
    protocol = "tlsv1_3", ciphersuites = B.SUITE13, curveslist = B.GROUPS13,
  }
  local function ctx(t)
    for k, v in pairs(common) do t[k] = v end
    return assert(ssl.newcontext(t))
  end
  return ctx { mode = "client", cafile = a.cert, verify = "peer" },
         ctx { mode = "server", certificate = a.cert, key = a.key, verify = "none" }
end

local function negotiated(conn)
  local info = conn:info()
  return B.check(a, info.protocol, info.cipher, nil)
end

-- ssl.wrap takes a LuaSocket object and moves its fd into the TLS object: an fd the
-- driver passed in is handed over through a stand-in with the two methods it calls.
local function fd_socket(fd)
  return { getfd = function() return fd end, setfd = function() end }
end

local function open(ctx, sock, server)
  local conn = assert(ssl.wrap(sock, ctx))
  if not server then conn:sni(B.HOST) end
  assert(conn:dohandshake())
  return conn
end

-- W4 and MEM: one Unix-socket connection per handshake (see limit.c).
local function run_socket_conns(cctx, sctx)
  local mem = a.workload == "MEM"
  local lsock = a.server and B.listen(a.path) or nil
  local neg, keep, rss0 = nil, {}, 0
  for i = 0, n do
    if i == 1 then
      rss0 = B.rss()
      B.start()
    end
    local conn
    if a.server then
      conn = open(sctx, assert(lsock:accept()), true)
      assert(conn:send("x"))
    else
      conn = open(cctx, B.connect(a.path), false)
      assert(conn:receive(1))
      if i == 0 then neg = negotiated(conn) end
    end
    if mem and i > 0 then keep[i] = conn else conn:close() end
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
  local conn = open(server and sctx or cctx, fd_socket(a.fd), server)
  local neg = not server and negotiated(conn) or nil
  local w, r = conn.send, conn.receive
  if server then
    assert(r(conn, 1)); w(conn, "s")
  else
    w(conn, "s"); assert(r(conn, 1))
  end
  B.start()
  if a.workload == "W1" then
    if server then
      local CH = B.CHUNK
      for _ = 1, n do
        if not r(conn, CH) then B.fail("read failed") end
      end
    else
      local buf = string.rep("x", B.CHUNK)
      for _ = 1, n do w(conn, buf) end
    end
  elseif a.workload == "W2" then
    local M = B.MSG
    if server then
      for _ = 1, n do w(conn, (r(conn, M))) end
    else
      local msg = string.rep("m", M)
      for _ = 1, n do
        w(conn, msg)
        if not r(conn, M) then B.fail("read failed") end
      end
    end
  end
  if server then
    w(conn, "d")
    B.emit(B.timed { ops = n })
  else
    assert(r(conn, 1))
    B.emit(B.timed { ops = n, negotiated = neg })
  end
end

run_socket()
