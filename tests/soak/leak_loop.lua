-- Leak loop (issue 4), the Lua side of tests/soak/leak_loop.py: create / handshake /
-- key update / close cycles, error paths and odd collection orders, with the Lua heap
-- (collectgarbage("count")) and the resident set size (/proc/self/statm) measured.
--
--   LUA_CPATH='build/lua/?.so;;' LUA_PATH='lua/?.lua;tests/lua/?.lua;;' \
--     lua5.4 tests/soak/leak_loop.lua [cycles] [max_growth_mb]
--
-- (default 100,000 cycles and 1 MiB; make test runs 2,000 with 0.5 MiB.) The cycles
-- are split between the kinds below; each kind runs alone after a warm-up, and the
-- growth of the Lua heap and of the RSS over its cycles must stay under the limit.
-- Exit status 1 on a leak; the last line is `leak loop: ... ok|LEAK in ...`.
local tlsrekey = require "tlsrekey"
local socket = require "socket"

local CERT, KEY = tlsrekey.make_test_cert("localhost")
local OTHER_CERT = tlsrekey.make_test_cert("other.example")

local function rss()
  local f = assert(io.open("/proc/self/statm"))
  local pages = tonumber(f:read("a"):match("^%d+%s+(%d+)"))
  f:close()
  return pages * 4096
end

local function full_gc()
  collectgarbage()
  collectgarbage()
end

local function expect(code, fn, ...)
  local ok, err = pcall(fn, ...)
  assert(not ok, "expected an error")
  if code == "arg" then
    assert(type(err) == "string" and err:find("bad argument"), tostring(err))
  else
    assert(tlsrekey.is_error(err) and err.code == code,
           ("expected %s, got %s"):format(code, tostring(err)))
  end
end

local function pair(opts)
  opts = opts or {}
  opts.cert, opts.key = CERT, KEY
  return tlsrekey.pair(opts)
end

local function contexts(extra)
  local c = { mode = "client", cafile = CERT }
  local s = { mode = "server", cert = CERT, key = KEY }
  for k, v in pairs(extra or {}) do s[k] = v end
  return tlsrekey.context(c), tlsrekey.context(s)
end

local function memory_handshake(c, s)
  for _ = 1, 10 do
    local cdone = pcall(c.do_handshake, c)
    s:feed(c:drain())
    local sdone = pcall(s.do_handshake, s)
    c:feed(s:drain())
    if cdone and sdone and c:handshake_done() and s:handshake_done() then return end
  end
  error("memory handshake did not finish")
end

local function tcp_pair()
  local srv = assert(socket.bind("127.0.0.1", 0))
  local _, port = srv:getsockname()
  local a = socket.tcp()
  a:settimeout(5)
  assert(a:connect("127.0.0.1", port))
  srv:settimeout(5)
  local b = assert(srv:accept())
  srv:close()
  return a, b
end

-- The Lua collector does not see the C memory behind a connection (tens of KiB of
-- OpenSSL state and buffers per end): connections left to it pile up between its
-- cycles, and the RSS then measures the collector's pace, not a leak. Kinds that
-- leave ends to the collector collect every tenth cycle.
local KINDS = {}
local function kind(name, fn)
  KINDS[#KINDS + 1] = { name = name, fn = function(i)
    fn(i)
    if i % 10 == 0 then full_gc() end
  end }
end

kind("pair", function(i)
  local c, s = pair()
  c:key_update("requested")
  assert(c:write("ping " .. i))
  assert(s:read() == "ping " .. i)
  s:write("pong")
  local buf = tlsrekey.buffer(16) -- read_into and write(buf, n): the buffer path
  assert(c:read_into(buf) == 4 and buf:sub(1, 4) == "pong")
  assert(c:write(buf, 4) == 4 and s:read() == "pong")
  s:key_update("not_requested", true)
  s:write("y")
  assert(c:read() == "y")
  assert(c:stats().key_updates_received == 2)
  if i % 2 == 0 then c:close() else s:close() end
end)

kind("pair12", function(i)
  local c, s = pair { max_version = "TLSv1.2", allow_client_renegotiation = true }
  c:renegotiate()
  c:write("after")
  assert(s:read() == "after")
  assert(c:stats().renegotiations == 1)
  -- nothing closed: the collector takes both ends and their contexts, in its order
end)

kind("memory", function(i)
  local cctx, sctx = contexts { num_tickets = i % 3 }
  local c = cctx:memory { server_hostname = "localhost" }
  local s = sctx:memory()
  cctx, sctx = nil, nil -- the contexts go first; the connections keep them
  memory_handshake(c, s)
  c:key_update("requested")
  c:write("m")
  s:feed(c:drain())
  assert(s:read() == "m")
  s:write("")
  c:feed(s:drain())
  c:read()
  c:shutdown()
  s:feed(c:drain())
  assert(s:read() == nil)
  s:shutdown()
  if i % 3 == 0 then
    local cc <close> = c -- __close
  end
end)

