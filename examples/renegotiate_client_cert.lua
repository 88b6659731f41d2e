-- A TLS 1.2 server that asks for a client certificate only when it needs one.
--
-- The connection starts without client authentication. When the client asks for
-- "/private", the server calls set_verify_client() and renegotiate() on that one
-- connection: its HelloRequest makes the client start a new handshake, answered from
-- inside the client's ordinary read, in which it presents its certificate. The
-- server keeps reading (non-blocking, so as not to wait for application data) until
-- renegotiate_pending() is false, then looks at peer_certificate().
--
-- The server runs in a child process (this file with the argument "server").
--
--   lua5.4 examples/renegotiate_client_cert.lua
local tlsrekey = require "tlsrekey"
local socket = require "socket"

local TIMEOUT = 10

local function write_file(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

local function read_file(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

--- Asks the client for a certificate on this connection; returns application data
-- read while the new handshake completed.
local function renegotiate_for_certificate(conn, sock)
  conn:set_verify_client(true)
  conn:renegotiate()
  conn:do_handshake()                 -- sends the HelloRequest and returns
  conn:settimeout(0)
  local early = {}
  while conn:renegotiate_pending() do
    -- records read ahead wait inside the connection: ask pending() first
    local r = conn:pending() > 0 and { sock } or socket.select({ sock }, nil, TIMEOUT)
    assert(#r > 0, "the client did not renegotiate")
    local data = conn:read()          -- nil, "want_read" until something complete
    if data then early[#early + 1] = data end
  end
  conn:settimeout(TIMEOUT)
  return table.concat(early)
end

local function server(dir)
  local ctx = tlsrekey.context {
    mode = "server", cert = read_file(dir .. "/server.pem"),
    key = read_file(dir .. "/server.key"), cafile = read_file(dir .. "/client.pem"),
    max_version = "TLSv1.2",
  }
  local listener = assert(socket.bind("127.0.0.1", 0))
  print("PORT " .. select(2, listener:getsockname()))
  io.stdout:flush()
  listener:settimeout(TIMEOUT)
  local sock = assert(listener:accept())
  listener:close()
  local conn = ctx:wrap(sock, { timeout = TIMEOUT })
  local pending = ""
  while true do
    local line
    while not pending:find("\n", 1, true) do
      local data = conn:read()
      if not data then conn:close(); sock:close(); return end
      pending = pending .. data
    end
    line, pending = pending:match("^(.-)\n(.*)$")
    if line == "GET /public" then
      conn:write("public: anyone may read this\n")
    elseif line == "GET /private" then
      if not conn:peer_certificate() then
        print("server: /private needs a certificate: renegotiating")
        io.stdout:flush()
        pending = pending .. renegotiate_for_certificate(conn, sock)
      end
      conn:write("private: hello " .. conn:peer_certificate().subject .. "\n")
    else
      conn:write("unknown\n")
    end
  end
end

local function read_line(conn)
  local line = ""
  while not line:find("\n", 1, true) do
    line = line .. assert(conn:read(), "the server closed the connection")
  end
  return (line:gsub("\n$", ""))
end

local function client()
  local server_cert, server_key = tlsrekey.make_test_cert("localhost")
  local client_cert, client_key = tlsrekey.make_test_cert("alice")
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -m 700 " .. dir))
  write_file(dir .. "/server.pem", server_cert)
  write_file(dir .. "/server.key", server_key)
  write_file(dir .. "/client.pem", client_cert)
  local lua = arg[-1] or "lua5.4"
  local child = assert(io.popen(("%q %q server %q"):format(lua, arg[0], dir), "r"))
  local port = tonumber(child:read("l"):match("PORT (%d+)"))

  local ctx = tlsrekey.context { mode = "client", cafile = server_cert, cert = client_cert,
                                 key = client_key, max_version = "TLSv1.2" }
  local conn <close> = ctx:connect("127.0.0.1", port,
                                   { server_hostname = "localhost", timeout = TIMEOUT })
  conn:on_event(function(ev)
    if ev.name ~= "handshake_start" then print("client event: " .. ev.name) end
  end)
  conn:do_handshake()
  print("connected: " .. conn:version() .. " " .. conn:cipher())
  conn:write("GET /public\n")
  print(read_line(conn))
  conn:write("GET /private\n")
  print(child:read("l"))              -- the server's note, in order
  print(read_line(conn))
  local st = conn:stats()
  print(("client: HelloRequests received %d, renegotiations %d"):format(
    st.hello_requests_received, st.renegotiations))
  assert(st.renegotiations == 1)
  conn:shutdown()
  io.write(child:read("a"))
  child:close()
  for _, name in ipairs { "server.pem", "server.key", "client.pem" } do
    os.remove(dir .. "/" .. name)
  end
  os.remove(dir)
end

if arg[1] == "server" then server(arg[2]) else client() end
