-- A long-lived TLS 1.3 connection that updates its keys by itself.
--
-- The script starts its own echo server (this same file, run with the argument
-- "server", in a child process) on 127.0.0.1, then streams 4 MiB through it. The
-- client gives its connection a rekey policy: the core schedules a key update before
-- any write that would take the bytes sent under one key past 512 KiB, asking the
-- server to update its keys too. The server answers each request with the echo it
-- writes next. Each KeyUpdate is printed from the event callback (event.automatic
-- tells the policy's from ours), then both sides' counters.
--
--   lua5.4 examples/periodic_rekey.lua
local tlsrekey = require "tlsrekey"
local socket = require "socket"

local TOTAL = 4 * 1024 * 1024
local CHUNK = 16 * 1024
local REKEY_BYTES = 512 * 1024
local TIMEOUT = 10

local function server(cert, key)
  local ctx = tlsrekey.context { mode = "server", cert = cert, key = key }
  local listener = assert(socket.bind("127.0.0.1", 0))
  print("PORT " .. select(2, listener:getsockname()))
  io.stdout:flush()
  listener:settimeout(TIMEOUT)
  local sock = assert(listener:accept())
  listener:close()
  local conn = ctx:wrap(sock, { timeout = TIMEOUT })
  while true do
    local data = conn:read()
    if not data then break end        -- the client's close_notify
    conn:write(data)                  -- also carries the reply an update request owes
  end
  local st = conn:stats()
  print(("server: key updates sent %d, received %d (requests %d)"):format(
    st.key_updates_sent, st.key_updates_received, st.key_update_requests_received))
  conn:shutdown()
  conn:close()
  sock:close()
end

local function client()
  local cert, key = tlsrekey.make_test_cert("localhost")
  local certfile = os.tmpname()
  local f = assert(io.open(certfile, "wb"))
  f:write(cert, key)
  f:close()
  -- The server: this file in a child lua, handed the certificate and key file.
  local lua = arg[-1] or "lua5.4"
  local child = assert(io.popen(("%q %q server %q"):format(lua, arg[0], certfile), "r"))
  local port = tonumber(child:read("l"):match("PORT (%d+)"))

  local ctx = tlsrekey.context { mode = "client", cafile = cert }
  local conn <close> = ctx:connect("127.0.0.1", port,
                                   { server_hostname = "localhost", timeout = TIMEOUT })
  conn:on_event(function(ev)
    if ev.name:find("^key_update") then
      print(("  client %-20s %s%s"):format(ev.name,
            ev.request_update and "(update requested)" or "(not requested)",
            ev.automatic and ", by the policy" or ""))
    end
  end)
  conn:do_handshake()
  conn:set_rekey_policy { bytes = REKEY_BYTES, request_peer = true }
  print(("connected: %s %s; %d MiB to stream, new keys every %d KiB"):format(
    conn:version(), conn:cipher(), TOTAL >> 20, REKEY_BYTES >> 10))

  local block = ("0123456789abcdef"):rep(CHUNK // 16)
  for _ = 1, TOTAL // CHUNK do
    conn:write(block)
    local echoed = {}
    local have = 0
    while have < #block do
      local s = assert(conn:read(), "the server closed early")
      echoed[#echoed + 1] = s
      have = have + #s
    end
    assert(table.concat(echoed) == block, "the echo differs")
  end
  local st = conn:stats()
  print(("client: %d MiB echoed intact; key updates sent %d (by the policy %d), "
         .. "received %d"):format(TOTAL >> 20, st.key_updates_sent, st.automatic_rekeys,
                                  st.key_updates_received))
  assert(st.automatic_rekeys == TOTAL // REKEY_BYTES - 1)
  conn:shutdown()
  io.write(child:read("a"))            -- the server's own summary
  child:close()
  os.remove(certfile)
end

if arg[1] == "server" then
  local f = assert(io.open(arg[2], "rb"))
  local pem = f:read("a")
  f:close()
  local cert, key = pem:match("(%-%-%-%-%-BEGIN CERTIFICATE.-END CERTIFICATE%-%-%-%-%-\n)(.*)")
  server(cert, key)
else
  client()
end