kind("socket", function(i)
  local a, b = tcp_pair()
  local cctx, sctx = contexts()
  local c = cctx:wrap(a, { server_hostname = "localhost", timeout = 0 })
  local s = sctx:wrap(b, { timeout = 0 })
  for _ = 1, 50 do
    pcall(c.do_handshake, c)
    pcall(s.do_handshake, s)
    if c:handshake_done() and s:handshake_done() then break end
    socket.sleep(0.0005)
  end
  a:close() -- the socket goes first, under the connection
  pcall(c.write, c, "into a closed socket")
  if i % 2 == 0 then c:close() end -- or left to the collector
  s:close()
  b:close()
end)

kind("verify", function()
  expect("verify", pair, { cafile = OTHER_CERT })
end)

kind("corrupt", function()
  local cctx, sctx = contexts()
  local c, s = cctx:memory { server_hostname = "localhost" }, sctx:memory()
  memory_handshake(c, s)
  c:write("tamper")
  local wire = c:drain()
  s:feed(wire:sub(1, -2) .. string.char(wire:byte(-1) ~ 1))
  expect("protocol", s.read, s)
  expect("protocol", s.write, s, "x")
  expect("protocol", s.do_handshake, s)
end)

kind("eof", function()
  local cctx, sctx = contexts()
  local c, s = cctx:memory { server_hostname = "localhost" }, sctx:memory()
  memory_handshake(c, s)
  c:write("cut")
  s:feed(c:drain():sub(1, -4))
  s:feed_eof()
  expect("syscall", s.read, s)
end)

kind("args", function()
  local c = pair()
  expect("arg", c.key_update, c, "none")
  expect("arg", c.read, c, -1)
  expect("arg", c.write, c, {})
  expect("state", c.renegotiate, c)
  c:key_update()
  expect("state", c.key_update, c)
  expect("arg", tlsrekey.context, { mode = "dealer" })
  expect("arg", tlsrekey.context, { mode = "client", cafile = "not pem" })
  c:close()
  expect("state", c.read, c)
  expect("state", c.export_keying_material, c, "x", 16)
end)

kind("callback", function(i)
  local c, s = pair()
  s:on_event(function() error("from a callback " .. i) end)
  c:key_update()
  c:write("cb")
  local ok, err = pcall(s.read, s)
  assert(not ok and tostring(err):find("from a callback"), tostring(err))
  s:on_event(nil)
  assert(s:read() == "cb")
end)

kind("cycle", function()
  local c = pair()
  local holder = { conn = c }
  c:on_event(function(ev) holder.seen = ev.name end) -- conn -> fn -> holder -> conn
  c:key_update("requested", true)
end)

local cycles = tonumber(arg[1]) or 100000
local limit_mb = tonumber(arg[2]) or 1.0
local per_kind = math.max(20, cycles // #KINDS)
local warmup = math.max(50, math.min(200, per_kind // 5))
local start = socket.gettime()
local first = rss()
for i = 1, 30 do
  for _, k in ipairs(KINDS) do k.fn(i) end
end
local worst, failed = 0, {}
for _, k in ipairs(KINDS) do
  for i = 1, warmup do k.fn(i) end
  full_gc()
  local heap0, rss0 = collectgarbage("count"), rss()
  for i = warmup + 1, per_kind do k.fn(i) end
  full_gc()
  local heap = (collectgarbage("count") - heap0) / 1024
  local grew = (rss() - rss0) / 2 ^ 20
  worst = math.max(worst, heap, grew)
  print(("  %-10s %6d cycles  Lua heap %+7.2f MiB  RSS %+7.2f MiB")
        :format(k.name, per_kind - warmup, heap, grew))
  io.stdout:flush()
  if heap >= limit_mb or grew >= limit_mb then failed[#failed + 1] = k.name end
end
local ok = #failed == 0
print(("leak loop: %d cycles in %.1f s, RSS %.1f -> %.1f MiB, Lua heap %.0f KiB, largest "
       .. "growth of one kind %+.2f MiB, limit %.1f MiB per kind: %s")
      :format(per_kind * #KINDS, socket.gettime() - start, first / 2 ^ 20, rss() / 2 ^ 20,
              collectgarbage("count"), worst, limit_mb,
              ok and "ok" or "LEAK in " .. table.concat(failed, ", ")))
os.exit(ok and 0 or 1)
