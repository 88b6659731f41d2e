-- A coroutine server over non-blocking sockets, with clients that update their keys
-- mid-stream: the Lua counterpart of examples/asyncio_stream.py.
--
-- tlsrekey_compat gives each connection LuaSocket's calls (send, receive, ...) with
-- LuaSocket's answers; with settimeout(0) a call that would block returns nil,
-- "timeout" and want() tells whether to wait for reading or writing. Each connection
-- is a coroutine that yields to a small socket.select loop at that point (what copas
-- does; Debian packages copas for Lua 5.1/5.2 only). Three clients and the server
-- run in this one process on 127.0.0.1; each client sends 300 lines, updating its
-- keys (and asking for the server's update) every 100, and checks the echoes.
--
--   lua5.4 examples/coroutine_server.lua
local tlsrekey = require "tlsrekey"
local compat = require "tlsrekey_compat"
local socket = require "socket"

local CLIENTS, LINES, REKEY_EVERY = 3, 300, 100

-- The dispatcher: coroutines yield ("read" | "write", object) to wait.
local runnable, waiting, live = {}, { read = {}, write = {} }, 0

local function spawn(fn, ...)
  live = live + 1
  local args = table.pack(...)
  runnable[#runnable + 1] = coroutine.create(function() return fn(table.unpack(args, 1, args.n)) end)
end

local function loop()
  while live > 0 do
    local now = runnable
    runnable = {}
    for _, co in ipairs(now) do
      local ok, how, obj = coroutine.resume(co)
      if not ok then error(debug.traceback(co, how), 0) end
      if coroutine.status(co) == "dead" then live = live - 1 else waiting[how][obj] = co end
    end
    if live > 0 and #runnable == 0 then
      local r, w = {}, {}
      for obj in pairs(waiting.read) do r[#r + 1] = obj end
      for obj in pairs(waiting.write) do w[#w + 1] = obj end
      local readable, writable = socket.select(r, w, 5)
      assert(#readable + #writable > 0, "nothing moved for 5 seconds")
      for how, list in pairs { read = readable, write = writable } do
        for _, obj in ipairs(list) do
          runnable[#runnable + 1] = waiting[how][obj]
          waiting[how][obj] = nil
        end
      end
    end
  end
end

-- LuaSocket-style calls that yield instead of blocking.
local function wait(conn) coroutine.yield(conn:want() == "write" and "write" or "read", conn) end

local function handshake(conn)
  while true do
    local ok, err = conn:dohandshake()
    if ok then return end
    assert(err == "wantread" or err == "wantwrite", err)
    coroutine.yield(err == "wantwrite" and "write" or "read", conn)
  end
end

local function receive(conn, pattern)
  local partial
  while true do
    local data, err, part = conn:receive(pattern, partial)
    if data or err ~= "timeout" then return data, err end
    partial = part
    wait(conn)
  end
end

local function send(conn, data)
  local i = 1
  while true do
    local last, err, sent = conn:send(data, i)
    if last then return last end
    assert(err == "timeout", err)
    i = sent + 1
    wait(conn)
  end
end

-- The server: one coroutine accepting, one per connection echoing lines.
local cert, key = tlsrekey.make_test_cert("localhost")
local server_ctx = tlsrekey.context { mode = "server", cert = cert, key = key }
local client_ctx = tlsrekey.context { mode = "client", cafile = cert }
local listener = assert(socket.bind("127.0.0.1", 0))
listener:settimeout(0)
local port = select(2, listener:getsockname())

local function echo(sock)
  local conn = assert(compat.wrap(sock, server_ctx))
  conn:settimeout(0)
  handshake(conn)
  while true do
    local line = receive(conn, "*l")
    if not line then break end        -- "closed": the client is done
    send(conn, line .. "\n")
  end
  local st = conn:stats()
  print(("server: a connection ended; key updates received %d, sent %d"):format(
    st.key_updates_received, st.key_updates_sent))
  conn:close()
end

spawn(function()
  for _ = 1, CLIENTS do
    local sock = listener:accept()
    while not sock do
      coroutine.yield("read", listener)
      sock = listener:accept()
    end
    spawn(echo, sock)
  end
  listener:close()
end)

local function client(id)
  local sock = socket.tcp()
  sock:settimeout(5)
  assert(sock:connect("127.0.0.1", port))
  local conn = assert(compat.wrap(sock, client_ctx, { server_hostname = "localhost" }))
  conn:settimeout(0)
  handshake(conn)
  for n = 1, LINES do
    local line = ("client %d line %d"):format(id, n)
    send(conn, line .. "\n")
    if n % REKEY_EVERY == 50 then conn:key_update("requested") end  -- goes with the next I/O
    assert(receive(conn, "*l") == line, "the echo differs")
  end
  local st = conn:stats()
  print(("client %d: %d lines echoed; key updates sent %d, received %d"):format(
    id, LINES, st.key_updates_sent, st.key_updates_received))
  conn:close()
end

for id = 1, CLIENTS do spawn(client, id) end
loop()
